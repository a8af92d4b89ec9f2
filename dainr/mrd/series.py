"""Assembly of ISMRMRD acquisitions into one :class:`~dainr.data.CineData` per slice.

Rules (ARCHITECTURE.md, INPUT_POLICY.md):

* frames are ``idx.phase`` (between the header's phase limits, or the data's range where the header has none),
  slices are ``idx.slice``; slices come out sorted by ``idx.slice``;
* noise scans (``ACQ_IS_NOISE_MEASUREMENT``) are concatenated into ``noise`` ``(coils, n)``; navigator,
  phase-correction, dummy, feedback, phase-stabilisation and calibration scans (unless also flagged for imaging),
  and acquisitions of encodings other than 0, are skipped;
* within a frame, spokes keep their arrival order; a frame with fewer spokes than the longest is zero-padded at the
  end and flagged False in ``spoke_mask``;
* real-time radial (a continuous stream without a phase index: every ``idx.phase`` equal and no header phase limit
  above its minimum) is binned when a :class:`Binning` is given: each slice's spokes, in arrival order, make frames of
  ``spokes_per_frame`` consecutive spokes, a new frame every ``stride`` spokes (``stride < spokes_per_frame`` is a
  sliding window, a spoke then belongs to several frames); spokes after the last whole frame are dropped (logged).
  Frame f of a slice holds its spokes ``f·stride .. f·stride + spokes_per_frame − 1``; its reference header (time
  stamps, geometry of the output image) is its first spoke's;
* ``traj`` is used when present (2 columns, or 3 where the third is a density weight that becomes ``dcw``);
  otherwise the trajectory is computed from the header (see :func:`computed_trajectory`);
* exact duplicates (same header and samples) are dropped with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np

from dainr.config import BinningConfig, TrajectoryConfig
from dainr.data import CineData, SliceGeometry
from dainr.errors import ConfigError, InputError, NoImagingData, one_line
from dainr.mrd.acquisitions import SKIPPED_FLAGS, AcquisitionLike, AcquisitionTable, header_of
from dainr.mrd.header import EncodingInfo, encoding_info, header_to_xml, parse_header
from dainr.mrd import validation as check
from dainr.physics.trajectory import TRAJECTORY_KINDS, angles_from_counter, readout_radii, trajectory_from_angles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrajectoryOverride:
    """Overrides of how spoke angles are computed for data without ``traj``.

    Attributes
    ----------
    kind:
        ``goldenangle``, ``uniform`` (``radial`` is accepted as its ISMRMRD name) or ``tddip``; None keeps the
        header's choice.
    angle_increment_deg:
        Angle between successive spokes (golden angle: per counter step; uniform: per spoke in a frame), in degrees.
    ignore_traj:
        Compute the trajectory even where the acquisitions carry ``traj`` (density weights are then dropped too).
    """

    kind: str | None = None
    angle_increment_deg: float | None = None
    ignore_traj: bool = False

    @classmethod
    def from_config(cls, cfg: TrajectoryConfig) -> TrajectoryOverride:
        """The override a config's ``trajectory`` section asks for (empty/0 = the header's rule)."""
        return cls(kind=cfg.kind or None, angle_increment_deg=cfg.angle_increment_deg or None)


@dataclass(frozen=True)
class Binning:
    """Binning of a real-time radial stream (no phase index) into frames at reconstruction time.

    Attributes
    ----------
    spokes_per_frame:
        Consecutive spokes in each frame, S (> 0).
    stride:
        Spokes from the start of one frame to the start of the next; 0 means S (frames do not overlap). A stride
        below S is a sliding window.
    """

    spokes_per_frame: int
    stride: int = 0

    @classmethod
    def from_config(cls, cfg: BinningConfig) -> Binning | None:
        """The binning a config's ``binning`` section asks for; None when it asks for none (frames from idx.phase)."""
        return cls(cfg.spokes_per_frame, cfg.stride) if cfg.spokes_per_frame else None

    def __post_init__(self) -> None:
        if self.spokes_per_frame < 1:
            raise ConfigError(f"spokes per frame must be >= 1, got {self.spokes_per_frame}")
        if not 0 <= self.stride <= self.spokes_per_frame:
            raise ConfigError(f"the binning stride must be in 0..{self.spokes_per_frame} (the spokes per frame; "
                              f"0 = no overlap), got {self.stride}")

    @property
    def step(self) -> int:
        """Spokes between frame starts."""
        return self.stride or self.spokes_per_frame

    def frames_for(self, n_spokes: int) -> int:
        """Whole frames that ``n_spokes`` consecutive spokes make (0 when fewer than S)."""
        if n_spokes < self.spokes_per_frame:
            return 0
        return (n_spokes - self.spokes_per_frame) // self.step + 1

    def members(self, n_spokes: int) -> tuple[np.ndarray, np.ndarray]:
        """``(spoke, frame)`` pairs, frame-major: spoke positions (in arrival order) and the frame each one feeds."""
        n_frames = self.frames_for(n_spokes)
        frame = np.repeat(np.arange(n_frames), self.spokes_per_frame)
        spoke = frame * self.step + np.tile(np.arange(self.spokes_per_frame), n_frames)
        return spoke.astype(np.int64), frame.astype(np.int64)


