"""Which configuration a server client asked for: a CONFIG_FILE name or a CONFIG_TEXT.

* ``CONFIG_FILE`` (id 1) carries a name: ``default``/``default.xml`` (the server's ``--default-config``), a preset
  (``fast``, ``paper``, ``cpu-test``), a YAML file in one of the server's config folders (``site`` or ``site.yaml``),
  or a Gadgetron chain (``dainr_raw.xml``) found in the config folders or the server's ``xml_configs`` whose DA-INR
  ``<external>`` step's properties are used, so ``gadgetron_ismrmrd_client -c dainr_raw.xml`` gives the same images
  from Gadgetron and from ``dainr serve``.
* ``CONFIG_TEXT`` (id 2) carries the text itself: Gadgetron chain XML (``gadgetron_ismrmrd_client -C chain.xml``),
  a bare ``<configuration>`` with ``<property>`` items, or a YAML mapping of properties/config keys.

Clients name files; they never give paths on the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from dainr.config import available_presets
from dainr.errors import ConfigError
from dainr.stream.settings import ReconSettings, properties_from_xml

#: The module of our gadget, whose <external> step a chain XML is read from.
GADGET_MODULE = "gadget.dainr_gadget"

#: The repository's chains, used when the server runs from a source checkout.
BUILTIN_XML_DIR = Path(__file__).resolve().parents[2] / "xml_configs"

_DEFAULT_NAMES = ("", "default", "default.xml")


def _xml_dirs(config_dirs: list[Path]) -> list[Path]:
    return config_dirs + ([BUILTIN_XML_DIR] if BUILTIN_XML_DIR.is_dir() else [])


def settings_for_name(name: str, default: ReconSettings, config_dirs: Iterable[Path] = ()) -> ReconSettings:
    """Settings for a CONFIG_FILE name (see the module docstring).

    Raises
    ------
    ConfigError
        For an unknown name, naming what exists.
    """
    dirs = [Path(d) for d in config_dirs]
    name = name.strip()
    if name in _DEFAULT_NAMES:
        return default
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"config {name!r} must be a name, not a path")
    if name.endswith(".xml"):
        for d in _xml_dirs(dirs):
            path = d / name
            if path.is_file():
                return ReconSettings.from_properties(properties_from_xml(path.read_bytes(), GADGET_MODULE),
                                                     config_dirs=dirs)
    elif name in available_presets():
        return ReconSettings.from_properties({"preset": name}, config_dirs=dirs)
    else:
        stem = name[:-5] if name.endswith(".yaml") else name[:-4] if name.endswith(".yml") else name
        for d in dirs:
            for candidate in (d / name, d / f"{stem}.yaml", d / f"{stem}.yml"):
                if candidate.is_file():
                    return ReconSettings.from_properties({"preset": candidate.name}, config_dirs=dirs)
    yamls = sorted({p.name for d in dirs for p in d.glob("*.y*ml")})
    xmls = sorted({p.name for d in _xml_dirs(dirs) for p in d.glob("dainr*.xml")})
    known = ", ".join(available_presets() + yamls + xmls)
    raise ConfigError(f"unknown config {name!r}; this server knows: default, {known}")


def settings_for_text(text: str, default_preset: str, config_dirs: Iterable[Path] = ()) -> ReconSettings:
    """Settings for a CONFIG_TEXT: chain or ``<configuration>`` XML, or a YAML mapping of properties."""
    dirs = [Path(d) for d in config_dirs]
    body = text.strip().rstrip("\0")
    if body.startswith("<"):
        props = properties_from_xml(body, GADGET_MODULE)
    else:
        try:
            props = yaml.safe_load(body) if body else {}
        except yaml.YAMLError:
            raise ConfigError("the config text is neither XML nor a YAML mapping of config keys") from None
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise ConfigError("the config text must be XML or a YAML mapping of config keys (e.g. 'method: adjoint')")
        props = {str(k): v if isinstance(v, dict) else ("" if v is None else str(v)) for k, v in props.items()}
    return ReconSettings.from_properties(props, default_preset=default_preset, config_dirs=dirs)
