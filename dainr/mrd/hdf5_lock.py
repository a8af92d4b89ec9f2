"""One lock for this process's HDF5 file access.

h5py serialises its calls with a global lock, but reading variable-length data from several threads at once can
still crash the process (h5py issues #1764 and #2920: a segmentation fault, seen here with two replay clients reading
the ISMRMRD acquisition table, whose ``traj`` and ``data`` fields are variable-length, in one process). Every
function of :mod:`dainr.mrd` that opens an HDF5 file holds :data:`HDF5_LOCK` (:func:`hdf5_locked`) for the whole
access, so files are read and written one at a time per process; reading a raw file is short next to a fit.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

#: Held by every HDF5 file access of :mod:`dainr.mrd` (re-entrant: a locked function may call another).
HDF5_LOCK = threading.RLock()


def hdf5_locked(func: F) -> F:
    """``func`` run while holding :data:`HDF5_LOCK`."""
    @functools.wraps(func)
    def locked(*args, **kwargs):
        with HDF5_LOCK:
            return func(*args, **kwargs)
    return locked  # type: ignore[return-value]