@dataclass
class RawSeries:
    """Everything read from a raw input.

    Attributes
    ----------
    header:
        The parsed xsdata ``ismrmrdHeader``.
    header_xml:
        The header as XML bytes (as received, trailing NULs stripped).
    slices:
        One :class:`CineData` per slice, sorted by ``idx.slice``.
    noise:
        ``(coils, n)`` complex64 samples of the noise scans, or None; also set on every slice's ``noise``.
    first_slice:
        Minimum of the header's slice limits (0 without them), the origin of the image numbering
        (:func:`dainr.mrd.images.image_index_start`).
    """

    header: xsd.ismrmrdHeader
    header_xml: bytes
    slices: list[CineData]
    noise: np.ndarray | None = None
    first_slice: int = 0


def first_slice(info: EncodingInfo) -> int:
    """Minimum of the header's slice limits, 0 without them."""
    return info.limits.get("slice", (0, 0))[0]


def trajectory_kind(info: EncodingInfo, override: TrajectoryOverride | None = None) -> str:
    """The angle rule for spokes without ``traj``: override, else ``tddip`` by identifier, else the header enum."""
    if override is not None and override.kind is not None:
        kind = "uniform" if override.kind == "radial" else override.kind
        if kind not in TRAJECTORY_KINDS:
            raise ConfigError(f"unknown trajectory kind {override.kind!r}: choose one of "
                              f"{', '.join(TRAJECTORY_KINDS)} (or radial)")
        return kind
    if info.identifier is not None and info.identifier.strip().lower() == "tddip":
        return "tddip"
    return "goldenangle" if info.trajectory == "goldenangle" else "uniform"


def computed_trajectory(kind: str, counters: np.ndarray, spoke_in_frame: np.ndarray, spokes_in_frame: np.ndarray,
                        centers: np.ndarray, n_samples: int, dk: float,
                        angle_increment_rad: float | None = None) -> np.ndarray:
    """Trajectory of spokes that arrive without ``traj``.

    Parameters
    ----------
    kind:
        ``goldenangle`` (θ from the global counter ``idx.kspace_encode_step_1``), ``uniform`` (θ = π·s/S from the
        spoke's position s among the S spokes of its frame) or ``tddip`` (the reference code's rule on the counter).
    counters, spoke_in_frame, spokes_in_frame, centers:
        ``(M,)`` per spoke: counter, position in its frame, spokes in its frame, ``center_sample``.
    n_samples:
        Samples per spoke Ns.
    dk:
        Readout spacing in cycles/pixel, ``reconFOV / (encodedFOV · reconMatrix)`` (read direction).
    angle_increment_rad:
        Optional angle increment replacing the rule's default.

    Returns
    -------
    ``(M, Ns, 2)`` float32 in cycles/pixel. Sample m lies at radius ``(m − center_sample)·dk``; ``tddip`` uses the
    reference readout ``(m − (Ns − 1)/2)·dk`` (k = 0 between two samples) and ignores ``center_sample``.
    """
    angles = angles_from_counter(kind, counters, spoke_in_frame, spokes_in_frame, angle_increment_rad)
    out = np.empty((len(counters), n_samples, 2), np.float32)
    for c in np.unique(centers):
        sel = centers == c
        out[sel] = trajectory_from_angles(angles[sel], readout_radii(kind, n_samples, int(c), dk), kind)
    return out


