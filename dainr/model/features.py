"""Frozen MDSR feature extractor and the neighbour-frame feature rule of DA-INR.

The reference builds EDSR-PyTorch's MDSR (16 resblocks, 64 features) right after ``torch.manual_seed(0)``, never loads
weights (the "pretrained" extractor is random), freezes it, and uses only ``head`` (3×3 conv, 3 → 64) followed by
``pre_process[0]`` (two 5×5 ResBlocks); body, upsampler, tail and mean shifts are unused. :class:`MDSRFeatures`
builds just those parts, drawing the same random numbers in the same order as the reference (the two ``MeanShift``
1×1 convs are initialised, and discarded, before ``head``), so ``MDSRFeatures(seed=0)`` has the reference weights
bit for bit, without touching the global RNG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from dainr.errors import ConfigError

__all__ = ["FEATURE_CHANNELS", "MDSRFeatures", "neighbour_frames", "neighbour_features", "normalise_for_features"]

#: Feature maps of the MDSR front end (EDSR-PyTorch's ``n_feats``).
MDSR_FEATS = 64
#: Channels per frame that :func:`neighbour_features` returns with the default extractor: two neighbours' maps.
FEATURE_CHANNELS = 2 * MDSR_FEATS


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    """EDSR-PyTorch ``default_conv``: padding ``k//2``, bias."""
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=True)


class _ResBlock(nn.Module):
    """EDSR-PyTorch ``ResBlock``: ``x + res_scale·conv(ReLU(conv(x)))`` (``body.0`` and ``body.2`` are the convs)."""

    def __init__(self, n_feats: int, kernel_size: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            _conv(n_feats, n_feats, kernel_size), nn.ReLU(True), _conv(n_feats, n_feats, kernel_size)
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x).mul(self.res_scale)


class MDSRFeatures(nn.Module):
    """Frozen MDSR front end: ``head`` → ``pre_process[0]``; 64 feature maps at the input resolution.

    Parameters
    ----------
    seed:
        Seed of the CPU generator used for PyTorch's default initialisation (the reference: 0). The global RNG state
        is saved and restored around construction.
    weights:
        Optional path to (or state dict of) an EDSR-PyTorch MDSR checkpoint; only ``head.0.*`` and
        ``pre_process.0.*`` are read (keys may carry a ``model.`` prefix). Missing keys or wrong shapes raise
        :class:`~dainr.errors.ConfigError`.
    n_feats:
        Feature channels (64).

    ``forward(img (B,1,H,W) real in [-1,1]) -> (B,64,H,W)``; the single channel is replicated to RGB inside.
    """

    def __init__(
        self, seed: int = 0, weights: str | Path | Mapping[str, torch.Tensor] | None = None, n_feats: int = MDSR_FEATS
    ):
        super().__init__()
        self.seed = int(seed)
        self.n_feats = int(n_feats)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed)  # CPU only; torch.manual_seed would reseed CUDA too
            # The reference MDSR.__init__ builds sub_mean and add_mean (nn.Conv2d(3, 3, 1) each) before the head;
            # their default init draws from the RNG, so draw the same numbers here.
            nn.Conv2d(3, 3, 1)
            nn.Conv2d(3, 3, 1)
            self.head = nn.Sequential(_conv(3, n_feats, 3))
            self.pre_process = nn.ModuleList([nn.Sequential(_ResBlock(n_feats, 5), _ResBlock(n_feats, 5))])
        if weights is not None:
            self.load_weights(weights)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "MDSRFeatures":
        """Always stays in eval mode (frozen)."""
        return super().train(False)

    def load_weights(self, weights: str | Path | Mapping[str, torch.Tensor]) -> None:
        """Copy ``head.0.*`` and ``pre_process.0.*`` from an EDSR-PyTorch MDSR state dict (other keys ignored)."""
        source = str(weights) if isinstance(weights, (str, Path)) else "the given state dict"
        if isinstance(weights, (str, Path)):
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
            except FileNotFoundError:
                raise ConfigError(
                    f"MDSR weights file {weights} does not exist; give an EDSR-PyTorch MDSR .pt"
                ) from None
            except Exception as exc:  # pickle / zip errors
                raise ConfigError(
                    f"cannot read MDSR weights {weights} ({exc}); give an EDSR-PyTorch MDSR .pt"
                ) from None
        else:
            state = weights
        if not isinstance(state, Mapping):
            raise ConfigError(f"MDSR weights in {source} are not a state dict")
        for wrapper in ("state_dict", "model"):
            inner = state.get(wrapper)
            if isinstance(inner, Mapping) and "head.0.weight" not in state:
                state = inner
        own = self.state_dict()
        prefix = "" if "head.0.weight" in state or "model.head.0.weight" not in state else "model."
        missing = [k for k in own if prefix + k not in state]
        if missing:
            raise ConfigError(
                f"MDSR weights in {source} lack {len(missing)} needed keys (e.g. {missing[0]!r}); "
                "give an EDSR-PyTorch MDSR checkpoint (keys head.0.*, pre_process.0.*)"
            )
        bad = [
            f"{k}: {tuple(state[prefix + k].shape)} vs {tuple(v.shape)}"
            for k, v in own.items()
            if not isinstance(state[prefix + k], torch.Tensor) or state[prefix + k].shape != v.shape
        ]
        if bad:
            raise ConfigError(f"MDSR weights in {source} have wrong shapes ({bad[0]}); expected n_feats={self.n_feats}")
        self.load_state_dict({k: state[prefix + k] for k in own}, strict=True)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] not in (1, 3):
            raise ValueError(f"MDSRFeatures expects (B, 1, H, W), got {tuple(img.shape)}")
        if img.shape[1] == 1:
            img = img.expand(-1, 3, -1, -1)
        w = self.head[0].weight
        return self.pre_process[0](self.head(img.to(device=w.device, dtype=w.dtype)))


