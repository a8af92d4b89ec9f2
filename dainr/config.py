"""One typed configuration tree, loaded from YAML presets and overrides, validated once.

Sources are merged in this order: the dataclass defaults, a preset (``dainr/presets/<name>.yaml``), an optional user
YAML file, then ``key.sub=value`` overrides (CLI ``--set``, Gadgetron ``<property>``). Every key is checked against
the dataclasses; a wrong key or a wrong type raises :class:`~dainr.errors.ConfigError` with one line naming it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dainr.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "presets"
METHODS = ("dainr", "adjoint", "cgsense")


@dataclass
class PrepConfig:
    """Data preparation before any reconstruction.

    Attributes
    ----------
    prewhiten: prewhiten the coils with the noise scans when the series has them.
    virtual_coils: compress to this many virtual coils (SVD); 0 keeps all coils.
    coil_maps: coil-sensitivity estimation from the time-averaged k-space: ``walsh`` or ``rss``.
    """

    prewhiten: bool = True
    virtual_coils: int = 0
    coil_maps: str = "walsh"


@dataclass
class TrajectoryConfig:
    """How to compute spoke angles when the data carry no ``traj``.

    Attributes
    ----------
    kind: ``goldenangle``, ``uniform`` or ``tddip``; empty string = from the header's trajectory type.
    angle_increment_deg: overrides the angle increment (golden angle π/φ = 111.246°, or the uniform step), degrees.
    """

    kind: str = ""
    angle_increment_deg: float = 0.0


@dataclass
class BinningConfig:
    """Binning of a real-time radial stream (no phase index: every ``idx.phase`` equal) into frames.

    Attributes
    ----------
    spokes_per_frame: consecutive spokes in each frame (``dainr recon --spokes-per-frame``); 0 = off, the frames are
        ``idx.phase``. Data whose frames are numbered in ``idx.phase`` are refused when it is set.
    stride: spokes from one frame's start to the next (``--frame-stride``); 0 = ``spokes_per_frame`` (no overlap);
        below it = a sliding window (a spoke then feeds several frames).
    """

    spokes_per_frame: int = 0
    stride: int = 0


@dataclass
class CGSenseConfig:
    """Per-frame CG-SENSE (conjugate gradient on the normal equations, density-preconditioned-free).

    Attributes
    ----------
    iterations: maximum CG iterations.
    tolerance: stop when the relative residual norm falls below this.
    regularization: Tikhonov weight λ in ``(AᴴA + λI) x = Aᴴ y``, absolute: in the units of ``AᴴA`` for the
        orthonormal NUFFT on the intensity-scaled data (see :func:`dainr.recon.baselines.cgsense_recon`).
    """

    iterations: int = 15
    tolerance: float = 1e-5
    regularization: float = 0.0


@dataclass
class GridConfig:
    """Multi-resolution grid encoding (torch-ngp GridEncoder semantics).

    Attributes
    ----------
    levels, features_per_level, base_resolution, finest_resolution: pyramid of L levels of F features, resolutions
        from base to finest (per-level scale (finest/base)^(1/(L−1))).
    log2_table_size: entries per level at most 2^this.
    gridtype: ``tiled`` (dense indexing, wrap modulo the table) or ``hash`` (tiny-cuda-nn's spatial hash).
    backend: ``auto`` (tinycudann on CUDA when installed, else torch), ``torch`` or ``tcnn``.
    init_scale: table initialised U(−init_scale, init_scale).
    """

    levels: int = 16
    features_per_level: int = 2
    base_resolution: int = 16
    finest_resolution: int = 2048
    log2_table_size: int = 19
    gridtype: str = "tiled"
    backend: str = "auto"
    init_scale: float = 1e-4


@dataclass
class FeatureConfig:
    """Frozen MDSR feature extractor applied to the neighbouring frames' undersampled images.

    Attributes
    ----------
    enabled: use the features (the canonical net then takes 128 more inputs).
    seed: seed of the deterministic random initialisation (the reference code runs it untrained).
    weights: optional path to an EDSR-PyTorch MDSR state dict; empty = seeded random weights.
    """

    enabled: bool = True
    seed: int = 0
    weights: str = ""


@dataclass
class DainrConfig:
    """DA-INR optimisation.

    Attributes
    ----------
    steps: optimisation steps.
    frames_per_step: frames rendered and compared with their k-space per step.
    lr: AdamW learning rate; weight_decay: AdamW weight decay (reference 0.01).
    grid_lr_scale: learning rate of the grid encoding's table relative to ``lr`` (the MLPs keep ``lr``).
    schedule: ``constant``, ``cosine`` (to ``lr·final_lr_ratio``) or ``step`` (×0.5 every ``step_size`` steps).
    final_lr_ratio: end of the cosine schedule relative to lr. step_size: period of the ``step`` schedule.
    loss: ``l1`` (reference: L1 on real and imaginary parts) or ``l2``.
    preconditioned_gradient: use the reference code's density-weighted SENSE-combined backward (DAINR_METHOD.md §4).
    space_degree, time_degree: frequency-encoding degrees.
    deformation_width, deformation_depth: deformation MLP size; hidden: canonical MLP width.
    sr_ratio: spatial interpolation (train at matrix/sr_ratio, render at full matrix).
    down_ratio: temporal interpolation (train on every down_ratio-th frame, render all).
    ema: decay of an exponential moving average of the weights (0 = off, e.g. 0.99; bias-corrected, so the initial
        weights do not count); the averaged weights are what is validated, selected and rendered.
    validation_fraction: fraction of every frame's spokes held out of the fit (self-supervised validation); the
        output is the model at the lowest held-out k-space loss, so no ground truth is ever needed. 0 = off (the
        final model is the output).
    validate_every: steps between validations; patience: stop after this many validations without improvement
        (0 = run all steps).
    log_every: record the loss every this many steps.
    tv_temporal: weight of a temporal total-variation penalty on the rendered frames (each step then renders
        ``frames_per_step`` consecutive frames); 0 = off (the reference has no regulariser).
    tv_spatial: weight of an isotropic spatial total-variation penalty on the rendered frames; 0 = off.
    nufft_backend: ``gather`` (precomputed interpolation tables) or ``table`` (torchkbnufft).
    fused: fused AdamW on CUDA. cuda_graph: capture the whole step in a CUDA graph on CUDA.
    """

    steps: int = 300
    frames_per_step: int = 4
    lr: float = 1e-3
    grid_lr_scale: float = 1.0
    weight_decay: float = 0.01
    schedule: str = "constant"
    final_lr_ratio: float = 0.1
    step_size: int = 2000
    loss: str = "l1"
    preconditioned_gradient: bool = False
    space_degree: int = 10
    time_degree: int = 6
    deformation_width: int = 128
    deformation_depth: int = 5
    hidden: int = 64
    sr_ratio: int = 1
    down_ratio: int = 1
    ema: float = 0.0
    validation_fraction: float = 0.0
    validate_every: int = 25
    patience: int = 0
    log_every: int = 10
    tv_temporal: float = 0.0
    tv_spatial: float = 0.0
    nufft_backend: str = "gather"
    fused: bool = True
    cuda_graph: bool = True
    grid: GridConfig = field(default_factory=GridConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)


@dataclass
class Config:
    """The whole configuration of a reconstruction.

    Attributes
    ----------
    method: ``dainr``, ``adjoint`` or ``cgsense``.
    device: ``auto`` (cuda when available), ``cpu``, ``cuda`` or ``cuda:N``.
    seed: global seed of the optimisation (model init, frame order).
    deterministic: use PyTorch's deterministic algorithms (on a GPU, the scatter-adds of the backward pass otherwise
        add in a varying order, which the optimisation amplifies: repeated runs, and the CLI, gadget and server,
        would then not give identical pixels).
    preset: name of the preset it was loaded from (informational).
    """

    method: str = "dainr"
    device: str = "auto"
    seed: int = 0
    deterministic: bool = True
    preset: str = ""
    prep: PrepConfig = field(default_factory=PrepConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    binning: BinningConfig = field(default_factory=BinningConfig)
    cgsense: CGSenseConfig = field(default_factory=CGSenseConfig)
    dainr: DainrConfig = field(default_factory=DainrConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_CHOICES = {
    "method": METHODS,
    "prep.coil_maps": ("walsh", "rss"),
    "trajectory.kind": ("", "goldenangle", "uniform", "tddip"),
    "dainr.schedule": ("constant", "cosine", "step"),
    "dainr.loss": ("l1", "l2"),
    "dainr.nufft_backend": ("gather", "table"),
    "dainr.grid.gridtype": ("tiled", "hash"),
    "dainr.grid.backend": ("auto", "torch", "tcnn", "triton"),
}
_POSITIVE = ("cgsense.iterations", "dainr.steps", "dainr.frames_per_step", "dainr.lr", "dainr.sr_ratio",
             "dainr.down_ratio", "dainr.log_every", "dainr.grid.levels", "dainr.grid.features_per_level",
             "dainr.grid.base_resolution", "dainr.grid.finest_resolution", "dainr.grid.log2_table_size",
             "dainr.step_size", "dainr.grid_lr_scale", "dainr.hidden", "dainr.validate_every", "dainr.deformation_width", "dainr.deformation_depth")
_NON_NEGATIVE = ("prep.virtual_coils", "cgsense.tolerance", "cgsense.regularization", "dainr.weight_decay",
                 "dainr.space_degree", "dainr.time_degree", "dainr.patience", "dainr.tv_temporal", "dainr.tv_spatial", "trajectory.angle_increment_deg",
                 "binning.spokes_per_frame", "binning.stride")


def available_presets() -> list[str]:
    """Names of the built-in presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _coerce(value: Any, typ: Any, key: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"config key '{key}' must be {typ.__name__}, got {value!r}")


