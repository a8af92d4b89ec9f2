"""The engine: one ``reconstruct`` behind every front end (CLI, Gadgetron gadget, server)."""

from dainr.recon.engine import reconstruct

__all__ = ["reconstruct"]
