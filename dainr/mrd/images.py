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
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import h5py
import ismrmrd
import numpy as np

from dainr.data import CineData
from dainr.errors import InputError
from dainr.mrd.atomic import atomic_path
from dainr.mrd.header import without_version

_GEOMETRY = ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position")


def _reference(ref) -> ismrmrd.Acquisition:
    """A header-only acquisition to copy time stamps and user fields from (no sample buffers allocated)."""
    head = ismrmrd.AcquisitionHeader()
    if ref is not None:
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(bytes(ref.getHead() if hasattr(ref, "getHead") else ref))
    head.number_of_samples = 0
    head.active_channels = 0
    head.trajectory_dimensions = 0
    return ismrmrd.Acquisition(bytes(head))


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


def to_images(cine: CineData, images: np.ndarray, series_index: int = 1, complex_output: bool = False, *,
              image_index_start: int) -> list[ismrmrd.Image]:
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

    Returns
    -------
    ``frames`` images of shape ``(1, 1, H, W)`` with matrix_size ``(W, H, 1)``, ``field_of_view`` the recon FOV.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (frames, H, W), not {images.shape}")
    n_frames = images.shape[0]
    start = int(image_index_start)
    if start < 0 or start + n_frames - 1 > 65535:
        raise ValueError(f"image_index {start}..{start + n_frames - 1} does not fit the uint16 header field")
    refs = cine.frame_refs or []
    geo = cine.geometry
    out = []
    for f in range(n_frames):
        if complex_output:
            arr, image_type = np.ascontiguousarray(images[f], np.complex64), ismrmrd.IMTYPE_COMPLEX
        else:
            arr, image_type = np.ascontiguousarray(np.abs(images[f]), np.float32), ismrmrd.IMTYPE_MAGNITUDE
        reference = _reference(refs[f] if f < len(refs) else None)
        fields = _frame_geometry(reference, geo)
        img = ismrmrd.Image.from_array(
            arr, acquisition=reference, transpose=False,
            image_type=image_type, image_series_index=int(series_index), image_index=start + f,
            slice=int(cine.slice_index), phase=f, field_of_view=tuple(float(v) for v in geo.fov_mm), **fields)
        out.append(img)
    return out


def write_images(path: str | os.PathLike, image_list: Sequence[ismrmrd.Image], group: str = "dataset",
                 header_xml: bytes | str | None = None, *, new_group: bool = False) -> Path:
    """Write images as ``<group>/image_<image_series_index>`` (the layout of Gadgetron's clients).

    All images of one series must share a shape. ``header_xml``, when given, is written to ``<group>/xml`` (without
    ``<version>``, see :func:`dainr.mrd.header.without_version`).

    Parameters
    ----------
    new_group:
        False: the file is written anew, atomically (an existing file is replaced). True (as
        ``gadgetron_ismrmrd_client`` stores each run): an existing file gets ``group`` added, which must not be in it
        yet; a missing file is written anew.

    Raises
    ------
    InputError
        When images of one series differ in shape; with ``new_group``, when the file exists and is not HDF5, or
        already has ``group``.
    """
    path = Path(path)
    if new_group and path.exists():
        if not h5py.is_hdf5(str(path)):
            raise InputError(f"{path} exists and is not an HDF5 file: choose another output file")
        with h5py.File(str(path), "r") as f:
            if group in f:
                raise InputError(f"{path} already has a group {group!r}: choose another group")
        _check_shapes(image_list)
        _append(path, image_list, group, header_xml)
        return path
    _check_shapes(image_list)
    with atomic_path(path) as tmp:
        _append(tmp, image_list, group, header_xml)
    return path


@contextlib.contextmanager
def appending_images(path: str | os.PathLike, group: str = "dataset",
                     header_xml: bytes | str | None = None) -> Iterator[Callable[[Sequence[ismrmrd.Image]], None]]:
    """Write a new image file piece by piece, e.g. each slice's images while later slices are still reconstructed.

    Yields ``add(images)``, which appends images to a temporary file next to ``path`` (same layout, header and
    shape rule as :func:`write_images`, checked across all pieces). When the block ends without an error the file
    replaces ``path`` atomically; on an error nothing is left behind.
    """
    shapes: dict[int, tuple] = {}
    with atomic_path(path) as tmp:
        _append(tmp, [], group, header_xml)

        def add(images: Sequence[ismrmrd.Image]) -> None:
            _check_shapes(images, shapes)
            _append(tmp, images, group, None)

        yield add


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


def image_to_bytes(image: ismrmrd.Image) -> bytes:
    """An image in its MRD wire form (header, attributes, pixels): lossless, and picklable where the image is not."""
    out = io.BytesIO()
    image.serialize_into(out.write)
    return out.getvalue()


def image_from_bytes(data: bytes) -> ismrmrd.Image:
    """The image :func:`image_to_bytes` wrote."""
    return ismrmrd.Image.deserialize_from(io.BytesIO(data).read)


def _pixels(raw: np.ndarray) -> np.ndarray:
    if raw.dtype.names is not None:  # ISMRMRD stores complex as a (real, imag) compound
        return (raw["real"] + 1j * raw["imag"]).astype(np.complex128 if raw["real"].dtype == np.float64
                                                      else np.complex64)
    return raw


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
