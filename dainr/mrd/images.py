"""Reconstructed cines as ``ismrmrd.Image`` objects, and ISMRMRD image files.

Image series numbering
----------------------
* ``image_series_index``: one series per reconstruction, given by the caller (``dainr recon --series N``, default 1;
  the gadget and the server use their own setting). Every slice and frame of a reconstruction shares it, so a viewer
  shows one multi-slice cine; a file holds it as ``<group>/image_<image_series_index>``.
* ``slice`` = the acquisitions' ``idx.slice``; ``phase`` = the frame number, 0-based: ``idx.phase − first phase``
  for a cine, the bin number for a real-time stream binned at reconstruction time.
* ``image_index``: 1-based, running over slices × frames, slice-major (all frames of the first slice, then the next):
  ``image_index = 1 + (slice − first slice) · frames + frame``, where the first slice is the minimum of the header's
  slice limits (0 without them). This is :func:`image_index_start`, the only place the rule is written; every front
  end numbers through it, so a slice gets the same numbers whether it is reconstructed alone or with the others, from
  a file or from a stream. (Slices binned into different frame counts can share numbers; ``slice`` and ``phase``
  still tell their images apart.)

Geometry and time: each image carries ``field_of_view`` (the header's reconSpace FOV, mm) and the ``position``,
``read_dir``, ``phase_dir``, ``slice_dir``, ``patient_table_position``, time stamps (``acquisition_time_stamp``,
``physiology_time_stamp``), ``measurement_uid`` and user fields of its frame's reference acquisition (the first spoke
of the frame, in arrival order); without references the slice geometry is used.

Meta attributes (``ismrmrd.Meta``, the image's attribute string; Gadgetron's names), the same on every frame of a
slice, from :func:`image_meta`:

* ``GADGETRON_DataRole`` = ``Image``; ``GADGETRON_ImageComment`` = ``DA-INR Recon`` and the method
  (``dainr``, ``adjoint``, ``cgsense``);
* ``GADGETRON_ScaleRatio`` = ``r``, a power of two with ``r · max|pixel|`` in (2047, 4095]: multiplied by it, the
  slice's magnitudes fit 12-bit unsigned DICOM using at least 11 bits. The pixels themselves are stored as
  reconstructed (float32 magnitude or complex64); ``r`` tells a converter how to scale them;
* ``GADGETRON_WindowCenter`` = ``2048 / r``, ``GADGETRON_WindowWidth`` = ``4096 / r``, in the units of the stored
  pixels: the window that shows the 12-bit range, from 0 to at most twice the slice's maximum.

``r`` is a power of two so that it (and the window) is exact, and the same from every front end even where two
reconstructions differ in a last bit (:mod:`tests.gadget.compare`).

Rendered frames and motion series (DA-INR, :mod:`dainr.recon.rendering`)
-----------------------------------------------------------------------
* A cine rendered at another frame count: ``phase`` = the rendered frame number ``k``; its time stamps
  (``acquisition_time_stamp``, ``physiology_time_stamp``) are interpolated linearly between the two acquired frames
  around its position ``k·(F − 1)/(N − 1)``; the other header fields are the nearest acquired frame's. At another
  matrix, ``matrix_size`` is the rendered one and ``field_of_view`` is unchanged.
* Motion (:func:`to_map_images`): series ``series_index + 1`` (:data:`MOTION_SERIES_OFFSET`) holds one float32
  ``IMTYPE_REAL`` image per frame with **two channels**, the displacement to frame 0 in mm along x (channel 0: image
  columns, ``read_dir``) and y (channel 1: image rows, ``phase_dir``); series ``series_index + 2``
  (:data:`JACOBIAN_SERIES_OFFSET`) holds the Jacobian determinant (one channel, 1 = no area change). Same
  ``slice``, ``phase``, ``image_index``, geometry and time stamps as the cine's images of the frame.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import h5py
import ismrmrd
import numpy as np

from dainr.data import CineData
from dainr.errors import InputError
from dainr.mrd.atomic import atomic_path
from dainr.mrd.hdf5_lock import hdf5_locked
from dainr.mrd.header import without_version

_GEOMETRY = ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position")
#: ``image_series_index`` of the displacement images relative to the cine's (module docstring).
MOTION_SERIES_OFFSET = 1
#: ``image_series_index`` of the Jacobian-determinant images relative to the cine's.
JACOBIAN_SERIES_OFFSET = 2


def _reference(ref) -> ismrmrd.Acquisition:
    """A header-only acquisition to copy time stamps and user fields from (no sample buffers allocated)."""
    head = ismrmrd.AcquisitionHeader()
    if ref is not None:
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(bytes(ref.getHead() if hasattr(ref, "getHead") else ref))
    head.number_of_samples = 0
    head.active_channels = 0
    head.trajectory_dimensions = 0
    return ismrmrd.Acquisition(bytes(head))


def _frame_reference(refs: Sequence, position: float) -> ismrmrd.Acquisition:
    """The reference acquisition of an output frame at a (fractional) acquired-frame ``position``: the nearest
    frame's, with time stamps interpolated linearly between the two frames around it."""
    if not refs:
        return _reference(None)
    last = len(refs) - 1
    reference = _reference(refs[min(int(round(position)), last)])
    lo = min(int(np.floor(position)), last)
    w = float(position) - lo
    if w > 0 and lo < last:
        a, b = _reference(refs[lo]).getHead(), _reference(refs[lo + 1]).getHead()
        head = reference.getHead()
        head.acquisition_time_stamp = int(round((1 - w) * a.acquisition_time_stamp + w * b.acquisition_time_stamp))
        for i in range(len(head.physiology_time_stamp)):
            head.physiology_time_stamp[i] = int(round((1 - w) * a.physiology_time_stamp[i]
                                                      + w * b.physiology_time_stamp[i]))
        reference.setHead(head)
    return reference