def _imaging_rows(table: AcquisitionTable) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of imaging spokes and of noise scans."""
    noise = table.flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    skipped = np.zeros(len(table), bool)
    for flag in SKIPPED_FLAGS:
        skipped |= table.flag_set(flag)
    skipped |= (table.flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
                & ~table.flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING))
    other = (table.head["encoding_space_ref"] != 0) & ~noise
    if other.any():
        log.info("skipping %d acquisitions of encodings other than 0", int(other.sum()))
    if skipped.any():
        log.info("skipping %d navigator/phase-correction/dummy/calibration/feedback acquisitions", int(skipped.sum()))
    return np.flatnonzero(~noise & ~skipped & ~other), np.flatnonzero(noise)


def _samples(table: AcquisitionTable, i: int) -> np.ndarray:
    try:
        return table.samples(i)
    except ValueError as exc:
        raise InputError(f"acquisition {i} is inconsistent with its header ({one_line(exc)}): the data array "
                         "must hold active_channels x number_of_samples complex samples") from None


def _trajectory(table: AcquisitionTable, i: int) -> np.ndarray:
    try:
        return table.trajectory(i)
    except ValueError as exc:
        raise InputError(f"acquisition {i} traj is inconsistent with its header ({one_line(exc)}): traj must "
                         "hold number_of_samples x trajectory_dimensions values") from None


def _noise(table: AcquisitionTable, rows: np.ndarray, n_channels: int) -> np.ndarray | None:
    parts = []
    dropped = 0
    for i in rows:
        a = _samples(table, int(i))
        check.check_finite(a, f"noise scan {int(i)} samples")
        if a.shape[0] != n_channels:
            dropped += 1
            continue
        parts.append(a)
    if dropped:
        log.warning("dropped %d noise scans whose channel count differs from the imaging spokes' %d",
                    dropped, n_channels)
    return np.concatenate(parts, axis=1) if parts else None


def _drop_duplicates(table: AcquisitionTable, rows: np.ndarray) -> np.ndarray:
    """Rows without exact repeats (same 340-byte header, samples and traj as an earlier row)."""
    head = np.ascontiguousarray(table.head[rows])
    keys = head.view(np.dtype((np.void, head.dtype.itemsize)))
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    keep = np.ones(len(rows), bool)
    for group in np.flatnonzero(counts > 1):
        members = np.flatnonzero(inverse == group)
        firsts: list[int] = []
        for m in members:
            r = int(rows[m])
            same = any(np.array_equal(_samples(table, r), _samples(table, int(rows[f])))
                       and np.array_equal(np.asarray(table.traj[r]), np.asarray(table.traj[int(rows[f])]))
                       for f in firsts)
            if same:
                keep[m] = False
            else:
                firsts.append(m)
    if not keep.all():
        log.warning("dropped %d duplicated imaging acquisitions (same header and samples as an earlier one)",
                    int((~keep).sum()))
    return rows[keep]


def _geometry(table: AcquisitionTable, i: int, fov: tuple[float, float, float]) -> SliceGeometry:
    h = table.head[i]

    def vec(name: str) -> tuple[float, float, float]:
        return tuple(float(v) for v in h[name])

    return SliceGeometry(fov_mm=tuple(float(v) for v in fov), position=vec("position"), read_dir=vec("read_dir"),
                         phase_dir=vec("phase_dir"), slice_dir=vec("slice_dir"),
                         patient_table_position=vec("patient_table_position"))


def assemble_table(info: EncodingInfo, table: AcquisitionTable,
                   trajectory_override: TrajectoryOverride | None = None,
                   binning: Binning | None = None,
                   whole_series: bool = True) -> tuple[list[CineData], np.ndarray | None]:
    """The slices and noise of a checked header's acquisitions; see the module docstring for the rules.

    ``binning`` bins a real-time stream (all ``idx.phase`` equal, no multi-phase header) into frames; on data with
    cine frames in ``idx.phase`` it is refused (:class:`InputError`). ``whole_series`` False: the acquisitions are
    one group of a stream, so slices of the header absent from it are not warned about.

    Raises
    ------
    NoImagingData
        No imaging acquisition among them.
    InputError
        Any other refusal of INPUT_POLICY.md.
    """
    if len(table) == 0:
        raise InputError("the input holds no acquisitions: it must contain the radial imaging spokes")
    rows, noise_rows = _imaging_rows(table)
    if rows.size == 0:
        raise NoImagingData("the input has no imaging acquisitions (only noise, navigator, calibration or other "
                         "flagged scans): it must contain the radial imaging spokes")
    n_channels, n_samples, traj_dims = check.check_spoke_shapes(table, rows)
    noise = _noise(table, noise_rows, n_channels)
    rows = _drop_duplicates(table, rows)

    idx = table.head["idx"][rows]
    slices = idx["slice"].astype(np.int64)
    phases = idx["phase"].astype(np.int64)
    counters = idx["kspace_encode_step_1"].astype(np.int64)
    present = check.check_slices(info, slices, whole_series)
    if binning is not None:
        check.check_realtime(info, phases, binning.spokes_per_frame)
        first_phase = n_frames = 0
    else:
        first_phase, last_phase = check.phase_range(info, phases)
        n_frames = last_phase - first_phase + 1

    override = trajectory_override or TrajectoryOverride()
    use_traj = traj_dims > 0 and not override.ignore_traj
    kind = None
    increment = None
    if not use_traj:
        kind = trajectory_kind(info, override)
        check.check_counters(info, counters)
        if override.angle_increment_deg is not None:
            increment = float(np.deg2rad(override.angle_increment_deg))
        log.info("computing the trajectory from the header (%s)", kind)
    recon_x, recon_y = info.recon_matrix[0], info.recon_matrix[1]

    out: list[CineData] = []
    for s in present:
        arrival = np.flatnonzero(slices == s)  # this slice's spokes in arrival order
        if binning is not None:
            check.check_binning(int(s), len(arrival), binning.spokes_per_frame)
            check.check_allocation(
                int(s), binning.frames_for(len(arrival)), binning.spokes_per_frame, n_samples, n_channels,
                len(arrival), f"binning {binning.spokes_per_frame} spokes per frame every {binning.step} spoke(s)",
                f"use a binning.stride of at least {-(-binning.spokes_per_frame // check.MAX_EXPANSION)} "
                "(fewer overlapping frames) or fewer spokes per frame")
            pick, frame = binning.members(len(arrival))
            sel = arrival[pick]
            slice_frames = int(frame[-1]) + 1
            unused = len(arrival) - (int(pick[-1]) + 1)
            if unused:
                log.info("slice %d: %d spokes after the last whole frame of %d spokes are not used", int(s), unused,
                         binning.spokes_per_frame)
            log.info("slice %d: %d real-time spokes binned into %d frames of %d spokes (stride %d)", int(s),
                     len(arrival), slice_frames, binning.spokes_per_frame, binning.step)
        else:
            if n_frames == 1 and len(arrival) > 1:
                log.info("slice %d: one frame of %d spokes (no phase index); for a real-time stream, bin it into "
                         "frames with --spokes-per-frame (binning.spokes_per_frame)", int(s), len(arrival))
            frame = phases[arrival] - first_phase
            order = np.lexsort((arrival, frame))
            sel, frame = arrival[order], frame[order]
            slice_frames = n_frames
        counts = np.bincount(frame, minlength=slice_frames)
        if binning is None:
            check.check_frames_complete(int(s), counts, first_phase)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        spoke = np.arange(len(sel)) - starts[frame]
        n_spokes = int(counts.max())
        check.check_allocation(int(s), slice_frames, n_spokes, n_samples, n_channels, len(arrival),
                               f"padding {slice_frames} frames of {int(counts.min())}..{n_spokes} spokes to the longest",
                               "send frames with similar numbers of spokes (or fewer frames)")
        src = rows[sel]

        kspace = np.zeros((slice_frames, n_channels, n_spokes, n_samples), np.complex64)
        for j, r in enumerate(src):
            kspace[frame[j], :, spoke[j], :] = _samples(table, int(r))
        check.check_finite(kspace, f"slice {int(s)} imaging samples")

        dcw = None
        traj = np.zeros((slice_frames, n_spokes, n_samples, 2), np.float32)
        if use_traj:
            stored = np.zeros((len(src), n_samples, traj_dims), np.float32)
            for j, r in enumerate(src):
                stored[j] = _trajectory(table, int(r))
            check.check_finite(stored, f"slice {int(s)} traj values")
            check.check_traj_range(stored)
            traj[frame, spoke] = stored[..., :2]
            if traj_dims == 3:
                dcw = np.zeros((slice_frames, n_spokes, n_samples), np.float32)
                dcw[frame, spoke] = stored[..., 2]
        else:
            centers = table.head["center_sample"][src].astype(np.int64)
            if (centers == 0).any() and kind != "tddip":
                log.warning("center_sample is 0 on %d spokes without traj; assuming k = 0 at sample %d",
                            int((centers == 0).sum()), n_samples // 2)
                centers[centers == 0] = n_samples // 2
            computed = computed_trajectory(kind, counters[sel], spoke, counts[frame], centers, n_samples,
                                           info.readout_dk, increment)
            check.check_traj_range_computed(computed, info.readout_dk)
            traj[frame, spoke] = computed

        mask = np.arange(n_spokes)[None, :] < counts[:, None]
        first_of_frame = src[starts]
        out.append(CineData(
            kspace=kspace, traj=traj, matrix=(recon_y, recon_x),
            spoke_mask=None if mask.all() else mask, dcw=dcw, noise=noise, slice_index=int(s),
            geometry=_geometry(table, int(rows[arrival[0]]), info.recon_fov_mm),
            frame_refs=[header_of(table, int(r)) for r in first_of_frame]))
    return out, noise


def assemble_series(header: xsd.ismrmrdHeader | bytes | str, acquisitions: Iterable[AcquisitionLike] | AcquisitionTable,
                    *, header_xml: bytes | None = None,
                    trajectory_override: TrajectoryOverride | None = None,
                    binning: Binning | None = None, whole_series: bool = True) -> RawSeries:
    """Assemble acquisitions (received one by one, or read as a table) into a :class:`RawSeries`.

    Parameters
    ----------
    header:
        The parsed header (as ``gadgetron.external.Connection.header`` gives it) or its XML.
    acquisitions:
        ``ismrmrd.Acquisition`` objects (anything with ``getHead()``, ``data``, ``traj``) or an
        :class:`~dainr.mrd.acquisitions.AcquisitionTable`.
    header_xml:
        The header's XML as received; default: the XML given, or the parsed header re-serialised.
    trajectory_override:
        How to compute angles for data without ``traj``.
    binning:
        Bin a real-time stream (no phase index) into frames; None keeps the frames of ``idx.phase``.
    whole_series:
        False when the acquisitions are one group of a stream (a slice, a ``ReconData``): slices of the header that
        are absent are then not warned about.

    Raises
    ------
    NoImagingData
        When there is no imaging acquisition.
    InputError
        When the header or the acquisitions break INPUT_POLICY.md; the message is one line naming cause and fix.
    """
    if isinstance(header, (bytes, bytearray, str)):
        raw = header.encode("utf-8") if isinstance(header, str) else bytes(header)
        header = parse_header(raw)
        if header_xml is None:
            header_xml = raw.rstrip(b"\0")
    if header_xml is None:
        header_xml = header_to_xml(header)
    info = encoding_info(header)
    table = acquisitions if isinstance(acquisitions, AcquisitionTable) else \
        AcquisitionTable.from_acquisitions(acquisitions)
    slices, noise = assemble_table(info, table, trajectory_override, binning, whole_series)
    return RawSeries(header=header, header_xml=bytes(header_xml), slices=slices, noise=noise,
                     first_slice=first_slice(info))
