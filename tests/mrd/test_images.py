"""to_images / write_images / read_images."""

from __future__ import annotations

import h5py
import ismrmrd
import numpy as np
import pytest

from dainr.errors import InputError
from dainr.mrd import image_index_start, read_images, read_raw, to_images, write_images, write_raw
from dainr.mrd.images import image_file_groups, image_meta

from .helpers import FRAMES, H, W, header_for, make_slices


def _cine_series(tmp_path, n_slices=2):
    slices = make_slices(n_slices=n_slices)
    path = tmp_path / "raw.h5"
    write_raw(path, header_for(slices), slices)
    return read_raw(path)


def _images(seed, frames=FRAMES):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((frames, H, W)) + 1j * rng.standard_normal((frames, H, W))).astype(np.complex64)


@pytest.mark.parametrize("complex_output", [False, True])
def test_images_round_trip_with_headers(tmp_path, complex_output):
    series = _cine_series(tmp_path)
    recon = [_images(s) for s in range(2)]
    images = [img for cine, rec in zip(series.slices, recon)
              for img in to_images(cine, rec, series_index=3, complex_output=complex_output,
                                   image_index_start=image_index_start(cine.slice_index, cine.n_frames))]
    out = tmp_path / "img.h5"
    write_images(out, images, header_xml=series.header_xml)
    back = read_images(out)
    assert list(back) == [3]
    got = back[3]
    assert len(got) == 2 * FRAMES
    for n, img in enumerate(got):
        sl, f = divmod(n, FRAMES)
        cine = series.slices[sl]
        ref = cine.frame_refs[f]
        assert img.image_series_index == 3
        assert img.image_index == n + 1  # 1-based, slice-major over slices × frames
        assert (img.slice, img.phase) == (sl, f)
        assert img.image_type == (ismrmrd.IMTYPE_COMPLEX if complex_output else ismrmrd.IMTYPE_MAGNITUDE)
        assert tuple(img.getHead().matrix_size) == (W, H, 1)
        assert img.data.shape == (1, 1, H, W)
        np.testing.assert_allclose(img.field_of_view, cine.geometry.fov_mm)
        for name in ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position"):
            np.testing.assert_allclose(getattr(img, name), getattr(cine.geometry, name), err_msg=name)
        assert img.acquisition_time_stamp == ref.acquisition_time_stamp
        expected = recon[sl][f] if complex_output else np.abs(recon[sl][f])
        assert img.data.dtype == (np.complex64 if complex_output else np.float32)
        np.testing.assert_allclose(img.data[0, 0], expected, rtol=1e-6)
    with h5py.File(out, "r") as f:
        assert b"ismrmrdHeader" in bytes(f["dataset/xml"][0])


def test_image_index_start_and_missing_refs(tmp_path):
    series = _cine_series(tmp_path, n_slices=1)
    cine = series.slices[0]
    cine.frame_refs = None
    imgs = to_images(cine, _images(0), series_index=1, image_index_start=10)
    assert [i.image_index for i in imgs] == [10, 11, 12]
    np.testing.assert_allclose(imgs[0].position, cine.geometry.position)


def test_image_numbering_starts_at_the_headers_first_slice(tmp_path):
    """Slices 3 and 4 of a header whose slice limits are 3..4 are numbered 1..F and F+1..2F."""
    assert [image_index_start(s, FRAMES, first_slice=3) for s in (3, 4)] == [1, 1 + FRAMES]
    assert image_index_start(1, FRAMES) == 1 + FRAMES  # header without slice limits: from slice 0
    series = _cine_series(tmp_path, n_slices=2)
    assert series.first_slice == 0


def test_write_images_rejects_mixed_shapes_atomically(tmp_path):
    series = _cine_series(tmp_path, n_slices=1)
    cine = series.slices[0]
    a = to_images(cine, _images(0), image_index_start=1)
    b = to_images(cine, _images(1)[:, :8, :], image_index_start=1)
    out = tmp_path / "bad.h5"
    with pytest.raises(InputError, match="differ in shape"):
        write_images(out, a + b)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    write_images(out, a)
    with pytest.raises(InputError, match="differ in shape"):
        write_images(out, a + b, "run2", new_group=True)
    with h5py.File(out, "r") as f:
        assert list(f) == ["dataset"]


