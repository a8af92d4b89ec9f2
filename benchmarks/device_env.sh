# Sourced by the GPU benchmark scripts: the lent machine's Python environment.
#   PY                  the interpreter (.venv/bin/python when there is one, else python3; set PY to override)
#   use_device_wheels   installs the carried .whl/*.whl (../shared/tools/device-wheels) into /tmp/site and puts it,
#                       and the repository, on PYTHONPATH; does nothing when no wheel was carried
if [ -z "${PY:-}" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi

use_device_wheels() {
    if compgen -G ".whl/*.whl" >/dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-}
    fi
}
