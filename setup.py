"""Packaging beyond setup.cfg: one ``.pth`` file at the top of site-packages, and the Gadgetron chains.

The ``.pth`` file's single line runs :func:`gadget.startup_guard.install` at interpreter start-up, only in processes
started as ``python -m gadgetron`` (how Gadgetron starts a Python gadget), so gadgetron-python's connection set-up
cannot spin forever on a socket Gadgetron has closed; every other Python process pays one list comparison.

The chains of ``xml_configs/`` (kept at the top of the repository for Gadgetron users and the docker images) are
shipped as package data in ``dainr/xml_configs/``, where :mod:`dainr.server.config_names` finds them in an installed
package; an editable install reads them from the checkout.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "dainr_recon_gadgetron_guard.pth"
XML_CONFIGS = Path(__file__).resolve().parent / "xml_configs"
PTH_LINE = ('import sys; sys.orig_argv[1:3] == ["-m", "gadgetron"] and '
            '__import__("gadget.startup_guard").startup_guard.install()\n')


class BuildPyWithPth(build_py):
    """``build_py`` that also writes the ``.pth`` where the wheel's top level is assembled (regular and editable),
    and copies the chains into a regular build."""

    def run(self) -> None:
        super().run()
        # An editable wheel is assembled in the install command's folder; a regular one from build_lib.
        top = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        Path(top).mkdir(parents=True, exist_ok=True)
        Path(top, PTH_NAME).write_text(PTH_LINE)
        if not self.editable_mode and XML_CONFIGS.is_dir():  # absent where only the packages were copied
            target = Path(self.build_lib, "dainr", "xml_configs")
            target.mkdir(parents=True, exist_ok=True)
            for chain in sorted(XML_CONFIGS.glob("*.xml")):
                self.copy_file(str(chain), str(target / chain.name))


setup(cmdclass={"build_py": BuildPyWithPth})
