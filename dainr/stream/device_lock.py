"""One optimisation per GPU at a time, across processes.

Gadgetron starts one gadget process per connection, and a ``dainr serve`` may share the machine: each takes an
exclusive ``flock`` on ``$TMPDIR/dainr-gpu-<index>.lock`` around a reconstruction on that GPU, so optimisations on one
GPU queue instead of fighting for its memory. CPU runs take no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def _gpu_index(device: str) -> int | None:
    if device == "auto":
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.current_device()
    if device == "cuda":
        import torch

        return torch.cuda.current_device() if torch.cuda.is_available() else None
    if device.startswith("cuda:"):
        return int(device.split(":", 1)[1])
    return None


@contextlib.contextmanager
def gpu_lock(device: str, lock_dir: str | os.PathLike | None = None) -> Iterator[float]:
    """Hold the GPU of ``device`` exclusively; yields the seconds spent waiting (0 for CPU devices)."""
    index = _gpu_index(device)
    if index is None:
        yield 0.0
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield 0.0
        return
    path = Path(lock_dir or tempfile.gettempdir()) / f"dainr-gpu-{index}.lock"
    t0 = time.perf_counter()
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("GPU %d is busy with another reconstruction; waiting", index)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
