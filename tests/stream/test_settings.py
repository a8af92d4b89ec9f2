"""ReconSettings: the same config from properties as from the CLI's flags; one-line refusals."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from dainr.config import load_config
from dainr.errors import ConfigError
from dainr.stream import ReconSettings, properties_from_element, properties_from_xml


def test_properties_give_the_cli_config():
    props = {"preset": "cpu-test", "method": "cgsense", "device": "cpu", "dainr.steps": "5",
             "prep.prewhiten": "false", "series_index": "4", "complex_output": "true"}
    s = ReconSettings.from_properties(props)
    expected = load_config("cpu-test", None, ["dainr.steps=5", "prep.prewhiten=false", "method=cgsense",
                                              "device=cpu"])
    assert s.config == expected
    assert s.series_index == 4 and s.complex_output is True


def test_defaults_and_aliases():
    s = ReconSettings.from_properties({})
    assert s.config == load_config("fast") and s.series_index == 1 and not s.complex_output
    s = ReconSettings.from_properties({"series": "2", "complex": "yes"})
    assert s.series_index == 2 and s.complex_output


@pytest.mark.parametrize("props, fragment", [
    ({"bogus": "1"}, "unknown property 'bogus'"),
    ({"preset": "nope"}, "unknown preset 'nope'"),
    ({"method": "fft"}, "config key 'method'"),
    ({"dainr.stepz": "3"}, "unknown config key 'dainr.stepz'"),
    ({"dainr.steps": "many"}, "dainr.steps"),
    ({"complex_output": "maybe"}, "complex_output"),
    ({"series_index": "0"}, "series_index"),
    ({"config_file": "/no/such.yaml"}, "cannot read config file"),
])
def test_bad_properties_are_one_line_errors(props, fragment):
    with pytest.raises(ConfigError) as info:
        ReconSettings.from_properties(props)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_config_file_property(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("dainr:\n  steps: 7\n")
    s = ReconSettings.from_properties({"preset": "cpu-test", "config_file": str(f)})
    assert s.config.dainr.steps == 7


def test_both_property_forms_and_duplicates():
    el = ET.fromstring('<configuration><property name="preset" value="cpu-test"/>'
                       '<property><name>method</name><value>adjoint</value></property></configuration>')
    assert properties_from_element(el) == {"preset": "cpu-test", "method": "adjoint"}
    dup = ET.fromstring('<configuration><property name="a" value="1"/><property name="a" value="2"/>'
                        '</configuration>')
    with pytest.raises(ConfigError, match="twice"):
        properties_from_element(dup)
    with pytest.raises(ConfigError, match="name and a value"):
        properties_from_element(ET.fromstring('<configuration><property name="a"/></configuration>'))


def test_properties_from_a_whole_chain_or_a_node():
    chain = ('<configuration><version>2</version><stream><gadget><name>g</name>'
             '<property name="x" value="1"/></gadget><external><execute name="gadget.dainr_gadget" '
             'target="recon" type="python"/><configuration><property name="preset" value="paper"/>'
             '</configuration></external></stream></configuration>')
    assert properties_from_xml(chain) == {"preset": "paper"}
    assert properties_from_xml(b'<configuration><property name="method" value="adjoint"/></configuration>\0') == \
        {"method": "adjoint"}
    with pytest.raises(ConfigError, match="not well-formed"):
        properties_from_xml("<configuration>")
