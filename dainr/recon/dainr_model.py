"""The DA-INR network of a config (:func:`build_model`) and a fitted model that renders its slice
(:class:`FittedDainr`).

:class:`FittedDainr` is what outlives the optimisation: the network with its output weights, the config it was built
from and the inputs rendering needs (frame times, pixel coordinates per matrix, the cached neighbour features, the
coil-map support). The fit renders its training batches with it, and a caller renders frames at any matrix from it
(:meth:`FittedDainr.render`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dainr.config import DainrConfig
from dainr.errors import ConfigError
from dainr.model.encodings import GridEncoding
from dainr.model.networks import DAINR, CanonicalNet, DeformationNet, centred_coords, frame_times


def build_model(c: DainrConfig, feature_dim: int) -> DAINR:
    """The DA-INR network of a :class:`DainrConfig`, with ``feature_dim`` neighbour-feature channels (0: none),
    initialised from the global RNG (seed it first)."""
    g = c.grid
    grid = GridEncoding(input_dim=2, n_levels=g.levels, n_features=g.features_per_level,
                        base_resolution=g.base_resolution, desired_resolution=g.finest_resolution,
                        log2_hashmap_size=g.log2_table_size, gridtype=g.gridtype, init_scale=g.init_scale,
                        backend=g.backend)
    deform = DeformationNet(space_degree=c.space_degree, time_degree=c.time_degree, width=c.deformation_width,
                            depth=c.deformation_depth, periodic_time=c.periodic_time)
    canon = CanonicalNet(grid, space_degree=c.space_degree, time_degree=c.time_degree, feature_dim=feature_dim,
                         hidden=c.hidden, periodic_time=c.periodic_time)
    return DAINR(deform, canon)


def load_weights(model: DAINR, state: dict[str, torch.Tensor], what: str) -> None:
    """Copy the weights ``state`` (a ``state_dict``, any device) into ``model``.

    Raises
    ------
    ConfigError
        When they belong to a network of other settings (one line naming ``what``).
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ConfigError(f"{what} belong to a network of other settings ({detail})") from None


@dataclass
class FittedDainr:
    """A DA-INR network with everything it needs to render its slice.

    Attributes
    ----------
    model:
        The network, on the slice's device. After a fit it holds the output weights (the selected and/or averaged
        ones, see :class:`~dainr.recon.dainr_fit.FitResult`).
    config:
        The DA-INR settings it was built and fitted with.
    n_frames:
        Frames of the cine (training and held-out); frame ``f`` is at time ``f / (n_frames − 1)``
        (``f / n_frames`` with ``config.periodic_time``).
    train_frames:
        ``(T,)`` int, the frames whose data the fit used (every ``down_ratio``-th with temporal interpolation).
    matrix:
        ``(H, W)`` output matrix.
    train_matrix:
        ``(h, w)`` matrix the fit rendered (``matrix / sr_ratio``).
    features:
        ``(n_frames, C, h, w)`` float32 neighbour features at ``train_matrix`` (from training frames only), or None.
    support:
        ``(H, W)`` bool, True where the coil maps are non-zero; rendered frames are zero outside (as SENSE).
    scale:
        Intensity scale of the prepared data: rendered images × ``scale`` are in the raw data's units.
    """

    model: DAINR
    config: DainrConfig
    n_frames: int
    train_frames: np.ndarray
    matrix: tuple[int, int]
    train_matrix: tuple[int, int]
    features: torch.Tensor | None
    support: torch.Tensor
    scale: float = 1.0
    _inputs: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def device(self) -> torch.device:
        return self.support.device

    def times(self) -> torch.Tensor:
        """``(n_frames,)`` frame times in [0, 1] on the device (:func:`~dainr.model.networks.frame_times`)."""
        if "times" not in self._inputs:
            self._inputs["times"] = frame_times(self.n_frames, self.device, periodic=self.config.periodic_time)
        return self._inputs["times"]

    def inputs(self, matrix: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pixel coordinates ``(H·W, 2)`` of ``matrix`` and the features resampled to it, ``(n_frames, H·W, C)``
        float16 (bilinear, pixel-centre aligned, borders replicated), or None; made once per matrix.

        Features are cached in half precision (those of a random frozen CNN need no more) and cast back to float32
        per rendered batch.
        """
        matrix = (int(matrix[0]), int(matrix[1]))
        if matrix not in self._inputs:
            feats = self.features
            if feats is not None and matrix != tuple(feats.shape[-2:]):
                feats = torch.nn.functional.interpolate(feats, size=matrix, mode="bilinear", align_corners=False)
            flat = None if feats is None else feats.flatten(2).transpose(1, 2).contiguous().half()
            self._inputs[matrix] = (centred_coords(*matrix, device=self.device), flat)
        return self._inputs[matrix]

    def render_batch(self, frames: torch.Tensor, matrix: tuple[int, int],
                     times: torch.Tensor | None = None) -> torch.Tensor:
        """Frames ``frames`` (``(B,)`` int64 on the device) at ``matrix`` -> ``(B, H, W)`` complex64, differentiable,
        without the support mask. ``times`` ``(B,)`` in [0, 1] replaces the frames' own times (their features are
        still the frames')."""
        coords, feats = self.inputs(matrix)
        t = self.times()[frames] if times is None else times
        return self.model.render(t, coords, None if feats is None else feats[frames].float(), image_shape=matrix)

    @torch.no_grad()
    def render(self, frames: Sequence[int] | None = None, matrix: tuple[int, int] | None = None,
               times: torch.Tensor | None = None, masked: bool = True, chunk: int = 4) -> torch.Tensor:
        """Render frames of the slice.

        Parameters
        ----------
        frames:
            Frame indices (default all ``n_frames``).
        matrix:
            ``(H, W)`` to render at (default :attr:`matrix`), over the same field of view.
        times:
            ``(len(frames),)`` times in [0, 1] replacing the frames' own (default their own).
        masked:
            Zero the frames outside :attr:`support` (only at :attr:`matrix`, where the support is known).
        chunk:
            Frames per network evaluation (bounds memory).

        Returns
        -------
        ``(len(frames), H, W)`` complex64 on the device, in the prepared data's units (× :attr:`scale` for the raw
        data's).
        """
        frames = list(range(self.n_frames)) if frames is None else [int(f) for f in frames]
        matrix = self.matrix if matrix is None else (int(matrix[0]), int(matrix[1]))
        out = torch.cat([self.render_batch(torch.tensor(frames[s:s + chunk], device=self.device), matrix,
                                           None if times is None else times[s:s + chunk])
                         for s in range(0, len(frames), chunk)])
        return out * self.support if masked and matrix == self.matrix else out
