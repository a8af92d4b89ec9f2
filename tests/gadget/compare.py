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


#: Pixel tolerance of DA-INR comparisons, relative to the image maximum. The linear methods (adjoint, CG-SENSE) are
#: compared bit for bit. DA-INR is bit-identical across front ends in practice, but Adam's normalised steps amplify
#: a last-bit difference of the floating-point path (seen once in ~15 loaded CI-like runs: 6e-5 of the maximum), so
#: its cases allow this much rather than flake.
DAINR_TOLERANCE = 1e-3


def assert_same_images(got: list, expected: list, tolerance: float = 0.0) -> None:
    """Every image the same: the 198 header bytes, the attribute string and the pixels (bit for bit by default;
    within ``tolerance`` × the image maximum otherwise)."""
    assert len(got) == len(expected), f"{len(got)} images, expected {len(expected)}"
    for i, (a, b) in enumerate(zip(got, expected)):
        assert bytes(a.getHead()) == bytes(b.getHead()), f"image {i}: headers differ"
        assert a.attribute_string == b.attribute_string, f"image {i}: attributes differ"
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape, f"image {i}: type/shape differ"
        diff = float(np.abs(a.data - b.data).max())
        limit = tolerance * float(np.abs(b.data).max())
        assert diff <= limit if tolerance else np.array_equal(a.data, b.data), \
            f"image {i}: pixels differ (max |diff| {diff:.3g}, allowed {limit:.3g})"
