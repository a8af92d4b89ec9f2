"""Equality of image lists (count, order, header bytes, attributes, pixels) and the CLI's reference images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dainr.cli import main
from dainr.mrd import read_images


def cli_images(raw: Path, out: Path, *args: str) -> list:
    """``dainr recon raw -o out ARGS`` and the images it wrote (series 1, stored order)."""
    assert main(["recon", str(raw), "-o", str(out), "-q", *args]) == 0
    return read_images(out)[1]


def assert_same_images(got: list, expected: list) -> None:
    """Every image identical: the 198 header bytes, the attribute string and every pixel."""
    assert len(got) == len(expected), f"{len(got)} images, expected {len(expected)}"
    for i, (a, b) in enumerate(zip(got, expected)):
        assert bytes(a.getHead()) == bytes(b.getHead()), f"image {i}: headers differ"
        assert a.attribute_string == b.attribute_string, f"image {i}: attributes differ"
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape, f"image {i}: type/shape differ"
        assert np.array_equal(a.data, b.data), f"image {i}: pixels differ (max |diff| " \
                                               f"{np.abs(a.data - b.data).max():.3g})"
