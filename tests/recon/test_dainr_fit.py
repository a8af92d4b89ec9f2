"""DA-INR fit: shapes, determinism, temporal interpolation without leaks, spatial interpolation, validation stop."""

import dataclasses

import numpy as np
import pytest
import torch

from dainr.config import load_config
from dainr.recon import reconstruct
from dainr.prep import prepare
from dainr.recon.dainr_fit import AveragedWeights, FrameSampler, fit_dainr, holdout_mask
from dainr.simulate import simulate


@pytest.fixture(scope="module")
def series():
    return simulate("phantom", matrix=32, frames=5, coils=3, spokes=9, snr=100, seed=2)


def test_shapes_and_determinism(series):
    cfg = load_config("cpu-test")
    a = reconstruct(series.slices[0], cfg)
    b = reconstruct(series.slices[0], cfg)
    assert a.images.shape == (5, 32, 32) and a.images.dtype == np.complex64
    assert np.array_equal(a.images, b.images)
    assert a.iterations == cfg.dainr.steps and len(a.loss) > 0
    c = reconstruct(series.slices[0], load_config("cpu-test", overrides=["seed=1"]))
    assert not np.array_equal(a.images, c.images)


def test_temporal_interpolation_never_sees_held_out_frames(series):
    """down_ratio=2 fits frames 0, 2, 4 and renders 1 and 3: replacing their k-space with noise 50× the data's
    largest sample changes no output pixel, nor the preparation (coil maps, intensity scale, support); changing a
    training frame does (the test can fail)."""
    cine = series.slices[0]
    cfg = load_config("cpu-test", overrides=["dainr.down_ratio=2"])
    rng = np.random.default_rng(0)
    changed = dataclasses.replace(cine, kspace=cine.kspace.copy())
    for f in (1, 3):
        noise = rng.normal(size=(2, *cine.kspace[f].shape)) * 50 * np.abs(cine.kspace).max()
        changed.kspace[f] = (noise[0] + 1j * noise[1]).astype(np.complex64)
    a = reconstruct(cine, cfg)
    b = reconstruct(changed, cfg)
    assert a.images.shape == (5, 32, 32) and a.info["train_frames"] == 3
    assert a.info["scale"] == b.info["scale"]
    assert np.array_equal(a.images, b.images)
    changed.kspace[2] *= 0.5
    assert not np.array_equal(a.images, reconstruct(changed, cfg).images)


def test_lowres_view_keeps_only_the_coarse_band():
    """sr_ratio=2 keeps the samples with |k| < 0.25 (|k|·2 < 0.5 on the coarse grid), whatever the spoke angles
    (a diagonal spoke is the hard case: each component is only |k|/√2)."""
    from dainr.data import CineData
    from dainr.physics.trajectory import readout_positions, trajectory_from_angles
    from dainr.recon.dainr_fit import lowres_cine

    traj = trajectory_from_angles(np.array([[np.pi / 4, 3 * np.pi / 4]]), readout_positions(64))
    cine = CineData(kspace=np.zeros((1, 2, 2, 64), np.complex64), traj=traj, matrix=(32, 32))
    low, maps = lowres_cine(cine, np.ones((2, 32, 32), np.complex64) / np.sqrt(2), 2)
    r = np.linalg.norm(low.traj, axis=-1)
    assert low.matrix == (16, 16) and maps.shape == (2, 16, 16)
    assert r.max() < 0.5 and r.max() > 0.45


def test_spatial_interpolation_renders_every_pixel(series):
    """sr_ratio=2 fits at 16² and renders 32² at continuous coordinates. The reference upsampled the deformed
    coordinates nearest-neighbour: 16² distinct points (2×2 blocks) and its last row and column sent to the centre
    (constant). Here, without features (which would blur both symptoms), every pixel is its own point."""
    cfg = load_config("cpu-test", overrides=["dainr.sr_ratio=2", "dainr.features.enabled=false"])
    res = reconstruct(series.slices[0], cfg, keep_model=True)
    assert res.images.shape == (5, 32, 32) and res.info["train_matrix"] == [16, 16]
    fitted = res.fitted
    np.testing.assert_allclose(res.images, fitted.render().numpy() * fitted.scale, rtol=1e-6, atol=0)
    img = fitted.render(masked=False).numpy()
    assert img.shape == (5, 32, 32)
    assert np.mean(img[:, 0::2, 0::2] == img[:, 1::2, 1::2]) < 0.05  # no 2×2 blocks
    step = np.abs(np.diff(img, axis=-1)).mean()
    assert np.abs(np.diff(img[:, -1, :], axis=-1)).mean() > 0.2 * step  # the last row varies like the others
    assert np.abs(np.diff(img[:, :, -1], axis=-1)).mean() > 0.2 * step  # and the last column


