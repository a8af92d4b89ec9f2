"""The ISMRMRD XML header: building one for radial cine data, parsing one, and reading what the reader needs.

Headers are xsdata objects (``ismrmrd.xsd.ismrmrdHeader``). They are always built with keyword arguments, which
works on ismrmrd-python 1.14 and 1.15 (1.15 makes the required fields keyword-only).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

import ismrmrd.xsd as xsd
from xsdata.exceptions import ConverterWarning
from xsdata.formats.dataclass.serializers import XmlSerializer

from dainr.errors import InputError, one_line

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"

log = logging.getLogger(__name__)

#: Largest matrix size accepted in any direction, checked before anything is allocated.
MAX_MATRIX = 4096

#: Header trajectory names the reader accepts (``encoding[0].trajectory``).
RADIAL_TRAJECTORIES = ("radial", "goldenangle")

#: Encoding-limit names read from the header; the others are advisory and ignored.
_LIMIT_NAMES = ("kspace_encoding_step_1", "slice", "phase")

#: Largest value an encoding counter (``idx.slice``, ``idx.phase``, ``idx.kspace_encode_step_1``) can hold: they are
#: uint16 fields of the acquisition header, so a header limit above it can never be met by data.
MAX_COUNTER = 65535

#: H1 resonance frequency of a nominal 3 T system (2.89 T), Hz.
DEFAULT_H1_HZ = 123_200_000


def _limit(maximum: int, center: int = 0, minimum: int = 0) -> xsd.limitType:
    return xsd.limitType(minimum=int(minimum), maximum=int(maximum), center=int(center))


def build_header(matrix: tuple[int, int], fov_mm: tuple[float, float, float], n_coils: int, trajectory: str,
                 n_frames: int, n_slices: int, n_spokes_total_per_slice: int, oversampling: int = 2,
                 trajectory_identifier: str | None = None, *, spoke_counter_start: int = 0,
                 h1_frequency_hz: int = DEFAULT_H1_HZ, field_strength_t: float = 2.89, tr_ms: float = 2.5,
                 measurement_id: str = "DAINR_0001") -> xsd.ismrmrdHeader:
    """An ISMRMRD header for a 2D radial cine of ``n_slices`` slices.

    Parameters
    ----------
    matrix:
        ``(H, W)`` reconstruction matrix (rows = y, columns = x).
    fov_mm:
        Reconstructed field of view ``(x, y, z)`` in mm (z = slice thickness).
    n_coils:
        Receiver channels.
    trajectory:
        ``"radial"`` (uniform angles per frame) or ``"goldenangle"``.
    n_frames, n_slices:
        Cardiac phases (``idx.phase``) and slices (``idx.slice``).
    n_spokes_total_per_slice:
        Spokes of one slice over all its frames.
    oversampling:
        Readout oversampling: the encoded space is ``oversampling`` × the recon space in-plane (matrix and FOV), so a
        spoke has ``Ns = oversampling·W`` samples and the sample spacing is ``1/Ns`` cycles/pixel.
    trajectory_identifier:
        Optional ``trajectoryDescription/identifier``; ``"tddip"`` selects the reference code's trajectory.
    spoke_counter_start:
        First value of the global spoke counter ``idx.kspace_encode_step_1``. The counter runs over all slices and is
        never reset, so its limit is ``[start, start + n_slices·n_spokes_total_per_slice − 1]``.
    h1_frequency_hz, field_strength_t, tr_ms, measurement_id:
        Realistic acquisition facts for ``experimentalConditions``, ``acquisitionSystemInformation``,
        ``sequenceParameters`` and ``measurementInformation``.

    Returns
    -------
    The xsdata ``ismrmrdHeader``; serialise it with ``header.toXML("utf-8")``.
    """
    if trajectory not in RADIAL_TRAJECTORIES:
        raise ValueError(f"trajectory must be one of {RADIAL_TRAJECTORIES}, not {trajectory!r}")
    h, w = (int(m) for m in matrix)
    if min(h, w, n_coils, n_frames, n_slices, n_spokes_total_per_slice, oversampling) < 1:
        raise ValueError("matrix, coils, frames, slices, spokes and oversampling must all be positive")
    fx, fy, fz = (float(v) for v in fov_mm)
    last_counter = spoke_counter_start + n_slices * n_spokes_total_per_slice - 1
    if last_counter > 65535:
        raise ValueError(f"the global spoke counter would reach {last_counter}, beyond the uint16 idx range")
    encoded = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=oversampling * w, y=oversampling * h, z=1),
        fieldOfView_mm=xsd.fieldOfViewMm(x=oversampling * fx, y=oversampling * fy, z=fz))
    recon = xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=w, y=h, z=1),
                                  fieldOfView_mm=xsd.fieldOfViewMm(x=fx, y=fy, z=fz))
    zero = _limit(0)
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_0=_limit(oversampling * w - 1, (oversampling * w) // 2),
        kspace_encoding_step_1=_limit(last_counter, 0, spoke_counter_start),
        kspace_encoding_step_2=zero, average=zero, contrast=zero, repetition=zero, set=zero, segment=zero,
        slice=_limit(n_slices - 1), phase=_limit(n_frames - 1))
    description = None
    if trajectory_identifier is not None:
        description = xsd.trajectoryDescriptionType(identifier=trajectory_identifier)
    encoding = xsd.encodingType(encodedSpace=encoded, reconSpace=recon, encodingLimits=limits,
                                trajectory=xsd.trajectoryType(trajectory), trajectoryDescription=description)
    # No <version>: C++ ISMRMRD's serialize() (Gadgetron re-serialises every header) throws unless it equals the
    # library's own schema version, which differs between releases; the element is optional.
    return xsd.ismrmrdHeader(
        measurementInformation=xsd.measurementInformationType(
            measurementID=measurement_id, patientPosition=xsd.patientPositionType.HFS,
            protocolName="dainr_radial_cine"),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor="DA-INR Recon", systemModel="simulated", systemFieldStrength_T=field_strength_t,
            receiverChannels=int(n_coils)),
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=int(h1_frequency_hz)),
        encoding=[encoding],
        sequenceParameters=xsd.sequenceParametersType(TR=[float(tr_ms)]),
    )


def header_to_xml(header: xsd.ismrmrdHeader) -> bytes:
    """Serialise an xsdata header to UTF-8 XML bytes.

    Uses xsdata's serializer directly: ismrmrd-python 1.14.0's ``ToXML`` (Gadgetron's environment) fails with the
    xsdata releases that install beside it. A ``version`` set on the header is left out (see :func:`without_version`).
    """
    return without_version(XmlSerializer().render(header, ns_map={None: ISMRMRD_NS}).encode("utf-8"))


#: ``<version>…</version>`` as the first child of the root (its place in the schema's sequence), any prefix.
_VERSION_ELEMENT = re.compile(rb"(<(?:[\w.-]+:)?ismrmrdHeader\b[^>]*>\s*)<((?:[\w.-]+:)?)version\s*>[^<]*</\2version\s*>\s*")


def without_version(xml: bytes | str) -> bytes:
    """The header XML with its optional ``<version>`` element removed, every other byte as it was.

    C++ ISMRMRD's ``serialize`` throws "XML header version does not match library schema version" unless the
    version equals that library's own (8 in 1.8, 15 in 1.15), so a file with any version breaks some release of
    Gadgetron and the ISMRMRD tools; a file without one works with all. Every header the project writes goes
    through this; headers it reads may carry any version.
    """
    data = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
    return _VERSION_ELEMENT.sub(rb"\1", data, count=1)


def _converter_problems(caught: list[warnings.WarningMessage]) -> list[str]:
    """xsdata's ``ConverterWarning`` s (a value its type cannot hold, left as text), each as one short phrase;
    other warnings are passed on."""
    problems = []
    for w in caught:
        if issubclass(w.category, ConverterWarning):
            # "Failed to convert value for `matrixSizeType.x`\n  `abc` is not a valid `int`"
            text = one_line(w.message).replace("Failed to convert value for ", "")
            problems.append(text.replace("` `", "`: `", 1))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return problems


def parse_header(xml: bytes | str) -> xsd.ismrmrdHeader:
    """Parse ISMRMRD XML (trailing NULs, as sent by MRD clients, are stripped) and check its encoding 0.

    A value that the ISMRMRD schema's type cannot hold (xsdata's ``ConverterWarning``, e.g. ``<x>abc</x>``) never
    reaches stderr as a warning: where DA-INR reads that value the header is refused, and the refusal's one line names
    it; elsewhere (fields DA-INR does not use) it is logged as ignored, on one line.

    Raises
    ------
    InputError
        One line naming the cause and the fix, when the XML is not an ISMRMRD header or its encoding 0 is refused
        (:func:`encoding_info`).
    """
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    xml = bytes(xml).rstrip(b"\0 \t\r\n")
    if not xml:
        raise InputError("the ISMRMRD XML header is empty: write a valid header into /dataset/xml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConverterWarning)
        try:
            header = xsd.CreateFromDocument(xml)
        except Exception as exc:  # xsdata ParserError, TypeError for missing elements, UnicodeError, ...
            header, error = None, exc
    problems = _converter_problems(caught)
    unreadable = f" (values the schema refuses: {'; '.join(problems)})" if problems else ""
    if header is None:
        reason = one_line(error)[:200] or type(error).__name__
        raise InputError(f"the XML header is not a valid ISMRMRD header ({reason}){unreadable}: fix the header so "
                         "it follows the ISMRMRD schema (namespace http://www.ismrm.org/ISMRMRD)")
    if not isinstance(header, xsd.ismrmrdHeader):
        raise InputError("the XML header is not an ISMRMRD header: its root must be <ismrmrdHeader> in namespace "
                         "http://www.ismrm.org/ISMRMRD")
    try:
        encoding_info(header)
    except InputError as exc:
        raise InputError(f"{exc}{unreadable}") from None
    if problems:
        log.warning("ignoring header values the ISMRMRD schema refuses, which DA-INR does not use: %s",
                    "; ".join(problems))
    return header


def _number(value: object, kind: type, where: str) -> int | float:
    """A header number that xsdata may have left as text (its ``ConverterWarning``): refused in one line."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise InputError(f"the header's {where} is {str(value)!r}, not {what}: fix it in the header") from None


