"""Every chain in ``xml_configs/``: Gadgetron 4 (version 2) syntax, existing gadgets, importable external targets,
valid properties, and a comment header saying when to use it."""

from __future__ import annotations

import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dainr.stream import ReconSettings, properties_from_element

XML_DIR = Path(__file__).resolve().parents[2] / "xml_configs"
FILES = sorted(XML_DIR.glob("*.xml"))

#: Readers, writers and gadgets of Gadgetron 4 that our chains may name (dll -> classes), as in Gadgetron's
#: gadgets/examples/config/external_python_*.xml and gadgets/mri_core.
KNOWN = {
    "gadgetron_core_readers": {"AcquisitionReader", "WaveformReader"},
    "gadgetron_core_writers": {"ImageWriter"},
    "gadgetron_mricore": {"NoiseAdjustGadget", "AcquisitionAccumulateTriggerGadget", "BucketToBufferGadget"},
}
ACCUMULATE_DIMENSIONS = {"", "kspace_encode_step_1", "kspace_encode_step_2", "average", "slice", "contrast", "phase",
                         "repetition", "set", "segment", "n_acquisitions"}
BUFFER_DIMENSIONS = {"", "none", "average", "contrast", "phase", "repetition", "set", "segment", "slice"}


def test_there_are_three_chains():
    assert {f.name for f in FILES} >= {"dainr_raw.xml", "dainr_buffered.xml", "dainr_connect.xml"}


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_chain_is_gadgetron4_syntax(path):
    text = path.read_text()
    root = ET.fromstring(text)
    assert root.tag == "configuration" and root.findtext("version") == "2"
    for section, item in (("readers", "reader"), ("writers", "writer")):
        nodes = root.findall(f"{section}/{item}")
        assert nodes, f"no {item}s"
        for node in nodes:
            assert node.findtext("classname") in KNOWN[node.findtext("dll")]
    stream = root.find("stream")
    assert stream is not None and len(stream) > 0
    for node in stream:
        assert node.tag in ("gadget", "external"), node.tag
        if node.tag == "gadget":
            assert node.findtext("classname") in KNOWN[node.findtext("dll")]
            props = properties_from_element(node)
            for key in ("trigger_dimension", "sorting_dimension"):
                if key in props:
                    assert props[key] in ACCUMULATE_DIMENSIONS
            for key in ("N_dimension", "S_dimension"):
                if key in props:
                    assert props[key].lower() in BUFFER_DIMENSIONS
    assert stream[-1].tag == "external", "the DA-INR step ends the chain"


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_external_step_runs_our_gadget_with_valid_properties(path):
    root = ET.parse(path).getroot()
    externals = root.findall("stream/external")
    assert len(externals) == 1
    ext = externals[0]
    actions = [c for c in ext if c.tag in ("execute", "connect")]
    assert len(actions) == 1
    action = actions[0]
    if action.tag == "execute":
        assert action.get("type") == "python"
        module = importlib.import_module(action.get("name"))
        target = getattr(module, action.get("target"))
        assert callable(target)
    else:
        assert 0 < int(action.get("port")) < 65536
        assert action.get("address", "localhost") in ("localhost", "127.0.0.1")
    settings = ReconSettings.from_properties(properties_from_element(ext.find("configuration")))
    assert settings.config.method in ("dainr", "adjoint", "cgsense")


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_chain_has_a_comment_header(path):
    text = path.read_text()
    match = re.search(r"<!--(.*?)-->", text, re.S)
    assert match and text.index("<!--") < text.index("<configuration>")
    comment = match.group(1)
    assert "When to use" in comment and "Properties" in comment
    assert "gadgetron_ismrmrd_client" in comment
