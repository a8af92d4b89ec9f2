"""One process's optimisations per GPU at a time, across processes; any number of them within the process.

Gadgetron starts one gadget process per connection, and a ``dainr serve`` may share the machine: a process holds an
exclusive ``flock`` on ``$TMPDIR/dainr-gpu-<index>.lock`` while it reconstructs on that GPU, so the optimisations of
different processes queue instead of fighting for its memory. Within a process the lock is a shared lease: the
first slice to start on the GPU takes the ``flock``, slices starting while it is held share it (``dainr recon
--concurrent-slices``, the server's workers: the process plans their memory together), and the last one to finish
releases it. CPU runs take no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

log = logging.getLogger(__name__)


def _gpu_index(device: str) -> int | None:
    if device in ("auto", "cuda"):
        import torch

        return torch.cuda.current_device() if torch.cuda.is_available() else None
    if device.startswith("cuda:"):
        return int(device.split(":", 1)[1])
    return None


@dataclass
class _Lease:
    """This process's hold on one GPU's lock file: ``holders`` slices share the open, locked ``file``."""

    mutex: threading.Lock = field(default_factory=threading.Lock)
    holders: int = 0
    file: IO[bytes] | None = None


_leases: dict[Path, _Lease] = {}
_leases_lock = threading.Lock()


@contextlib.contextmanager
def gpu_lock(device: str, lock_dir: str | os.PathLike | None = None) -> Iterator[float]:
    """Hold the GPU of ``device`` for this process (shared with the process's other slices on it, exclusive of other
    processes); yields the seconds spent waiting (0 for CPU devices)."""
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
    with _leases_lock:
        lease = _leases.setdefault(path, _Lease())
    t0 = time.perf_counter()
    with lease.mutex:  # while one thread waits for another process, this process's others wait here, then share
        if lease.holders == 0:
            fh = open(path, "a+b")
            try:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("GPU %d is busy with another process's reconstruction; waiting", index)
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            except BaseException:
                fh.close()
                raise
            lease.file = fh
        lease.holders += 1
    try:
        yield time.perf_counter() - t0
    finally:
        with lease.mutex:
            lease.holders -= 1
            if lease.holders == 0:
                fcntl.flock(lease.file.fileno(), fcntl.LOCK_UN)
                lease.file.close()
                lease.file = None
