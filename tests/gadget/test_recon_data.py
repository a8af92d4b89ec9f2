"""Gadgetron ReconData (BucketToBuffer output) back into the acquisitions it was built from."""

from __future__ import annotations

import io

import numpy as np
import pytest
from gadgetron.types.recon_data import read_recon_data, write_recon_data

from dainr.errors import InputError
from dainr.mrd import read_raw
from dainr.stream import SliceCollector
from gadget.recon_data import recon_data_to_acquisitions
from tests.conftest import simulate_file
from tests.gadget.harness import bucket_to_buffer, read_acquisitions

# gadgetron-python's object-array reader builds numpy arrays of ctypes headers; numpy warns, harmlessly.
pytestmark = pytest.mark.filterwarnings("ignore:A builtin ctypes object:RuntimeWarning")


@pytest.mark.parametrize("extra", [(), ("--no-traj",)])
def test_round_trip_through_the_wire_gives_the_same_slices(tmp_path, extra):
    raw = simulate_file(tmp_path / "raw.h5", "--slices", "2", *extra, matrix=16, frames=3, coils=2, spokes=5,
                        snr=0)[0]
    header, acqs = read_acquisitions(raw)
    reference = read_raw(raw).slices
    col = SliceCollector(header)
    for s, rd in enumerate(bucket_to_buffer(header, acqs)):
        wire = io.BytesIO()
        write_recon_data(wire, rd)
        wire.seek(2)  # skip the message id
        back = read_recon_data(wire)
        got = recon_data_to_acquisitions(back)
        assert all(a.idx.slice == s for a in got)
        jobs = col.assemble(got)
        assert len(jobs) == 1
        cine, ref = jobs[0].cine, reference[s]
        assert np.array_equal(cine.kspace, ref.kspace) and np.array_equal(cine.traj, ref.traj)
        assert [bytes(r) for r in cine.frame_refs] == [bytes(r) for r in ref.frame_refs]


def test_empty_buffer_is_refused(tmp_path):
    raw = simulate_file(tmp_path / "raw.h5", matrix=16, frames=3, coils=2, spokes=5)[0]
    header, acqs = read_acquisitions(raw)
    rd = bucket_to_buffer(header, acqs)[0]
    import ismrmrd

    headers = rd.bits[0].data.headers
    for idx in np.ndindex(headers.shape):
        headers[idx] = ismrmrd.AcquisitionHeader()
    with pytest.raises(InputError, match="no acquisitions"):
        recon_data_to_acquisitions(rd)
