"""``dainr config show [--preset P] [--config FILE] [--set K=V ...]``: print the resolved configuration as YAML.

It resolves exactly as ``dainr recon`` does (:func:`dainr.config.load_config`); this module imports no torch.
The YAML holds every key an override may set, so ``--config`` reads it back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dainr.config import DEFAULT_PRESET, available_presets, load_config


#: The preset ``dainr recon`` takes without ``--preset`` on a machine without a CUDA GPU.
CPU_PRESET = "cpu"


def default_preset(device: str) -> str:
    """The preset ``dainr recon`` uses when none is named: :data:`~dainr.config.DEFAULT_PRESET` (sized for a GPU)
    when ``device`` (``auto``, ``cpu``, ``cuda``..., or a list such as ``cuda:0,1``) resolves to CUDA GPUs, else
    :data:`CPU_PRESET`."""
    from dainr.recon.device import resolve_devices

    return DEFAULT_PRESET if all(d.startswith("cuda") for d in resolve_devices(device)) else CPU_PRESET


def add_config_arguments(p: argparse.ArgumentParser, default: str | None = DEFAULT_PRESET,
                         default_text: str | None = None) -> None:
    """``--preset``, ``--config`` and ``--set``: the inputs of :func:`dainr.config.load_config`, the same in every
    command that resolves a configuration (``default``: the preset when none is given, described by
    ``default_text``)."""
    p.add_argument("--preset", default=default,
                   help=f"configuration preset: {', '.join(available_presets())} or a YAML file "
                        f"(default {default_text or default})")
    p.add_argument("--config", type=Path, help="YAML file with config keys applied after the preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set dainr.steps=500 (repeatable)")


def add_slice_arguments(p: argparse.ArgumentParser, slices: str) -> None:
    """``--concurrent-slices`` and ``--batch-slices`` (:func:`dainr.stream.exam.plan_exam`), the same in every command
    that reconstructs several slices (``slices``: which ones, for the help)."""
    p.add_argument("--concurrent-slices", type=int, metavar="N",
                   help=f"{slices}: fits (slices alone, or batches of --batch-slices) run at once on each device "
                        "(default: as many as fit the GPU memory, at most 6; 1 on the CPU); each slice's images are "
                        "those it gets alone")
    p.add_argument("--batch-slices", type=int, metavar="N",
                   help=f"DA-INR, {slices}: fit up to N slices of the same shape together in one batched step (default "
                        "1: every slice alone, measured faster on an H200; its images are then exactly those it gets "
                        "alone; batched, they agree to float tolerance on a GPU)")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("config", description="Print the configuration a reconstruction with these --preset, --config "
                                             "and --set would use, as YAML (readable back with --config).")
    p.add_argument("action", choices=("show",), help="show: print the resolved configuration")
    add_config_arguments(p, default_text=f"{DEFAULT_PRESET}, as dainr recon with a CUDA GPU; without one, recon "
                                         f"uses {CPU_PRESET}")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.preset, args.config, args.overrides)
    sources = [f"preset {cfg.preset}"] + ([f"--config {args.config}"] if args.config else [])
    sources += [f"--set {o}" for o in args.overrides]
    print(f"# {', '.join(sources)}")
    print(cfg.to_yaml(), end="")
    return 0
