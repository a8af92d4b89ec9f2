"""Guard for the first seconds of ``python -m gadgetron PORT MODULE TARGET``, before any gadget code runs.

gadgetron-python's ``__main__`` builds ``Connection(socket)``, which reads CONFIG and HEADER through its own
``SocketWrapper``, and only then imports the gadget's module. That wrapper loops forever once the peer has closed
(``recv`` returns ``b""``), so a Gadgetron that sends CONFIG and then drops the socket (for instance because its C++
ISMRMRD library refused to re-serialise the header) leaves a child spinning on the CPU for good.

:func:`install` makes ``Connection`` read through :class:`gadget.channel.SafeSocket` instead: end of file raises,
CONFIG and HEADER must arrive within :data:`SETUP_TIMEOUT_S`, and a failure there ends the child with one log line
and exit code 1. It runs at interpreter start-up from the ``.pth`` file that dainr-recon installs into
site-packages (see ``setup.py``), only in processes started as ``python -m gadgetron``, so it guards every Python
gadget that Gadgetron starts from this environment.
"""

from __future__ import annotations

import functools
import logging

#: Seconds a Gadgetron-started child waits for CONFIG and HEADER (gadgetron-python's own connect time-out is 30 s).
SETUP_TIMEOUT_S = 30.0

log = logging.getLogger("dainr.gadget")


def install() -> None:
    """Patch gadgetron-python's ``Connection`` (idempotent): safe reads and a deadline while it reads CONFIG and
    HEADER, a one-line exit (code 1) when Gadgetron goes away or stays silent meanwhile."""
    from gadgetron.external.connection import Connection

    from gadget.channel import PeerGone, SafeSocket

    if getattr(Connection, "_dainr_setup_guard", False):
        return
    original_init = Connection.__init__

    @functools.wraps(original_init)
    def guarded_init(self, sock) -> None:
        try:
            original_init(self, sock)
        except PeerGone as exc:
            log.error("Gadgetron external module: %s before the module started; exiting", exc)
            raise SystemExit(1) from None
        self.socket.end_setup()

    Connection.SocketWrapper = functools.partial(SafeSocket, setup_timeout_s=SETUP_TIMEOUT_S)
    Connection.__init__ = guarded_init
    Connection._dainr_setup_guard = True
