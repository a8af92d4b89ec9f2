"""Motion-field images (to_map_images) and the headers of frames rendered at another count or matrix."""

from __future__ import annotations

import ismrmrd
import numpy as np

from dainr.mrd import read_images, read_raw, to_images, write_images, write_raw
from dainr.mrd.images import to_map_images

from .helpers import FRAMES, H, W, header_for, make_slices


def _cine(tmp_path):
    slices = make_slices()
    path = tmp_path / "raw.h5"
    write_raw(path, header_for(slices), slices)
    cine = read_raw(path).slices[0]
    for f, ref in enumerate(cine.frame_refs):  # distinct stamps to interpolate between
        ref.acquisition_time_stamp = 1000 + 40 * f
        ref.physiology_time_stamp[0] = 10 * f
    return cine


def test_map_images_carry_the_cine_headers_and_two_channels(tmp_path):
    cine = _cine(tmp_path)
    rng = np.random.default_rng(0)
    motion = rng.standard_normal((FRAMES, 2, H, W)).astype(np.float32)
    jac = rng.standard_normal((FRAMES, H, W)).astype(np.float32)
    cines = to_images(cine, np.ones((FRAMES, H, W), np.complex64), series_index=3, image_index_start=5)
    disp = to_map_images(cine, motion, 4, image_index_start=5)
    det = to_map_images(cine, jac, 5, image_index_start=5)
    out = tmp_path / "img.h5"
    write_images(out, cines + disp + det)
    back = read_images(out)
    assert sorted(back) == [3, 4, 5]
    for a, b, c in zip(back[3], back[4], back[5]):
        ha, hb, hc = a.getHead(), b.getHead(), c.getHead()
        for name in ("image_index", "slice", "phase", "acquisition_time_stamp", "position", "read_dir",
                     "phase_dir", "slice_dir", "field_of_view", "matrix_size"):
            assert np.array_equal(getattr(ha, name), getattr(hb, name)) and np.array_equal(getattr(ha, name),
                                                                                            getattr(hc, name)), name
        assert b.image_type == c.image_type == ismrmrd.IMTYPE_REAL
        assert b.data.shape == (2, 1, H, W) and c.data.shape == (1, 1, H, W) and b.data.dtype == np.float32
    assert np.array_equal(np.stack([im.data[:, 0] for im in back[4]]), motion)
    assert np.array_equal(np.stack([im.data[0, 0] for im in back[5]]), jac)


def test_rendered_frames_interpolate_time_stamps(tmp_path):
    """Frames rendered at positions 0, 0.5, 1, 1.5, 2: phase = the rendered frame number, acquisition and
    physiology stamps interpolated between the acquired frames around, the rest the nearest frame's; another
    matrix changes matrix_size and keeps the field of view."""
    cine = _cine(tmp_path)
    positions = np.arange(5) / 2
    images = to_images(cine, np.ones((5, 2 * H, 2 * W), np.complex64), image_index_start=1,
                       frame_positions=positions)
    assert [im.phase for im in images] == [0, 1, 2, 3, 4]
    assert [im.acquisition_time_stamp for im in images] == [1000, 1020, 1040, 1060, 1080]
    assert [im.physiology_time_stamp[0] for im in images] == [0, 5, 10, 15, 20]
    assert all(tuple(im.matrix_size) == (2 * W, 2 * H, 1) for im in images)
    np.testing.assert_allclose(images[3].field_of_view, cine.geometry.fov_mm)
    same = to_images(cine, np.ones((FRAMES, H, W), np.complex64), image_index_start=1,
                     frame_positions=np.arange(FRAMES, dtype=float))
    plain = to_images(cine, np.ones((FRAMES, H, W), np.complex64), image_index_start=1)
    assert [bytes(a.getHead()) for a in same] == [bytes(b.getHead()) for b in plain]
