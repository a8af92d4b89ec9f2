"""Every file the project writes goes through C++ ISMRMRD 1.15 (deserialise, serialise) unchanged.

* the XML header of raw and image files: ``ismrmrd_test_xml`` (``deserialize`` + ``serialize``, what Gadgetron does to
  every header; it throws on a ``<version>`` other than the library's own);
* the whole file: ``ismrmrd_hdf5_to_stream | ismrmrd_stream_to_hdf5`` (the C++ dataset reader, the stream serialiser
  and deserialiser, the C++ dataset writer), after which every acquisition or image is byte-identical, and the CLI
  reconstructs the C++-written raw file to the same pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest

from dainr.mrd import encoding_info, parse_header, read_images
from dainr.mrd import read_acquisitions
from tests.gadget.compare import assert_same_images, cli_images
from tests.interop.tools import cpp_reserialised_header, run_tool

pytestmark = pytest.mark.timeout(300)


def _stored_xml(path: Path, group: str = "dataset") -> bytes:
    with h5py.File(path, "r") as f:
        node = f[f"{group}/xml"]
        xml = node[()] if node.shape in ((), None) else node[0]
    return xml if isinstance(xml, bytes) else xml.encode()


def _cpp_roundtrip(src: Path, dst: Path, *args: str) -> None:
    """``ismrmrd_hdf5_to_stream -i src ARGS --use-stdout | ismrmrd_stream_to_hdf5 --use-stdin -o dst``."""
    out = run_tool("ismrmrd_hdf5_to_stream", ["-i", src, "--use-stdout", *args])
    assert out.returncode == 0, f"ismrmrd_hdf5_to_stream failed (rc {out.returncode}): {out.stderr.decode()[-500:]}"
    back = run_tool("ismrmrd_stream_to_hdf5", ["--use-stdin", "-o", dst], stdin=out.stdout)
    assert back.returncode == 0, f"ismrmrd_stream_to_hdf5 failed (rc {back.returncode}): {back.stderr.decode()[-500:]}"


def _as_float32(value):
    """Header values with every float rounded to float32 (C++ ISMRMRD keeps xs:float fields such as
    ``systemFieldStrength_T`` in single precision)."""
    if isinstance(value, dict):
        return {k: _as_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_float32(v) for v in value]
    return np.float32(value) if isinstance(value, float) else value


def _assert_same_header(cpp_xml: bytes, ours: bytes) -> None:
    assert b"version>" not in cpp_xml
    a, b = parse_header(cpp_xml), parse_header(ours)
    assert encoding_info(a) == encoding_info(b)
    assert _as_float32(dataclasses.asdict(a)) == _as_float32(dataclasses.asdict(b))


@pytest.mark.parametrize("raw", ["raw_traj", "raw_notraj"])
def test_raw_file_survives_the_cpp_library(raw, request, tmp_path):
    raw = request.getfixturevalue(raw)
    xml = _stored_xml(raw)
    _assert_same_header(cpp_reserialised_header(xml, tmp_path / "xml"), xml)

    back = tmp_path / "cpp.h5"
    _cpp_roundtrip(raw, back)
    _assert_same_header(_stored_xml(back), xml)
    ours, theirs = read_acquisitions(raw)[1], read_acquisitions(back)[1]
    assert len(theirs) == len(ours)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert bytes(a.getHead()) == bytes(b.getHead()), f"acquisition {i}: headers differ"
        assert np.array_equal(a.data, b.data) and np.array_equal(a.traj, b.traj), f"acquisition {i} differs"
    args = ("--preset", "cpu-test", "--method", "adjoint")
    assert_same_images(cli_images(back, tmp_path / "from_cpp.h5", *args), cli_images(raw, tmp_path / "ours.h5", *args))


@pytest.mark.parametrize("kind", ["magnitude", "complex"])
def test_recon_images_survive_the_cpp_library(kind, raw_notraj, tmp_path):
    images_file = tmp_path / "images.h5"
    ours = cli_images(raw_notraj, images_file, "--preset", "cpu-test", "--method", "adjoint",
                      *(["--complex"] if kind == "complex" else []))
    xml = _stored_xml(images_file)
    _assert_same_header(cpp_reserialised_header(xml, tmp_path / "xml"), xml)

    back = tmp_path / "cpp.h5"
    _cpp_roundtrip(images_file, back, "-s", "image_1")
    assert_same_images(read_images(back)[1], ours)
