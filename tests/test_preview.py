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
