"""What real clients send: chain names without ``.xml``, config-folder YAMLs that name a preset, and a server that
breaks off (issue 14, items 3-5)."""

from __future__ import annotations

import re
import socket
import threading

import pytest

from dainr.cli import main
from dainr.config import load_config
from dainr.errors import ConfigError
from dainr.server.config_names import OperatorConfigError, settings_for_name, settings_for_text
from dainr.stream.settings import ReconSettings
from tests.conftest import simulate_file

DEFAULT = ReconSettings.load("cpu-test")


def test_chain_name_with_or_without_xml():
    with_xml = settings_for_name("dainr_raw.xml", DEFAULT)
    without = settings_for_name("dainr_raw", DEFAULT)
    assert without.config == with_xml.config and without.config.preset == "fast"
    assert settings_for_name("dainr_buffered", DEFAULT).config == settings_for_name("dainr_buffered.xml",
                                                                                    DEFAULT).config


def test_preset_and_yaml_names_win_over_a_chain_of_the_same_stem(tmp_path):
    (tmp_path / "cpu-test.xml").write_text(
        '<configuration><stream><external><execute name="gadget.dainr_gadget" target="recon" type="python"/>'
        '<configuration><property name="method" value="cgsense"/></configuration></external></stream>'
        "</configuration>")
    (tmp_path / "dainr_raw.yaml").write_text("preset: cpu-test\nmethod: adjoint\n")
    assert settings_for_name("cpu-test", DEFAULT, [tmp_path]).config.method == "dainr"
    assert settings_for_name("cpu-test.xml", DEFAULT, [tmp_path]).config.method == "cgsense"
    assert settings_for_name("dainr_raw", DEFAULT, [tmp_path]).config.method == "adjoint"
    with pytest.raises(ConfigError, match="unknown config 'dainr_rawx'"):
        settings_for_name("dainr_rawx", DEFAULT, [tmp_path])


def test_config_dir_yaml_naming_a_preset_starts_from_that_preset(tmp_path):
    (tmp_path / "site.yaml").write_text("preset: cpu-test\nmethod: adjoint\n")
    got = settings_for_name("site", ReconSettings.load("fast"), [tmp_path]).config
    expected = load_config("cpu-test", None, ["method=adjoint"])
    assert got.dainr == expected.dainr and got.method == "adjoint" and got.device == "cpu"
    assert got.dainr.steps == load_config("cpu-test").dainr.steps != load_config("fast").dainr.steps


def test_config_dir_chain_with_yaml_preset_then_config_file_then_properties(tmp_path):
    (tmp_path / "site.yaml").write_text("preset: cpu-test\ndainr:\n  steps: 7\n  hidden: 8\n")
    (tmp_path / "more.yaml").write_text("dainr:\n  steps: 9\n")
    (tmp_path / "chain.xml").write_text(
        '<configuration><stream><external><execute name="gadget.dainr_gadget" target="recon" type="python"/>'
        '<configuration><property name="preset" value="site"/><property name="config" value="more"/>'
        '<property name="dainr.hidden" value="4"/></configuration></external></stream></configuration>')
    got = settings_for_name("chain", DEFAULT, [tmp_path]).config
    assert (got.dainr.steps, got.dainr.hidden, got.device) == (9, 4, "cpu")
    assert got.dainr.lr == load_config("cpu-test").dainr.lr
    text = settings_for_text("preset: site\nconfig_file: more.yaml\ndainr:\n  steps: 11\n", "fast", [tmp_path])
    assert (text.config.dainr.steps, text.config.dainr.hidden) == (11, 8)


def test_config_dir_yaml_naming_an_unknown_preset_is_refused_in_one_line(tmp_path):
    (tmp_path / "site.yaml").write_text("preset: turbo\n")
    with pytest.raises(OperatorConfigError, match="site.yaml: 'preset: turbo' must name a built-in preset") as err:
        settings_for_name("site", DEFAULT, [tmp_path])
    assert "\n" not in str(err.value)
    assert err.value.client_text == ("the server's config 'site' does not load: tell the server's operator (the "
                                     "server log says why)")


def _server_that_hangs_up(reply: bytes) -> tuple[socket.socket, threading.Thread]:
    """A listener that reads the whole request, sends ``reply`` and closes without CLOSE."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(1.0)
            try:
                while conn.recv(1 << 16):  # drained: a close with unread data would be a reset, not an EOF
                    pass
            except socket.timeout:
                pass
            conn.sendall(reply)
        srv.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return srv, thread


@pytest.mark.parametrize("reply, expected", [
    (b"", "dainr replay: error: the server closed the connection without CLOSE"),
    (b"\xfe\x03" + b"\0" * 10, "dainr replay: error: the server closed the connection in the middle of"),
], ids=["between-messages", "mid-image"])
def test_replay_says_once_that_the_server_closed(tmp_path, capsys, reply, expected):
    raw = simulate_file(tmp_path / "raw.h5", matrix=16, frames=3, coils=2, spokes=5)[0]
    srv, thread = _server_that_hangs_up(reply)
    rc = main(["replay", str(raw), "--port", str(srv.getsockname()[1]), "-o", str(tmp_path / "out.h5"), "-q",
               "--timeout", "30"])
    thread.join(10)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert err[-1].startswith(expected), err
    assert err[-1].count("closed the connection") == 1, err


def test_a_client_may_set_the_documented_keys_within_bounds(tmp_path):
    """Issue 19 item 2: CLIENT_KEYS (and only those) from a client's config text, within bounds; the README lists
    the same keys."""
    from pathlib import Path

    from dainr.server.config_names import CLIENT_KEYS

    (tmp_path / "site.yaml").write_text("preset: cpu-test\ndainr:\n  hidden: 8\n")
    (tmp_path / "more.yaml").write_text("dainr:\n  lr: 0.5\n")
    text = ("preset: site\nconfig_file: more\nmethod: cgsense\ndainr.steps: 5000\n"
            "binning: {spokes_per_frame: 5, stride: 2}\ntrajectory.kind: uniform\nseries_index: 3\n"
            "complex_output: true\nseed: 4\n")
    s = settings_for_text(text, "fast", [tmp_path])
    c = s.config
    assert (c.dainr.hidden, c.dainr.lr, c.method, c.dainr.steps, c.seed) == (8, 0.5, "cgsense", 5000, 4)
    assert (c.binning.spokes_per_frame, c.binning.stride, c.trajectory.kind) == (5, 2, "uniform")
    assert (s.series_index, s.complex_output) == (3, True)
    xml = '<configuration><property name="method" value="adjoint"/><property name="dainr.steps" value="7"/>' \
          "</configuration>"
    assert settings_for_text(xml, "cpu-test").config.dainr.steps == 7
    for bad, fragment in [("dainr.steps: 5001", "dainr.steps 5001 is more than this server allows a client (5000"),
                          ("binning.spokes_per_frame: 1025", "more than a client may ask for (1024)"),
                          ("dainr.hidden: 4\nprep.virtual_coils: 2", "config key 'dainr.hidden', "
                                                                      "'prep.virtual_coils' cannot be set")]:
        with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
            settings_for_text(bad, "cpu-test", [tmp_path])
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="dainr.steps 11 is more"):
        settings_for_text("dainr.steps: 11", "cpu-test", max_steps=10)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("**What a client may choose.**"):readme.index("**Limits**")]
    assert all(f"`{key}`" in table for key in CLIENT_KEYS), "README's table of client keys is out of date"
