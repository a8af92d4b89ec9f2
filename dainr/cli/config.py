"""``dainr config show [--preset P] [--config FILE] [--set K=V ...]``: print the resolved configuration as YAML.

It resolves exactly as ``dainr recon`` does (:func:`dainr.config.load_config`); this module imports no torch.
The YAML holds every key an override may set, so ``--config`` reads it back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dainr.config import DEFAULT_PRESET, available_presets, load_config


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--preset``, ``--config`` and ``--set``: the inputs of :func:`dainr.config.load_config`, the same in every
    command that resolves a configuration."""
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"configuration preset: {', '.join(available_presets())} or a YAML file "
                        f"(default {DEFAULT_PRESET})")
    p.add_argument("--config", type=Path, help="YAML file with config keys applied after the preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set dainr.steps=500 (repeatable)")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("config", help="print the resolved configuration as YAML",
                       description="Print the configuration a reconstruction with these --preset, --config and "
                                   "--set would use, as YAML (readable back with --config).")
    p.add_argument("action", choices=("show",), help="show: print the resolved configuration")
    add_config_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.preset, args.config, args.overrides)
    sources = [f"preset {cfg.preset}"] + ([f"--config {args.config}"] if args.config else [])
    sources += [f"--set {o}" for o in args.overrides]
    print(f"# {', '.join(sources)}")
    print(cfg.to_yaml(), end="")
    return 0
