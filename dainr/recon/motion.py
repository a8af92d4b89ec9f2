"""Motion fields of a fitted DA-INR model: displacement (mm) and the Jacobian determinant of the deformation.

DA-INR renders frame ``t`` at pixel ``p`` from the canonical image at ``q = p + Δ(p, t)`` (:class:`~dainr.model.
networks.DeformationNet`): a map from every frame into one canonical space, which has no physical meaning of its own
(a constant shift of it changes no image). What a reader wants is how tissue moved between frames, so the motion is
given relative to a **reference frame**, frame 0 (end-diastole for an ECG-triggered cine):

* displacement ``u(p, t) = Δ(p, t) − Δ(p, 0)``: how far the canonical point seen at pixel ``p`` moved since frame
  0. To first order in the deformation's gradient this is the displacement from frame ``t`` to frame 0 (the tissue at
  ``p`` in frame ``t`` lies at ``p + u`` in frame 0), exactly so when frame 0's map is a translation (the canonical
  image is then frame 0, shifted). It is zero in frame 0 by construction and needs no inversion of the networks
  (whose maps need not be invertible: nothing in the fit asks them to be).
* Jacobian determinant ``J(p, t) = det(I + ∇Δ(p, 0)) / det(I + ∇Δ(p, t))`` (gradients by autograd): the area of a
  tissue element in frame ``t`` over its area in frame 0, in the same approximation; 1 where nothing changes, below 1
  where the tissue is compressed (the LV blood pool in systole), above 1 where it is stretched.

Units: coordinates are the networks' (:func:`~dainr.model.networks.centred_coords`; one unit = half the field of
view), displacements are converted to millimetres with the field of view: ``u_mm = u · fov / 2`` per axis.
Components are ``(x, y)``: x along the image columns (the readout direction, ``read_dir``), y along the rows
(``phase_dir``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dainr.model.networks import DAINR, centred_coords

def _deform(model: DAINR, p: torch.Tensor, t: float) -> torch.Tensor:
    """``Δ(p, t)``: ``(N, 2)`` for ``p (N, 2)`` at one time ``t``."""
    return model.deformation(p, torch.full((1, 1), float(t), dtype=p.dtype, device=p.device))


def _det_jacobian(model: DAINR, p: torch.Tensor, t: float) -> torch.Tensor:
    """``det(I + ∇Δ(p, t))`` per point, ``(N,)``."""
    p = p.detach().requires_grad_(True)
    out = p + _deform(model, p, t)
    gx = torch.autograd.grad(out[:, 0].sum(), p, retain_graph=True)[0]
    gy = torch.autograd.grad(out[:, 1].sum(), p)[0]
    return (gx[:, 0] * gy[:, 1] - gx[:, 1] * gy[:, 0]).detach()


def displacement_mm(model: DAINR, times: Sequence[float] | torch.Tensor, matrix: tuple[int, int],
                    fov_mm: tuple[float, float], t_ref: float = 0.0, chunk: int = 65536) -> torch.Tensor:
    """Displacement to the reference frame, ``u = Δ(p, t) − Δ(p, t_ref)`` in mm, at every pixel and time.

    Parameters
    ----------
    model:
        A fitted :class:`~dainr.model.networks.DAINR`.
    times:
        ``(T,)`` times in [0, 1] (frame ``f`` of ``F`` at ``f / (F − 1)``).
    matrix:
        ``(H, W)`` pixels at which to evaluate (any matrix over the same field of view).
    fov_mm:
        Field of view ``(x, y)`` in mm (columns, rows).
    t_ref:
        Time of the reference frame (0: frame 0).
    chunk:
        Points per network evaluation (bounds memory).

    Returns
    -------
    ``(T, 2, H, W)`` float32 on the model's device, mm; channel 0 is x (columns), channel 1 is y (rows).
    """
    device = next(model.parameters()).device
    p = centred_coords(*matrix, device=device)
    half = torch.tensor([fov_mm[0] / 2.0, fov_mm[1] / 2.0], device=device)
    with torch.no_grad():
        ref = torch.cat([_deform(model, p[s:s + chunk], t_ref) for s in range(0, p.shape[0], chunk)])
        out = [((torch.cat([_deform(model, p[s:s + chunk], t) for s in range(0, p.shape[0], chunk)]) - ref) * half)
               .T.reshape(2, *matrix) for t in [float(v) for v in times]]
    return torch.stack(out).float()


def jacobian_determinant(model: DAINR, times: Sequence[float] | torch.Tensor, matrix: tuple[int, int],
                         t_ref: float = 0.0, chunk: int = 65536) -> torch.Tensor:
    """Local area change from the reference frame, ``J = det(I + ∇Δ(p, t_ref)) / det(I + ∇Δ(p, t))`` (module
    docstring), at every pixel and time.

    Returns
    -------
    ``(T, H, W)`` float32 on the model's device, dimensionless (1: no change); 1 everywhere in the reference frame.
    """
    device = next(model.parameters()).device
    p = centred_coords(*matrix, device=device)

    def det(t: float) -> torch.Tensor:
        return torch.cat([_det_jacobian(model, p[s:s + chunk], t) for s in range(0, p.shape[0], chunk)])

    ref = det(t_ref)
    return torch.stack([(ref / det(float(t))).reshape(matrix) for t in times]).float()
