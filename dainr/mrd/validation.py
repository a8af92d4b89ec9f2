"""Checks of the acquisitions against INPUT_POLICY.md, each refusing with a one-line :class:`InputError`.

Each check names the cause and the fix. The header checks live in :mod:`dainr.mrd.header`, the file checks in
:mod:`dainr.mrd.raw_reader`.
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from dainr.errors import InputError
from dainr.mrd.acquisitions import AcquisitionTable
from dainr.mrd.header import EncodingInfo

log = logging.getLogger(__name__)

#: Tolerance on |k| ≤ 0.5 cycles/pixel for a stored ``traj``.
TRAJ_TOLERANCE = 0.01

#: A slice's k-space array may be at most this many times the spokes received: padding every frame to the longest
#: one, or a sliding-window binning that repeats spokes, must not turn a small input into a huge allocation.
MAX_EXPANSION = 8
#: ... unless the array stays below this size (small inputs may be padded freely), bytes.
EXPANSION_FLOOR_BYTES = 64 << 20
#: At most this many samples per coil in one slice (frames × spokes × samples), whatever the input: 2^28, i.e. 2 GiB
#: of complex64 k-space per coil.
MAX_SLICE_SAMPLES = 1 << 28


def _list(values: np.ndarray, limit: int = 5) -> str:
    vals = [int(v) for v in np.unique(values)]
    shown = ", ".join(str(v) for v in vals[:limit])
    return shown + (f", ... ({len(vals)} values)" if len(vals) > limit else "")


def check_spoke_shapes(table: AcquisitionTable, rows: np.ndarray) -> tuple[int, int, int]:
    """Channel, sample and trajectory-dimension counts shared by all imaging spokes ``rows``.

    Returns
    -------
    ``(channels, samples, trajectory_dimensions)``; the last is 0 when no spoke carries ``traj``.
    """
    h = table.head[rows]
    for field, what in (("active_channels", "channel"), ("number_of_samples", "sample")):
        values = h[field]
        if (values == 0).any():
            i = int(rows[np.flatnonzero(values == 0)[0]])
            raise InputError(f"imaging acquisition {i} has 0 {what}s: every imaging spoke needs samples from at least "
                             "one channel; remove empty acquisitions or flag them as non-imaging")
        if (values != values[0]).any():
            raise InputError(f"imaging spokes differ in {what} count ({_list(values)}): every imaging spoke must "
                             f"have the same {what} count; flag other readouts (navigators, calibration) as such")
    dims = h["trajectory_dimensions"]
    with_traj = int((dims > 0).sum())
    if 0 < with_traj < len(rows):
        raise InputError(f"traj is present on {with_traj} of {len(rows)} imaging spokes: store traj on every spoke "
                         "or on none (then the trajectory is computed from the header)")
    d = int(dims[0])
    if (dims != d).any():
        raise InputError(f"imaging spokes differ in trajectory_dimensions ({_list(dims)}): use the same number of "
                         "traj columns on every spoke")
    if d not in (0, 2, 3):
        raise InputError(f"traj has {d} column(s): DA-INR needs 2 (kx, ky) or 3 (kx, ky, density weight) in "
                         "cycles/pixel; rewrite traj, or drop it (trajectory_dimensions=0) to compute it from the "
                         "header")
    return int(h["active_channels"][0]), int(h["number_of_samples"][0]), d


def check_finite(array: np.ndarray, what: str) -> None:
    """Refuse NaN or Inf; never repair them."""
    if not np.isfinite(array).all():
        raise InputError(f"{what} contain NaN or Inf values: the raw data are corrupt; fix or re-export them "
                         "(DA-INR does not repair non-finite samples)")


def check_traj_range(traj: np.ndarray) -> None:
    """Stored ``traj`` must be in cycles/pixel: |k| ≤ 0.5 within :data:`TRAJ_TOLERANCE`."""
    if traj.size == 0:
        return
    radius = float(np.sqrt(np.max(traj[..., 0].astype(np.float64) ** 2 + traj[..., 1].astype(np.float64) ** 2)))
    if radius > 0.5 + TRAJ_TOLERANCE:
        raise InputError(f"traj reaches |k| = {radius:.4g}, beyond 0.5 cycles/pixel: store traj in cycles/pixel in "
                         "[-0.5, 0.5] (divide k-sample units by the readout matrix size), or drop traj to compute "
                         "it from the header")


def _missing(lo: int, hi: int, present: np.ndarray, limit: int = 5) -> tuple[int, str]:
    """How many of ``lo..hi`` are not in ``present`` (sorted, unique), and the first few of them; the work is bounded by
    the values present, never by the width of ``lo..hi`` (a header may claim 65536 of them)."""
    inside = present[(present >= lo) & (present <= hi)]
    count = (hi - lo + 1) - len(inside)
    first: list[int] = []
    candidate, have = lo, iter(inside.tolist() + [hi + 1])
    nxt = next(have)
    while len(first) < min(count, limit):
        if candidate == nxt:
            nxt = next(have)
        else:
            first.append(candidate)
        candidate += 1
    shown = ", ".join(str(v) for v in first)
    return count, shown + (f", ... ({count} values)" if count > len(first) else "")


def check_slices(info: EncodingInfo, slices: np.ndarray, whole_series: bool = True) -> np.ndarray:
    """Sorted slice numbers present; the header's slice limits bind both ways (INPUT_POLICY.md rule 5): a slice
    outside them is refused, and so is a slice within them that has no imaging spokes, when ``slices`` are the whole
    series (one group of a stream holds only its own slices: :func:`check_missing_slices` runs at the stream's end)."""
    present = np.unique(slices)
    if "slice" in info.limits:
        lo, hi = info.limits["slice"]
        bad = present[(present < lo) | (present > hi)]
        if bad.size:
            raise InputError(f"idx.slice {_list(bad)} is outside the header's slice limits {lo}..{hi}: fix "
                             "encodingLimits/slice in the header or idx.slice in the acquisitions")
    if whole_series:
        check_missing_slices(info, present)
    return present


def check_missing_slices(info: EncodingInfo, present: Iterable[int]) -> None:
    """Refuse a series in which a slice within the header's slice limits has no imaging spokes."""
    if "slice" not in info.limits:
        return
    lo, hi = info.limits["slice"]
    count, shown = _missing(lo, hi, np.unique(np.fromiter(present, dtype=np.int64)))
    if count:
        raise InputError(f"the header declares slices {lo}..{hi} (encodingLimits/slice) but slice(s) {shown} have "
                         "no imaging spokes: send every slice, or fix encodingLimits/slice in the header")


def phase_range(info: EncodingInfo, phases: np.ndarray) -> tuple[int, int]:
    """``(first, last)`` phase of the series: the header's limits (binding both ways) or the data's range."""
    if "phase" not in info.limits:
        return int(phases.min()), int(phases.max())
    lo, hi = info.limits["phase"]
    bad = phases[(phases < lo) | (phases > hi)]
    if bad.size:
        raise InputError(f"idx.phase {_list(bad)} is outside the header's phase limits {lo}..{hi}: fix "
                         "encodingLimits/phase in the header or idx.phase (the cine frame) in the acquisitions")
    if hi > lo and (phases == phases[0]).all():
        raise InputError(f"all imaging spokes have idx.phase = {int(phases[0])} but the header declares "
                         f"{hi - lo + 1} cardiac phases: number the cine frames in idx.phase, or set "
                         "encodingLimits/phase maximum to 0 for a single frame")
    count, shown = _missing(lo, hi, np.unique(phases))
    if count:  # checked here, before anything is sized by the header's limits
        raise InputError(f"there are no spokes in idx.phase {shown} although the header declares cardiac phases "
                         f"{lo}..{hi} (encodingLimits/phase): send every frame, or fix encodingLimits/phase")
    return lo, hi


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.1f} GiB"


