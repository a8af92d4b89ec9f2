"""Motion series and rendered frames/matrix as settings of every front end: the CLI's flags, the gadget's
``<property>`` items and the server's config text give the same images (they all go through reconstruct_slice)."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from dainr.cli import main
from dainr.data import RenderRequest
from dainr.errors import ConfigError
from dainr.mrd import read_images
from dainr.server.replay import replay
from dainr.stream import ReconSettings
from tests.conftest import simulate_file
from tests.gadget.compare import DAINR_TOLERANCE, assert_same_images
from tests.gadget.harness import configuration_node, read_acquisitions, socketpair_run
from tests.gadget.test_gadget_inprocess import active
from tests.server.conftest import TIMEOUT, make_server

pytestmark = pytest.mark.timeout(300)

PROPERTIES = {"preset": "cpu-test", "device": "cpu", "motion": "true", "jacobian": "yes", "render_frames": "5",
              "render_matrix": "24"}


def test_properties_give_the_render_request():
    settings = ReconSettings.from_properties(PROPERTIES)
    assert settings.render == RenderRequest(frames=5, matrix=24, motion=True, jacobian=True)
    assert ReconSettings.from_properties({"preset": "cpu-test"}).render == RenderRequest()


@pytest.mark.parametrize("props, fragment", [
    ({"motion": "maybe"}, "property 'motion' must be true or false"),
    ({"render_frames": "x"}, "property 'render_frames' must be an integer"),
    ({"render_frames": "1"}, "render_frames (--render-frames) must be 0"),
    ({"render_matrix": "4"}, "render_matrix (--render-matrix) must be 0"),
    ({"motion": "true", "method": "cgsense"}, "need method dainr, not cgsense"),
    ({"jacobian": "true", "series_index": "65534"}, "leaves no room for the motion series"),
])
def test_bad_render_properties_are_one_line(props, fragment):
    with pytest.raises(ConfigError) as e:
        ReconSettings.from_properties({"preset": "cpu-test", **props})
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return simulate_file(tmp_path_factory.mktemp("render") / "raw.h5", "--slices", "2", matrix=16, frames=3,
                         coils=2, spokes=5)[0]


@pytest.fixture(scope="module")
def cli(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cli.h5"
    assert main(["recon", str(raw), "-o", str(out), "-q", "--preset", "cpu-test", "--device", "cpu", "--motion",
                 "--jacobian", "--render-frames", "5", "--render-matrix", "24"]) == 0
    images = read_images(out)
    return [im for series in sorted(images) for im in images[series]]


def test_cli_writes_the_rendered_cine_and_motion_series(cli):
    """Series 1 (cine), 2 (displacement, 2 channels), 3 (Jacobian); 5 frames per slice at 24², numbered as slices
    of 5 frames, with the acquired field of view."""
    by_series = {s: [im for im in cli if im.image_series_index == s] for s in (1, 2, 3)}
    assert [len(v) for v in by_series.values()] == [10, 10, 10]
    for s, channels in ((1, 1), (2, 2), (3, 1)):
        assert [(im.slice, im.phase, im.image_index) for im in by_series[s]] == \
            [(sl, f, 1 + 5 * sl + f) for sl in (0, 1) for f in range(5)]
        assert all(im.data.shape == (channels, 1, 24, 24) for im in by_series[s])
        assert all(tuple(im.matrix_size) == (24, 24, 1) for im in by_series[s])
        np.testing.assert_allclose(by_series[s][0].field_of_view, [256.0, 256.0, 8.0])
    assert {im.image_type for im in by_series[2] + by_series[3]} == {ismrmrd.IMTYPE_REAL}
    frame0 = [im for im in by_series[2] if im.phase == 0]
    assert all(np.all(im.data == 0) for im in frame0) and any(np.any(im.data != 0) for im in by_series[2])


def _ordered(images):
    return sorted(images, key=lambda im: (im.image_series_index, im.slice, im.phase))


def test_gadget_gives_the_cli_images(raw, cli):
    header, acqs = read_acquisitions(raw)
    reply = socketpair_run(active, configuration_node(**PROPERTIES), header, acqs)
    assert reply.errors == []
    assert_same_images(_ordered(reply.images), _ordered(cli), DAINR_TOLERANCE)


def test_server_gives_the_cli_images(raw, cli, tmp_path):
    text = "".join(f"{k}: {v}\n" for k, v in PROPERTIES.items() if k != "device")  # the server's device: CPU
    srv = make_server(tmp_path)
    with srv.running():
        got = replay(raw, "127.0.0.1", srv.address[1], config_text=text, timeout=TIMEOUT)
    assert_same_images(_ordered(got.images), _ordered(cli), DAINR_TOLERANCE)


def test_client_render_requests_are_bounded(tmp_path):
    from dainr.errors import ConfigError
    from dainr.server.config_names import MAX_CLIENT_RENDER_MATRIX, settings_for_text

    with pytest.raises(ConfigError, match="at most"):
        settings_for_text(f"preset: cpu-test\nrender_matrix: {MAX_CLIENT_RENDER_MATRIX + 1}\n", "cpu-test")
    assert settings_for_text("preset: cpu-test\nrender_frames: 5\nmotion: true\n", "cpu-test").render.frames == 5
