"""No ``<version>`` in any header the project writes (C++ ISMRMRD's serialize throws unless it equals the library's
own), and headers that carry any version are read."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dainr.mrd import build_header, header_to_xml, parse_header, read_images, read_raw, without_version, write_images
from tests.conftest import simulate_file


def _stored_xml(path, group: str = "dataset") -> bytes:
    with h5py.File(path, "r") as f:
        node = f[f"{group}/xml"]
        xml = node[()] if node.shape in ((), None) else node[0]
    return xml if isinstance(xml, bytes) else xml.encode()


def _with_version(xml: bytes, version: str) -> bytes:
    start = xml.index(b">", xml.index(b"<ismrmrdHeader")) + 1
    return xml[:start] + b"\n  <version>" + version.encode() + b"</version>" + xml[start:]


def test_built_header_has_no_version():
    xml = header_to_xml(build_header((16, 16), (256.0, 256.0, 6.0), 2, "radial", 3, 1, 12))
    assert b"version>" not in xml


@pytest.mark.parametrize("version", ["1", "8", "15", "99"])
def test_headers_with_any_version_are_read_and_written_without_it(version):
    xml = header_to_xml(build_header((16, 16), (256.0, 256.0, 6.0), 2, "radial", 3, 1, 12))
    versioned = _with_version(xml, version)
    assert parse_header(versioned).version == int(version)
    stripped = without_version(versioned)
    assert b"version>" not in stripped
    assert header_to_xml(parse_header(versioned)) == xml
    # only the element goes; every other byte stays
    assert stripped.replace(b"\n  ", b"").replace(b"\n", b"") == xml.replace(b"\n  ", b"").replace(b"\n", b"")


def test_without_version_keeps_prefixed_and_other_elements():
    xml = (b'<?xml version="1.0"?><m:ismrmrdHeader xmlns:m="http://www.ismrm.org/ISMRMRD"><m:version>2</m:version>'
           b"<m:userParameters><m:userParameterString><m:name>version</m:name><m:value>3</m:value>"
           b"</m:userParameterString></m:userParameters></m:ismrmrdHeader>")
    out = without_version(xml)
    assert b"<m:version>" not in out and b"<m:name>version</m:name>" in out and out.startswith(b'<?xml version="1.0"?>')


def test_simulated_raw_and_recon_images_carry_no_version(tmp_path):
    raw = simulate_file(tmp_path / "raw.h5", matrix=16, frames=3, coils=2, spokes=5)[0]
    raw_xml = _stored_xml(raw)
    assert b"version>" not in raw_xml and parse_header(raw_xml).encoding

    # A raw file from elsewhere that carries a version is read; the images written from it carry none.
    with h5py.File(raw, "r+") as f:
        del f["dataset/xml"]
        f.create_dataset("dataset/xml", data=np.array([_with_version(raw_xml, "1")], dtype=object),
                         dtype=h5py.string_dtype())
    series = read_raw(raw)
    assert series.header.version == 1
    from dainr.cli import main

    out = tmp_path / "images.h5"
    assert main(["recon", str(raw), "-o", str(out), "-q", "--preset", "cpu-test", "--method", "adjoint"]) == 0
    assert b"version>" not in _stored_xml(out)

    # replay's writer, into a new file and as a new group of an existing one
    images = read_images(out)[1]
    versioned = _with_version(raw_xml, "1")
    write_images(tmp_path / "replayed.h5", images, group="run1", header_xml=versioned, new_group=True)
    write_images(tmp_path / "replayed.h5", images, group="run2", header_xml=versioned, new_group=True)
    assert b"version>" not in _stored_xml(tmp_path / "replayed.h5", "run1")
    assert b"version>" not in _stored_xml(tmp_path / "replayed.h5", "run2")
