"""Choosing the torch device for a reconstruction."""

from __future__ import annotations

import torch

from dainr.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is a :class:`ConfigError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but no CUDA GPU is available to PyTorch; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} requested but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    return dev


def resolve_devices(spec: str) -> list[str]:
    """The devices a multi-slice reconstruction spreads its slices over, from ``--device``.

    ``auto`` -> every visible GPU, else ``["cpu"]``; ``cuda`` -> every visible GPU; ``cpu`` or ``cuda:N`` -> that
    one; a comma-separated list -> those (``cuda:0,1`` = ``cuda:0,cuda:1``; ``cpu,cpu`` = two CPU workers). A GPU
    named twice, a GPU that does not exist or an unknown name is a :class:`ConfigError`.
    """
    spec = spec.strip()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        resolve_device("cuda")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    devices: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if part.isdigit() and devices and devices[-1].startswith("cuda:"):
            part = f"cuda:{part}"  # cuda:0,1
        if part != "cpu" and not (part.startswith("cuda:") and part[5:].isdigit()):
            raise ConfigError(f"device {part!r} in {spec!r}: use auto, cpu, cuda, cuda:N or a list "
                              "(cuda:0,1 or cpu,cpu)")
        resolve_device(part)
        devices.append(part)
    gpus = [d for d in devices if d != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"device list {spec!r} names a GPU twice; give each GPU once (--concurrent-slices runs "
                          "several slices on each)")
    return devices
