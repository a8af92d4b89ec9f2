"""``dainr serve`` in-process on 127.0.0.1: replay gives the CLI's pixels; concurrency, disconnects, bad input."""

from __future__ import annotations

import socket
import threading

import ismrmrd
import numpy as np
import pytest

from dainr.errors import InputError
from dainr.mrd import read_acquisitions, read_images, write_images
from dainr.server.replay import ServerError, replay
from dainr.stream import protocol
from tests.gadget.compare import DAINR_TOLERANCE, assert_same_images, cli_images
from tests.server.conftest import ADJOINT, TIMEOUT, connect, make_server, read_reply, send_request, u16, wait_until

pytestmark = pytest.mark.timeout(120)


def test_replay_single_and_multi_slice_match_cli(server, raw_one, raw_two, ref_adjoint):
    port = server.address[1]
    for raw in (raw_one, raw_two):
        result = replay(raw, "127.0.0.1", port, config_text=ADJOINT, timeout=TIMEOUT)
        assert_same_images(result.images, ref_adjoint[raw])
    assert server.pool.waiting == 0


def test_dainr_preset_by_name_matches_cli(server, raw_one, tmp_path):
    result = replay(raw_one, "127.0.0.1", server.address[1], config="cpu-test", timeout=TIMEOUT)
    assert_same_images(result.images, cli_images(raw_one, tmp_path / "cli.h5", "--preset", "cpu-test"),
                       DAINR_TOLERANCE)


def test_chain_xml_and_yaml_names_from_config_dir(tmp_path, raw_two, ref_adjoint):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "site.yaml").write_text("method: adjoint\ndevice: cpu\n")
    (conf / "site_chain.xml").write_text(
        '<configuration><version>2</version><stream><external><execute name="gadget.dainr_gadget" '
        'target="recon" type="python"/><configuration><property name="preset" value="cpu-test"/>'
        '<property name="method" value="adjoint"/></configuration></external></stream></configuration>')
    srv = make_server(tmp_path, config_dirs=[conf])
    with srv.running():
        got = replay(raw_two, "127.0.0.1", srv.address[1], config="site_chain.xml", timeout=TIMEOUT)
        assert_same_images(got.images, ref_adjoint[raw_two])
        got = replay(raw_two, "127.0.0.1", srv.address[1], config="site", timeout=TIMEOUT)
        assert len(got.images) == 6 and got.images[0].image_series_index == 1
        with pytest.raises(ServerError, match="unknown config 'other'"):
            replay(raw_two, "127.0.0.1", srv.address[1], config="other", timeout=TIMEOUT)
        with pytest.raises(ServerError, match="not a path"):
            replay(raw_two, "127.0.0.1", srv.address[1], config="../site.yaml", timeout=TIMEOUT)


