"""``dainr serve`` and ``dainr replay``: an MRD/Gadgetron streaming server and its replay client.

* :mod:`dainr.server.listener` — :class:`ReconServer`: the listening socket and one session per client;
* :mod:`dainr.server.workers` — the reconstruction queue, one worker per device;
* :mod:`dainr.server.config_names` — which settings a client's CONFIG_FILE name or CONFIG_TEXT selects, and the few
  keys a client may set itself;
* :mod:`dainr.server.health` — the health probe (``python -m dainr.server.health``);
* :mod:`dainr.server.replay` — the client: a raw file sent over the protocol, the images stored.

Built on the streaming core :mod:`dainr.stream` (protocol, slice collection, the per-slice reconstruction).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dainr.server.listener import ReconServer, ServerOptions
    from dainr.server.replay import ReplayResult, ServerError, replay

#: Imported on first use: ``python -m dainr.server.health`` (Docker's health probe) needs neither the engine nor
#: PyTorch.
_EXPORTS = {"ReconServer": "listener", "ServerOptions": "listener", "ReplayResult": "replay",
            "ServerError": "replay", "replay": "replay"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dainr.server' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dainr.server.{_EXPORTS[name]}"), name)
