"""``dainr.mrd`` is the ISMRMRD adapter: which modules may import ismrmrd (and its xsdata headers) at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import dainr

PACKAGE = Path(dainr.__file__).parent

#: Outside dainr.mrd, only code that moves ismrmrd objects over a socket: the MRD wire format and the replay client
#: (ismrmrd's own ProtocolSerializer). The Gadgetron gadget (gadget/, outside the package) is Gadgetron-only code.
WIRE = {"stream/protocol.py", "server/replay.py"}


def _runtime_imports(path: Path) -> set[str]:
    """Top-level names of the modules ``path`` imports, leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_adapter_and_the_wire_import_ismrmrd():
    importers = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if _runtime_imports(p) & {"ismrmrd", "xsdata"}}
    outside = {p for p in importers if not p.startswith("mrd/")}
    assert outside == WIRE, sorted(outside)
    assert any(p.startswith("mrd/") for p in importers)