def test_features_resampled_with_borders_replicated():
    """Spatial interpolation resamples the coarse features bilinearly, pixel-centre aligned, borders replicated
    (the reference's zero padding halved them at the edges): constant features stay constant at every pixel."""
    from dainr.recon.dainr_model import FittedDainr, build_model

    c = load_config("cpu-test").dainr
    feats = torch.full((3, 8, 4, 4), 2.0)
    feats[:, :, :, 3] = 4.0  # a step in the last column
    fitted = FittedDainr(model=build_model(c, 8), config=c, n_frames=3, train_frames=np.arange(3), matrix=(8, 8),
                         train_matrix=(4, 4), features=feats, support=torch.ones(8, 8, dtype=torch.bool))
    coords, up = fitted.inputs((8, 8))
    up = up.float().reshape(3, 8, 8, 8)  # (frames, H, W, C)
    assert coords.shape == (64, 2)
    assert torch.equal(up[:, :, :5, :], torch.full((3, 8, 5, 8), 2.0))
    assert torch.equal(up[:, :, 5:7, :], torch.tensor([2.5, 3.5])[:, None].expand(3, 8, 2, 8))  # linear
    assert torch.equal(up[:, :, 7, :], torch.full((3, 8, 8), 4.0))
    assert fitted.render(matrix=(8, 8)).shape == (3, 8, 8) and fitted.render([2], (6, 6)).shape == (1, 6, 6)


def test_held_out_spokes_never_enter_the_fit(series):
    """Corrupting the held-out spokes leaves the training loss at every step (hence the trajectory of the weights)
    exactly as it was, while the held-out loss sees the corruption."""
    cfg = load_config("cpu-test", overrides=["dainr.validation_fraction=0.3", "dainr.validate_every=3",
                                             "dainr.log_every=1", "dainr.patience=0"])
    prep = prepare(series.slices[0], prewhiten=False)
    spokes = prep.cine.spoke_mask if prep.cine.spoke_mask is not None else np.ones(prep.cine.kspace.shape[::2][:2])
    held = holdout_mask(spokes, cfg.dainr.validation_fraction, cfg.seed)
    assert held.sum() > 0
    rng = np.random.default_rng(0)
    kspace = prep.cine.kspace.copy()
    noise = (rng.normal(size=kspace.shape) + 1j * rng.normal(size=kspace.shape)) * 100 * np.abs(kspace).max()
    where = np.broadcast_to(held[:, None, :, None], kspace.shape)
    kspace[where] = noise[where].astype(np.complex64)
    dirty = dataclasses.replace(prep, cine=dataclasses.replace(prep.cine, kspace=kspace))
    a = fit_dainr(prep, cfg, torch.device("cpu"))
    b = fit_dainr(dirty, cfg, torch.device("cpu"))
    assert len(a.loss) == cfg.dainr.steps and a.loss == b.loss
    assert len(a.validation) == 4 and all(vb > 10 * va for (_, va), (_, vb) in zip(a.validation, b.validation))


def test_selection_outputs_the_selected_step_and_stops(series):
    """With a learning rate that overfits, the held-out loss turns up: the fit stops two checks (the patience)
    after its minimum and outputs the weights of that step, which a fit stopped there outputs too."""
    over = ["dainr.validation_fraction=0.3", "dainr.validate_every=1", "dainr.patience=2", "dainr.steps=40",
            "dainr.lr=0.05"]
    res = reconstruct(series.slices[0], load_config("cpu-test", overrides=over))
    best = min(res.validation, key=lambda v: v[1])[0]
    assert res.selected_step == best == res.info["selected_step"]
    assert res.iterations == best + 2 < 40 and [s for s, _ in res.validation] == list(range(1, best + 3))
    short = reconstruct(series.slices[0], load_config("cpu-test", overrides=over + [f"dainr.steps={best}"]))
    assert short.iterations == short.selected_step == best
    assert np.array_equal(short.images, res.images)


def test_holdout_and_sampler():
    mask = np.ones((3, 10), bool)
    mask[2, 7:] = False
    held = holdout_mask(mask, 0.2, seed=0)
    assert held.sum(1).tolist() == [2, 2, 1] and not (held & ~mask).any()
    s = FrameSampler(np.arange(5), seed=0)
    seen = [f for _ in range(5) for f in s.take(2)]
    assert set(seen) == set(range(5))
    assert all(len(set(s.take(3))) == 3 for _ in range(4))


@pytest.mark.parametrize("extra", [[], ["dainr.ema=0.8", "dainr.tv_spatial=0.05", "dainr.tv_temporal=0.05"]],
                         ids=["plain", "ema+tv"])
def test_stopping_rule_is_deterministic_and_blind_to_the_truth(series, extra):
    """The engine has no truth input; a monitor that does read the truth (the benchmarks' diagnostic) changes
    nothing, and the self-supervised selection repeats exactly (also with averaged weights and TV penalties)."""
    cfg = load_config("cpu-test", overrides=["dainr.validation_fraction=0.2", "dainr.validate_every=3",
                                             "dainr.steps=18", "dainr.patience=2", *extra])
    plain = reconstruct(series.slices[0], cfg)
    seen = []
    watched = reconstruct(series.slices[0], cfg, monitor=lambda step, imgs: seen.append(
        float(np.abs(imgs - series.truth[0]).mean())), monitor_every=3)
    assert seen and np.array_equal(plain.images, watched.images)
    assert plain.info["selected_step"] == watched.info["selected_step"]
    assert plain.info["validation"] == watched.info["validation"]


