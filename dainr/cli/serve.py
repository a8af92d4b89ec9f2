"""``dainr serve``: an MRD/Gadgetron streaming reconstruction server (see :mod:`dainr.server.listener`)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

from dainr.cli.config import add_slice_arguments
from dainr.config import DEFAULT_PRESET, available_presets
from dainr.errors import ConfigError
from dainr.server.config_names import DEFAULT_MAX_STEPS
from dainr.stream.protocol import Limits

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
                   help="jobs (connections with a config or header) served at once; more are refused with a "
                        "'busy' error (default 8)")
    p.add_argument("--max-connections", type=int, default=None,
                   help="open connections at once (health probes included); more are refused at once "
                        "(default 4 x --max-jobs)")
    p.add_argument("--default-config", default=DEFAULT_PRESET,
                   help=f"config for clients that send none or 'default': {', '.join(available_presets())} or a "
                        f"YAML file (default {DEFAULT_PRESET})")
    p.add_argument("--config-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="folder of YAML configs and dainr chain XMLs clients may name (repeatable); symbolic links "
                        "in it are not followed")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                   help=f"most dainr.steps a client's own config text may ask for (default {DEFAULT_MAX_STEPS}); "
                        "configs of --config-dir are not bounded")
    p.add_argument("--timeout", type=float, default=Limits.idle_timeout_s,
                   help=f"drop a client silent for this many seconds mid-stream (default {Limits.idle_timeout_s:g})")
    p.add_argument("--stream-timeout", type=float, default=Limits.stream_timeout_s,
                   help="drop a client that has not finished sending its stream (CLOSE) this many seconds after "
                        f"connecting (default {Limits.stream_timeout_s:g})")
    p.add_argument("--max-time", type=float, default=3600.0,
                   help="longest a connection may last, reconstruction included; its jobs are then cancelled "
                        "(default 3600)")
    p.add_argument("--grace", type=float, default=60.0,
                   help="on SIGTERM, seconds running jobs may take to finish before they are cancelled; the server "
                        "is gone within --grace + 7 s (cancelled jobs get 5 s to stop, then their worker process is "
                        "killed) (default 60)")
    add_slice_arguments(p, "a connection's waiting slices")
    p.add_argument("--in-process", action="store_true",
                   help="run the worker in a thread of the server instead of a child process (one device only; "
                        "its optimisation then cannot be stopped between two progress reports)")
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
    from dainr.server.listener import ReconServer, ServerOptions
    from dainr.server.workers import ExamOptions
    from dainr.stream.exam import check_slice_options

    if args.log:
        handler = logging.FileHandler(args.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    if args.max_jobs < 1 or (args.max_connections is not None and args.max_connections < args.max_jobs):
        raise ConfigError("--max-jobs must be >= 1 and --max-connections at least --max-jobs")
    if min(args.timeout, args.stream_timeout, args.max_time, args.max_steps) <= 0 or args.grace < 0:
        raise ConfigError("--timeout, --stream-timeout, --max-time and --max-steps must be > 0, --grace >= 0")
    check_slice_options(args.concurrent_slices, args.batch_slices)
    devices = resolve_devices(args.device, args.workers)
    if args.in_process and len(devices) > 1:
        raise ConfigError("--in-process runs one worker: use it with a single device")
    options = ServerOptions(host=args.host, port=args.port, devices=devices, isolate=not args.in_process,
                            max_jobs=args.max_jobs, max_connections=args.max_connections,
                            default_config=args.default_config, config_dirs=list(args.config_dir),
                            max_steps=args.max_steps,
                            limits=Limits(idle_timeout_s=args.timeout, stream_timeout_s=args.stream_timeout),
                            connection_timeout_s=args.max_time, grace_s=args.grace,
                            exam=ExamOptions(args.concurrent_slices, args.batch_slices))
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
    if server.pool.busy_threads:
        # An in-process worker still inside an optimisation cannot be stopped; leaving without running the
        # interpreter's (and PyTorch's) exit handlers ends it at once instead of aborting in them.
        log.warning("the in-process worker for %s is still reconstructing; exiting without waiting for it",
                    ", ".join(server.pool.busy_threads))
        logging.shutdown()
        os._exit(0)
    return 0
