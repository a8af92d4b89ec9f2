"""Motion fields of a fitted model (dainr.recon.motion) and the phantom's analytic motion they are checked against."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from dainr.config import load_config
from dainr.data import RenderRequest
from dainr.model.networks import centred_coords
from dainr.phantom import MYOCARDIUM, cardiac_phantom, cardiac_phantom_motion
from dainr.physics import MultiCoilNufft
from dainr.recon import reconstruct
from dainr.recon.motion import displacement_mm, jacobian_determinant
from dainr.simulate import simulate


class _Planted(nn.Module):
    """A deformation with a known form: ``Δ(p, t) = (a + t)·(A p + b)`` (network units)."""

    def __init__(self, a: float, A: np.ndarray, b: np.ndarray):
        super().__init__()
        self.a = a
        self.A = nn.Parameter(torch.tensor(A, dtype=torch.float32))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float32))

    def forward(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (self.a + t) * (p @ self.A.T + self.b)


class _Model(nn.Module):
    def __init__(self, deformation: nn.Module):
        super().__init__()
        self.deformation = deformation


A = np.array([[0.10, -0.05], [0.03, -0.08]])
B = np.array([0.02, -0.01])


@pytest.mark.parametrize("a", [0.0, 0.3])
def test_displacement_and_jacobian_of_a_planted_deformation(a):
    """u = Δ(p, t) − Δ(p, 0) = t·(A p + b), in mm with one unit = half the field of view per axis (x columns,
    y rows); J = det(I + a·A) / det(I + (a + t)·A). Both exact for this affine field, at any matrix."""
    model = _Model(_Planted(a, A, B))
    times, matrix, fov = [0.0, 0.5, 1.0], (6, 10), (300.0, 200.0)
    u = displacement_mm(model, times, matrix, fov).numpy()
    jac = jacobian_determinant(model, times, matrix).numpy()
    p = centred_coords(*matrix).numpy()
    assert u.shape == (3, 2, 6, 10) and jac.shape == (3, 6, 10)
    for k, t in enumerate(times):
        want = (t * (p @ A.T + B) * np.array([150.0, 100.0])).T.reshape(2, *matrix)
        np.testing.assert_allclose(u[k], want, atol=1e-4)
        ratio = np.linalg.det(np.eye(2) + a * A) / np.linalg.det(np.eye(2) + (a + t) * A)
        np.testing.assert_allclose(jac[k], ratio, rtol=1e-5)
    assert np.all(u[0] == 0) and np.all(jac[0] == 1)
    # channel 0 is x (columns): a shift along x only moves channel 0
    shift = _Model(_Planted(0.0, np.zeros((2, 2)), np.array([0.1, 0.0])))
    v = displacement_mm(shift, [1.0], matrix, fov).numpy()
    assert np.allclose(v[0, 0], 15.0) and np.allclose(v[0, 1], 0.0)


def test_phantom_motion_maps_wall_onto_wall():
    """The analytic motion of the LV wall sends its pixels into frame 0's myocardium (rounded to the nearest
    pixel; ≥ 90 %), where no motion would leave most of the systolic wall in the blood pool or outside the heart."""
    n, frames, seed = 96, 8, 3
    motion = cardiac_phantom_motion(n, frames, seed=seed)
    tissue = cardiac_phantom(n, frames, coils=1, seed=seed).tissue
    yy, xx = np.mgrid[:n, :n]
    systole = frames // 2
    wall = motion.myocardium[systole]
    assert wall.sum() > 100 and np.all(motion.known[systole][wall])
    x = np.rint(xx + motion.displacement[systole, ..., 0]).astype(int)[wall]
    y = np.rint(yy + motion.displacement[systole, ..., 1]).astype(int)[wall]
    assert np.mean(tissue[0][y, x] == MYOCARDIUM) > 0.9
    assert np.mean(tissue[0][yy[wall], xx[wall]] == MYOCARDIUM) < 0.6
    # frame 0 is the reference; the static tissue never moves; the motion is largest at end-systole
    assert np.abs(motion.displacement[0]).max() < 1e-5
    still = motion.known & ~motion.myocardium
    assert still.sum() > 0.3 * still.size and np.all(motion.displacement[still] == 0)
    size = [np.linalg.norm(motion.displacement[f], axis=-1).max() for f in range(frames)]
    assert int(np.argmax(size)) == systole and 1.0 < size[systole] < 6.0


def test_a_still_phantom_gives_near_zero_displacement():
    """The phantom held at frame 0 for the whole cine (same spokes and noise as the moving one): the fitted
    mean displacement stays below a tenth of a pixel (0.8 mm; the phantom's own LV wall moves 2.5 mm on average) in
    the LV wall and in the static tissue; frame 0 is exactly zero. A 60-step cpu fit at 32², 6 frames: 0.45 mm and
    0.21 mm when written; the fitted deformation is mostly its initialisation here (a moving phantom's fit gives about
    as little), so this bounds spurious motion, not the recovery of true motion (benchmarks/motion.py measures that)."""
    n, frames, coils, seed = 32, 6, 4, 3
    pixel_mm = 256.0 / n
    ser = simulate("phantom", matrix=n, frames=frames, coils=coils, spokes=13, snr=200, seed=seed, fov_mm=256.0)
    cine, truth = ser.slices[0], ser.truth[0]
    maps = cardiac_phantom(n, frames=1, coils=coils, seed=seed).coil_maps  # the maps simulate() used
    op = MultiCoilNufft(torch.from_numpy(cine.traj), torch.from_numpy(maps))
    with torch.no_grad():
        moving = op(torch.from_numpy(truth)).numpy()
        still = op(torch.from_numpy(np.repeat(truth[:1], frames, axis=0))).numpy()
    cine = dataclasses.replace(cine, kspace=(still + cine.kspace - moving).astype(np.complex64))
    res = reconstruct(cine, load_config("cpu", overrides=["device=cpu", "dainr.steps=60"]),
                      render=RenderRequest(motion=True))
    assert res.motion.shape == (frames, 2, n, n) and np.all(res.motion[0] == 0)
    size = np.linalg.norm(res.motion, axis=1)
    analytic = cardiac_phantom_motion(n, frames, seed=seed)
    for region in (analytic.myocardium, analytic.known & ~analytic.myocardium):
        region = region.copy()
        region[0] = False
        assert size[region].mean() < 0.1 * pixel_mm
