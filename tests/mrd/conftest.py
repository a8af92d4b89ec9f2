"""Fixtures for the dainr.mrd tests: a valid tiny raw file and its acquisitions."""

from __future__ import annotations

import pytest

from dainr.mrd import header_to_xml, write_raw

from .helpers import header_for, make_noise, make_slices, read_acquisitions


@pytest.fixture
def good_file(tmp_path):
    """A valid one-slice golden-angle file with traj and noise; returns (path, slices, header, noise)."""
    slices = make_slices()
    header = header_for(slices)
    noise = make_noise()
    path = tmp_path / "raw.h5"
    write_raw(path, header, slices, noise=noise)
    return path, slices, header, noise


@pytest.fixture
def good_acqs(good_file):
    """(xml bytes, acquisitions) of ``good_file``: material to break."""
    path, _, header, _ = good_file
    return header_to_xml(header), read_acquisitions(path)


@pytest.fixture
def cines():
    """Factory of tiny synthetic slices (16×16 matrix, 3 frames, 2 coils, 4 spokes of 32 samples)."""
    return make_slices
