"""What a streaming front end needs to know to reconstruct: the config tree plus the output options.

The gadget (``<property>`` items of its ``<configuration>``), the server (a config name or text) and the CLI all end
in :func:`dainr.config.load_config` with a preset, an optional YAML file and ``KEY=VALUE`` overrides, so the same
choices give the same :class:`~dainr.config.Config` and the same pixels.

Property names (gadget ``<property name=... value=...>``, server XML or YAML):

=================  =========================================================================================
``preset``         a built-in preset (``dainr/presets/``; ``DEFAULT_PRESET`` when absent) or a YAML file
``config_file``    YAML with config keys applied after the preset (``config`` is accepted as an alias)
``method``         ``dainr``, ``adjoint`` or ``cgsense`` (same as ``--method``)
``device``         ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (same as ``--device``)
``series_index``   ``image_series_index`` of the output images (default 1)
``complex_output`` ``true`` for complex images instead of float32 magnitude
``motion``         ``true``: DA-INR's displacement to frame 0 (mm) as series ``series_index + 1`` (2 channels: x, y)
``jacobian``       ``true``: the deformation's Jacobian determinant as series ``series_index + 2``
``render_frames``  DA-INR: render this many frames over the acquired ones (0: the acquired frames)
``render_matrix``  DA-INR: render at this many rows, same field of view (0: the acquired matrix)
any config key     e.g. ``dainr.steps``, ``prep.virtual_coils``, ``seed`` (same as ``--set KEY=VALUE``)
=================  =========================================================================================
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from dainr.config import DEFAULT_PRESET, Config, load_config, nested_key
from dainr.data import RenderRequest
from dainr.errors import ConfigError

#: Other names of the front-end properties (``config`` for ``config_file`` ...).
ALIASES = {"config": "config_file", "series": "series_index", "complex": "complex_output"}
_FRONT_END_KEYS = ("preset", "config_file", "series_index", "complex_output", "motion", "jacobian", "render_frames",
                   "render_matrix")
_TOP_LEVEL_KEYS = tuple(f.name for f in dataclasses.fields(Config))


@dataclass(frozen=True)
class ReconSettings:
    """A validated configuration plus the output options of a streaming reconstruction.

    Attributes
    ----------
    config:
        The validated config tree.
    series_index:
        ``image_series_index`` of the output images.
    complex_output:
        Complex64 images instead of float32 magnitude.
    render:
        DA-INR only: the motion series and another frame count or matrix (:class:`~dainr.data.RenderRequest`).
    source:
        Where the settings came from, for logs (e.g. ``preset cpu-test``).
    """

    config: Config
    series_index: int = 1
    complex_output: bool = False
    source: str = ""
    render: RenderRequest = RenderRequest()

    def __post_init__(self) -> None:
        if not 1 <= int(self.series_index) <= 65535:
            raise ConfigError(f"series_index {self.series_index} must be in 1..65535")
        if self.render.needs_model and self.config.method != "dainr":
            raise ConfigError(f"motion, jacobian, render_frames and render_matrix need method dainr, not "
                              f"{self.config.method}")
        if (self.render.motion or self.render.jacobian) and int(self.series_index) + 2 > 65535:
            raise ConfigError(f"series_index {self.series_index} leaves no room for the motion series "
                              "(series_index + 1 and + 2); use at most 65533")

    @classmethod
    def load(cls, preset: str = DEFAULT_PRESET, config_file: str | Path | None = None,
             overrides: Iterable[str | dict[str, Any]] = (), series_index: int = 1,
             complex_output: bool = False, render: RenderRequest = RenderRequest()) -> ReconSettings:
        """Settings from the same inputs as ``dainr recon --preset P --config F --set K=V``."""
        config = load_config(preset, config_file, list(overrides))
        return cls(config=config, series_index=int(series_index), complex_output=bool(complex_output),
                   source=f"preset {config.preset}" + (f" + {Path(config_file).name}" if config_file else ""),
                   render=render)

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any], *, default_preset: str = DEFAULT_PRESET
                        ) -> ReconSettings:
        """Settings from name/value pairs (gadget ``<property>`` items, the server's XML or YAML).

        Parameters
        ----------
        properties:
            Names as in the module docstring; values are strings (or YAML scalars, or nested mappings of config
            keys). ``preset`` and ``config_file`` are names or paths on this machine (the server resolves a
            client's names to its own files first: :mod:`dainr.server.config_names`).
        default_preset:
            Preset used when ``preset`` is absent.

        Raises
        ------
        ConfigError
            One line naming the bad property and the valid ones.
        """
        props = {ALIASES.get(k.strip(), k.strip()): v for k, v in properties.items()}
        preset = str(props.pop("preset", "") or default_preset).strip()
        config_file = str(props.pop("config_file", "") or "").strip() or None
        series_index = _as_int(props.pop("series_index", 1), "series_index")
        complex_output = _as_bool(props.pop("complex_output", False), "complex_output")
        render = RenderRequest(frames=_as_int(props.pop("render_frames", 0), "render_frames"),
                               matrix=_as_int(props.pop("render_matrix", 0), "render_matrix"),
                               motion=_as_bool(props.pop("motion", False), "motion"),
                               jacobian=_as_bool(props.pop("jacobian", False), "jacobian"))
        overrides: list[str | dict[str, Any]] = []
        for key, value in props.items():
            if not key:
                raise ConfigError("a property has an empty name")
            if "." not in key and key not in _TOP_LEVEL_KEYS:
                valid = ", ".join(_FRONT_END_KEYS + ("method", "device"))
                raise ConfigError(f"unknown property '{key}'; use one of {valid} or a config key such as "
                                  "dainr.steps")
            overrides.append(f"{key}={value}" if isinstance(value, str) else nested_key(key, value))
        settings = cls.load(preset, config_file, overrides, series_index, complex_output, render=render)
        return dataclasses.replace(settings, source=settings.source + "".join(
            f", {k}={v}" for k, v in props.items()))


def _as_int(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"property '{name}' must be an integer, got {value!r}") from None


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise ConfigError(f"property '{name}' must be true or false, got {value!r}")


def properties_from_element(element: ET.Element | None) -> dict[str, str]:
    """``{name: value}`` of the ``<property>`` children of a ``<configuration>`` element.

    Both Gadgetron forms are read: ``<property name="k" value="v"/>`` and
    ``<property><name>k</name><value>v</value></property>``; a repeated name is a :class:`ConfigError`.
    """
    out: dict[str, str] = {}
    if element is None:
        return out
    for node in element.findall("property"):
        name = node.get("name")
        value = node.get("value")
        if name is None and node.find("name") is not None:
            name = node.findtext("name")
            value = node.findtext("value")
        if name is None or value is None:
            raise ConfigError("a <property> needs a name and a value: <property name=\"preset\" value=\"fast\"/>")
        name = name.strip()
        if name in out:
            raise ConfigError(f"property '{name}' is given twice")
        out[name] = value.strip()
    return out


def properties_from_xml(text: bytes | str, module: str | None = None) -> dict[str, str]:
    """Properties of a Gadgetron XML: a whole chain (the ``<external>`` step that runs ``module``, else the first
    external step) or a bare ``<configuration>`` node as sent to an external gadget."""
    try:
        root = ET.fromstring(text.rstrip(b"\0") if isinstance(text, bytes) else text.rstrip("\0"))
    except ET.ParseError as exc:
        raise ConfigError(f"the configuration XML is not well-formed ({exc})") from None
    externals = root.findall("./stream/external") + root.findall(".//external")
    if externals:
        chosen = externals[0]
        for ext in externals:
            ex = ext.find("execute")
            if module is not None and ex is not None and ex.get("name") == module:
                chosen = ext
                break
        return properties_from_element(chosen.find("configuration"))
    return properties_from_element(root)
