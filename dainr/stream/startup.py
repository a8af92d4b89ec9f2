"""The engine's one-time start-up, paid ahead of the first slice: in a background thread while a front end reads its
input (``dainr recon``), once per worker process before its first job (``dainr serve``), or once when the passive
gadget starts listening (``python -m gadget.dainr_gadget --port N``).

What a process pays before its first reconstruction can start, besides its own code:

* ``import torch`` (2-4 s);
* the engine's modules, and on the CPU TorchDynamo: ``torch.optim`` imports ``torch._dynamo`` (with sympy and the
  compiler stack) at an optimizer's first use, 1-6 s although nothing here compiles; on a GPU the fit's AdamW is
  :class:`~dainr.recon.dainr_step.FusedAdamW`, which does not go through ``torch.optim`` (no TorchDynamo at all);
* CUDA: the driver's initialisation and a context on each GPU the run uses (the first allocation).

:func:`warm_up` pays them now; the CUDA contexts are created in a thread of their own, as the driver works without
holding the GIL while the imports hold it. :class:`EngineStartup` runs :func:`warm_up` in a daemon thread, so
reading the input overlaps it, and a Ctrl-C or an error of the front end never waits for it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

#: A phase of the start-up: (name, start, end), ``time.time()`` seconds.
Phase = tuple[str, float, float]


@dataclass
class StartupReport:
    """What :func:`warm_up` did.

    Attributes
    ----------
    phases:
        ``(name, start, end)`` in ``time.time()`` seconds, in the order they ended: ``import torch``,
        ``import engine`` (the engine's modules and TorchDynamo), ``CUDA init`` (contexts on the run's GPUs; absent
        on a CPU run).
    cuda_devices:
        The GPUs given a context.
    """

    phases: list[Phase] = field(default_factory=list)
    cuda_devices: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Wall seconds from the first phase's start to the last phase's end (0 when none completed)."""
        if not self.phases:
            return 0.0
        return max(end for _, _, end in self.phases) - min(start for _, start, _ in self.phases)

    def summary(self) -> str:
        """One line for a log: ``import torch 2.10 s, import engine 1.32 s, CUDA init 0.41 s (cuda:0)``."""
        parts = ", ".join(f"{name} {end - start:.2f} s" for name, start, end in self.phases) or "nothing completed"
        return parts + (f" ({', '.join(self.cuda_devices)})" if self.cuda_devices else "")


def _cuda_devices(spec: str | None) -> list[str]:
    """The GPUs a device spec names (``auto``, ``cuda``, ``cuda:1``, ``cuda:0,1``; none for ``cpu``); none when the
    spec is bad (the front end reports that itself, in its own words)."""
    import torch

    if not torch.cuda.is_available():
        return []
    from dainr.recon.device import resolve_devices

    try:
        return [d for d in resolve_devices(spec or "auto") if d.startswith("cuda")]
    except Exception:  # noqa: BLE001 - a bad spec is the caller's error to report
        return []


def _init_cuda(devices: list[str]) -> None:
    import torch

    from dainr.recon.concurrent import empty_cache

    torch.cuda.init()
    for d in devices:
        # A first allocation creates the GPU's context (PyTorch's op releases the GIL meanwhile) ...
        torch.empty(1, device=d)
    # ... and is handed back, so the memory plan measures the same free memory as without a warm-up.
    empty_cache()


def warm_up(devices: str | None = "auto", report: StartupReport | None = None) -> StartupReport:
    """Import PyTorch, the engine and TorchDynamo, and create a CUDA context on each GPU that ``devices`` names.

    Parameters
    ----------
    devices:
        A device spec as :func:`dainr.recon.device.resolve_devices` takes it; ``cpu``: no CUDA.
    report:
        Filled in as the phases end (so a caller keeps the phases done before a failure); default a new one.

    Returns
    -------
    The :class:`StartupReport`. Nothing a reconstruction computes depends on it: only when the costs are paid.
    """
    report = StartupReport() if report is None else report
    t = time.time()
    import torch  # noqa: F401

    report.phases.append(("import torch", t, time.time()))
    # The engine first: it sets the cuBLAS workspace variable that deterministic runs need before cuBLAS starts.
    t = time.time()
    import dainr.recon  # noqa: F401

    cuda: threading.Thread | None = None
    report.cuda_devices = _cuda_devices(devices)
    if report.cuda_devices:
        cuda_phase: list[Phase] = []

        def init() -> None:
            t0 = time.time()
            try:
                _init_cuda(report.cuda_devices)
            except Exception:  # noqa: BLE001 - the run meets the failure itself and reports it
                return
            cuda_phase.append(("CUDA init", t0, time.time()))

        cuda = threading.Thread(target=init, name="dainr-cuda-init", daemon=True)
        cuda.start()
    if not report.cuda_devices:
        import torch._dynamo  # noqa: F401  (torch.optim's on the CPU, see the module docstring)

    report.phases.append(("import engine", t, time.time()))
    if cuda is not None:
        cuda.join()
        report.phases.extend(cuda_phase)  # empty when it failed
    return report


class EngineStartup:
    """:func:`warm_up` in a daemon thread, started at construction.

    :meth:`wait` returns its report once it is done; a failure there is not raised (the reconstruction, which needs
    the same imports and devices, meets it again and reports it as it always does), the report then holding the phases
    that completed. ``on_done(report)``, when given, is called in that thread before :meth:`wait` returns (a long-lived
    front end logs the warm-up there).
    """

    def __init__(self, devices: str | None = "auto",
                 on_done: Callable[[StartupReport], None] | None = None) -> None:
        self.report = StartupReport()
        self._on_done = on_done
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(devices,), name="dainr-startup", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        """Whether the start-up has ended (and ``on_done`` returned)."""
        return self._done.is_set()

    def _run(self, devices: str | None) -> None:
        try:
            warm_up(devices, self.report)
        except BaseException:  # noqa: BLE001 - see the class docstring
            pass
        try:
            if self._on_done is not None:
                self._on_done(self.report)
        finally:
            self._done.set()

    def wait(self) -> StartupReport:
        """Block until the start-up is done (a Ctrl-C interrupts the wait at once); its report."""
        while not self._done.wait(0.1):
            pass
        return self.report
