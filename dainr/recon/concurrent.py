"""What lets several reconstructions run at once in one process (threads), each giving the pixels it gives alone.

:func:`dainr.recon.reconstruct` may be called from several threads at once (``dainr recon --concurrent-slices``, the
server's workers). Three pieces of PyTorch state are process-wide, and each is handled here:

* the global random generator, from which the network and the MDSR features are initialised: :func:`seeded` draws
  them under a process-wide lock from a forked CPU generator seeded with the slice's seed, so no other thread's
  draws can interleave (and the caller's generator state is left as it was);
* the deterministic-algorithms switch: :func:`deterministic` keeps it on while any running reconstruction asks for it
  (a save/restore per call would let the first one to finish switch it off under the others);
* the CUDA caching allocator and stream capture: only one CUDA-graph capture may be underway at a time, and
  ``torch.cuda.empty_cache()`` or a device-wide synchronisation must never run during one. :data:`device_wide` is the
  lock every such call holds (:func:`empty_cache` for the cache).

Each thread runs its slices on a CUDA stream of its own (:func:`own_stream`), so the kernels of several slices share
the GPU; on the CPU nothing changes.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator

import torch

#: Held around anything that must not overlap a CUDA-graph capture in another thread of the process: the capture
#: itself, ``torch.cuda.empty_cache()``, ``torch.cuda.synchronize()``. Re-entrant.
device_wide = threading.RLock()

_rng_lock = threading.RLock()
_det_lock = threading.Lock()
_det_users = 0
_det_before: tuple[bool, bool] | None = None
_streams = threading.local()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """PyTorch's global CPU generator seeded with ``seed`` inside the block, for this thread alone.

    The block holds a process-wide lock, so the random draws of another thread (another slice's initialisation) can
    never interleave with this one's; the generator state before the block is restored after it. Keep the block to
    the random initialisation (it serialises), and build on the CPU: CUDA generators are not forked.
    """
    with _rng_lock, torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield


def _set_deterministic(on: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms(on, warn_only=warn_only)`` without its import of TorchInductor.

    The public switch also sets ``torch._inductor.config.deterministic``, and importing that module imports
    TorchDynamo, sympy and the compiler stack: 2-4 s of a process's start-up, for code that nothing here compiles.
    The inductor flag is still set when something else already imported it.
    """
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = on
    torch._C._set_deterministic_algorithms(on, warn_only=warn_only)


@contextlib.contextmanager
def deterministic(on: bool) -> Iterator[None]:
    """PyTorch's deterministic algorithms (warn-only) while this block and any other thread's ``deterministic(True)``
    block run; the setting found before the first block is restored when the last one ends."""
    global _det_users, _det_before
    with _det_lock:
        if _det_users == 0:
            _det_before = (torch.are_deterministic_algorithms_enabled(),
                           torch.is_deterministic_algorithms_warn_only_enabled())
            _set_deterministic(on, warn_only=True)
        elif on:
            _set_deterministic(True, warn_only=True)
        _det_users += 1
    try:
        yield
    finally:
        with _det_lock:
            _det_users -= 1
            if _det_users == 0:
                _set_deterministic(*_det_before)


def empty_cache() -> None:
    """``torch.cuda.empty_cache()``, never during another thread's CUDA-graph capture (a no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        with device_wide:
            torch.cuda.empty_cache()


@contextlib.contextmanager
def own_stream(device: str) -> Iterator[None]:
    """On a CUDA device (``cuda``, ``cuda:N``, or ``auto`` with a GPU): make it this thread's current device and run
    the block on a CUDA stream that belongs to this thread (created on first use, reused by its later blocks so the
    caching allocator reuses its memory). On the CPU: nothing."""
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not name.startswith("cuda"):
        yield
        return
    index = torch.device(name).index
    index = torch.cuda.current_device() if index is None else index
    streams = getattr(_streams, "by_device", None)
    if streams is None:
        streams = _streams.by_device = {}
    if index not in streams:
        streams[index] = torch.cuda.Stream(index)
    with torch.cuda.device(index), torch.cuda.stream(streams[index]):
        yield
