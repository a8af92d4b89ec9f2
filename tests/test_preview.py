"""Quick-look previews: labelled panels, small matrices scaled up by a whole factor."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from dainr.metrics import normalise_frames
from dainr.preview import LABEL_HEIGHT, MIN_PANEL_HEIGHT, write_preview, zoom_factor


def _cine(seed, frames=3, size=32):
    rng = np.random.default_rng(seed)
    return (rng.random((frames, size, size)) + 0.1).astype(np.complex64)


def test_gif_with_truth_is_labelled_and_scaled_up(tmp_path):
    recon, truth = _cine(0), _cine(1)
    path = write_preview(tmp_path / "p.gif", [recon], [truth], label="dainr")
    movie = iio.imread(path, index=None)
    movie = movie[..., 0] if movie.ndim == 4 else movie
    zoom = MIN_PANEL_HEIGHT // 32
    assert zoom_factor(32) == zoom and zoom_factor(96) == 3 and zoom_factor(300) == 1
    assert movie.shape == (3, LABEL_HEIGHT + zoom * 32, 3 * zoom * 32)
    strip = movie[:, :LABEL_HEIGHT]
    for panel in range(3):  # a label drawn over each panel, the same in every frame
        assert strip[:, :, panel * zoom * 32:(panel + 1) * zoom * 32].max() > 128
    assert np.array_equal(strip[0], strip[-1])
    # The reconstruction panel: each pixel a zoom × zoom block of its normalised magnitude.
    expected = (np.clip(normalise_frames(recon), 0, 1) * 255 + 0.5).astype(np.uint8)
    panel = movie[:, LABEL_HEIGHT:, zoom * 32:2 * zoom * 32]
    assert np.abs(panel[:, ::zoom, ::zoom].astype(int) - expected).max() <= 1
    assert np.array_equal(panel[:, 1::zoom, 1::zoom], panel[:, ::zoom, ::zoom])


def test_png_rows_per_slice_without_truth(tmp_path):
    path = write_preview(tmp_path / "p.png", [_cine(0, size=128), _cine(1, size=128)],
                         row_names=["slice 4", "slice 7"])
    image = iio.imread(path)
    assert image.shape[:2] == (2 * (LABEL_HEIGHT + 256), 256)


def test_motion_figure_is_labelled_on_one_colour_scale():
    """Two overlay panels under their labels, the colour bar at the right; no colour where nothing moves, the
    brightest colour where the displacement is largest (of both panels), arrows only where something moves."""
    from dainr.preview import motion_colour_bar, motion_figure

    image = np.full((16, 16), 0.5, np.complex64)
    image[0, 0] = 1.0  # the grey of the others: 128
    still = np.zeros((2, 16, 16), np.float32)
    moving = still.copy()
    moving[0, 4:8, 4:8] = 6.0  # 6 mm along x: 1.5 pixels of 4 mm
    moving[1, 10:12, 4:8] = 3.0  # half the scale, along y
    fig = motion_figure([("fit", image, moving), ("truth", image, still)], (4.0, 4.0), step=4, zoom=8)
    bar_w = motion_colour_bar(128, 6.0).shape[1]
    assert fig.shape == (LABEL_HEIGHT + 128, 2 * 128 + bar_w, 3)
    strip, body = fig[:LABEL_HEIGHT], fig[LABEL_HEIGHT:]
    for x0 in (0, 128, 256):  # the two labels and the colour bar's "|u| mm"
        assert strip[:, x0:x0 + 40].max() > 128
    truth_panel = body[:, 128:256].astype(int)
    assert np.all(truth_panel[..., 0] == truth_panel[..., 1]) and np.all(truth_panel[..., 1] == truth_panel[..., 2])
    fit_panel = body[:, :128].astype(int)
    assert np.all(fit_panel[100:, 100:] == truth_panel[100:, 100:])  # nothing moved there: grey only
    grey, top, half = fit_panel[100, 100], fit_panel[5 * 8 + 1, 5 * 8 + 1], fit_panel[10 * 8 + 1, 5 * 8 + 1]
    assert top.sum() > grey.sum() + 150  # the top of the scale: near white over the grey
    assert half[0] > half[2] + 60 and half[1] > half[2] + 60  # half the scale: yellow, half opaque
    bar = body[:, 256:256 + 14].astype(int)
    assert bar[12, 6].sum() > bar[-12, 6].sum() + 200  # top (6 mm, pale) brighter than bottom (0, red)
