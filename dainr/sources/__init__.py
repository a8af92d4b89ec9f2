"""Ground-truth sources for simulations built from real data (the analytic phantom needs none).

Every source is a function ``(matrix, frames=None, coils=12, seed=0, data_dir=None) -> RealCine``; ``REAL_SOURCES``
names them as ``dainr simulate --source`` does.
"""

from dainr.sources.acdc import acdc_cine, acdc_images
from dainr.sources.cmrx import cmrx_cine, cmrx_images
from dainr.sources.radial_frame import radial_cardiac_frame, radial_coil_maps
from dainr.sources.rat import rat_cine, rat_images
from dainr.sources.realdata import RealCine

#: The real-data sources by name: the ACDC human cine, the rat cine, the moving CMRxRecon frame.
REAL_SOURCES = {"acdc": acdc_cine, "rat": rat_cine, "cmrx": cmrx_cine}

__all__ = ["REAL_SOURCES", "RealCine", "acdc_cine", "acdc_images", "cmrx_cine", "cmrx_images", "radial_cardiac_frame",
           "radial_coil_maps", "rat_cine", "rat_images"]
