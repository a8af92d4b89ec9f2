"""The DA-INR Gadgetron gadget: radial cine acquisitions (or BucketToBuffer ``ReconData``) in, images out.

Gadgetron runs it from an ``<external>`` step::

    <external>
        <execute name="gadget.dainr_gadget" target="recon" type="python"/>
        <configuration>
            <property name="preset" value="fast"/>
        </configuration>
    </external>

(Gadgetron starts ``python -m gadgetron PORT gadget.dainr_gadget recon``, and so a new interpreter, PyTorch and CUDA
context, for every connection.) For ``<connect port="N"/>`` chains (``xml_configs/dainr_connect.xml``, the
recommended scanner set-up) start it once, as a service: ``python -m gadget.dainr_gadget --port N`` (passive mode;
listens on 127.0.0.1, ``--host ::`` for every interface). It listens at once and warms up meanwhile
(:mod:`dainr.stream.startup`: PyTorch, the engine, a CUDA context on ``--device``; ``--no-warm-up`` skips it): a
connection arriving during the warm-up is accepted and its data read, and its first reconstruction waits for the
warm-up to end.

Properties are those of :mod:`dainr.stream.settings` (``preset``, ``config_file``, ``method``, ``device``,
``series_index``, ``complex_output`` and any config key such as ``dainr.steps``). Raw acquisitions are buffered per
slice until ``ACQ_LAST_IN_SLICE`` (or the end of the stream), each ``ReconData`` is reconstructed as it arrives, and
the images of each slice are sent as soon as it is done. Other messages pass through unchanged. Any failure sends
Gadgetron an ERROR message with a one-line reason before the CLOSE.

In active mode gadgetron-python reads CONFIG and HEADER before this module is even imported: a header that
ismrmrd-python cannot parse ends the child there, without CLOSE, and Gadgetron reports the broken connection (real
Gadgetron re-serialises the header, so this takes a hand-made client). Passive mode reads both itself and answers
such a header with an ERROR. In both modes a Gadgetron that closes the socket, or sends nothing for
``SETUP_TIMEOUT_S`` seconds, before CONFIG and HEADER are in ends the gadget instead of leaving it spinning or waiting
(active mode: :mod:`gadget.startup_guard`, run at start-up by the ``.pth`` file the package installs). Passive mode
serves one connection at a time, so it also drops a peer silent for ``--timeout`` seconds mid-stream, and a
connection older than ``--max-time``, with an ERROR (and a log line): an idle client cannot block the next one.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from typing import Sequence

from gadgetron.external import constants

from dainr.errors import DainrError, InputError, error_line
from dainr.stream import ReconSettings, SliceJob, new_collector, properties_from_element, reconstruct_slice
from dainr.stream.startup import EngineStartup, StartupReport
from gadget.channel import GadgetChannel, PeerGone, SafeSocket, StreamTimeout, open_connection, send_error
from gadget.startup_guard import SETUP_TIMEOUT_S
from gadget.recon_data import recon_data_to_acquisitions

log = logging.getLogger("dainr.gadget")

#: Prefix of every ERROR message this gadget sends.
ERROR_PREFIX = "DA-INR gadget: "


def _progress_logger(job: SliceJob):
    last = [0.0]

    def progress(step: int, total: int, message: str) -> None:
        now = time.perf_counter()
        if step == total or now - last[0] > 5.0:
            last[0] = now
            log.info("slice %d: step %d/%d %s", job.cine.slice_index, step, total, message)

    return progress


def _run_job(channel: GadgetChannel, job: SliceJob, settings: ReconSettings, startup: EngineStartup | None) -> int:
    if startup is not None and not startup.done:
        log.info("slice %d: waiting for the warm-up", job.cine.slice_index)
        startup.wait()
    out = reconstruct_slice(job, settings, _progress_logger(job))
    for image in out.images:
        channel.send_image(image)
    log.info("slice %d: sent %d images (%s, %.2f s)", job.cine.slice_index, len(out.images), out.result.method,
             out.result.seconds)
    return len(out.images)


def serve_channel(channel: GadgetChannel, startup: EngineStartup | None = None) -> bool:
    """Run the gadget over one connection; True when it ended normally, False after an ERROR was sent.

    ``startup``: the passive gadget's warm-up, which the first reconstruction waits for (reading does not: it needs
    neither PyTorch nor the engine)."""
    t0 = time.perf_counter()
    try:
        settings = ReconSettings.from_properties(properties_from_element(channel.config_element))
        log.info("DA-INR gadget: %s (method %s, device %s)", settings.source, settings.config.method,
                 settings.config.device)
        collector = new_collector(channel.header_xml, settings)
        images = 0
        received = 0
        for mid, item, raw in channel.messages():
            if mid == constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION:
                received += 1
                jobs = collector.add(item)
            elif mid == constants.GADGET_MESSAGE_RECON_DATA:
                received += 1
                jobs = collector.assemble(recon_data_to_acquisitions(item))
            else:
                channel.forward(mid, raw)
                continue
            for job in jobs:
                images += _run_job(channel, job, settings, startup)
        if received == 0:
            raise InputError("the stream held no acquisitions and no ReconData: the DA-INR gadget needs the radial "
                             "imaging spokes")
        for job in collector.finish():
            images += _run_job(channel, job, settings, startup)
        log.info("DA-INR gadget: done, %d slice(s), %d images, %.2f s", collector.slices_done, images,
                 time.perf_counter() - t0)
        return True
    except StreamTimeout as exc:
        log.warning("DA-INR gadget: dropped: %s", exc)
        channel.send_error(ERROR_PREFIX + str(exc))
        return False
    except PeerGone as exc:
        log.error("DA-INR gadget: %s; stopping", exc)
        return False
    except Exception as exc:  # noqa: BLE001 - every failure must reach Gadgetron as an ERROR message
        text = ERROR_PREFIX + error_line(exc)
        log.error("%s", text)
        log.debug("traceback", exc_info=True)
        channel.send_error(text)
        return False


def recon(connection) -> None:
    """Target for ``<execute name="gadget.dainr_gadget" target="recon" type="python"/>``."""
    serve_channel(GadgetChannel(connection))


class DainrGadget:
    """Class form of the target (``target="DainrGadget"``); gadgetron-python calls ``DainrGadget().handle(conn)``."""

    def handle(self, connection) -> None:
        recon(connection)


#: Passive mode: longest silence of the peer once CONFIG and HEADER are in (``--timeout``), seconds.
IDLE_TIMEOUT_S = 300.0
#: Passive mode: longest a connection may last (``--max-time``), seconds.
MAX_TIME_S = 3600.0


def handle_socket(sock: socket.socket, idle_timeout_s: float | None = IDLE_TIMEOUT_S,
                  deadline_s: float | None = MAX_TIME_S, startup: EngineStartup | None = None) -> bool:
    """Serve one accepted socket in passive mode (CONFIG and HEADER not yet read): CONFIG and HEADER within
    :data:`SETUP_TIMEOUT_S`, then no silence longer than ``idle_timeout_s``, all within ``deadline_s``; the first
    reconstruction waits for ``startup`` (:func:`serve_channel`)."""
    safe = SafeSocket(sock, setup_timeout_s=min(SETUP_TIMEOUT_S, deadline_s or SETUP_TIMEOUT_S),
                      idle_timeout_s=idle_timeout_s, deadline_s=deadline_s)
    try:
        try:
            connection = open_connection(safe)
        except (PeerGone, DainrError) as exc:
            log.error("DA-INR gadget: %s", exc)
            if isinstance(exc, DainrError):
                send_error(safe, ERROR_PREFIX + error_line(exc))
            return False
        safe.end_setup()
        return serve_channel(GadgetChannel(connection), startup)
    finally:
        safe.close()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind((host, port))
    srv.listen(4)
    return srv


def _log_warm_up(report: StartupReport) -> None:
    log.info("warm-up done in %.2f s: %s", report.seconds, report.summary())


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m gadget.dainr_gadget``."""
    p = argparse.ArgumentParser(prog="python -m gadget.dainr_gadget",
                                description="DA-INR gadget in passive mode, for Gadgetron <connect> chains.")
    p.add_argument("-p", "--port", type=int, required=True,
                   help="port to listen on (the chain's <connect port=...>)")
    p.add_argument("-H", "--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; '::' for every interface)")
    p.add_argument("--once", action="store_true", help="exit after one connection")
    p.add_argument("--timeout", type=float, default=IDLE_TIMEOUT_S,
                   help=f"drop a peer silent for this many seconds mid-stream (default {IDLE_TIMEOUT_S:g}); "
                        "connections are served one at a time, so an idle one blocks the next at most this long")
    p.add_argument("--max-time", type=float, default=MAX_TIME_S,
                   help=f"longest a connection may last, reconstruction included (default {MAX_TIME_S:g})")
    p.add_argument("--device", default="auto",
                   help="devices to start CUDA on at start: auto (default: every visible GPU, as the config's "
                        "default device auto), cuda, cuda:1, cpu (none); the chain's 'device' property still "
                        "picks each reconstruction's device")
    p.add_argument("--no-warm-up", action="store_true",
                   help="do not import PyTorch and the engine or start CUDA before the first connection needs them")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gadget.dainr_gadget --port N``: serve ``<connect port="N"/>`` chains, warm from the start."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s [dainr gadget %(process)d] %(message)s")
    try:
        srv = _listen(args.host, args.port)
    except OSError as exc:
        print(f"dainr gadget: error: cannot listen on {args.host}:{args.port} ({exc.strerror})", file=sys.stderr)
        return 2
    log.info("listening on %s:%d", args.host, srv.getsockname()[1])
    startup = None
    if not args.no_warm_up:
        log.info("warming up for device %s", args.device)
        startup = EngineStartup(args.device, on_done=_log_warm_up)  # a connection meanwhile is served
    ok = True
    try:
        while True:
            sock, peer = srv.accept()
            log.info("connection from %s:%s", peer[0], peer[1])
            ok = handle_socket(sock, args.timeout, args.max_time, startup) and ok
            if args.once:
                break
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
