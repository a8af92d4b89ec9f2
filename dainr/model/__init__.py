"""DA-INR model parts: input encodings, the deformation/canonical networks and the frozen MDSR features.

* :mod:`dainr.model.encodings` — :class:`FrequencyEncoding`, :class:`GridEncoding` (torch-ngp semantics; torch and
  tcnn backends).
* :mod:`dainr.model.networks` — :class:`DeformationNet`, :class:`CanonicalNet`, :class:`DAINR`, :func:`centred_coords`,
  :func:`frame_times`.
* :mod:`dainr.model.features` — :class:`MDSRFeatures`, :func:`neighbour_frames`, :func:`neighbour_features`.
* :mod:`dainr.model.reference` — :func:`build_reference_models` (the reference code's exact initial weights).
"""

from dainr.model.encodings import FrequencyEncoding, GridEncoding
from dainr.model.features import FEATURE_CHANNELS, MDSRFeatures, neighbour_features, neighbour_frames
from dainr.model.networks import DAINR, CanonicalNet, DeformationNet, centred_coords, frame_times
from dainr.model.reference import build_reference_models

__all__ = [
    "FrequencyEncoding",
    "GridEncoding",
    "FEATURE_CHANNELS",
    "MDSRFeatures",
    "neighbour_features",
    "neighbour_frames",
    "DAINR",
    "CanonicalNet",
    "DeformationNet",
    "frame_times",
    "centred_coords",
    "build_reference_models",
]
