"""``dainr serve`` and ``dainr replay``: an MRD/Gadgetron streaming server and its replay client.

* :mod:`dainr.server.listener` — :class:`ReconServer`: the listening socket and one session per client;
* :mod:`dainr.server.workers` — the reconstruction queue, one worker per device;
* :mod:`dainr.server.config_names` — which settings a client's CONFIG_FILE name or CONFIG_TEXT selects;
* :mod:`dainr.server.replay` — the client: a raw file sent over the protocol, the images stored.

Built on the streaming core :mod:`dainr.stream` (protocol, slice collection, the per-slice reconstruction).
"""

from dainr.server.listener import ReconServer, ServerOptions
from dainr.server.replay import ReplayResult, ServerError, replay

__all__ = ["ReconServer", "ReplayResult", "ServerError", "ServerOptions", "replay"]
