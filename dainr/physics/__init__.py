"""MRI physics: radial trajectories, density compensation, multi-coil NUFFT operators."""

from dainr.physics.density import ramp_density
from dainr.physics.nufft import MultiCoilNufft
from dainr.physics.trajectory import (
    GOLDEN_ANGLE_RAD,
    readout_positions,
    spoke_angles,
    radial_trajectory,
)

__all__ = [
    "GOLDEN_ANGLE_RAD",
    "MultiCoilNufft",
    "radial_trajectory",
    "ramp_density",
    "readout_positions",
    "spoke_angles",
]
