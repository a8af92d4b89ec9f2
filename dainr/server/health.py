"""``python -m dainr.server.health``: ask a ``dainr serve`` whether a worker can take a job (Docker's HEALTHCHECK).

It sends QUERY ``dainr::health`` and CLOSE; the server answers without taking a job slot: ``ok`` when every worker
can take a job (or will as soon as its current one ends), else ``unhealthy: <why>`` (a worker process that cannot be
restarted, a worker stuck in a cancelled reconstruction, the server shutting down). Exit status 0 for ``ok``, 1
otherwise (also when the server does not answer within ``--timeout``). With ``--query`` it sends another query
(Gadgetron answers ``gadgetron::version``, for instance) and any answer counts as healthy.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Sequence

from dainr.errors import DainrError, one_line
from dainr.stream import protocol


class Unhealthy(DainrError):
    """The server refused the health query, answered something else, or did not answer in time."""


def probe(host: str = "127.0.0.1", port: int = 9002, timeout: float = 10.0,
          query: str = protocol.HEALTH_QUERY) -> str:
    """The server's answer to ``query`` (for ``dainr::health``: ``ok`` or ``unhealthy: ...``).

    Raises
    ------
    Unhealthy
        The server refused the query, answered something else, or did not answer within ``timeout`` seconds.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise Unhealthy(f"cannot connect to {host}:{port} ({exc.strerror or exc})") from None
    with sock:
        sock.sendall(protocol.frame_query(query, correlation=1) + protocol.frame_close())
        reader = protocol.MessageReader(sock, protocol.Limits(idle_timeout_s=timeout, stream_timeout_s=timeout),
                                        peer="the server")
        answer = None
        allowed = frozenset({protocol.RESPONSE, protocol.TEXT, protocol.ERROR, protocol.CLOSE})
        try:
            while (msg := reader.read_message(allowed)).id != protocol.CLOSE:
                if msg.id == protocol.RESPONSE:
                    answer = msg.value[1]
                else:
                    raise Unhealthy(f"the server refused the query: {one_line(msg.value)}")
        except protocol.ProtocolError as exc:
            raise Unhealthy(f"no answer from the server: {exc}") from None
    if answer is None:
        raise Unhealthy("the server closed without answering the query")
    return answer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dainr.server.health",
                                description="Exit 0 when the dainr serve at HOST:PORT has a worker that can take a "
                                            "job, 1 otherwise.")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9002, help="server port (default 9002)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
    p.add_argument("--query", default=protocol.HEALTH_QUERY,
                   help=f"the query (default {protocol.HEALTH_QUERY}, answered 'ok' when healthy); any answer to "
                        "another one counts as healthy (Gadgetron: gadgetron::version)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        answer = probe(args.host, args.port, args.timeout, args.query)
    except DainrError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(answer)
    return 0 if answer == "ok" or args.query != protocol.HEALTH_QUERY else 1


if __name__ == "__main__":
    sys.exit(main())
