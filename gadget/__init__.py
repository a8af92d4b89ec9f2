"""Gadgetron external Python gadget of DA-INR Recon: :mod:`gadget.dainr_gadget` (targets ``recon``, ``DainrGadget``).

Install the ``dainr-recon`` package into the Python environment Gadgetron uses (its conda env ``gadgetron``) and put
the chains of ``xml_configs/`` into ``$GADGETRON_HOME/share/gadgetron/config``.
"""
