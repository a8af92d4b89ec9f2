"""``dainr serve``: an MRD/Gadgetron streaming reconstruction server (see :mod:`dainr.server.listener`)."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from dainr.config import DEFAULT_PRESET, available_presets
from dainr.errors import ConfigError

log = logging.getLogger("dainr.serve")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="serve reconstructions over the MRD/Gadgetron streaming protocol",
                       description="Reconstruction server speaking the MRD streaming protocol of "
                                   "gadgetron_ismrmrd_client and python-ismrmrd-server's client.py: config, XML "
                                   "header, acquisitions, CLOSE in; images, CLOSE out.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=9002, help="port (default 9002; 0 = any free port)")
    p.add_argument("--device", default="auto",
                   help="cuda (every GPU, one worker each), cuda:N[,cuda:M...], cpu, or auto (default: cuda if "
                        "available, else cpu)")
    p.add_argument("--workers", type=int, default=1, help="CPU workers when --device cpu (default 1)")
    p.add_argument("--max-jobs", type=int, default=8,
                   help="connections served at once; more are refused with a 'busy' error (default 8)")
    p.add_argument("--default-config", default=DEFAULT_PRESET,
                   help=f"config for clients that send none or 'default': {', '.join(available_presets())} or a "
                        f"YAML file (default {DEFAULT_PRESET})")
    p.add_argument("--config-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="folder of YAML configs and dainr chain XMLs clients may name (repeatable)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="drop a client silent for this many seconds mid-stream (default 600)")
    p.add_argument("--grace", type=float, default=60.0,
                   help="on SIGTERM, seconds running jobs may take to finish before they are cancelled (default 60)")
    p.add_argument("--isolate", action="store_true",
                   help="run each device's worker in a child process (one slice per device at a time; default: threads, several slices per GPU)")
    p.add_argument("--log", type=Path, help="also write the log to this file")
    return p


def resolve_devices(spec: str, workers: int = 1) -> list[str]:
    """Worker devices for ``--device``: one per GPU for ``cuda``, ``workers`` × ``cpu`` for ``cpu``."""
    import torch

    spec = spec.strip()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        return ["cpu"] * workers
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda but no CUDA GPU is available to PyTorch; use --device cpu")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    for d in devices:
        if not d.startswith("cuda:") or not d[5:].isdigit():
            raise ConfigError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N[,cuda:M...]")
        if not torch.cuda.is_available() or int(d[5:]) >= torch.cuda.device_count():
            raise ConfigError(f"--device {d}: that GPU is not available ({torch.cuda.device_count()} visible)")
    if len(set(devices)) != len(devices):
        raise ConfigError(f"--device {spec!r} names a GPU twice")
    return devices


def run(args: argparse.Namespace) -> int:
    from dainr.stream.protocol import Limits
    from dainr.server.listener import ReconServer, ServerOptions

    if args.log:
        handler = logging.FileHandler(args.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    if args.max_jobs < 1:
        raise ConfigError(f"--max-jobs must be >= 1, got {args.max_jobs}")
    if args.timeout <= 0 or args.grace < 0:
        raise ConfigError("--timeout must be > 0 and --grace >= 0")
    options = ServerOptions(host=args.host, port=args.port, devices=resolve_devices(args.device, args.workers),
                            isolate=args.isolate, max_jobs=args.max_jobs, default_config=args.default_config,
                            config_dirs=list(args.config_dir), limits=Limits(idle_timeout_s=args.timeout),
                            grace_s=args.grace)
    server = ReconServer(options)
    server.bind()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: reachable from other machines; the protocol has no authentication",
                    args.host)
    signals = [0]

    def on_signal(signum: int, _frame) -> None:
        signals[0] += 1
        if signals[0] > 1:
            log.warning("second signal: cancelling running jobs now")
            options.grace_s = 0.0
        server.request_shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"dainr serve: listening on {server.address[0]}:{server.address[1]} ({', '.join(options.devices)})",
          flush=True)
    server.serve_forever()
    return 0
