"""The output files of ``dainr recon``, ``simulate`` and ``replay``: one rule for all of them, checked before any work.

The rule, for every output (the images or raw file of ``-o``, ``--truth``, ``--preview``, ``--report``):

* its folder exists and is writable (nothing is created: an error leaves no folder behind either); it is not a
  folder itself, nor an input or another output of the same command;
* nothing already there is replaced without ``--overwrite``. An ISMRMRD image file given as ``-o`` to ``recon`` or
  ``replay`` is the one exception: it gets the command's group added and keeps its other groups, as
  ``gadgetron_ismrmrd_client`` does; a group of that name already there, or an existing file that is not an image
  file (raw data, another kind of file), is refused. With ``--overwrite`` only that group is replaced, or the whole
  file when it is not an image file;
* each file is written under a temporary name and renamed at the end (:func:`dainr.mrd.atomic.atomic_path`), the
  small ones first held back until the main one is written, so an error or Ctrl-C leaves none of them behind.

:func:`check_outputs` applies the first two points before any reading or reconstruction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dainr.errors import ConfigError


@dataclass(frozen=True)
class Output:
    """One output file of a command.

    Attributes
    ----------
    path:
        Where it goes.
    option:
        The option that names it, for messages (``-o``, ``--preview``, ...).
    group:
        For ISMRMRD image files written group by group (``recon -o``, ``replay -o``): the HDF5 group the command
        writes; None for files written whole.
    suffixes:
        File name endings the output accepts (e.g. ``(".gif", ".png")`` for a preview); empty: any.
    """

    path: Path
    option: str
    group: str | None = None
    suffixes: tuple[str, ...] = ()


def _same(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def check_outputs(outputs: Sequence[Output], inputs: Sequence[tuple[Path, str]] = (), overwrite: bool = False
                  ) -> None:
    """Refuse, in one line, any output the module's rule does not allow; touches no file.

    Parameters
    ----------
    outputs:
        The command's outputs (None paths left out by the caller).
    inputs:
        ``(path, option)`` of the files the command reads, which no output may be.
    overwrite:
        ``--overwrite`` was given.

    Raises
    ------
    ConfigError
        Naming the option, the path, what is wrong and the fix.
    """
    taken = {_same(p): name for p, name in inputs}
    for out in outputs:
        key, path, opt = _same(out.path), out.path, out.option
        if key in taken:
            raise ConfigError(f"{opt} {path} is also {taken[key]}: give another file name")
        taken[key] = opt
        if out.suffixes and path.suffix.lower() not in out.suffixes:
            raise ConfigError(f"{opt} {path} must end in {' or '.join(out.suffixes)}")
        if path.is_dir():
            raise ConfigError(f"{opt} {path} is a folder; give a file name in it")
        folder = path.parent
        if not folder.is_dir():
            raise ConfigError(f"{opt} {path}: the folder {folder} does not exist; create it first "
                              f"(mkdir -p {folder})")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{opt} {path}: the folder {folder} is not writable; choose another folder")
        if not path.exists() or overwrite:
            continue
        if out.group is None:
            raise ConfigError(f"{opt} {path} exists; give --overwrite to replace it, or another file name")
        from dainr.mrd.images import image_file_groups

        groups = image_file_groups(path)
        if groups is None:
            raise ConfigError(f"{opt} {path} exists and is not an ISMRMRD image file; give --overwrite to replace "
                              "it, or another file name")
        if out.group in groups:
            raise ConfigError(f"{opt} {path} already has a group {out.group!r}; give --group NAME for a new group, "
                              "or --overwrite to replace that one (the file's other groups are kept)")


def add_overwrite_argument(p, what: str) -> None:
    """``--overwrite``, with the help text of the module's rule."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace existing outputs ({what}); without it an existing output is refused")
