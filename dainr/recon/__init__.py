"""The engine: one ``reconstruct`` behind every front end (CLI, Gadgetron gadget, server).

* :mod:`~dainr.recon.engine` — :func:`reconstruct` (preparation, then the method) -> :class:`~dainr.data.ReconResult`;
  :func:`reconstruct_batch`, several slices with their DA-INR fits batched.
* :mod:`~dainr.recon.dainr_fit` — :class:`~dainr.recon.dainr_fit.DainrFit`, the DA-INR loop (frame order, schedule,
  averaging, held-out selection and stopping, OOM fallback, CUDA graphs) -> :class:`~dainr.recon.dainr_fit.FitResult`.
* :mod:`~dainr.recon.batched_fit` — :class:`~dainr.recon.batched_fit.BatchedFit`, that loop over several slices
  (or seeds) whose step runs all their networks and losses at once (vmap over stacked parameters).
* :mod:`~dainr.recon.dainr_step` — :class:`~dainr.recon.dainr_step.DainrStep`, one optimisation step, and its CUDA graph.
* :mod:`~dainr.recon.dainr_terms` — the loss terms (data term, temporal and spatial TV; a new regulariser goes here).
* :mod:`~dainr.recon.dainr_model` — the network of a config and :class:`~dainr.recon.dainr_model.FittedDainr`, which
  renders a fitted slice at any matrix.
* :mod:`~dainr.recon.baselines` (adjoint, CG-SENSE), :mod:`~dainr.recon.operators` (the slice's NUFFT problem),
  :mod:`~dainr.recon.budget` (the GPU memory plan), :mod:`~dainr.recon.device`.
"""

from dainr.recon.engine import reconstruct, reconstruct_batch

__all__ = ["reconstruct", "reconstruct_batch"]
