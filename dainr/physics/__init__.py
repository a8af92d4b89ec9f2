"""MRI physics: radial trajectories, density compensation, multi-coil NUFFT operators.

The names below are imported on first use: the trajectory rules (NumPy only) serve the raw-file reader
(:mod:`dainr.mrd`), which therefore reads a file without importing PyTorch (``dainr recon`` imports PyTorch meanwhile,
in the background).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dainr.physics.density import ramp_density
    from dainr.physics.nufft import MultiCoilNufft
    from dainr.physics.trajectory import GOLDEN_ANGLE_RAD, radial_trajectory, readout_positions, spoke_angles

#: Where each name lives.
_EXPORTS = {
    "GOLDEN_ANGLE_RAD": "trajectory", "radial_trajectory": "trajectory", "readout_positions": "trajectory",
    "spoke_angles": "trajectory", "ramp_density": "density", "MultiCoilNufft": "nufft",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dainr.physics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dainr.physics.{_EXPORTS[name]}"), name)
