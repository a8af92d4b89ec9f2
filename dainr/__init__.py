"""DA-INR Recon: dynamic-aware implicit neural representation reconstruction of radial cine MRI.

Public entry points: :func:`dainr.recon.reconstruct` (the engine), :mod:`dainr.mrd` (the ISMRMRD adapter) and the
``dainr`` command line (:mod:`dainr.cli`).
"""

__version__ = "0.1.0"
