#!/bin/bash
# Entrypoint of the dainr-gadgetron image: the warm DA-INR gadget for <connect> chains (xml_configs/dainr_connect.xml,
# the recommended scanner set-up), then Gadgetron through the base image's own entrypoint, which activates the conda
# env `gadgetron` and execs `gadgetron "$@"` (so <execute> chains such as dainr_raw.xml work as before).
#
#   DAINR_GADGET_PORT   port the gadget listens on, on 127.0.0.1 (default 18002, dainr_connect.xml's); empty: no gadget
#   DAINR_GADGET_ARGS   more options of `python -m gadget.dainr_gadget` (e.g. "--device cuda:1 --timeout 120")
#
# The gadget listens at once and warms up (PyTorch, the engine, CUDA) while Gadgetron starts; it is restarted after
# 5 s if it ever exits. tini (-g) passes a stop signal to both.
set -eo pipefail

if [ -n "${DAINR_GADGET_PORT-18002}" ]; then
    (
        while true; do
            # shellcheck disable=SC2086  # DAINR_GADGET_ARGS is a list of options
            "${GADGETRON_HOME}/bin/python" -m gadget.dainr_gadget --port "${DAINR_GADGET_PORT-18002}" \
                ${DAINR_GADGET_ARGS} || true
            echo "dainr entrypoint: the DA-INR gadget exited; restarting it in 5 s" >&2
            sleep 5
        done
    ) &
fi

exec /opt/entrypoint.sh "$@"
