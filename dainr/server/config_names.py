"""Which configuration a server client asked for: a CONFIG_FILE name or a CONFIG_TEXT.

* ``CONFIG_FILE`` (id 1) carries a name: ``default``/``default.xml`` (the server's ``--default-config``), a built-in
  preset (:func:`dainr.config.available_presets`), a YAML file in one of the server's config folders (``site`` or
  ``site.yaml``), or a Gadgetron chain (``dainr_raw.xml``, or ``dainr_raw`` when no preset or YAML has that name)
  found in the config folders or the server's ``xml_configs`` whose DA-INR ``<external>`` step's properties are used,
  so ``gadgetron_ismrmrd_client -c dainr_raw.xml`` gives the same images from Gadgetron and from ``dainr serve``.
* ``CONFIG_TEXT`` (id 2) carries the text itself: Gadgetron chain XML (``gadgetron_ismrmrd_client -C chain.xml``),
  a bare ``<configuration>`` with ``<property>`` items, or a YAML mapping of properties/config keys.

Clients name files; they never give paths on the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from dainr.config import available_presets, find_preset
from dainr.errors import ConfigError
from dainr.stream.settings import ReconSettings, properties_from_xml

#: The module of our gadget, whose <external> step a chain XML is read from.
GADGET_MODULE = "gadget.dainr_gadget"

_PACKAGE = Path(__file__).resolve().parents[1]
#: The built-in chains: shipped in an installed package (``dainr/xml_configs``, see setup.py), else a checkout's.
BUILTIN_XML_DIR = _PACKAGE / "xml_configs" if (_PACKAGE / "xml_configs").is_dir() else _PACKAGE.parent / "xml_configs"

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
        chain = _chain_settings(name, dirs)
        if chain is not None:
            return chain
    elif find_preset(name, dirs) is not None:
        return ReconSettings.from_properties({"preset": name}, config_dirs=dirs)
    else:
        chain = _chain_settings(f"{name}.xml", dirs)  # a chain named without .xml: `-c dainr_raw`
        if chain is not None:
            return chain
    yamls = sorted({p.name for d in dirs for p in d.glob("*.y*ml")})
    xmls = sorted({p.name for d in _xml_dirs(dirs) for p in d.glob("dainr*.xml")})
    known = ", ".join(available_presets() + yamls + xmls)
    raise ConfigError(f"unknown config {name!r}; this server knows: default, {known}")


def _chain_settings(file_name: str, dirs: list[Path]) -> ReconSettings | None:
    """Settings of the chain ``file_name`` (the DA-INR ``<external>`` step's properties), None when absent."""
    for d in _xml_dirs(dirs):
        path = d / file_name
        if path.is_file():
            return ReconSettings.from_properties(properties_from_xml(path.read_bytes(), GADGET_MODULE),
                                                 config_dirs=dirs)
    return None


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
