"""Quick-look previews: an animated GIF (or a PNG of the first frame) of a cine's magnitude, optionally beside the
truth, each panel labelled and small matrices scaled up."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dainr.metrics import normalise_frames

#: Panels smaller than this (pixels high) are scaled up by a whole factor, nearest neighbour.
MIN_PANEL_HEIGHT = 256
#: Height of the label strip above each row of panels, pixels.
LABEL_HEIGHT = 20


def _to_uint8(mag: np.ndarray) -> np.ndarray:
    return (np.clip(mag, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def cine_panels(panels: list[np.ndarray]) -> np.ndarray:
    """Put ``(frames, H, W)`` cines side by side -> ``(frames, H, sum W)`` uint8, each frame max-normalised."""
    return np.concatenate([_to_uint8(normalise_frames(p)) for p in panels], axis=2)


def zoom_factor(height: int) -> int:
    """The whole factor that brings a panel ``height`` pixels high to at least :data:`MIN_PANEL_HEIGHT`."""
    return max(1, -(-MIN_PANEL_HEIGHT // max(int(height), 1)))


def labelled_row(panels: list[tuple[str, np.ndarray]], zoom: int) -> np.ndarray:
    """Panels side by side under a strip with their labels.

    Parameters
    ----------
    panels:
        ``(label, movie)`` with ``movie`` ``(frames, H, W)`` uint8; every movie has the same frames and height.
    zoom:
        Whole scale factor (nearest neighbour).

    Returns
    -------
    ``(frames, LABEL_HEIGHT + zoom·H, zoom·sum W)`` uint8.
    """
    movies = [np.repeat(np.repeat(m, zoom, axis=1), zoom, axis=2) for _, m in panels]
    strip = Image.new("L", (sum(m.shape[2] for m in movies), LABEL_HEIGHT), 0)
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=LABEL_HEIGHT - 6)
    x = 0
    for (label, _), movie in zip(panels, movies):
        draw.text((x + 4, 2), label, fill=255, font=font)
        x += movie.shape[2]
    row = np.concatenate(movies, axis=2)
    header = np.broadcast_to(np.asarray(strip, np.uint8), (row.shape[0], LABEL_HEIGHT, row.shape[2]))
    return np.concatenate([header, row], axis=1)


def write_preview(path: str | Path, slices: list[np.ndarray], truth: list[np.ndarray] | None = None,
                  fps: float = 10.0, *, fmt: str | None = None, label: str = "reconstruction",
                  row_names: Sequence[str] | None = None) -> Path:
    """Write an animated GIF or a PNG of the first frame.

    Parameters
    ----------
    path:
        Output file.
    slices:
        One ``(frames, H, W)`` cine per slice, shown as rows from top to bottom.
    truth:
        The matching ground truths: each row then shows truth | reconstruction | 4×|error| (per-frame
        max-normalised magnitudes).
    fps:
        GIF frame rate.
    fmt:
        ``gif`` or ``png``; default: from the suffix of ``path`` (``.png``, else GIF).
    label:
        Name of the reconstruction in the panel labels (e.g. the method).
    row_names:
        Names of the rows (e.g. ``slice 3``), written before the first panel's label; default: ``slice 0``,
        ``slice 1``... when there are several rows, none for one.
    """
    if row_names is None:
        row_names = [f"slice {i}" for i in range(len(slices))] if len(slices) > 1 else [""]
    rows = []
    zoom = zoom_factor(max(s.shape[1] for s in slices))
    for i, img in enumerate(slices):
        prefix = f"{row_names[i]}: " if row_names[i] else ""
        r = normalise_frames(img)
        if truth is not None:
            t = normalise_frames(truth[i])
            panels = [(f"{prefix}truth", _to_uint8(t)), (label, _to_uint8(r)),
                      ("4x |error|", _to_uint8(4.0 * np.abs(t - r)))]
        else:
            panels = [(f"{prefix}{label}", _to_uint8(r))]
        rows.append(labelled_row(panels, zoom))
    n = min(r.shape[0] for r in rows)
    movie = np.concatenate([r[:n] for r in rows], axis=1)
    path = Path(path)
    fmt = (fmt or ("png" if path.suffix.lower() == ".png" else "gif")).lower()
    if fmt == "png":
        iio.imwrite(path, movie[0], extension=".png")
    else:
        iio.imwrite(path, movie, extension=".gif", duration=1000.0 / fps, loop=0)
    return path


def _hot(v: np.ndarray) -> np.ndarray:
    """``(..., 3)`` float in [0, 1]: black → red → yellow → white for ``v`` in [0, 1]."""
    v = np.clip(v, 0.0, 1.0)[..., None]
    return np.clip(np.concatenate([3 * v, 3 * v - 1, 3 * v - 2], axis=-1), 0.0, 1.0)


def motion_overlay(image: np.ndarray, motion: np.ndarray, pixel_mm: tuple[float, float], step: int = 4,
                   zoom: int = 0, max_mm: float = 0.0) -> np.ndarray:
    """One frame with its displacement: the magnitude image in grey, the displacement magnitude as a hot-coloured
    overlay (opaque at ``max_mm``), and arrows every ``step`` pixels from where the tissue was in frame 0 to where it
    is in this frame (``p + u`` to ``p``, :mod:`dainr.recon.motion`), drawn at true length.

    Parameters
    ----------
    image:
        ``(H, W)`` the frame (complex or magnitude).
    motion:
        ``(2, H, W)`` displacement to frame 0 in mm, channels ``(x, y)`` (columns, rows).
    pixel_mm:
        Pixel size ``(x, y)`` in mm (field of view / matrix).
    step:
        Pixels between arrows.
    zoom:
        Output pixels per image pixel (0: enough for about 384 output pixels across).
    max_mm:
        Displacement shown fully opaque (0: the frame's largest).

    Returns
    -------
    ``(H·zoom, W·zoom, 3)`` uint8 RGB.
    """
    from PIL import Image, ImageDraw

    h, w = image.shape
    zoom = zoom or max(1, 384 // max(h, w))
    mag = np.abs(image).astype(np.float64)
    grey = mag / max(float(mag.max()), 1e-12)
    size = np.hypot(motion[0], motion[1])
    top = max_mm or max(float(size.max()), 1e-12)
    alpha = 0.75 * np.clip(size / top, 0.0, 1.0)[..., None]
    rgb = (1 - alpha) * grey[..., None] + alpha * _hot(0.35 + 0.65 * size / top)
    rgb = np.repeat(np.repeat(_to_uint8(rgb), zoom, axis=0), zoom, axis=1)
    canvas = Image.fromarray(rgb)
    draw = ImageDraw.Draw(canvas)
    for r in range(step // 2, h, step):
        for c in range(step // 2, w, step):
            dx, dy = motion[0, r, c] / pixel_mm[0], motion[1, r, c] / pixel_mm[1]
            if np.hypot(dx, dy) < 0.05:
                continue
            end = np.array([c + 0.5, r + 0.5]) * zoom
            start = end + np.array([dx, dy]) * zoom
            draw.line([tuple(start), tuple(end)], fill=(80, 200, 255), width=max(1, zoom // 3))
            back = (start - end) / max(np.hypot(*(start - end)), 1e-9) * max(2.0, 0.8 * zoom)
            for angle in (0.5, -0.5):  # arrowhead
                rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ back
                draw.line([tuple(end), tuple(end + rot)], fill=(80, 200, 255), width=max(1, zoom // 3))
    return np.asarray(canvas)


def motion_colour_bar(height: int, max_mm: float, width: int = 64) -> np.ndarray:
    """``(height, width, 3)`` uint8: the overlay's colour scale, 0 at the bottom to ``max_mm`` at the top (the
    colour :func:`motion_overlay` gives a displacement, at full opacity), with ticks at 0, half and ``max_mm``
    labelled in mm."""
    from PIL import Image, ImageDraw

    bar_w, margin = 12, 9
    v = np.linspace(1.0, 0.0, height - 2 * margin)
    column = _to_uint8(_hot(0.35 + 0.65 * v))  # (h, 3)
    out = np.zeros((height, width, 3), np.uint8)
    out[margin:height - margin, 2:2 + bar_w] = column[:, None, :]
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=LABEL_HEIGHT - 8)
    for frac in (0.0, 0.5, 1.0):
        y = margin + (1.0 - frac) * (height - 2 * margin - 1)
        draw.line([(2 + bar_w, y), (5 + bar_w, y)], fill=(255, 255, 255))
        draw.text((7 + bar_w, y - 6), f"{frac * max_mm:.1f}", fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def motion_figure(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], pixel_mm: tuple[float, float],
                  step: int = 4, zoom: int = 0, max_mm: float = 0.0) -> np.ndarray:
    """:func:`motion_overlay` panels side by side under their labels, on one colour scale, with its colour bar
    (:func:`motion_colour_bar`, headed "|u| mm") at the right.

    Parameters
    ----------
    panels:
        ``(label, image (H, W), motion (2, H, W) mm)`` per panel, all of one matrix.
    pixel_mm, step, zoom:
        As :func:`motion_overlay`.
    max_mm:
        Displacement at the top of the scale (0: the largest of all panels).

    Returns
    -------
    ``(LABEL_HEIGHT + H·zoom, n·W·zoom + bar, 3)`` uint8 RGB.
    """
    top = max_mm or max(max(float(np.hypot(m[0], m[1]).max()) for _, _, m in panels), 1e-12)
    h, w = panels[0][1].shape
    zoom = zoom or max(1, 384 // max(h, w))
    row = np.concatenate([motion_overlay(img, m, pixel_mm, step=step, zoom=zoom, max_mm=top) for _, img, m in panels],
                         axis=1)
    bar = motion_colour_bar(row.shape[0], top)
    body = np.concatenate([row, bar], axis=1)
    strip = Image.new("RGB", (body.shape[1], LABEL_HEIGHT), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=LABEL_HEIGHT - 6)
    for i, (label, _, _) in enumerate(panels):
        draw.text((i * w * zoom + 4, 2), label, fill=(255, 255, 255), font=font)
    draw.text((row.shape[1] + 2, 2), "|u| mm", fill=(255, 255, 255), font=font)
    return np.concatenate([np.asarray(strip), body], axis=0)


def write_motion_overlay(path: str | Path, panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
                         pixel_mm: tuple[float, float], **kwargs) -> Path:
    """Write :func:`motion_figure` of ``panels`` as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, motion_figure(panels, pixel_mm, **kwargs), extension=".png")
    return path
