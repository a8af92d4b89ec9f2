"""Build the feature extractor and the network with the reference code's exact initial weights.

The reference ``main.py`` calls ``torch.manual_seed(seed)``, then (``Solver.__init__``) builds the full MDSR
(``sub_mean``, ``add_mean``, ``head``, ``pre_process[0]``, 16 body ResBlocks + conv, upsampler conv, tail conv) and
then the network (deformation layers, grid table, sigma layers, colour layers), all on the CPU with PyTorch's
default initialisation. :func:`build_reference_models` replays that sequence of random draws on a forked CPU RNG, so
the global RNG is left as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from dainr.model.features import MDSRFeatures
from dainr.model.networks import DAINR

__all__ = ["build_reference_models"]


def _draw_full_mdsr(n_resblocks: int = 16, n_feats: int = 64, scale: int = 2) -> None:
    """Draw the random numbers EDSR-PyTorch's MDSR (as DA-INR builds it, ``scale=[2]``) draws at construction."""
    nn.Conv2d(3, 3, 1)  # sub_mean
    nn.Conv2d(3, 3, 1)  # add_mean
    nn.Conv2d(3, n_feats, 3, padding=1)  # head
    for _ in range(4):  # pre_process[0]: two ResBlocks, two 5×5 convs each
        nn.Conv2d(n_feats, n_feats, 5, padding=2)
    for _ in range(2 * n_resblocks + 1):  # body
        nn.Conv2d(n_feats, n_feats, 3, padding=1)
    for _ in range(int(scale).bit_length() - 1):  # upsample (2^n scales)
        nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1)
    nn.Conv2d(n_feats, 3, 3, padding=1)  # tail


def build_reference_models(
    seed: int = 0, feature_weights: str | Path | Mapping[str, torch.Tensor] | None = None, **dainr_kwargs
) -> tuple[MDSRFeatures, DAINR]:
    """``(MDSRFeatures, DAINR)`` initialised exactly as the reference after ``torch.manual_seed(seed)``.

    ``dainr_kwargs`` go to :class:`DAINR`; the grid backend defaults to ``"torch"`` here because only torch-ngp's
    table layout reproduces the reference table (pass ``backend=...`` to override).
    """
    dainr_kwargs.setdefault("backend", "torch")
    extractor = MDSRFeatures(seed=seed, weights=feature_weights)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        _draw_full_mdsr()
        model = DAINR(**dainr_kwargs)
    return extractor, model