@dataclass(frozen=True)
class EncodingInfo:
    """What the reader takes from ``encoding[0]`` of a header.

    Attributes
    ----------
    trajectory:
        ``"radial"`` or ``"goldenangle"``.
    identifier:
        ``trajectoryDescription/identifier`` or None.
    recon_matrix, encoded_matrix:
        ``(x, y, z)`` matrix sizes.
    recon_fov_mm, encoded_fov_mm:
        ``(x, y, z)`` fields of view in mm.
    limits:
        ``{name: (minimum, maximum)}`` for ``kspace_encoding_step_1``, ``slice`` and ``phase`` where the header gives
        them; absent names are derived from the data.
    """

    trajectory: str
    identifier: str | None
    recon_matrix: tuple[int, int, int]
    encoded_matrix: tuple[int, int, int]
    recon_fov_mm: tuple[float, float, float]
    encoded_fov_mm: tuple[float, float, float]
    limits: dict[str, tuple[int, int]]

    @property
    def readout_dk(self) -> float:
        """Readout sample spacing ``reconFOV / (encodedFOV · reconMatrix)`` in cycles/pixel (read direction, x)."""
        return self.recon_fov_mm[0] / (self.encoded_fov_mm[0] * self.recon_matrix[0])


def _space(enc, name: str) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    space = getattr(enc, name, None)
    matrix = getattr(space, "matrixSize", None)
    fov = getattr(space, "fieldOfView_mm", None)
    if matrix is None or fov is None:
        raise InputError(f"the ISMRMRD header has no {name} matrixSize/fieldOfView_mm in encoding 0: "
                         "add them to the header")
    m = tuple(_number(getattr(matrix, a), int, f"{name} matrixSize {a}") if getattr(matrix, a) is not None else 1
              for a in "xyz")
    for axis, v in zip("xyz", m):
        if v <= 0 or v > MAX_MATRIX:
            raise InputError(f"the header's {name} matrix size {axis} = {v} is not in 1..{MAX_MATRIX}: "
                             f"fix encoding/{name}/matrixSize in the header")
    f = tuple(_number(getattr(fov, a), float, f"{name} fieldOfView_mm {a}") if getattr(fov, a) is not None else 0.0
              for a in "xyz")
    return m, f