def check_allocation(slice_index: int, frames: int, spokes: int, samples: int, channels: int, received: int,
                     cause: str, fix: str) -> None:
    """Refuse, before it is allocated, a slice's ``(frames, channels, spokes, samples)`` k-space that exceeds
    :data:`MAX_SLICE_SAMPLES` per coil, or that is more than :data:`MAX_EXPANSION` times the ``received`` spokes
    (and above :data:`EXPANSION_FLOOR_BYTES`). ``cause`` says why it grows (e.g. padding), ``fix`` what to do."""
    per_coil = frames * spokes * samples
    if per_coil > MAX_SLICE_SAMPLES:
        raise InputError(f"slice {slice_index} would hold {frames} frames x {spokes} spokes x {samples} samples = "
                         f"{per_coil:,} samples per coil, more than the limit of {MAX_SLICE_SAMPLES:,}: {fix}")
    need = per_coil * channels * 8
    got = received * samples * channels * 8
    if need > EXPANSION_FLOOR_BYTES and need > MAX_EXPANSION * got:
        raise InputError(f"slice {slice_index}: {cause} would take {_size(need)} of k-space for {_size(got)} of "
                         f"spokes received (more than {MAX_EXPANSION} times): {fix}")


def check_realtime(info: EncodingInfo, phases: np.ndarray, spokes_per_frame: int) -> None:
    """Binning needs a real-time stream: every ``idx.phase`` equal and no header phase limit above its minimum."""
    lo, hi = info.limits.get("phase", (0, 0))
    varying = not (phases == phases[0]).all()
    if hi > lo or varying:
        n = hi - lo + 1 if hi > lo else len(np.unique(phases))
        raise InputError(f"binning into {spokes_per_frame} spokes per frame was requested, but the data are a cine "
                         f"with {n} frames numbered in idx.phase: drop --spokes-per-frame (binning.spokes_per_frame=0) "
                         "to reconstruct those frames; binning applies to real-time streams without a phase index")


