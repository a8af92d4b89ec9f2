"""Tiny synthetic radial cines and helpers to write (bad) ISMRMRD files for the dainr.mrd tests."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from dainr.data import CineData, SliceGeometry
from dainr.errors import InputError
from dainr.mrd import build_header
from dainr.physics import radial_trajectory

H = W = 16
FRAMES, COILS, SPOKES = 3, 2, 4
NS = 2 * W


def make_slices(kind: str = "goldenangle", n_slices: int = 1, *, interleave: bool = False, counter_start: int = 0,
                seed: int = 0, n_frames: int = FRAMES) -> list[CineData]:
    """Slices whose trajectory matches the counters :func:`write_raw` assigns (acquisition order)."""
    rng = np.random.default_rng(seed)
    out = []
    for sl in range(n_slices):
        shape = (n_frames, COILS, SPOKES, NS)
        k = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
        if kind == "goldenangle" and interleave:
            traj = np.concatenate([radial_trajectory(kind, 1, SPOKES, NS,
                                                     first_counter=counter_start + (f * n_slices + sl) * SPOKES)
                                   for f in range(n_frames)])
        elif kind == "goldenangle":
            traj = radial_trajectory(kind, n_frames, SPOKES, NS, first_counter=counter_start + sl * n_frames * SPOKES)
        else:
            traj = radial_trajectory(kind, n_frames, SPOKES, NS)
        geo = SliceGeometry(fov_mm=(240.0, 240.0, 8.0), position=(1.5, -2.0, 10.0 * sl - 5.0),
                            read_dir=(0.0, 1.0, 0.0), phase_dir=(-1.0, 0.0, 0.0), slice_dir=(0.0, 0.0, 1.0),
                            patient_table_position=(0.0, 0.0, -1200.0))
        out.append(CineData(kspace=k, traj=traj, matrix=(H, W), slice_index=sl, geometry=geo))
    return out


def header_for(slices: list[CineData], trajectory: str = "goldenangle", identifier: str | None = None,
               counter_start: int = 0):
    c = slices[0]
    return build_header((H, W), c.geometry.fov_mm, c.n_coils, trajectory, c.n_frames, len(slices),
                        c.n_frames * c.n_spokes, trajectory_identifier=identifier,
                        spoke_counter_start=counter_start)


def make_noise(seed: int = 1, n: int = 70) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((COILS, n)) + 1j * rng.standard_normal((COILS, n))).astype(np.complex64)


def read_acquisitions(path) -> list[ismrmrd.Acquisition]:
    """All acquisitions of a file, one by one (as a streaming front end receives them)."""
    dset = ismrmrd.Dataset(str(path), "dataset", False)
    try:
        return [dset.read_acquisition(i) for i in range(dset.number_of_acquisitions())]
    finally:
        dset.close()


def write_acquisitions(path, xml: bytes | str, acquisitions) -> None:
    """A raw file from a header and (possibly broken) acquisitions."""
    dset = ismrmrd.Dataset(str(path), "dataset", True)
    try:
        dset.write_xml_header(xml.encode() if isinstance(xml, str) else xml)
        for acq in acquisitions:
            dset.append_acquisition(acq)
    finally:
        dset.close()


def assert_refused(fn, *fragments: str) -> str:
    """``fn()`` raises InputError with a one-line message containing every fragment (case-insensitive)."""
    with pytest.raises(InputError) as info:
        fn()
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    for frag in fragments:
        assert frag.lower() in msg.lower(), msg
    return msg