def test_four_concurrent_clients_get_complete_series(server, raw_one, raw_two, ref_adjoint):
    raws = [raw_one, raw_two, raw_two, raw_one]
    results: dict[int, object] = {}

    def client(i):
        try:
            results[i] = replay(raws[i], "127.0.0.1", server.address[1], config_text=ADJOINT, timeout=TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - checked below
            results[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    for i, raw in enumerate(raws):
        assert not isinstance(results[i], Exception), results[i]
        assert_same_images(results[i].images, ref_adjoint[raw])


def test_client_leaving_half_way_frees_its_job_and_server_keeps_serving(tmp_path, operator_dir, raw_one,
                                                                        ref_adjoint):
    header, acqs = read_acquisitions(raw_one)
    srv = make_server(tmp_path, config_dirs=[operator_dir])
    with srv.running():
        sock = connect(srv)
        # A long optimisation, so that the slice is still running when the client leaves.
        send_request(sock, raw_one, config="long", close=False)
        wait_until(lambda: srv.pool.running, what="the slice to start")
        sock.close()  # gone, without CLOSE
        wait_until(lambda: not srv.pool.running and srv.pool.waiting == 0, timeout=30, what="the job to stop")
        result = replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT, timeout=TIMEOUT)
        assert_same_images(result.images, ref_adjoint[raw_one])
        half = connect(srv)
        half.sendall(protocol.frame_config_file("cpu-test") + protocol.frame_text(header, protocol.HEADER)
                     + b"".join(protocol.frame_item(a) for a in acqs[: len(acqs) // 2]))
        half.close()
        result = replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT, timeout=TIMEOUT)
        assert len(result.images) == 3
        wait_until(lambda: srv.sessions == 0 and srv.jobs == 0, what="sessions to end")


@pytest.mark.parametrize("garbage, fragment", [
    (u16(9999) + b"\1" * 64, "unknown message id 9999"),
    (u16(protocol.HEADER) + b"\0" * 8, "unexpected message id 3"),
    (u16(protocol.ACQUISITION) + b"\xff" * 340, "samples"),
], ids=["unknown-id", "second-header", "huge-acquisition"])
def test_garbage_gets_an_error_reply(server, raw_one, garbage, fragment):
    header, acqs = read_acquisitions(raw_one)
    with connect(server) as sock:
        sock.sendall(protocol.frame_config_file("cpu-test") + protocol.frame_text(header, protocol.HEADER)
                     + protocol.frame_item(acqs[0]) + garbage)
        reply = read_reply(sock)
    assert [m for m, _ in reply] == [protocol.TEXT, protocol.CLOSE], reply
    assert reply[0][1].startswith("ERROR:") and fragment in reply[0][1]


def test_truncated_frame_gets_an_error_not_a_hang(server, raw_one):
    header, acqs = read_acquisitions(raw_one)
    frame = protocol.frame_item(acqs[3])
    with connect(server) as sock:
        sock.sendall(protocol.frame_config_file("cpu-test") + protocol.frame_text(header, protocol.HEADER)
                     + frame[:500])
        sock.shutdown(socket.SHUT_WR)
        reply = read_reply(sock)
    assert [m for m, _ in reply] == [protocol.TEXT, protocol.CLOSE]
    assert "in the middle of an acquisition's samples" in reply[0][1]


def test_refused_data_and_unknown_config_are_error_replies(server, raw_one, tmp_path):
    with pytest.raises(ServerError, match="unknown config 'nope'"):
        replay(raw_one, "127.0.0.1", server.address[1], config="nope", timeout=TIMEOUT)
    header, acqs = read_acquisitions(raw_one)
    bad = acqs[-1]
    bad.data[0, 0] = np.inf
    with connect(server) as sock:
        sock.sendall(protocol.frame_text(ADJOINT, protocol.CONFIG_TEXT) + protocol.frame_text(header, protocol.HEADER)
                     + b"".join(protocol.frame_item(a) for a in acqs) + protocol.frame_close())
        reply = read_reply(sock)
    assert [m for m, _ in reply] == [protocol.TEXT, protocol.CLOSE] and "NaN or Inf" in reply[0][1]
    assert len(replay(raw_one, "127.0.0.1", server.address[1], config_text=ADJOINT).images) == 3


def test_header_first_uses_the_default_config_and_waveforms_and_text_are_accepted(server, raw_one, tmp_path):
    header, acqs = read_acquisitions(raw_one)
    wav = ismrmrd.Waveform.from_array(np.ones((1, 8), np.uint32))
    with connect(server) as sock:
        sock.sendall(protocol.frame_text(header, protocol.HEADER) + protocol.frame_item(wav)
                     + protocol.frame_text('{"parameters": {}}') + b"".join(protocol.frame_item(a) for a in acqs)
                     + protocol.frame_close())
        reply = read_reply(sock)
    assert [m for m, _ in reply] == [protocol.IMAGE] * 3 + [protocol.CLOSE]
    assert_same_images([v for m, v in reply if m == protocol.IMAGE],
                       cli_images(raw_one, tmp_path / "cli.h5", "--preset", "cpu-test"), DAINR_TOLERANCE)


def test_busy_server_refuses_the_extra_connection(tmp_path, raw_one):
    srv = make_server(tmp_path, max_jobs=1)
    with srv.running():
        holder = connect(srv)
        holder.sendall(protocol.frame_config_file("cpu-test"))
        wait_until(lambda: len(srv._sessions) == 1, what="the first session")
        with pytest.raises(ServerError, match="server busy"):
            replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT, timeout=TIMEOUT)
        holder.close()
        wait_until(lambda: srv.jobs == 0, what="the holder to end")
        assert len(replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT).images) == 3


def test_hand_framed_request_and_images_stored_per_run(server, raw_one, ref_adjoint, tmp_path):
    result = replay(raw_one, "127.0.0.1", server.address[1], config_text=ADJOINT, use_serializer=False)
    assert_same_images(result.images, ref_adjoint[raw_one])
    out = tmp_path / "images.h5"
    write_images(out, result.images, "run1", result.header_xml, new_group=True)
    write_images(out, result.images, "run2", result.header_xml, new_group=True)
    assert_same_images(read_images(out, "run2")[1], ref_adjoint[raw_one])
    assert_same_images(read_images(out, "run1")[1], ref_adjoint[raw_one])
    with pytest.raises(InputError, match="already has a group 'run1'"):
        write_images(out, result.images, "run1", new_group=True)


def test_shutdown_past_the_grace_period_cancels_and_reports(tmp_path, raw_one):
    header, acqs = read_acquisitions(raw_one)
    srv = make_server(tmp_path, grace_s=0.5)
    with srv.running():
        sock = connect(srv)
        sock.sendall(protocol.frame_text(ADJOINT, protocol.CONFIG_TEXT) + protocol.frame_text(header, protocol.HEADER)
                     + b"".join(protocol.frame_item(a) for a in acqs[:5]))
        wait_until(lambda: len(srv._sessions) == 1, what="the session")
        srv.request_shutdown()
        with sock:
            reply = read_reply(sock)
    assert [m for m, _ in reply] == [protocol.TEXT, protocol.CLOSE]
    assert "shutting down" in reply[0][1]
