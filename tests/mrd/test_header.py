"""build_header and the header checks."""

from __future__ import annotations

import warnings

import ismrmrd.xsd as xsd
import pytest
from xsdata.exceptions import ConverterWarning

from dainr.errors import InputError
from dainr.mrd import build_header, encoding_info, header_to_xml, parse_header


def test_build_header_fields_survive_xml():
    hdr = build_header((16, 20), (240.0, 300.0, 8.0), 6, "goldenangle", n_frames=5, n_slices=3,
                       n_spokes_total_per_slice=40, trajectory_identifier="tddip")
    back = parse_header(header_to_xml(hdr))
    enc = back.encoding[0]
    assert enc.trajectory == xsd.trajectoryType.GOLDENANGLE
    assert enc.trajectoryDescription.identifier == "tddip"
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (20, 16)
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.fieldOfView_mm.x) == (40, 480.0)
    assert (enc.reconSpace.fieldOfView_mm.x, enc.reconSpace.fieldOfView_mm.y, enc.reconSpace.fieldOfView_mm.z) == \
        (240.0, 300.0, 8.0)
    lim = enc.encodingLimits
    assert lim.kspace_encoding_step_1.maximum == 3 * 40 - 1  # one counter over all slices
    assert (lim.slice.maximum, lim.phase.maximum) == (2, 4)
    assert back.acquisitionSystemInformation.receiverChannels == 6
    assert back.experimentalConditions.H1resonanceFrequency_Hz > 0
    info = encoding_info(back)
    assert info.trajectory == "goldenangle" and info.identifier == "tddip"
    assert info.readout_dk == pytest.approx(1 / 40)
    assert info.limits["phase"] == (0, 4)


def test_radial_header_and_counter_start():
    hdr = build_header((16, 16), (256.0, 256.0, 6.0), 2, "radial", 3, 1, 12, spoke_counter_start=100)
    assert hdr.encoding[0].trajectory.value == "radial"
    assert hdr.encoding[0].trajectoryDescription is None
    lim = hdr.encoding[0].encodingLimits.kspace_encoding_step_1
    assert (lim.minimum, lim.maximum) == (100, 111)


def test_parse_header_strips_trailing_nul():
    xml = header_to_xml(build_header((16, 16), (256.0, 256.0, 6.0), 2, "radial", 3, 1, 12))
    assert parse_header(xml + b"\0").encoding[0].reconSpace.matrixSize.x == 16


def test_build_header_rejects_cartesian():
    with pytest.raises(ValueError):
        build_header((16, 16), (256.0, 256.0, 6.0), 2, "cartesian", 3, 1, 12)


def _xml(**replace: str) -> bytes:
    xml = header_to_xml(build_header((16, 16), (256.0, 256.0, 6.0), 2, "radial", 3, 1, 12))
    for old, new in replace.items():
        assert old.encode() in xml
        xml = xml.replace(old.encode(), new.encode(), 1)
    return xml


@pytest.mark.parametrize("old, new, words", [
    ("<x>16</x>", "<x>abc</x>", ["reconSpace matrixSize x is 'abc', not an integer", "matrixSizeType.x"]),
    ("<trajectory>radial</trajectory>", "<trajectory>spiralx</trajectory>",
     ["trajectory 'spiralx'", "radial data only", "not a valid `trajectoryType`"]),
    ("<maximum>2</maximum>", "<maximum>2.5</maximum>", ["maximum is '2.5', not an integer"]),
])
def test_a_value_the_schema_refuses_is_folded_into_the_one_refusal(old, new, words):
    """xsdata's ConverterWarnings do not escape as warnings: the one InputError line names the value instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError) as refused:
            parse_header(_xml(**{old: new}))
    assert not [w for w in caught if issubclass(w.category, ConverterWarning)]
    message = str(refused.value)
    assert "\n" not in message
    for w in words:
        assert w in message, (w, message)


def test_a_value_the_schema_refuses_where_dainr_does_not_look_is_logged_once(caplog):
    xml = _xml(**{"<patientPosition>HFS</patientPosition>": "<patientPosition>XYZ</patientPosition>"})
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        header = parse_header(xml)
    assert not [w for w in caught if issubclass(w.category, ConverterWarning)]
    assert header.encoding[0].reconSpace.matrixSize.x == 16
    (record,) = caplog.records
    assert "patientPosition" in record.getMessage() and "XYZ" in record.getMessage()