def _output_reference(refs: Sequence, f: int, frame_positions: Sequence[float] | None) -> ismrmrd.Acquisition:
    """The reference acquisition of output frame ``f``: acquired frame ``f``'s, or, for frames rendered at
    ``frame_positions``, :func:`_frame_reference`'s."""
    if frame_positions is None:
        return _reference(refs[f] if f < len(refs) else None)
    return _frame_reference(refs, frame_positions[f])


def _frame_image(cine: CineData, arr: np.ndarray, reference: ismrmrd.Acquisition, image_type: int,
                 series_index: int, image_index: int, phase: int) -> ismrmrd.Image:
    """One image of a slice with its frame's header (module docstring)."""
    return ismrmrd.Image.from_array(
        arr, acquisition=reference, transpose=False, image_type=image_type, image_series_index=int(series_index),
        image_index=int(image_index), slice=int(cine.slice_index), phase=int(phase),
        field_of_view=tuple(float(v) for v in cine.geometry.fov_mm), **_frame_geometry(reference, cine.geometry))


def _set_attributes(img: ismrmrd.Image, attributes: str) -> None:
    img.attribute_string = attributes
    head = img.getHead()  # the header's length field must match, or C++ ISMRMRD reads no attributes
    head.attribute_string_len = len(attributes.encode("utf-8"))
    img.setHead(head)


def _check_index_range(start: int, n_frames: int) -> None:
    if start < 0 or start + n_frames - 1 > 65535:
        raise ValueError(f"image_index {start}..{start + n_frames - 1} does not fit the uint16 header field")


def _frame_geometry(reference: ismrmrd.Acquisition, geo) -> dict[str, tuple[float, float, float]]:
    """Geometry of one frame: its reference acquisition's, where that has direction vectors, else the slice's."""
    head = reference.getHead()
    dirs = [np.asarray(getattr(head, n), float) for n in ("read_dir", "phase_dir", "slice_dir")]
    if all(np.linalg.norm(d) > 0 for d in dirs):
        return {name: tuple(float(v) for v in getattr(head, name)) for name in _GEOMETRY}
    return {name: tuple(float(v) for v in getattr(geo, name)) for name in _GEOMETRY}


def image_index_start(slice_index: int, n_frames: int, first_slice: int = 0) -> int:
    """``image_index`` of frame 0 of a slice: ``1 + (slice_index − first_slice) · n_frames`` (module docstring).

    Parameters
    ----------
    slice_index:
        The slice's ``idx.slice``.
    n_frames:
        Frames of the slice.
    first_slice:
        Minimum of the header's slice limits (:attr:`dainr.mrd.RawSeries.first_slice`).
    """
    return 1 + (int(slice_index) - int(first_slice)) * int(n_frames)


#: Largest value of 12-bit unsigned DICOM pixels.
DICOM_12BIT_MAX = 4095


def image_meta(peak: float, method: str) -> ismrmrd.Meta:
    """The meta attributes of every frame of a slice (module docstring).

    Parameters
    ----------
    peak:
        The slice's largest pixel magnitude, over all frames.
    method:
        The reconstruction method, for ``GADGETRON_ImageComment``.
    """
    ratio = 2.0 ** math.floor(math.log2(DICOM_12BIT_MAX / peak)) if peak > 0 and math.isfinite(peak) else 1.0
    meta = ismrmrd.Meta()
    meta["GADGETRON_DataRole"] = "Image"
    meta["GADGETRON_ImageComment"] = ["DA-INR Recon", method] if method else ["DA-INR Recon"]
    meta["GADGETRON_ScaleRatio"] = repr(ratio)
    meta["GADGETRON_WindowCenter"] = repr((DICOM_12BIT_MAX + 1) / 2 / ratio)
    meta["GADGETRON_WindowWidth"] = repr((DICOM_12BIT_MAX + 1) / ratio)
    return meta