def test_new_group_adds_runs_and_refuses_what_it_would_overwrite(tmp_path):
    cine = _cine_series(tmp_path, n_slices=1).slices[0]
    images = to_images(cine, _images(0), image_index_start=1)
    out = tmp_path / "runs.h5"
    write_images(out, images, "run1", new_group=True)  # a missing file is created
    write_images(out, images, "run2", b"<xml/>", new_group=True)
    assert sorted(read_images(out, "run1")) == sorted(read_images(out, "run2")) == [1]
    with pytest.raises(InputError, match="already has a group 'run1'"):
        write_images(out, images, "run1", new_group=True)
    text = tmp_path / "text.h5"
    text.write_text("not HDF5")
    with pytest.raises(InputError, match="is not an HDF5 file"):
        write_images(text, images, new_group=True)
    assert text.read_text() == "not HDF5"


def test_replace_keeps_the_other_groups_and_an_error_leaves_the_file_as_it_was(tmp_path):
    cine = _cine_series(tmp_path, n_slices=1).slices[0]
    first, second = (to_images(cine, _images(s), image_index_start=1) for s in (0, 1))
    out = tmp_path / "runs.h5"
    write_images(out, first, "run1", b"<xml/>", new_group=True)
    write_images(out, first, "run2", new_group=True)
    write_images(out, second, "run2", new_group=True, replace=True)
    assert np.array_equal(read_images(out, "run1")[1][0].data, first[0].data)  # untouched
    assert np.array_equal(read_images(out, "run2")[1][0].data, second[0].data)  # replaced
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["run1", "run2"] and bytes(f["run1/xml"][0]) == b"<xml/>"
    before = out.read_bytes()
    bad = to_images(cine, _images(2)[:, :8, :], image_index_start=1)
    with pytest.raises(InputError, match="differ in shape"):
        write_images(out, first + bad, "run3", new_group=True)
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_image_file_groups_tells_image_files_from_the_rest(tmp_path):
    series = _cine_series(tmp_path, n_slices=1)
    out = tmp_path / "img.h5"
    write_images(out, to_images(series.slices[0], _images(0), image_index_start=1), "a")
    write_images(out, to_images(series.slices[0], _images(0), image_index_start=1), "b", new_group=True)
    assert image_file_groups(out) == ["a", "b"]
    assert image_file_groups(tmp_path / "raw.h5") is None  # raw acquisitions
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    assert image_file_groups(text) is None
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("measurements/values", data=np.arange(3))
    assert image_file_groups(other) is None


@pytest.mark.parametrize("complex_output", [False, True])
def test_meta_attributes_for_gadgetron_and_12_bit_dicom(tmp_path, complex_output):
    """Every frame of a slice carries the data role, the comment, a power-of-two scale that brings the slice's
    largest magnitude into (2047, 4095] and the window of that 12-bit range; they survive the file."""
    cine = _cine_series(tmp_path, n_slices=1).slices[0]
    recon = _images(0) * np.float32(1e-3)
    images = to_images(cine, recon, complex_output=complex_output, image_index_start=1, method="cgsense")
    out = tmp_path / "img.h5"
    write_images(out, images)
    back = read_images(out)[1]
    assert len({im.attribute_string for im in images}) == 1  # the same on every frame
    for im in back:
        assert im.getHead().attribute_string_len == len(im.attribute_string.encode())  # what C++ ISMRMRD reads
        meta = ismrmrd.Meta.deserialize(im.attribute_string)
        assert meta["GADGETRON_DataRole"] == "Image"
        assert meta["GADGETRON_ImageComment"] == ["DA-INR Recon", "cgsense"]
        ratio = float(meta["GADGETRON_ScaleRatio"])
        assert np.log2(ratio) == int(np.log2(ratio))
        peak = float(np.abs(recon).max())
        assert 2047 < ratio * peak <= 4095
        assert float(meta["GADGETRON_WindowCenter"]) * ratio == 2048
        assert float(meta["GADGETRON_WindowWidth"]) * ratio == 4096
        assert np.all(np.abs(im.data) * ratio <= 4095)
    assert image_meta(0.0, "")["GADGETRON_ScaleRatio"] == "1.0"  # an all-zero cine