def check_binning(slice_index: int, n_spokes: int, spokes_per_frame: int) -> None:
    """A slice must hold at least one whole frame of the requested binning."""
    if n_spokes < spokes_per_frame:
        raise InputError(f"slice {slice_index} has {n_spokes} imaging spokes, too few for one frame of the "
                         f"requested {spokes_per_frame} spokes per frame: lower --spokes-per-frame "
                         f"(binning.spokes_per_frame) to at most {n_spokes}")


def check_frames_complete(slice_index: int, counts: np.ndarray, first_phase: int) -> None:
    """Refuse a slice where a frame between the phase limits has no spoke."""
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise InputError(f"slice {slice_index} has no spokes in idx.phase {_list(empty + first_phase)} although "
                         f"phases {first_phase}..{first_phase + len(counts) - 1} are expected: send every frame, or "
                         "fix encodingLimits/phase")


def check_counters(info: EncodingInfo, counters: np.ndarray) -> None:
    """Without ``traj`` the spoke counter sets the angle: it must lie within the header's step-1 limit."""
    if "kspace_encoding_step_1" not in info.limits:
        return
    lo, hi = info.limits["kspace_encoding_step_1"]
    bad = counters[(counters < lo) | (counters > hi)]
    if bad.size:
        raise InputError(f"idx.kspace_encode_step_1 {_list(bad)} is outside the header's limit {lo}..{hi}; without "
                         "traj this counter sets the spoke angle: fix encodingLimits/kspace_encoding_step_1 or the "
                         "counters, or store traj")


def check_traj_range_computed(traj: np.ndarray, dk: float) -> None:
    """A trajectory computed from the header must also stay within |k| ≤ 0.5 cycles/pixel."""
    if traj.size == 0:
        return
    radius = float(np.sqrt(np.max(traj[..., 0].astype(np.float64) ** 2 + traj[..., 1].astype(np.float64) ** 2)))
    if radius > 0.5 + TRAJ_TOLERANCE:
        raise InputError(f"the trajectory computed from the header reaches |k| = {radius:.4g} cycles/pixel (readout "
                         f"spacing {dk:.4g} from the fields of view and recon matrix, and center_sample): fix "
                         "encodedSpace/reconSpace fieldOfView_mm or center_sample, or store traj")
