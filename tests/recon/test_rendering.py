"""Rendering a fitted DA-INR slice at other frame counts and matrices, and warm starts (dainr.recon.rendering)."""

from __future__ import annotations

import numpy as np
import pytest

from dainr.config import load_config
from dainr.data import RenderRequest
from dainr.errors import ConfigError
from dainr.metrics import quality
from dainr.phantom import cardiac_phantom
from dainr.recon import reconstruct
from dainr.recon.rendering import frame_positions, render_slice, render_times, support_at
from dainr.simulate import simulate

N, F, SEED = 32, 6, 3


@pytest.fixture(scope="module")
def phantom():
    ser = simulate("phantom", matrix=N, frames=F, coils=4, spokes=13, snr=200, seed=SEED)
    return ser.slices[0], ser.truth[0]


@pytest.fixture(scope="module")
def fitted(phantom):
    """A 30-step cpu-test fit of the phantom, with its model."""
    return reconstruct(phantom[0], load_config("cpu-test", overrides=["dainr.steps=30"]), keep_model=True)


def test_frame_convention():
    """Rendered frame k of N lies at k/(N−1) of the acquired interval: source position k·(F−1)/(N−1);
    N = r(F−1)+1 renders every acquired frame again at k = r·f (exactly, at the fit's own times)."""
    assert np.array_equal(frame_positions(6), np.arange(6))
    assert np.array_equal(frame_positions(6, 11), np.arange(11) / 2)
    for f in (2, 5, 23):
        for r in (2, 3, 7):
            pos = frame_positions(f, r * (f - 1) + 1)
            assert np.array_equal(pos[::r], np.arange(f)) and pos[-1] == f - 1
    assert np.array_equal(render_times(6, 11)[::2].numpy(), render_times(6, 0).numpy())


def test_rendering_the_acquired_frames_gives_the_fit_exactly(fitted):
    fm = fitted.fitted
    same = render_slice(fm, RenderRequest(frames=F), (256.0, 256.0))
    assert np.array_equal(same.images, fitted.images)
    finer = render_slice(fm, RenderRequest(frames=2 * F - 1), (256.0, 256.0))
    assert finer.images.shape == (2 * F - 1, N, N)
    assert np.array_equal(finer.images[::2], fitted.images)
    assert not np.array_equal(finer.images[1], finer.images[0])


def test_finer_times_and_matrix_against_the_phantom(phantom, fitted):
    """Frames rendered between the acquired ones are as close to the phantom at their own phases (frame k of a
    2F-frame phantom) as the acquired frames are to theirs; a matrix twice as fine is closer to the phantom drawn at
    that matrix than the fit's pixels replicated 2×2. Loose bounds: a 30-step fit."""
    cine, truth = phantom
    fm = fitted.fitted
    finer = render_slice(fm, RenderRequest(frames=2 * F - 1), (256.0, 256.0)).images
    fine_truth = cardiac_phantom(matrix=N, frames=2 * F, coils=1, seed=SEED).images[:2 * F - 1]
    between = quality(finer[1::2], fine_truth[1::2]).psnr
    acquired = quality(finer[0::2], truth).psnr
    assert acquired > 18 and between > acquired - 1.0
    high = cardiac_phantom(matrix=2 * N, frames=F, coils=1, seed=SEED).images
    twice = render_slice(fm, RenderRequest(matrix=2 * N), (256.0, 256.0)).images
    assert twice.shape == (F, 2 * N, 2 * N)
    replicated = np.repeat(np.repeat(fitted.images, 2, axis=1), 2, axis=2)
    assert quality(twice, high).psnr > quality(replicated, high).psnr
    # the coil-map support carried to the finer matrix: fine pixel 2i is coarse pixel i; zero outside it
    support = support_at(fm, (2 * N, 2 * N)).numpy()
    assert np.array_equal(support[::2, ::2], fm.support.numpy()) and not support.all()
    assert np.all(twice[:, ~support] == 0) and np.all(twice[:, support] != 0)


def test_held_out_frames_against_the_phantom(phantom):
    """down_ratio=2 fits frames 0, 2, 4 (and 5, the last) and renders the others from the model: they are about as
    close to the truth as the fitted frames (loose bound)."""
    cine, truth = phantom
    res = reconstruct(cine, load_config("cpu-test", overrides=["dainr.steps=30", "dainr.down_ratio=2"]))
    held = [1, 3]
    assert quality(res.images[held], truth[held]).psnr > quality(res.images[[0, 2, 4]], truth[[0, 2, 4]]).psnr - 1.5


def test_render_request_refusals():
    for kw in ({"frames": 1}, {"frames": -2}, {"matrix": 4}, {"matrix": -1}):
        with pytest.raises(ConfigError, match="must be 0"):
            RenderRequest(**kw)
    assert RenderRequest(matrix=48).output_matrix((32, 32)) == (48, 48)
    assert RenderRequest(matrix=64).output_matrix((32, 48)) == (64, 96)
    with pytest.raises(ConfigError, match="choose a multiple of 2 rows"):
        RenderRequest(matrix=33).output_matrix((32, 48))
    with pytest.raises(ConfigError, match="need method dainr"):
        reconstruct(_tiny_cine(), load_config("cpu-test", overrides=["method=adjoint"]),
                    render=RenderRequest(motion=True))


def _tiny_cine():
    return simulate("phantom", matrix=16, frames=3, coils=2, spokes=5, seed=0).slices[0]


def test_warm_start_starts_from_the_given_weights(fitted, phantom):
    """init_state replaces the seeded initialisation: one vanishingly small step from the fitted weights renders the
    fit again, one from scratch does not; weights of another network are refused in one line."""
    cine, _ = phantom
    one = load_config("cpu-test", overrides=["dainr.steps=1", "dainr.lr=1e-12"])
    state = fitted.fitted.model.state_dict()
    warm = reconstruct(cine, one, init_state=state)
    cold = reconstruct(cine, one)
    scale = np.abs(fitted.images).max()
    assert np.abs(warm.images - fitted.images).max() < 1e-3 * scale
    assert np.abs(cold.images - fitted.images).max() > 0.1 * scale
    other = load_config("cpu-test", overrides=["dainr.steps=1", "dainr.hidden=8"])
    with pytest.raises(ConfigError, match="warm start's weights belong to a network of other settings") as e:
        reconstruct(cine, other, init_state=state)
    assert "\n" not in str(e.value)
