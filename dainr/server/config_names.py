"""Which configuration a server client gets: the operator's configs by name, and a short list of keys of its own.

The operator (whoever starts ``dainr serve``) owns every config the server can run: the built-in presets,
``--default-config`` and the files of the ``--config-dir`` folders. A client chooses among them and may set
:data:`CLIENT_KEYS` on top, within bounds; any other key (a grid size, a feature-weights path, a log interval) comes
only from the operator's files. Clients name files, they never give paths on the server.

* ``CONFIG_FILE`` (id 1) carries a name: ``default``/``default.xml`` (``--default-config``), a built-in preset
  (:func:`dainr.config.available_presets`), a YAML file in a config folder (``site`` or ``site.yaml``), or a Gadgetron
  chain (``dainr_raw.xml``, or ``dainr_raw`` when no preset or YAML has that name) in a config folder or the
  server's ``xml_configs``, whose DA-INR ``<external>`` step's properties are used (all of them: the operator wrote
  it), so ``gadgetron_ismrmrd_client -c dainr_raw.xml`` gives the same images from Gadgetron and from ``dainr serve``.
* ``CONFIG_TEXT`` (id 2) carries the client's own text: Gadgetron chain XML (``gadgetron_ismrmrd_client -C
  chain.xml``), a bare ``<configuration>`` with ``<property>`` items, or a YAML mapping; only :data:`CLIENT_KEYS`.

Files in the config folders are found by name among regular files; symbolic links are not followed. A config of the
operator's that does not load is reported to the client as :class:`OperatorConfigError` (in its own terms: the name
it asked for); the server log gets the cause (file, key, line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from dainr.config import METHODS, available_presets
from dainr.errors import ConfigError
from dainr.stream.settings import ALIASES, ReconSettings, properties_from_xml

#: The module of our gadget, whose <external> step a chain XML is read from.
GADGET_MODULE = "gadget.dainr_gadget"

_PACKAGE = Path(__file__).resolve().parents[1]
#: The built-in chains: shipped in an installed package (``dainr/xml_configs``, see setup.py), else a checkout's.
BUILTIN_XML_DIR = _PACKAGE / "xml_configs" if (_PACKAGE / "xml_configs").is_dir() else _PACKAGE.parent / "xml_configs"

_DEFAULT_NAMES = ("", "default", "default.xml")

#: Steps of ``dainr.steps`` a client may ask for (``dainr serve --max-steps``).
DEFAULT_MAX_STEPS = 5000
#: Largest ``binning.spokes_per_frame`` a client may ask for.
MAX_CLIENT_SPOKES_PER_FRAME = 1024

#: Largest rendered frame count and matrix a client may ask for (``render_frames``, ``render_matrix``).
MAX_CLIENT_RENDER_FRAMES, MAX_CLIENT_RENDER_MATRIX = 256, 512

#: Keys a client's CONFIG_TEXT may set, and what each may hold. Everything else comes from the operator's configs.
CLIENT_KEYS: dict[str, str] = {
    "preset": "a built-in preset or a YAML file of the server's config folders, by name",
    "config_file": "a YAML file of the server's config folders, by name, applied after the preset",
    "method": " | ".join(METHODS),
    "series_index": "image_series_index of the images, 1..65535",
    "complex_output": "true for complex images",
    "seed": "the optimisation's seed",
    "dainr.steps": f"optimisation steps, 1..the server's --max-steps (default {DEFAULT_MAX_STEPS})",
    "binning.spokes_per_frame": f"real-time binning, 0..{MAX_CLIENT_SPOKES_PER_FRAME} spokes per frame",
    "binning.stride": "real-time binning, 0..binning.spokes_per_frame",
    "trajectory.kind": "spoke angles of data without traj: goldenangle | uniform | tddip",
    "motion": "true for the displacement series (DA-INR)",
    "jacobian": "true for the Jacobian-determinant series (DA-INR)",
    "render_frames": f"frames rendered from the fit, 0 or 2..{MAX_CLIENT_RENDER_FRAMES}",
    "render_matrix": f"matrix rendered from the fit, 0 or 8..{MAX_CLIENT_RENDER_MATRIX}",
}


class OperatorConfigError(ConfigError):
    """A config of the server's operator (a preset file, a config-folder YAML, a chain) does not load.

    The message, for the server log, says why; :attr:`client_text` is what the client is told.
    """

    def __init__(self, name: str, cause: str) -> None:
        super().__init__(f"the server's config {name!r} does not load: {cause}")
        self.client_text = (f"the server's config {name!r} does not load: tell the server's operator (the server log "
                            "says why)")


@dataclass(frozen=True)
class ConfigSources:
    """Where a server's configs come from.

    Attributes
    ----------
    default:
        The settings of ``--default-config`` (clients that send no config, or ``default``).
    default_config:
        ``--default-config`` itself: the preset of a CONFIG_TEXT that names none.
    dirs:
        The operator's ``--config-dir`` folders.
    max_steps:
        Most ``dainr.steps`` a client may ask for.
    """

    default: ReconSettings
    default_config: str
    dirs: tuple[Path, ...] = ()
    max_steps: int = DEFAULT_MAX_STEPS

    def _file(self, name: str, suffixes: tuple[str, ...]) -> Path | None:
        """A regular, non-link file of the config folders called ``name`` (or ``name`` + a suffix)."""
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"config {name!r} must be a name, not a path")
        candidates = [name] if name.endswith(suffixes) else [name + s for s in suffixes]
        for d in self.dirs:
            for c in candidates:
                p = Path(d) / c
                if p.is_file() and not p.is_symlink():
                    return p
        return None

    def _preset(self, name: str) -> str:
        """A preset name as :func:`dainr.config.load_config` takes it: built in, or the path of an operator file."""
        if name in available_presets():
            return name
        path = self._file(name, (".yaml", ".yml"))
        if path is None:
            raise _unknown(name)
        return str(path)

    def for_name(self, name: str) -> ReconSettings:
        """Settings for a CONFIG_FILE name (see the module docstring).

        Raises
        ------
        ConfigError
            An unknown name or a path (client terms); :class:`OperatorConfigError` when the named config does not
            load.
        """
        name = name.strip()
        if name in _DEFAULT_NAMES:
            return self.default
        if name.endswith(".xml"):
            chain = self._chain(name)
        elif name in available_presets() or self._file(name, (".yaml", ".yml")) is not None:
            return _operator(name, lambda: ReconSettings.from_properties({"preset": self._preset(name)}))
        else:
            chain = self._chain(f"{name}.xml")  # a chain named without .xml: `-c dainr_raw`
        if chain is None:
            raise _unknown(name)
        return _operator(name, lambda: ReconSettings.from_properties(self._chain_properties(chain)))

    def _chain(self, file_name: str) -> Path | None:
        path = self._file(file_name, (".xml",))
        if path is None and (BUILTIN_XML_DIR / file_name).is_file():
            path = BUILTIN_XML_DIR / file_name
        return path

    def _chain_properties(self, chain: Path) -> dict[str, Any]:
        props = properties_from_xml(chain.read_bytes(), GADGET_MODULE)
        preset = str(props.get("preset", "") or "").strip()
        config_file = str(props.get("config_file", props.get("config", "")) or "").strip()
        if preset:
            props["preset"] = self._preset(preset)
        if config_file:
            props.pop("config", None)
            props["config_file"] = self._yaml(config_file)
        return props

    def _yaml(self, name: str) -> str:
        path = self._file(name, (".yaml", ".yml"))
        if path is None:
            raise ConfigError(f"config_file {name!r} is not a YAML file of the server's config folders")
        return str(path)

    def for_text(self, text: str) -> ReconSettings:
        """Settings for a client's CONFIG_TEXT: chain or ``<configuration>`` XML, or a YAML mapping of
        :data:`CLIENT_KEYS`, on top of its ``preset`` (default ``--default-config``) and ``config_file``.

        Raises
        ------
        ConfigError
            A key clients may not set, a value out of bounds, an unknown name (client terms);
            :class:`OperatorConfigError` when the operator's config it names does not load.
        """
        props = _client_properties(text)
        preset_name = str(props.pop("preset", "") or "").strip()
        file_name = str(props.pop("config_file", "") or "").strip()
        preset = self._preset(preset_name) if preset_name else self.default_config
        config_file = self._yaml(file_name) if file_name else None
        # The operator's part alone first: a failure there is the operator's, reported without its details.
        _operator(preset_name or file_name or "default",
                  lambda: ReconSettings.from_properties({"preset": preset, "config_file": config_file or ""}))
        settings = ReconSettings.from_properties({**props, "preset": preset, "config_file": config_file or ""})
        self._check_bounds(props, settings)
        return settings

    def _check_bounds(self, props: Mapping[str, Any], settings: ReconSettings) -> None:
        cfg = settings.config
        if "dainr.steps" in props and cfg.dainr.steps > self.max_steps:
            raise ConfigError(f"dainr.steps {cfg.dainr.steps} is more than this server allows a client "
                              f"({self.max_steps}, dainr serve --max-steps): ask for fewer, or name a config of "
                              "the server's operator with more")
        if "binning.spokes_per_frame" in props and cfg.binning.spokes_per_frame > MAX_CLIENT_SPOKES_PER_FRAME:
            raise ConfigError(f"binning.spokes_per_frame {cfg.binning.spokes_per_frame} is more than a client may "
                              f"ask for ({MAX_CLIENT_SPOKES_PER_FRAME})")


def _unknown(name: str) -> ConfigError:
    return ConfigError(f"unknown config {name!r}: name default, a built-in preset ({', '.join(available_presets())}) "
                       "or a config of the server's operator (ask them for its names)")


def _operator(name: str, load):
    """``load()``, its :class:`ConfigError` (a broken operator file) turned into :class:`OperatorConfigError`."""
    try:
        return load()
    except ConfigError as exc:
        if isinstance(exc, OperatorConfigError):
            raise
        raise OperatorConfigError(name, str(exc)) from None


def _flatten(props: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in props.items():
        key = prefix + str(k).strip()
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = "" if v is None else v
    return out


def _client_properties(text: str) -> dict[str, Any]:
    """The properties of a client's CONFIG_TEXT, refusing keys outside :data:`CLIENT_KEYS`."""
    body = text.strip().rstrip("\0")
    if body.startswith("<"):
        props: Any = properties_from_xml(body, GADGET_MODULE)
    else:
        try:
            props = yaml.safe_load(body) if body else {}
        except yaml.YAMLError:
            raise ConfigError("the config text is neither XML nor a YAML mapping of config keys") from None
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise ConfigError("the config text must be XML or a YAML mapping of config keys (e.g. 'method: adjoint')")
    flat = {ALIASES.get(k, k): v if isinstance(v, (bool, int, float)) else str(v) for k, v in _flatten(props).items()}
    refused = [k for k in flat if k not in CLIENT_KEYS]
    if refused:
        raise ConfigError(f"config key {', '.join(repr(k) for k in refused)} cannot be set by a client of this "
                          f"server; a client may set {', '.join(CLIENT_KEYS)}; anything else goes into a config of "
                          "the server's operator (--config-dir), which the client names")
    for key, most in (("render_frames", MAX_CLIENT_RENDER_FRAMES), ("render_matrix", MAX_CLIENT_RENDER_MATRIX)):
        if key in flat:
            try:
                value = int(str(flat[key]).strip())
            except ValueError:
                raise ConfigError(f"property '{key}' must be an integer, got {flat[key]!r}") from None
            if value > most:
                raise ConfigError(f"property '{key}' is {value}; a client of this server may ask for at most {most}")
    return flat


def settings_for_name(name: str, default: ReconSettings, config_dirs: Iterable[Path] = ()) -> ReconSettings:
    """Settings for a CONFIG_FILE name (:meth:`ConfigSources.for_name`)."""
    return ConfigSources(default, default.config.preset, tuple(Path(d) for d in config_dirs)).for_name(name)


def settings_for_text(text: str, default_config: str, config_dirs: Iterable[Path] = (),
                      max_steps: int = DEFAULT_MAX_STEPS) -> ReconSettings:
    """Settings for a client's CONFIG_TEXT (:meth:`ConfigSources.for_text`)."""
    default = ReconSettings.from_properties({"preset": default_config})
    return ConfigSources(default, default_config, tuple(Path(d) for d in config_dirs), max_steps).for_text(text)
