"""Gadgetron's buffered data (``ReconData``, message 1023, after ``BucketToBufferGadget``) back into acquisitions.

A ``ReconData`` holds bits; each bit's ``data`` buffer (gadgetron-python ``ReconBuffer``) has, in C++ dimension order
(gadgetron-python reads the arrays in Fortran order, so the numpy shapes equal the C++ dims):

* ``data`` ``[E0, E1, E2, CHA, N, S, LOC]`` complex64;
* ``trajectory`` ``[TRAJ, E0, E1, E2, N, S, LOC]`` float32, or None;
* ``headers`` ``[E1, E2, N, S, LOC]`` of ``ismrmrd.AcquisitionHeader`` (an unfilled slot has ``number_of_samples`` 0).

For radial data BucketToBuffer places each readout at ``E1 = idx.kspace_encode_step_1`` with samples from
``discard_pre`` on, and keeps the acquisition header intact. Every filled slot therefore becomes the acquisition it
came from again, and the same :func:`dainr.mrd.assemble_series` path as raw acquisitions (and as ``dainr recon``)
turns them into slices: frames from ``idx.phase``, trajectory from ``traj`` or the spoke counter. The ``ref``
(calibration) buffers are not used.
"""

from __future__ import annotations

from typing import Any

import ismrmrd
import numpy as np

from dainr.errors import InputError


def _acquisition(head: ismrmrd.AcquisitionHeader, data: np.ndarray, traj: np.ndarray | None) -> ismrmrd.Acquisition:
    head = ismrmrd.AcquisitionHeader.from_buffer_copy(bytes(head))
    n = data.shape[1]
    if head.number_of_samples != n:
        # BucketToBuffer copied number_of_samples - discard_pre - discard_post samples from discard_pre on.
        head.center_sample = max(0, int(head.center_sample) - int(head.discard_pre))
        head.number_of_samples = n
        head.discard_pre = 0
        head.discard_post = 0
    head.active_channels = data.shape[0]
    head.trajectory_dimensions = 0 if traj is None else traj.shape[1]
    return ismrmrd.Acquisition(head, np.ascontiguousarray(data, np.complex64),
                               None if traj is None else np.ascontiguousarray(traj, np.float32))


def buffer_to_acquisitions(buffer: Any) -> list[ismrmrd.Acquisition]:
    """The acquisitions held in one ``ReconBuffer``, in ``scan_counter`` order (buffer order for ties)."""
    data = np.asarray(buffer.data)
    headers = np.asarray(buffer.headers, dtype=object)
    traj = None if buffer.trajectory is None else np.asarray(buffer.trajectory)
    if data.ndim != 7 or headers.ndim != 5:
        raise InputError(f"ReconData buffer has data dims {data.shape} and header dims {headers.shape}: expected "
                         "7-D [E0,E1,E2,CHA,N,S,LOC] data and 5-D [E1,E2,N,S,LOC] headers (BucketToBufferGadget)")
    if headers.shape != data.shape[1:3] + data.shape[4:]:
        raise InputError(f"ReconData header dims {headers.shape} do not match data dims {data.shape}")
    if traj is not None and (traj.ndim != 7 or traj.shape[1:] != data.shape[:3] + data.shape[4:]):
        raise InputError(f"ReconData trajectory dims {traj.shape} do not match data dims {data.shape}")
    found = []
    e1n, e2n, nn, sn, locn = headers.shape
    for loc in range(locn):
        for s in range(sn):
            for n in range(nn):
                for e2 in range(e2n):
                    for e1 in range(e1n):
                        head = headers[e1, e2, n, s, loc]
                        if head is None or int(head.number_of_samples) == 0:
                            continue
                        samples = data[:, e1, e2, :, n, s, loc].T  # (CHA, E0)
                        t = None if traj is None else traj[:, :, e1, e2, n, s, loc].T  # (E0, TRAJ)
                        found.append((int(head.scan_counter), len(found), _acquisition(head, samples, t)))
    found.sort(key=lambda item: (item[0], item[1]))
    return [acq for _, _, acq in found]


def recon_data_to_acquisitions(recon_data: Any) -> list[ismrmrd.Acquisition]:
    """All imaging acquisitions of a gadgetron-python ``ReconData`` (every bit's ``data`` buffer)."""
    out: list[ismrmrd.Acquisition] = []
    for bit in recon_data.bits:
        out += buffer_to_acquisitions(bit.data)
    if not out:
        raise InputError("a ReconData message holds no acquisitions: check the BucketToBufferGadget settings")
    return out
