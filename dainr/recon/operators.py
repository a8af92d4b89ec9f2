"""The encoding operator of one prepared slice, on a torch device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dainr.data import CineData
from dainr.physics import MultiCoilNufft, ramp_density


@dataclass
class SliceProblem:
    """Tensors of one prepared slice.

    Attributes
    ----------
    op: the multi-coil NUFFT with the slice's trajectory and coil maps.
    kspace: ``(frames, coils, spokes, samples)`` complex64 measured data (scaled).
    mask: ``(frames, spokes, samples)`` float32, 1 where measured, 0 for padding.
    density: ``(frames, spokes, samples)`` float32 density compensation scaled so that ``Aᴴ diag(density) A ≈ I``.
    """

    op: MultiCoilNufft
    kspace: torch.Tensor
    mask: torch.Tensor
    density: torch.Tensor

    @property
    def n_frames(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def im_size(self) -> tuple[int, int]:
        return self.op.im_size


def density_weights(cine: CineData) -> np.ndarray:
    """``(frames, spokes, samples)`` density compensation with ``Aᴴ diag(w) A ≈ I`` for the orthonormal NUFFT.

    Uses the data's own weights (third ``traj`` column) when given, rescaled to the analytic ramp's total per frame;
    the analytic ramp otherwise. Padded spokes get 0.
    """
    mask = cine.sample_weights()
    n_meas = mask[..., 0].sum(-1) if cine.spoke_mask is not None else None
    ramp = ramp_density(cine.traj, n_spokes=np.maximum(n_meas, 1) if n_meas is not None else None)
    ramp = ramp * mask
    if cine.dcw is not None:
        given = cine.dcw.astype(np.float64) * mask
        total = given.sum(axis=(1, 2), keepdims=True)
        target = ramp.sum(axis=(1, 2), keepdims=True)
        w = np.where(total > 0, given * target / np.where(total > 0, total, 1), ramp)
    else:
        w = ramp
    h, wd = cine.matrix
    return (w * h * wd).astype(np.float32)


def build_problem(cine: CineData, coil_maps: np.ndarray, device: torch.device,
                  matrix: tuple[int, int] | None = None, backend: str = "gather") -> SliceProblem:
    """Move a prepared slice to ``device`` and build its operator (``matrix`` overrides the image size;
    ``backend`` is the NUFFT's, see :class:`~dainr.physics.nufft.MultiCoilNufft`)."""
    maps = torch.as_tensor(coil_maps, dtype=torch.complex64, device=device)
    if matrix is not None and tuple(matrix) != tuple(maps.shape[-2:]):
        raise ValueError("coil maps must be given at the requested matrix")
    traj = torch.as_tensor(cine.traj, dtype=torch.float32, device=device)
    op = MultiCoilNufft(traj, maps, backend=backend)
    return SliceProblem(
        op=op,
        kspace=torch.as_tensor(cine.kspace, dtype=torch.complex64, device=device),
        mask=torch.as_tensor(cine.sample_weights(), device=device),
        density=torch.as_tensor(density_weights(cine), device=device),
    )