def to_images(cine: CineData, images: np.ndarray, series_index: int = 1, complex_output: bool = False, *,
              image_index_start: int, method: str = "", frame_positions: Sequence[float] | None = None
              ) -> list[ismrmrd.Image]:
    """One ``ismrmrd.Image`` per frame of a reconstructed slice.

    Parameters
    ----------
    cine:
        The slice the images come from: geometry, ``slice_index`` and ``frame_refs`` (per-frame acquisition headers,
        whose geometry, time stamps, physiology stamps and user fields are copied; see the module docstring).
    images:
        ``(frames, H, W)`` complex (``[..., y, x]``).
    series_index:
        ``image_series_index``.
    complex_output:
        complex64 images (``IMTYPE_COMPLEX``) instead of float32 magnitude (``IMTYPE_MAGNITUDE``).
    image_index_start:
        ``image_index`` of frame 0, from :func:`image_index_start` (the numbering of the module docstring).
    method:
        The reconstruction method, named in the meta attributes (:func:`image_meta`).
    frame_positions:
        ``(frames,)`` fractional acquired frame of every image when the frames were rendered at another count
        (:attr:`dainr.data.ReconResult.frame_positions`; time stamps interpolated); None: frame ``f`` is acquired
        frame ``f``.

    Returns
    -------
    ``frames`` images of shape ``(1, 1, H, W)`` with matrix_size ``(W, H, 1)``, ``field_of_view`` the recon FOV,
    and the slice's meta attributes.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (frames, H, W), not {images.shape}")
    n_frames = images.shape[0]
    start = int(image_index_start)
    _check_index_range(start, n_frames)
    refs = cine.frame_refs or []
    attributes = image_meta(float(np.abs(images).max(initial=0.0)), method).serialize()
    out = []
    for f in range(n_frames):
        if complex_output:
            arr, image_type = np.ascontiguousarray(images[f], np.complex64), ismrmrd.IMTYPE_COMPLEX
        else:
            arr, image_type = np.ascontiguousarray(np.abs(images[f]), np.float32), ismrmrd.IMTYPE_MAGNITUDE
        reference = _output_reference(refs, f, frame_positions)
        img = _frame_image(cine, arr, reference, image_type, series_index, start + f, f)
        _set_attributes(img, attributes)
        out.append(img)
    return out


def to_map_images(cine: CineData, maps: np.ndarray, series_index: int, *, image_index_start: int,
                  frame_positions: Sequence[float] | None = None) -> list[ismrmrd.Image]:
    """One float32 ``IMTYPE_REAL`` image per frame of a real-valued map of a slice (the displacement's two channels,
    the Jacobian's one), with the headers :func:`to_images` gives the cine's images of the same frames.

    Parameters
    ----------
    cine, image_index_start, frame_positions:
        As :func:`to_images`.
    maps:
        ``(frames, C, H, W)`` or ``(frames, H, W)`` (one channel) real values.
    series_index:
        ``image_series_index`` (the cine's + :data:`MOTION_SERIES_OFFSET` or :data:`JACOBIAN_SERIES_OFFSET`).

    Returns
    -------
    ``frames`` images of shape ``(C, 1, H, W)`` (``channels = C``), matrix_size ``(W, H, 1)``.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 3:
        maps = maps[:, None]
    if maps.ndim != 4:
        raise ValueError(f"maps must be (frames, C, H, W) or (frames, H, W), not {maps.shape}")
    start = int(image_index_start)
    _check_index_range(start, maps.shape[0])
    refs = cine.frame_refs or []
    return [_frame_image(cine, np.ascontiguousarray(maps[f][:, None]), _output_reference(refs, f, frame_positions),
                         ismrmrd.IMTYPE_REAL, series_index, start + f, f) for f in range(maps.shape[0])]


@hdf5_locked
def write_images(path: str | os.PathLike, image_list: Sequence[ismrmrd.Image], group: str = "dataset",
                 header_xml: bytes | str | None = None, *, new_group: bool = False, replace: bool = False) -> Path:
    """Write images as ``<group>/image_<image_series_index>`` (the layout of Gadgetron's clients).

    All images of one series must share a shape. ``header_xml``, when given, is written to ``<group>/xml`` (without
    ``<version>``, see :func:`dainr.mrd.header.without_version`). The file is always written under a temporary name
    and renamed at the end: an error leaves the previous file as it was, and no partial file.

    Parameters
    ----------
    new_group:
        False: the file is written anew (an existing file is replaced). True (as ``gadgetron_ismrmrd_client``
        stores each run): an existing file keeps its other groups and gets ``group`` added, which must not be in it
        yet unless ``replace``; a missing file is written anew.
    replace:
        With ``new_group``: an existing ``group`` is replaced (the file's other groups are kept).

    Raises
    ------
    InputError
        When images of one series differ in shape; with ``new_group``, when the file exists and is not HDF5, or
        already has ``group`` (without ``replace``).
    """
    path = Path(path)
    _check_shapes(image_list)
    keep = None
    if new_group and path.exists():
        if not h5py.is_hdf5(str(path)):
            raise InputError(f"{path} exists and is not an HDF5 file: choose another output file")
        with h5py.File(str(path), "r") as f:
            if group in f and not replace:
                raise InputError(f"{path} already has a group {group!r}: choose another group")
        keep = path
    with atomic_path(path) as tmp:
        if keep is not None:
            _copy_groups(keep, tmp, leave_out=group)
        _append(tmp, image_list, group, header_xml)
    return path


@hdf5_locked
def image_file_groups(path: str | os.PathLike) -> list[str] | None:
    """The groups of an ISMRMRD image file (``<group>/image_<n>``, as :func:`write_images` and Gadgetron's clients
    write them), or None when ``path`` is not one: not HDF5, raw acquisitions (``<group>/data``) in it, or no image
    group at all."""
    if not h5py.is_hdf5(str(path)):
        return None
    with h5py.File(str(path), "r") as f:
        groups = [name for name in f if isinstance(f[name], h5py.Group)]
        if any("data" in f[g] for g in groups):
            return None
        if not any(name.startswith("image_") for g in groups for name in f[g]):
            return None
        return groups


def _copy_groups(src: Path, dst: Path, leave_out: str) -> None:
    """Copy every top-level object (and the root attributes) of the HDF5 file ``src`` but ``leave_out`` into a new
    file ``dst``."""
    with h5py.File(str(src), "r") as fin, h5py.File(str(dst), "w") as fout:
        for key, value in fin.attrs.items():
            fout.attrs[key] = value
        for name in fin:
            if name != leave_out:
                fin.copy(fin[name], fout, name=name)


def _check_shapes(image_list: Sequence[ismrmrd.Image], shapes: dict[int, tuple] | None = None) -> None:
    """Every image of a series has one shape (``shapes``: series -> shape already written, updated)."""
    shapes = {} if shapes is None else shapes
    for img in image_list:
        series = int(img.image_series_index)
        if shapes.setdefault(series, img.data.shape) != img.data.shape:
            raise InputError(f"images of series {series} differ in shape ({shapes[series]} and {img.data.shape}); "
                             "give each shape its own image_series_index")


def _append(path: Path, image_list: Sequence[ismrmrd.Image], group: str, header_xml: bytes | str | None) -> None:
    dset = ismrmrd.Dataset(str(path), group, True)
    try:
        if header_xml is not None:
            dset.write_xml_header(without_version(header_xml))
        for img in image_list:
            dset.append_image(f"image_{int(img.image_series_index)}", img)
    finally:
        dset.close()


def _pixels(raw: np.ndarray) -> np.ndarray:
    if raw.dtype.names is not None:  # ISMRMRD stores complex as a (real, imag) compound
        return (raw["real"] + 1j * raw["imag"]).astype(np.complex128 if raw["real"].dtype == np.float64
                                                      else np.complex64)
    return raw


@hdf5_locked
def read_images(path: str | os.PathLike, group: str = "dataset") -> dict[int, list[ismrmrd.Image]]:
    """Read every ``<group>/image_<n>`` of an ISMRMRD file (read-only): ``{n: [images in stored order]}``."""
    out: dict[int, list[ismrmrd.Image]] = {}
    with h5py.File(str(path), "r") as f:
        grp = f[group]
        for name in grp:
            if not name.startswith("image_") or not isinstance(grp[name], h5py.Group):
                continue
            try:
                series = int(name[len("image_"):])
            except ValueError:
                continue
            node = grp[name]
            headers = node["header"][...]
            attributes = node["attributes"][...] if "attributes" in node else [""] * len(headers)
            data = node["data"]
            images = []
            for i in range(len(headers)):
                attr = attributes[i]
                attr = attr.decode("utf-8") if isinstance(attr, bytes) else str(attr)
                img = ismrmrd.Image(headers[i:i + 1].tobytes(), attr)
                img.data[:] = _pixels(data[i]).reshape(img.data.shape)
                images.append(img)
            out[series] = images
    return out
