"""Gadgetron's side of ``<execute>`` with the header as real Gadgetron sends it: deserialised and re-serialised by
the C++ ISMRMRD library (``ismrmrd_test_xml``). Skipped without the C++ tools (``make interop`` builds them)."""

from __future__ import annotations

import pytest

from tests.gadget.compare import assert_same_images, cli_images
from tests.gadget.harness import FakeGadgetron, configuration_node, read_acquisitions
from tests.interop.tools import cpp_reserialised_header

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("raw", ["raw_single", "raw_multi_notraj"])
def test_gadget_on_a_cpp_reserialised_header_matches_cli(raw, request, tmp_path):
    raw = request.getfixturevalue(raw)
    header, acqs = read_acquisitions(raw)
    cpp_header = cpp_reserialised_header(header, tmp_path / "xml")
    assert cpp_header != header  # C++ writes its own layout
    gadgetron = FakeGadgetron(tmp_path / "gadget.log")
    try:
        reply = gadgetron.run(configuration_node(preset="cpu-test", method="cgsense", device="cpu"), cpp_header, acqs)
    finally:
        gadgetron.close()
    assert reply.errors == [] and reply.closed, reply.log
    assert_same_images(reply.images, cli_images(raw, tmp_path / "cli.h5", "--preset", "cpu-test", "--method",
                                                "cgsense"))
