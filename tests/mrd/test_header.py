"""build_header and the header checks."""

from __future__ import annotations

import ismrmrd.xsd as xsd
import pytest

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
