"""The ``dainr`` command line: ``simulate``, ``recon``, ``render``, the server front ends and ``config show``."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Sequence

from dainr import __version__
from dainr.errors import DainrError, error_line

_COMMANDS = ("simulate", "recon", "render", "serve", "replay", "config")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dainr", description="DA-INR reconstruction of radial cine MRI (ISMRMRD).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    for name in _COMMANDS:
        try:
            mod = importlib.import_module(f"dainr.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"dainr.cli.{name}":
                raise
            continue
        sp = mod.add_parser(sub)
        sp.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
        sp.set_defaults(func=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dainr`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
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
