"""Image quality on a CPU: DA-INR beats CG-SENSE on a small noisy phantom (the GPU benchmark measures the rest)."""

import dataclasses

import torch

from dainr.config import load_config
from dainr.metrics import quality
from dainr.prep import prepare
from dainr.recon import reconstruct
from dainr.recon.baselines import cgsense_recon
from dainr.recon.operators import build_problem
from dainr.simulate import simulate


def test_dainr_beats_cgsense_on_a_noisy_phantom():
    """24², 12 frames of 6 golden-angle spokes, 4 coils, noise σ = max|k|/20. The `cpu` preset at 150 steps
    (truth-free: held-out spokes choose the output) against CG-SENSE at the iteration count and λ that the truth
    likes best (an upper bound for it): measured 24.3 against 19.7 dB (25.3 against 19.6 with seed 6). About 4
    CPU-seconds on one thread."""
    s = simulate("phantom", matrix=24, frames=12, coils=4, spokes=6, snr=20, seed=5)
    cine, truth = s.slices[0], s.truth[0]
    cfg = load_config("cpu", overrides=["device=cpu", "dainr.steps=150"])
    prepared = prepare(cine, prewhiten=cfg.prep.prewhiten, coil_maps_method=cfg.prep.coil_maps)
    problem = build_problem(prepared.cine, prepared.coil_maps, torch.device("cpu"))
    cg = {(it, lam): quality(cgsense_recon(problem, dataclasses.replace(
        cfg.cgsense, iterations=it, regularization=lam, tolerance=0.0))[0].numpy(), truth).psnr
        for it in (3, 4, 6, 15) for lam in (0.0, 0.3)}  # PSNR is on max-normalised frames: the scale is immaterial
    dainr = quality(reconstruct(cine, cfg).images, truth).psnr
    assert dainr > max(cg.values()) + 3.0, (dainr, cg)