def test_averaged_weights_update_and_swap():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    avg = AveragedWeights(lin, decay=0.5)
    with torch.no_grad():
        lin.weight.fill_(2.0)
    avg.update()  # the first iterate alone: the initial weights (0) carry no weight
    assert torch.allclose(avg.avg[0], torch.full((1, 2), 2.0))
    with torch.no_grad():
        lin.weight.fill_(5.0)
    avg.update()  # (0.5·2 + 1·5) / 1.5
    assert torch.allclose(avg.avg[0], torch.full((1, 2), 4.0))
    avg.swap()
    assert torch.allclose(lin.weight, torch.full((1, 2), 4.0)) and torch.allclose(avg.avg[0], torch.full((1, 2), 5.0))
    avg.swap()
    assert torch.allclose(lin.weight, torch.full((1, 2), 5.0))


def test_averaged_and_regularised_fit_changes_the_output(series):
    """EMA, the TV penalties, the grid's learning rate and the L2 data term act (the test fails if an option is
    ignored), and the selection still picks the step of the lowest recorded held-out loss."""
    base = ["dainr.validation_fraction=0.2", "dainr.validate_every=3", "dainr.steps=18", "dainr.patience=0"]
    ref = reconstruct(series.slices[0], load_config("cpu-test", overrides=base)).images
    for extra in (["dainr.ema=0.8"], ["dainr.tv_spatial=0.2"], ["dainr.tv_temporal=0.2"], ["dainr.grid_lr_scale=5"],
                  ["dainr.loss=l2"]):
        out = reconstruct(series.slices[0], load_config("cpu-test", overrides=base + extra))
        assert not np.array_equal(out.images, ref), extra
        assert out.info["selected_step"] == min(out.info["validation"], key=lambda v: v[1])[0]


def test_csr_nufft_fit_runs_and_matches_gather(series):
    """``dainr.nufft_backend=csr``: the fit runs, repeats bit for bit, and follows the gather NUFFT's fit (the same
    operator to float rounding; the optimisation amplifies the rounding only slightly in 12 steps)."""
    cfg = load_config("cpu-test", overrides=["dainr.nufft_backend=csr"])
    a = reconstruct(series.slices[0], cfg)
    b = reconstruct(series.slices[0], cfg)
    assert a.iterations == cfg.dainr.steps
    assert np.array_equal(a.images, b.images)
    ref = reconstruct(series.slices[0], load_config("cpu-test")).images
    assert np.abs(a.images - ref).max() < 1e-3 * np.abs(ref).max()


def test_tv_weights_follow_the_acquisition(series):
    """The fit uses (and reports) TV weights doubled when the slice's radial acceleration reaches
    ``tv_sparse_acceleration``: 9 spokes at 32² is pi/2 * 32 / 9 = 5.6; the output changes with the weights."""
    base = ["dainr.tv_temporal=0.1", "dainr.tv_spatial=0.05", "dainr.tv_sparse_factor=4"]
    light = reconstruct(series.slices[0], load_config("cpu-test", overrides=base + ["dainr.tv_sparse_acceleration=6"]))
    heavy = reconstruct(series.slices[0], load_config("cpu-test", overrides=base + ["dainr.tv_sparse_acceleration=5"]))
    assert light.info["radial_acceleration"] == pytest.approx(np.pi / 2 * 32 / 9, abs=0.01)
    assert light.info["tv_weights"] == [0.1, 0.05] and heavy.info["tv_weights"] == [0.4, 0.2]
    explicit = reconstruct(series.slices[0], load_config("cpu-test", overrides=["dainr.tv_temporal=0.4",
                                                                                "dainr.tv_spatial=0.2"]))
    assert np.array_equal(heavy.images, explicit.images) and not np.array_equal(light.images, heavy.images)


def test_csr_nufft_is_refused_on_a_gpu_with_deterministic_algorithms(series):
    """cuSPARSE's products are not bit-identical run to run: with ``deterministic`` (the default) the fit refuses
    ``csr`` on a GPU in one line, before it touches the device (so this runs on a CPU-only machine too)."""
    from dainr.errors import ConfigError
    from dainr.recon.dainr_fit import DainrFit

    prep = prepare(series.slices[0], prewhiten=False)
    cfg = load_config("cpu-test", overrides=["dainr.nufft_backend=csr"])
    with pytest.raises(ConfigError, match="csr is not bit-identical run to run on a GPU.*deterministic=false"):
        DainrFit(prep, cfg, torch.device("cuda"))
