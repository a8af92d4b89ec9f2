"""Where the C++ MRD tools are (ISMRMRD 1.15's utilities and Gadgetron's ``gadgetron_ismrmrd_client``), and running
them.

They are found in ``$DAINR_MRD_TOOLS/bin``, by default ``.mrd-tools/bin`` in the repository, where ``make interop``
builds them with ``../shared/tools/build-mrd-cpp-tools``. A test that needs a missing tool is skipped, naming it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Environment variable naming the tools' install prefix.
ENV = "DAINR_MRD_TOOLS"
#: The longest any one tool may run here (they take well under a second on the tiny files).
TOOL_TIMEOUT_S = 120.0


def tools_dir() -> Path:
    """The tools' install prefix (``$DAINR_MRD_TOOLS``, else ``.mrd-tools`` in the repository)."""
    return Path(os.environ.get(ENV) or REPO / ".mrd-tools")


def tool(name: str) -> Path:
    """The path of one tool; skips the calling test when it is not built."""
    path = tools_dir() / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"C++ MRD tool {name} not found in {tools_dir() / 'bin'}: run `make interop` (builds ISMRMRD "
                    f"1.15's tools and gadgetron_ismrmrd_client there) or set {ENV} to their install prefix")
    return path


def run_tool(name: str, args: Sequence[str | os.PathLike], cwd: Path | None = None,
             stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a tool to completion; its output (bytes) and return code are the caller's to check."""
    return subprocess.run([str(tool(name)), *map(str, args)], input=stdin, capture_output=True, cwd=cwd,
                          timeout=TOOL_TIMEOUT_S)


def cpp_reserialised_header(xml: bytes, workdir: Path) -> bytes:
    """``xml`` after C++ ISMRMRD's ``deserialize`` + ``serialize``, what Gadgetron does to every header (with
    ``ismrmrd_test_xml``, which writes ``processed.xml`` into its working folder)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "header.xml").write_bytes(xml)
    res = run_tool("ismrmrd_test_xml", ["header.xml"], cwd=workdir)
    assert res.returncode == 0, f"ismrmrd_test_xml failed (rc {res.returncode}): {res.stderr.decode()[-500:]}"
    return (workdir / "processed.xml").read_bytes()