def _apply(obj: Any, values: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(f"unknown config key '{key}'; valid keys here: {', '.join(sorted(names))}")
        typ = hints[k]
        if dataclasses.is_dataclass(typ):
            if not isinstance(v, dict):
                raise ConfigError(f"config key '{key}' is a section; give its keys ({key}.NAME=VALUE)")
            _apply(getattr(obj, k), v, key + ".")
        else:
            if isinstance(typ, types.UnionType):
                typ = next(t for t in typing.get_args(typ) if t is not type(None))
            setattr(obj, k, _coerce(v, typ, key))


def _validate(cfg: Config) -> None:
    flat = _flatten(cfg.to_dict())
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            shown = ", ".join(c or "''" for c in choices)
            raise ConfigError(f"config key '{key}' is {flat[key]!r}; choose one of {shown}")
    for key in _POSITIVE:
        if flat[key] <= 0:
            raise ConfigError(f"config key '{key}' must be > 0, got {flat[key]!r}")
    for key in _NON_NEGATIVE:
        if flat[key] < 0:
            raise ConfigError(f"config key '{key}' must be >= 0, got {flat[key]!r}")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device {cfg.device!r} is not one of auto, cpu, cuda, cuda:N")
    if cfg.binning.stride and not cfg.binning.stride <= cfg.binning.spokes_per_frame:
        raise ConfigError(f"config key 'binning.stride' ({cfg.binning.stride}) must not exceed "
                          f"binning.spokes_per_frame ({cfg.binning.spokes_per_frame}); set binning.spokes_per_frame")
    if not 0.0 <= cfg.dainr.validation_fraction < 0.5:
        raise ConfigError("config key 'dainr.validation_fraction' must be in [0, 0.5), got "
                          f"{cfg.dainr.validation_fraction}")
    if not 0.0 <= cfg.dainr.ema < 1.0:
        raise ConfigError(f"config key 'dainr.ema' must be in [0, 1), got {cfg.dainr.ema}")
    if cfg.dainr.grid.finest_resolution < cfg.dainr.grid.base_resolution:
        raise ConfigError("config key 'dainr.grid.finest_resolution' must be >= dainr.grid.base_resolution")
    if cfg.dainr.features.weights and not Path(cfg.dainr.features.weights).is_file():
        raise ConfigError(f"feature weights file not found: {cfg.dainr.features.weights} (dainr.features.weights)")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b=3"`` -> ``{"a": {"b": 3}}`` (the value is read as YAML: numbers, booleans, strings)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. dainr.steps=500)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return nested_key(key, value)


def nested_key(key: str, value: Any) -> dict[str, Any]:
    """``("a.b", 3)`` -> ``{"a": {"b": 3}}``."""
    nested: dict[str, Any] = {}
    cur = nested
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return nested


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"{what} {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of config keys")
    return data


def load_config(preset: str = "fast", yaml_file: str | Path | None = None,
                overrides: typing.Iterable[str | dict[str, Any]] = ()) -> Config:
    """Build and validate a :class:`Config`.

    Parameters
    ----------
    preset:
        Built-in preset name (see :func:`available_presets`) or a path to a YAML file.
    yaml_file:
        Optional user YAML applied after the preset.
    overrides:
        ``KEY=VALUE`` strings or nested dicts, applied last.
    """
    cfg = Config()
    path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        if preset.endswith((".yaml", ".yml")) and Path(preset).is_file():
            path = Path(preset)
        else:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(available_presets())} "
                              "or give a YAML file")
    _apply(cfg, _read_yaml(path, "preset"))
    cfg.preset = path.stem
    if yaml_file:
        _apply(cfg, _read_yaml(Path(yaml_file), "config file"))
    for o in overrides:
        _apply(cfg, parse_override(o) if isinstance(o, str) else o)
    _validate(cfg)
    return cfg
