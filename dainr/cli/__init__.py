"""The ``dainr`` command line: ``simulate``, ``recon``, ``render``, ``compare``, the server front ends and ``config show``.

Start-up stays light: ``dainr --help`` imports no command module, and a command's module (``dainr.cli.<name>``) is
imported only when that command runs or shows its help; heavy libraries (torch, ismrmrd) are imported inside the
commands that need them. Ctrl-C at any point after start-up is one line and exit status 130.

A whole ``dainr recon`` process ends at once when its command returns (:data:`EXIT_AT_ONCE`): its outputs are
closed and renamed by then, so it flushes its output streams and leaves without the interpreter's and CUDA's
teardown (0.3-1 s), and without waiting for a background thread that a Ctrl-C or an error left behind.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys
import traceback
from typing import Sequence

from dainr import __version__
from dainr.errors import DainrError, error_line

#: command -> the line ``dainr --help`` shows for it; the command itself lives in ``dainr.cli.<command>``.
COMMANDS = {
    "simulate": "simulate a radial cine into an ISMRMRD raw file",
    "recon": "reconstruct an ISMRMRD raw file into ISMRMRD images",
    "render": "render a saved DA-INR model (--save-model) into ISMRMRD images without refitting",
    "compare": "compare reconstructions by their --report files, as a table",
    "serve": "serve reconstructions over the MRD/Gadgetron streaming protocol",
    "replay": "stream a raw file to an MRD server (dainr serve, Gadgetron) and store the images",
    "config": "print the resolved configuration as YAML",
}


#: Commands whose process exits as soon as they return (see the module docstring): every file they write is complete
#: (or removed) when they return, and they start no process that would outlive them.
EXIT_AT_ONCE = frozenset({"recon"})


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s own options are built (its module imported), the others are listed by name."""
    p = argparse.ArgumentParser(prog="dainr", description="DA-INR reconstruction of radial cine MRI (ISMRMRD).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=text)
            continue
        mod = importlib.import_module(f"dainr.cli.{name}")
        sp = mod.add_parser(sub)
        sp.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
        sp.set_defaults(func=mod.run)
    return p


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dainr`` console script; returns the exit status."""
    try:
        status = _main(argv)
    finally:
        if argv is None:  # this process's own command, which ends now: see below
            # The interpreter's shutdown would garbage-collect every object torch created (about 1 s); freezing
            # them skips that. Only for a whole process: in-process callers (tests) keep collecting.
            gc.freeze()
    if argv is None and _command(sys.argv[1:]) in EXIT_AT_ONCE:
        _exit_now(status)
    return status


def _exit_now(status: int) -> None:
    """End this process with ``status`` now, its output streams and log handlers flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command(argv)
    try:
        args = _parser(command if command in COMMANDS else None).parse_args(argv)
    except KeyboardInterrupt:
        print("dainr: interrupted", file=sys.stderr)
        return 130
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"dainr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line in every case; the traceback with --debug
        if args.debug:
            traceback.print_exc()
        if isinstance(e, DainrError):
            print(f"dainr {args.command}: error: {error_line(e)}", file=sys.stderr)
            return 2
        print(f"dainr {args.command}: {error_line(e)} (rerun with --debug for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
