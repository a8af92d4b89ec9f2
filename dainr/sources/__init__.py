"""Ground-truth sources for simulations built from real data (the analytic phantom needs none)."""

from dainr.sources.acdc import AcdcCine, acdc_cine, acdc_images, radial_cardiac_frame, radial_coil_maps

__all__ = ["AcdcCine", "acdc_cine", "acdc_images", "radial_cardiac_frame", "radial_coil_maps"]
