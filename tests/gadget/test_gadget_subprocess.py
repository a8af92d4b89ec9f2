"""The gadget as Gadgetron runs it: ``python -m gadgetron PORT gadget.dainr_gadget recon`` against a fake Gadgetron.

Each case compares count, order, header bytes and pixels with ``dainr recon`` on the same file and config.
"""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from tests.gadget.compare import DAINR_TOLERANCE, assert_same_images, cli_images
from tests.gadget.harness import FakeGadgetron, bucket_to_buffer, configuration_node, read_acquisitions

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def gadgetron(tmp_path):
    fake = FakeGadgetron(tmp_path / "gadget.log")
    yield fake
    fake.close()


def _waveform() -> ismrmrd.Waveform:
    wav = ismrmrd.Waveform.from_array(np.arange(12, dtype=np.uint32).reshape(2, 6))
    wav.waveform_id = 3
    return wav


def test_single_slice_with_traj_matches_cli_and_passes_waveforms(gadgetron, raw_single, tmp_path):
    header, acqs = read_acquisitions(raw_single)
    wav = _waveform()
    config = configuration_node(preset="cpu-test", method="adjoint", device="cpu")
    reply = gadgetron.run(config, header, [wav, *acqs])
    assert reply.errors == [], reply.log
    assert reply.ids == [1026, 1022, 1022, 1022, 4], reply.log
    assert reply.returncode == 0
    back = reply.others[0][1]
    assert bytes(back.getHead()) == bytes(wav.getHead()) and np.array_equal(back.data, wav.data)
    assert_same_images(reply.images, cli_images(raw_single, tmp_path / "cli.h5", "--preset", "cpu-test",
                                                "--method", "adjoint"))


def test_multi_slice_without_traj_matches_cli(gadgetron, raw_multi_notraj, tmp_path):
    header, acqs = read_acquisitions(raw_multi_notraj)
    config = configuration_node(preset="cpu-test", method="cgsense", device="cpu")
    reply = gadgetron.run(config, header, acqs)
    assert reply.errors == [], reply.log
    assert [(im.slice, im.phase, im.image_index) for im in reply.images] == \
        [(s, f, 1 + 3 * s + f) for s in range(2) for f in range(3)]
    assert_same_images(reply.images, cli_images(raw_multi_notraj, tmp_path / "cli.h5", "--preset", "cpu-test",
                                                "--method", "cgsense"))


def test_dainr_cpu_test_preset_is_deterministic(gadgetron, raw_single, tmp_path):
    header, acqs = read_acquisitions(raw_single)
    reply = gadgetron.run(configuration_node(preset="cpu-test"), header, acqs)
    assert reply.errors == [], reply.log
    assert "dainr" in reply.log
    assert_same_images(reply.images, cli_images(raw_single, tmp_path / "cli.h5", "--preset", "cpu-test"),
                       DAINR_TOLERANCE)


def test_buffered_chain_recon_data_matches_cli(gadgetron, raw_multi_notraj, tmp_path):
    header, acqs = read_acquisitions(raw_multi_notraj)
    buffers = bucket_to_buffer(header, acqs)
    assert len(buffers) == 2
    config = configuration_node("dainr_buffered.xml", preset="cpu-test", method="adjoint", device="cpu",
                                prep__prewhiten="false")
    reply = gadgetron.run(config, header, buffers)
    assert reply.errors == [], reply.log
    # The buffered chain has no noise scans (NoiseAdjustGadget consumed them): compare without prewhitening.
    assert_same_images(reply.images, cli_images(raw_multi_notraj, tmp_path / "cli.h5", "--preset", "cpu-test",
                                                "--method", "adjoint", "--set", "prep.prewhiten=false"))


def test_invalid_property_sends_error_before_close(gadgetron, raw_single):
    header, acqs = read_acquisitions(raw_single)
    reply = gadgetron.run(configuration_node(preset="cpu-test", bogus="1"), header, acqs[:3])
    assert reply.ids == [8, 4]
    assert len(reply.errors) == 1 and "\n" not in reply.errors[0]
    assert "unknown property 'bogus'" in reply.errors[0]
    assert reply.images == []
