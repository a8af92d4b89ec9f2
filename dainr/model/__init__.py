"""DA-INR model parts: input encodings, the deformation/canonical networks and the frozen MDSR features.

* :mod:`dainr.model.encodings` — :class:`FrequencyEncoding`, :class:`GridEncoding` (torch-ngp semantics; torch, tcnn
  and pluggable kernels).
* :mod:`dainr.model.networks` — :class:`DeformationNet`, :class:`CanonicalNet`, :class:`DAINR`, :func:`pixel_grid`.
* :mod:`dainr.model.features` — :class:`MDSRFeatures`, :func:`neighbour_frames`, :func:`neighbour_features`,
  :func:`sample_features`.
* :mod:`dainr.model.reference` — :func:`build_reference_models` (the reference code's exact initial weights).
"""

from dainr.model.encodings import FrequencyEncoding, GridEncoding, register_grid_kernel
from dainr.model.features import MDSRFeatures, neighbour_features, neighbour_frames, sample_features
from dainr.model.networks import DAINR, CanonicalNet, DeformationNet, frame_times, pixel_grid
from dainr.model.reference import build_reference_models

__all__ = [
    "FrequencyEncoding",
    "GridEncoding",
    "register_grid_kernel",
    "MDSRFeatures",
    "neighbour_features",
    "neighbour_frames",
    "sample_features",
    "DAINR",
    "CanonicalNet",
    "DeformationNet",
    "frame_times",
    "pixel_grid",
    "build_reference_models",
]