def neighbour_frames(n_frames: int, distance: int = 1, allowed: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """The two source frames whose undersampled images give frame ``f``'s features, for every ``f``.

    Rule (the reference's, made leak-free):

    * training frame ``f`` (in ``allowed``): ``f − d`` and ``f + d``, as the reference. A side that falls outside the
      sequence is dropped; a side inside the sequence but not allowed is replaced by the nearest allowed frame on
      that side (never ``f``);
    * held-out frame ``f`` (not in ``allowed``): the nearest allowed frame strictly before and strictly after ``f``;
    * a dropped side takes the other side's frame (the reference: "at the sequence ends both neighbours are the same
      frame"); if both sides are empty, the nearest allowed frames on either side without the distance constraint;
      a lone allowed frame uses itself.

    A held-out frame therefore never uses its own (or any other held-out frame's) data. With all frames allowed this
    is exactly the reference rule.
    """
    if n_frames < 1:
        raise ConfigError(f"need at least one frame, got {n_frames}")
    if distance < 1:
        raise ConfigError(f"feature neighbour distance must be >= 1, got {distance}")
    ok = set(range(n_frames)) if allowed is None else {int(a) for a in allowed}
    if not ok:
        raise ConfigError("no frame is allowed as a feature source; give at least one training frame")
    outside = sorted(a for a in ok if not 0 <= a < n_frames)
    if outside:
        raise ConfigError(f"allowed frames {outside} lie outside 0..{n_frames - 1}")
    ordered = sorted(ok)

    def nearest_before(f: int) -> int | None:
        c = [a for a in ordered if a < f]
        return c[-1] if c else None

    def nearest_after(f: int) -> int | None:
        c = [a for a in ordered if a > f]
        return c[0] if c else None

    pairs = []
    for f in range(n_frames):
        if f in ok:
            lo = None if f - distance < 0 else (f - distance if f - distance in ok else nearest_before(f))
            hi = None if f + distance >= n_frames else (f + distance if f + distance in ok else nearest_after(f))
        else:
            lo, hi = nearest_before(f), nearest_after(f)
        if lo is None and hi is None:
            lo, hi = nearest_before(f), nearest_after(f)
        if lo is None and hi is None:
            lo = hi = f  # only possible for a lone allowed frame
        pairs.append((hi if lo is None else lo, lo if hi is None else hi))
    return pairs


def normalise_for_features(mag: torch.Tensor, allowed: Iterable[int] | None = None) -> torch.Tensor:
    """Reference input scaling: global ``(x − min)/(max + 1e-6)`` mapped to ``[-1, 1]`` (``2y − 1``).

    ``min``/``max`` are taken over the ``allowed`` frames only (all frames when None), so held-out frames do not
    influence the scaling. ``mag``: ``(F, H, W)`` real.
    """
    ref = mag if allowed is None else mag[sorted({int(a) for a in allowed})]
    lo, hi = ref.min(), ref.max()
    return ((mag - lo) / (hi + 1e-6) - 0.5) / 0.5


@torch.no_grad()
def neighbour_features(
    extractor: MDSRFeatures,
    undersampled_mag: torch.Tensor,
    distance: int = 1,
    allowed: Iterable[int] | None = None,
    frames: Iterable[int] | None = None,
    chunk: int = 8,
) -> torch.Tensor:
    """Per-frame DA-INR features: MDSR maps of the two neighbour frames (:func:`neighbour_frames`), concatenated.

    Parameters
    ----------
    extractor:
        The frozen :class:`MDSRFeatures`; computation runs on its device.
    undersampled_mag:
        ``(F, H, W)`` real magnitudes of the undersampled (gridding) images. To match the reference pass the per-frame
        min-max-normalised magnitudes; the global scaling of :func:`normalise_for_features` is applied here.
    distance:
        ``d`` (1 for reconstruction, the temporal down-ratio for temporal interpolation).
    allowed:
        Frames whose data may be used (the training frames); None = all.
    frames:
        Frames to return features for (default all ``F``).
    chunk:
        Source frames per extractor call (bounds memory). Each needed source frame is extracted once; cache the
        result per scan.

    Returns
    -------
    ``(len(frames), 2·n_feats, H, W)`` float32 on the extractor's device: channels ``[:64]`` from the earlier
    neighbour, ``[64:]`` from the later one.
    """
    if undersampled_mag.ndim != 3 or undersampled_mag.is_complex():
        raise ValueError(f"undersampled_mag must be real (F, H, W), got {tuple(undersampled_mag.shape)}")
    n = int(undersampled_mag.shape[0])
    allowed = None if allowed is None else sorted({int(a) for a in allowed})
    pairs = neighbour_frames(n, distance, allowed)
    wanted = list(range(n)) if frames is None else [int(f) for f in frames]
    if any(not 0 <= f < n for f in wanted):
        raise ConfigError(f"requested frames {wanted} lie outside 0..{n - 1}")
    device = extractor.head[0].weight.device
    img = normalise_for_features(undersampled_mag.to(device=device, dtype=torch.float32), allowed)
    sources = sorted({s for f in wanted for s in pairs[f]})
    feats: dict[int, torch.Tensor] = {}
    for i in range(0, len(sources), max(1, int(chunk))):
        part = sources[i : i + max(1, int(chunk))]
        out = extractor(img[part][:, None])
        feats.update(zip(part, out))
    return torch.stack([torch.cat([feats[pairs[f][0]], feats[pairs[f][1]]], dim=0) for f in wanted])
