"""appending_images: an image file written slice by slice is the file write_images writes at once."""

from __future__ import annotations

import h5py
import ismrmrd
import numpy as np
import pytest

from dainr.errors import InputError
from dainr.mrd import read_images, write_images
from dainr.mrd.images import appending_images
from tests.gadget.compare import assert_same_images


def _image(value: float, index: int, shape=(8, 8)) -> ismrmrd.Image:
    im = ismrmrd.Image.from_array(np.full(shape, value, np.float32), transpose=False)
    im.image_series_index, im.image_index = 1, index
    return im


def test_pieces_make_the_file_write_images_makes(tmp_path):
    pieces = [[_image(1.0, 1), _image(2.0, 2)], [_image(3.0, 3)]]
    with appending_images(tmp_path / "a.h5", header_xml=b"<ismrmrdHeader/>") as add:
        assert not (tmp_path / "a.h5").exists()  # the file appears only when complete
        for piece in pieces:
            add(piece)
    write_images(tmp_path / "b.h5", [im for p in pieces for im in p], header_xml=b"<ismrmrdHeader/>")
    assert_same_images(read_images(tmp_path / "a.h5")[1], read_images(tmp_path / "b.h5")[1])
    with h5py.File(tmp_path / "a.h5") as f, h5py.File(tmp_path / "b.h5") as g:
        assert bytes(f["dataset/xml"][0]) == bytes(g["dataset/xml"][0])


def test_a_piece_of_another_shape_or_an_error_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="differ in shape"):
        with appending_images(tmp_path / "a.h5") as add:
            add([_image(1.0, 1)])
            add([_image(1.0, 2, shape=(4, 4))])
    with pytest.raises(RuntimeError):
        with appending_images(tmp_path / "a.h5") as add:
            add([_image(1.0, 1)])
            raise RuntimeError("a slice failed")
    assert list(tmp_path.iterdir()) == []
