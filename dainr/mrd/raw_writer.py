"""Writing radial cine slices as an ISMRMRD raw HDF5 file (what a scanner converter would produce).

Acquisition order: the noise scans, then one acquisition per measured spoke, slice after slice (or, with
``interleave``, frame by frame across slices: slice 0 frame 0, slice 1 frame 0, ..., slice 0 frame 1, ...).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from dainr.data import CineData
from dainr.mrd.acquisitions import ACQ_HEADER_DTYPE, flag_bit
from dainr.mrd.atomic import atomic_path
from dainr.mrd.hdf5_lock import hdf5_locked
from dainr.mrd.header import header_to_xml, without_version

#: Siemens-style time stamp tick, ms.
TICK_MS = 2.5

#: Acquisitions per HDF5 write (and chunk).
_BLOCK = 256


def _channel_mask(n_channels: int) -> np.ndarray:
    mask = np.zeros(16, np.uint64)
    for word in range(16):
        bits = min(max(n_channels - 64 * word, 0), 64)
        mask[word] = np.uint64(0xFFFFFFFFFFFFFFFF) if bits == 64 else np.uint64((1 << bits) - 1)
    return mask


def _order(slices: Sequence[CineData], interleave: bool) -> list[tuple[int, int]]:
    """``(slice position, frame)`` blocks in acquisition order."""
    if not interleave:
        return [(p, f) for p, c in enumerate(slices) for f in range(c.n_frames)]
    n = max(c.n_frames for c in slices)
    return [(p, f) for f in range(n) for p, c in enumerate(slices) if f < c.n_frames]


@hdf5_locked
def write_raw(path: str | os.PathLike, header: xsd.ismrmrdHeader | bytes | str, slices: Sequence[CineData], *,
              include_traj: bool = True, noise: np.ndarray | None = None, interleave: bool = False,
              spoke_counter_start: int = 0, dwell_time_us: float = 2.0, tr_ms: float = 2.5,
              time_stamp_start: int = 14_400_000, measurement_uid: int = 1, group: str = "dataset",
              phase_index: bool = True) -> Path:
    """Write ``slices`` as a complete ISMRMRD raw file.

    Parameters
    ----------
    path:
        Output file; written under a temporary name in the same folder and renamed at the end.
    header:
        The header (e.g. from :func:`dainr.mrd.header.build_header`) or its XML; written without ``<version>``.
    slices:
        One :class:`CineData` per slice (same coils and samples). Spokes flagged False in ``spoke_mask`` are not
        written.
    include_traj:
        Store ``traj`` (``(Ns, 2)``, or ``(Ns, 3)`` with the slice's ``dcw`` as third column). Without it
        ``trajectory_dimensions = 0`` and a reader computes the angles from the counters (which then must agree with
        the slices' trajectories).
    noise:
        ``(coils, n)`` complex noise samples, written first as ``ACQ_IS_NOISE_MEASUREMENT`` acquisitions of Ns
        samples (the last one shorter when n is not a multiple of Ns).
    interleave:
        Interleave slices frame by frame.
    spoke_counter_start:
        First value of the global spoke counter ``idx.kspace_encode_step_1``, which runs over frames and slices in
        acquisition order and is never reset.
    dwell_time_us, tr_ms, time_stamp_start, measurement_uid:
        ``sample_time_us``; the repetition time that advances ``acquisition_time_stamp`` (2.5 ms ticks, from
        ``time_stamp_start``, 10:00 by default); ``measurement_uid``.
    group:
        The dataset group.
    phase_index:
        Number the frames in ``idx.phase`` (a cine). False writes a real-time stream: every ``idx.phase`` is 0 and no
        ``ACQ_FIRST/LAST_IN_PHASE`` flags are set; the frames then only set the acquisition order (frame after frame),
        and a reader bins the stream into frames itself (pair it with a header whose phase limit is 0).

    Returns
    -------
    The path written.
    """
    if not slices:
        raise ValueError("write_raw needs at least one slice")
    n_coils, n_samples = slices[0].n_coils, slices[0].n_samples
    for c in slices:
        if (c.n_coils, c.n_samples) != (n_coils, n_samples):
            raise ValueError("all slices must have the same coils and samples per spoke")
    if noise is not None:
        noise = np.asarray(noise, np.complex64)
        if noise.ndim != 2 or noise.shape[0] != n_coils:
            raise ValueError(f"noise must be (coils={n_coils}, n), not {noise.shape}")
    xml = header_to_xml(header) if isinstance(header, xsd.ismrmrdHeader) else without_version(header)

    # One header row per acquisition, filled column-wise.
    blocks = _order(slices, interleave)
    spokes = [(p, f, s) for p, f in blocks
              for s in np.flatnonzero(slices[p].spoke_mask[f] if slices[p].spoke_mask is not None
                                      else np.ones(slices[p].n_spokes, bool))]
    noise_chunks = [] if noise is None else [noise[:, i:i + n_samples] for i in range(0, noise.shape[1], n_samples)]
    n_acq = len(noise_chunks) + len(spokes)
    head = np.zeros(n_acq, ACQ_HEADER_DTYPE)
    head["version"] = 1
    head["measurement_uid"] = measurement_uid
    head["scan_counter"] = np.arange(1, n_acq + 1)
    head["acquisition_time_stamp"] = time_stamp_start + np.floor(np.arange(n_acq) * tr_ms / TICK_MS).astype(np.int64)
    head["available_channels"] = n_coils
    head["active_channels"] = n_coils
    head["channel_mask"] = _channel_mask(n_coils)
    head["sample_time_us"] = dwell_time_us
    geo0 = slices[0].geometry
    for k, chunk in enumerate(noise_chunks):
        head["number_of_samples"][k] = chunk.shape[1]
        head["flags"][k] = flag_bit(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        for name in ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position"):
            head[name][k] = getattr(geo0, name)

    off = len(noise_chunks)
    img = head[off:]
    img["number_of_samples"] = n_samples
    img["center_sample"] = n_samples // 2
    counter = spoke_counter_start + np.arange(len(spokes))
    if len(spokes) and counter[-1] > 65535:
        raise ValueError(f"the global spoke counter would reach {counter[-1]}, beyond the uint16 idx range")
    img["idx"]["kspace_encode_step_1"] = counter
    pos = np.array([p for p, _, _ in spokes], np.int64)
    frm = np.array([f for _, f, _ in spokes], np.int64)
    img["idx"]["slice"] = [slices[p].slice_index for p in pos]
    img["idx"]["phase"] = frm if phase_index else 0
    for p, c in enumerate(slices):
        for name in ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position"):
            img[name][pos == p] = getattr(c.geometry, name)
    flags = np.zeros(len(spokes), np.uint64)
    block_id = pos * (1 << 20) + frm
    first_in_block = np.r_[True, block_id[1:] != block_id[:-1]]
    last_in_block = np.r_[block_id[1:] != block_id[:-1], True]
    if phase_index:
        flags[first_in_block] |= flag_bit(ismrmrd.ACQ_FIRST_IN_PHASE)
        flags[last_in_block] |= flag_bit(ismrmrd.ACQ_LAST_IN_PHASE)
    for p in range(len(slices)):
        where = np.flatnonzero(pos == p)
        if where.size:
            flags[where[0]] |= flag_bit(ismrmrd.ACQ_FIRST_IN_SLICE)
            flags[where[-1]] |= flag_bit(ismrmrd.ACQ_LAST_IN_SLICE)
    if len(spokes):
        flags[-1] |= flag_bit(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    img["flags"] = flags
    if include_traj:
        img["trajectory_dimensions"] = [2 if slices[p].dcw is None else 3 for p in pos]

    def rows():
        """(header row, samples, traj) of every acquisition, in order."""
        for k, chunk in enumerate(noise_chunks):
            yield head[k], chunk, None
        for j, (p, f, s) in enumerate(spokes):
            c = slices[p]
            traj = None
            if include_traj:
                traj = c.traj[f, s]
                if c.dcw is not None:
                    traj = np.concatenate([traj, c.dcw[f, s][:, None]], axis=1)
            yield img[j], c.kspace[f, :, s, :], traj

    path = Path(path)
    with atomic_path(path) as tmp:
        dset = ismrmrd.Dataset(str(tmp), group, True)
        try:
            dset.write_xml_header(xml)
        finally:
            dset.close()
        # The acquisitions go in blocks, in the table layout ismrmrd.Dataset.append_acquisition writes (its own
        # compound dtype, shape (N,), unlimited): 50x faster than appending (and resizing) one row at a time.
        with h5py.File(tmp, "r+") as f:
            table = f[group].create_dataset("data", (n_acq,), maxshape=(None,), dtype=acquisition_dtype,
                                            chunks=(min(max(n_acq, 1), _BLOCK),))
            block = np.zeros(_BLOCK, acquisition_dtype)
            empty = np.zeros(0, np.float32)
            it = rows()
            for start in range(0, n_acq, _BLOCK):
                n = min(_BLOCK, n_acq - start)
                for j, (h, samples, traj) in zip(range(n), it):
                    block[j]["head"] = h
                    block[j]["data"] = np.ascontiguousarray(samples, np.complex64).view(np.float32).reshape(-1)
                    block[j]["traj"] = empty if traj is None else np.ascontiguousarray(traj, np.float32).reshape(-1)
                table[start:start + n] = block[:n]
    return path
