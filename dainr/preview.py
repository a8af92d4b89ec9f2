"""Quick-look previews: an animated GIF (or PNG strip) of a cine's magnitude, optionally beside the truth."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from dainr.metrics import normalise_frames


def _to_uint8(mag: np.ndarray) -> np.ndarray:
    return (np.clip(mag, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def cine_panels(panels: list[np.ndarray]) -> np.ndarray:
    """Put ``(frames, H, W)`` cines side by side -> ``(frames, H, sum W)`` uint8, each frame max-normalised."""
    return np.concatenate([_to_uint8(normalise_frames(p)) for p in panels], axis=2)


def write_preview(path: str | Path, slices: list[np.ndarray], truth: list[np.ndarray] | None = None,
                  fps: float = 10.0) -> Path:
    """Write an animated GIF (``.gif``) or a PNG of the first frame (``.png``).

    ``slices`` holds one ``(frames, H, W)`` cine per slice, stacked vertically; with ``truth`` each row shows
    truth | reconstruction | 4×|error|.
    """
    rows = []
    for i, img in enumerate(slices):
        if truth is not None:
            t = normalise_frames(truth[i])
            r = normalise_frames(img)
            rows.append(np.concatenate([_to_uint8(t), _to_uint8(r), _to_uint8(4.0 * np.abs(t - r))], axis=2))
        else:
            rows.append(cine_panels([img]))
    n = min(r.shape[0] for r in rows)
    movie = np.concatenate([r[:n] for r in rows], axis=1)
    path = Path(path)
    if path.suffix.lower() == ".png":
        iio.imwrite(path, movie[0])
    else:
        iio.imwrite(path, movie, extension=".gif", duration=1000.0 / fps, loop=0)
    return path
