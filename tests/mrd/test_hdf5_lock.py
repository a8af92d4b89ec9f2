"""Every HDF5 access of dainr.mrd holds one process-wide lock: h5py alone does not make concurrent reads of the
ISMRMRD acquisition table's variable-length fields safe (h5py #1764, #2920: a segmentation fault in the server's
concurrent-clients test)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dainr import mrd
from dainr.mrd.hdf5_lock import HDF5_LOCK


@pytest.fixture
def raw(good_file):
    return good_file[0]


def _waits_for_the_lock(call) -> bool:
    """True when ``call`` does not finish while another thread holds HDF5_LOCK, and finishes once it is released."""
    done = threading.Event()
    worker = threading.Thread(target=lambda: (call(), done.set()), daemon=True)
    with HDF5_LOCK:
        worker.start()
        blocked = not done.wait(0.5)
    worker.join(30)
    return blocked and done.is_set()


def test_reading_and_writing_wait_for_the_lock(raw, tmp_path):
    assert _waits_for_the_lock(lambda: mrd.read_raw(raw))
    assert _waits_for_the_lock(lambda: mrd.read_acquisitions(raw))
    ser = mrd.read_raw(raw)
    assert _waits_for_the_lock(lambda: mrd.write_raw(tmp_path / "copy.h5", ser.header_xml, ser.slices))
    assert _waits_for_the_lock(lambda: mrd.read_images(tmp_path / "copy.h5"))


def test_concurrent_reads_give_the_same_tables(raw):
    ref = mrd.read_acquisitions(raw)[1]
    out: list = [None] * 6

    def read(i):
        out[i] = mrd.read_acquisitions(raw)[1]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for acqs in out:
        assert len(acqs) == len(ref) and all(np.array_equal(a.data, b.data) for a, b in zip(acqs, ref))