def encoding_info(header: xsd.ismrmrdHeader) -> EncodingInfo:
    """Check ``encoding[0]`` against INPUT_POLICY.md §2 and return what the reader needs."""
    encodings = getattr(header, "encoding", None) or []
    if not encodings:
        raise InputError("the ISMRMRD header has no <encoding>: add an encoding with the radial trajectory, "
                         "encoded and recon spaces")
    enc = encodings[0]
    traj = getattr(enc, "trajectory", None)
    traj_name = getattr(traj, "value", traj)
    if traj_name not in RADIAL_TRAJECTORIES:
        raise InputError(f"encoding 0 has trajectory {traj_name!r}, but DA-INR reconstructs radial data only: "
                         "use a radial or goldenangle acquisition (or set <trajectory> if the data are radial)")
    recon_m, recon_f = _space(enc, "reconSpace")
    enc_m, enc_f = _space(enc, "encodedSpace")
    if recon_f[0] <= 0 or enc_f[0] <= 0:
        raise InputError("the header's fieldOfView_mm x must be positive in encodedSpace and reconSpace: "
                         "fix the header's fields of view")
    limits: dict[str, tuple[int, int]] = {}
    enc_limits = getattr(enc, "encodingLimits", None)
    for name in _LIMIT_NAMES:
        lim = getattr(enc_limits, name, None) if enc_limits is not None else None
        if lim is not None and lim.maximum is not None:
            lo = _number(lim.minimum or 0, int, f"encodingLimits/{name} minimum")
            hi = _number(lim.maximum, int, f"encodingLimits/{name} maximum")
            if hi < lo:
                raise InputError(f"encodingLimits/{name} has maximum {hi} below minimum {lo}: fix the header")
            if lo < 0 or hi > MAX_COUNTER:
                raise InputError(f"encodingLimits/{name} is {lo}..{hi}, outside 0..{MAX_COUNTER}, the range of the "
                                 f"acquisitions' uint16 idx counters: fix encodingLimits/{name} in the header")
            limits[name] = (lo, hi)
    desc = getattr(enc, "trajectoryDescription", None)
    identifier = getattr(desc, "identifier", None) if desc is not None else None
    return EncodingInfo(trajectory=traj_name, identifier=identifier, recon_matrix=recon_m, encoded_matrix=enc_m,
                        recon_fov_mm=recon_f, encoded_fov_mm=enc_f, limits=limits)
