"""stream_images: the CLI's images, slice by slice, from acquisitions one by one."""

from __future__ import annotations

import pickle
import pickletools

import ismrmrd
import numpy as np

from dainr.cli import main
from dainr.mrd import read_images
from dainr.stream import ReconSettings, stream_images
from tests.conftest import simulate_file
from tests.gadget.compare import assert_same_images
from tests.gadget.harness import read_acquisitions


def test_stream_images_equal_cli_images(tmp_path):
    raw = simulate_file(tmp_path / "raw.h5", "--slices", "2", matrix=16, frames=3, coils=2, spokes=5)[0]
    header, acqs = read_acquisitions(raw)
    settings = ReconSettings.load("cpu-test", overrides=["method=adjoint"])
    outputs = list(stream_images(header, iter(acqs), settings))
    assert [o.job.cine.slice_index for o in outputs] == [0, 1]
    assert main(["recon", str(raw), "-o", str(tmp_path / "cli.h5"), "--preset", "cpu-test", "--method", "adjoint",
                 "-q"]) == 0
    assert_same_images([im for o in outputs for im in o.images], read_images(tmp_path / "cli.h5")[1])


def test_slice_output_pickles_without_images_and_rebuilds_them_identically(tmp_path):
    """Server workers in child processes send SliceOutput back pickled: the engine's result travels, the images do not
    (ismrmrd.Image does not pickle on every release; building them is the receiver's work), and the receiver's
    images equal the sender's byte for byte."""
    raw = simulate_file(tmp_path / "raw.h5", matrix=16, frames=3, coils=2, spokes=5)[0]
    header, acqs = read_acquisitions(raw)
    settings = ReconSettings.load("cpu-test", overrides=["method=adjoint"], series_index=3, complex_output=True)
    (out,) = list(stream_images(header, acqs, settings))
    sent = out.images  # built on the sender's side too: still not in the pickle
    data = pickle.dumps(out)
    modules = {arg.split()[0] for op, arg, _ in pickletools.genops(data) if op.name in ("GLOBAL", "SHORT_BINUNICODE")
               and isinstance(arg, str) and arg.startswith("ismrmrd.image")}
    assert not modules  # no ismrmrd.Image in the pickle
    back = pickle.loads(data)
    assert back.job.image_index_start == out.job.image_index_start and back.reconstructed_at == out.reconstructed_at
    np.testing.assert_array_equal(back.result.images, out.result.images)
    assert len(back.images) == len(sent) == 3
    for a, b in zip(back.images, sent):
        assert bytes(a.getHead()) == bytes(b.getHead()) and a.attribute_string == b.attribute_string
        assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)


def test_complex_output_and_series_index(tmp_path):
    raw = simulate_file(tmp_path / "raw.h5", matrix=16, frames=3, coils=2, spokes=5)[0]
    header, acqs = read_acquisitions(raw)
    settings = ReconSettings.load("cpu-test", overrides=["method=adjoint"], series_index=5, complex_output=True)
    (out,) = list(stream_images(header, acqs, settings))
    assert [im.image_series_index for im in out.images] == [5, 5, 5]
    assert all(im.image_type == ismrmrd.IMTYPE_COMPLEX and np.iscomplexobj(im.data) for im in out.images)
    assert np.allclose(np.abs(out.images[0].data[0, 0]), np.abs(out.result.images[0]))


def test_realtime_binning_reaches_the_stream(tmp_path):
    """A real-time stream binned by the config gives the CLI's frames (same binning keys, same pixels)."""
    raw = simulate_file(tmp_path / "rt.h5", "--realtime", matrix=16, frames=4, coils=2, spokes=5)[0]
    header, acqs = read_acquisitions(raw)
    settings = ReconSettings.load("cpu-test", overrides=["method=adjoint", "binning.spokes_per_frame=5"])
    outputs = list(stream_images(header, iter(acqs), settings))
    images = [im for o in outputs for im in o.images]
    assert len(images) == 4 and [im.getHead().phase for im in images] == [0, 1, 2, 3]
    assert main(["recon", str(raw), "-o", str(tmp_path / "cli.h5"), "--preset", "cpu-test", "--method", "adjoint",
                 "--spokes-per-frame", "5", "-q"]) == 0
    assert_same_images(images, read_images(tmp_path / "cli.h5")[1])


def test_a_cpu_reconstruction_too_big_for_the_memory_is_refused_before_it_starts(tmp_path, monkeypatch):
    """``dainr.grid.log2_table_size: 28`` on a CPU with 1 GiB available: one line, before any allocation (issue 19
    item 2); the same slice with the preset's grid fits."""
    import pytest

    from dainr.errors import ResourceError
    from dainr.stream import pipeline

    raw = simulate_file(tmp_path / "raw.h5", matrix=16, frames=3, coils=2, spokes=5)[0]
    header, acqs = read_acquisitions(raw)
    monkeypatch.setattr(pipeline, "host_memory_available", lambda: 1 << 30)
    huge = ReconSettings.load("cpu-test", overrides=["dainr.grid.log2_table_size=28", "dainr.grid.gridtype=hash",
                                                   "dainr.grid.finest_resolution=65536"])
    with pytest.raises(ResourceError, match=r"needs about [\d.]+ GiB of memory for dainr on the CPU, more than the "
                                            r"1.0 GiB available: .*dainr.grid.log2_table_size"):
        list(stream_images(header, iter(acqs), huge))
    small = ReconSettings.load("cpu-test", overrides=["dainr.steps=1"])
    assert len(next(stream_images(header, iter(acqs), small)).images) == 3
