"""One typed configuration tree, loaded from YAML presets and overrides, validated once.

Sources are merged in this order: the dataclass defaults, a preset (a built-in name, i.e. a file of
``dainr/presets/``, or a YAML file), an optional user YAML file, then ``key.sub=value`` overrides (CLI ``--set``,
Gadgetron ``<property>``). :func:`load_config` is the one resolver of a preset name into a :class:`Config`;
:data:`DEFAULT_PRESET` is the preset of every front end when none is named.

The rules live on the fields: a choice is a ``Literal`` type, a range, pattern or file check is a :class:`Range`,
:class:`Pattern` or :class:`ExistingFile` in the field's metadata (:func:`checked`), and a rule between two fields
of a section is that section's ``cross_check`` method. :func:`validate` walks the tree once. Every refusal is one
:class:`~dainr.errors.ConfigError` line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence, TypeVar

import yaml

from dainr.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "presets"

#: Preset of every front end when none is named (``dainr recon``, the gadget, ``dainr serve``).
DEFAULT_PRESET = "fast"

Method = Literal["dainr", "adjoint", "cgsense"]
METHODS: tuple[str, ...] = typing.get_args(Method)

#: Field metadata keys: the value check of a field, and the option that sets a field no override may set.
CHECK = "check"
SET_BY = "set_by"

_T = TypeVar("_T")


@dataclass(frozen=True)
class Range:
    """Allowed interval of a number: from ``low`` (closed unless ``low_open``) to ``high`` (open unless
    ``high_open`` is False); None = unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = True

    def problem(self, value: float) -> str | None:
        """None when ``value`` is allowed, else what is wrong (the end of a one-line message)."""
        ok = ((self.low is None or (value > self.low if self.low_open else value >= self.low))
              and (self.high is None or (value < self.high if self.high_open else value <= self.high)))
        return None if ok else f"must be {self}, got {value!r}"

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class Pattern:
    """A string that must match ``regex`` in full; ``allowed`` says so to the user."""

    regex: str
    allowed: str

    def problem(self, value: str) -> str | None:
        return None if re.fullmatch(self.regex, value) else f"is {value!r}; choose one of {self.allowed}"


@dataclass(frozen=True)
class ExistingFile:
    """A path that must name an existing file; an empty string means none."""

    def problem(self, value: str) -> str | None:
        return None if not value or Path(value).is_file() else f"is {value!r}, which is not an existing file"


POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)


def checked(default: _T, check: Range | Pattern | ExistingFile) -> _T:
    """A dataclass field with a default whose values :func:`validate` checks with ``check``."""
    return field(default=default, metadata={CHECK: check})


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
    virtual_coils: int = checked(0, NON_NEGATIVE)
    coil_maps: Literal["walsh", "rss"] = "walsh"


@dataclass
class TrajectoryConfig:
    """How to compute spoke angles when the data carry no ``traj``.

    Attributes
    ----------
    kind: ``goldenangle``, ``uniform`` or ``tddip``; empty string = from the header's trajectory type.
    angle_increment_deg: overrides the angle increment (golden angle π/φ = 111.246°, or the uniform step), degrees.
    """

    kind: Literal["", "goldenangle", "uniform", "tddip"] = ""
    angle_increment_deg: float = checked(0.0, NON_NEGATIVE)


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

    spokes_per_frame: int = checked(0, NON_NEGATIVE)
    stride: int = checked(0, NON_NEGATIVE)

    def cross_check(self, prefix: str) -> None:
        if self.stride > self.spokes_per_frame:
            raise ConfigError(f"config key '{prefix}stride' ({self.stride}) must not exceed {prefix}spokes_per_frame "
                              f"({self.spokes_per_frame}); set {prefix}spokes_per_frame")


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

    iterations: int = checked(15, POSITIVE)
    tolerance: float = checked(1e-5, NON_NEGATIVE)
    regularization: float = checked(0.0, NON_NEGATIVE)


@dataclass
class GridConfig:
    """Multi-resolution grid encoding (torch-ngp GridEncoder semantics).

    Attributes
    ----------
    levels, features_per_level, base_resolution, finest_resolution: pyramid of L levels of F features, resolutions
        from base to finest (per-level scale (finest/base)^(1/(L−1))).
    log2_table_size: entries per level at most 2^this.
    gridtype: ``tiled`` (dense indexing, wrap modulo the table) or ``hash`` (tiny-cuda-nn's spatial hash).
    backend: ``auto`` (= ``torch``, measured faster on the H200), ``torch`` or ``tcnn`` (tiny-cuda-nn's hash grid).
    init_scale: table initialised U(−init_scale, init_scale).
    """

    levels: int = checked(16, POSITIVE)
    features_per_level: int = checked(2, POSITIVE)
    base_resolution: int = checked(16, POSITIVE)
    finest_resolution: int = checked(2048, POSITIVE)
    log2_table_size: int = checked(19, POSITIVE)
    gridtype: Literal["tiled", "hash"] = "tiled"
    backend: Literal["auto", "torch", "tcnn"] = "auto"
    init_scale: float = checked(1e-4, POSITIVE)

    def cross_check(self, prefix: str) -> None:
        if self.finest_resolution < self.base_resolution:
            raise ConfigError(f"config key '{prefix}finest_resolution' must be >= {prefix}base_resolution "
                              f"({self.base_resolution}), got {self.finest_resolution}")


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
    weights: str = checked("", ExistingFile())


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
    periodic_time: the cine is one cardiac cycle: frame ``f`` of ``F`` at ``t = f/F``, time encoded by the cycle's
        harmonics ``1..time_degree`` (so the last frame neighbours the first; rendering other frame counts samples the
        whole cycle, the temporal TV's frame windows wrap around); off: ``t = f/(F − 1)`` with octaves.
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
    tv_sparse_acceleration, tv_sparse_factor: a slice whose radial acceleration (the spokes a frame needs for Nyquist
        sampling, π/2 · N for an N × N matrix, over the spokes a frame measured; :func:`~dainr.recon.dainr_terms.
        radial_acceleration`) is at least ``tv_sparse_acceleration`` gets both TV weights multiplied by
        ``tv_sparse_factor`` (fewer spokes need more regularisation); 0 = off. A property of the acquisition, known
        without any ground truth.
    nufft_backend: ``gather`` (precomputed interpolation tables), ``csr`` (the same tables as sparse matrix products:
        no per-neighbour intermediate, 2.1x faster a paper-size step on an H200, but cuSPARSE's products are not
        bit-identical run to run, so on a GPU it needs ``deterministic: false``) or ``table`` (torchkbnufft).
    fused: fused AdamW on CUDA. cuda_graph: capture the whole step in a CUDA graph on CUDA.
    """

    steps: int = checked(300, POSITIVE)
    frames_per_step: int = checked(4, POSITIVE)
    lr: float = checked(1e-3, POSITIVE)
    grid_lr_scale: float = checked(1.0, POSITIVE)
    weight_decay: float = checked(0.01, NON_NEGATIVE)
    schedule: Literal["constant", "cosine", "step"] = "constant"
    final_lr_ratio: float = checked(0.1, NON_NEGATIVE)
    step_size: int = checked(2000, POSITIVE)
    loss: Literal["l1", "l2"] = "l1"
    preconditioned_gradient: bool = False
    space_degree: int = checked(10, NON_NEGATIVE)
    time_degree: int = checked(6, NON_NEGATIVE)
    periodic_time: bool = False
    deformation_width: int = checked(128, POSITIVE)
    deformation_depth: int = checked(5, POSITIVE)
    hidden: int = checked(64, POSITIVE)
    sr_ratio: int = checked(1, POSITIVE)
    down_ratio: int = checked(1, POSITIVE)
    ema: float = checked(0.0, Range(0, 1))
    validation_fraction: float = checked(0.0, Range(0, 0.5))
    validate_every: int = checked(25, POSITIVE)
    patience: int = checked(0, NON_NEGATIVE)
    log_every: int = checked(10, POSITIVE)
    tv_temporal: float = checked(0.0, NON_NEGATIVE)
    tv_spatial: float = checked(0.0, NON_NEGATIVE)
    tv_sparse_acceleration: float = checked(0.0, NON_NEGATIVE)
    tv_sparse_factor: float = checked(1.0, POSITIVE)
    nufft_backend: Literal["gather", "csr", "table"] = "gather"
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
    preset: name of the preset it was loaded from (informational; set by :func:`load_config`, never by an
        override: ``--preset`` chooses it).
    """

    method: Method = "dainr"
    device: str = checked("auto", Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu, cuda, cuda:N"))
    seed: int = 0
    deterministic: bool = True
    preset: str = field(default="", metadata={SET_BY: "--preset"})
    prep: PrepConfig = field(default_factory=PrepConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    binning: BinningConfig = field(default_factory=BinningConfig)
    cgsense: CGSenseConfig = field(default_factory=CGSenseConfig)
    dainr: DainrConfig = field(default_factory=DainrConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """Every key an override may set, as YAML in field order (``--config`` reads it back; ``preset`` is not
        one)."""
        tree = self.to_dict()
        return yaml.safe_dump({f.name: tree[f.name] for f in dataclasses.fields(self) if SET_BY not in f.metadata},
                              sort_keys=False)


def available_presets() -> list[str]:
    """Names of the built-in presets: the YAML files of ``dainr/presets/``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def find_in_dirs(name: str, dirs: Sequence[str | os.PathLike[str]], what: str) -> Path | None:
    """A bare file name (``site``, ``site.yaml``) looked up in ``dirs``, in order; None when no folder has it.

    Server mode: clients name files, they never give paths, so a path is a :class:`ConfigError` naming ``what``.
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"{what} {name!r} must be a bare file name in the server's config folder, not a path")
    candidates = [name] if name.endswith((".yaml", ".yml")) else [name, f"{name}.yaml", f"{name}.yml"]
    for d in dirs:
        for c in candidates:
            p = Path(d) / c
            if p.is_file():
                return p
    return None


def find_preset(preset: str | os.PathLike[str], search_dirs: Sequence[str | os.PathLike[str]] | None = None
                ) -> Path | None:
    """The YAML file a preset name stands for, or None when there is none.

    Parameters
    ----------
    preset:
        A built-in preset name (:func:`available_presets`), else a YAML file: a path on this machine when
        ``search_dirs`` is None, or a bare file name (``site``, ``site.yaml``) looked up in ``search_dirs``.
    search_dirs:
        The server's config folders (server mode: a path is refused with :class:`ConfigError`).
    """
    name = os.fspath(preset)
    if name in available_presets():
        return PRESET_DIR / f"{name}.yaml"
    if search_dirs is not None:
        return find_in_dirs(name, search_dirs, "preset")
    path = Path(name)
    return path if name.endswith((".yaml", ".yml")) and path.is_file() else None


def _base_type(typ: Any) -> Any:
    """The Python type values of an annotation are coerced to: ``Literal["a", "b"]`` -> str, ``X | None`` -> X."""
    if typing.get_origin(typ) is Literal:
        return type(typing.get_args(typ)[0])
    if isinstance(typ, types.UnionType):
        return next(t for t in typing.get_args(typ) if t is not type(None))
    return typ


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
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in fields:
            raise ConfigError(f"unknown config key '{key}'; valid keys here: {', '.join(sorted(fields))}")
        set_by = fields[k].metadata.get(SET_BY)
        if set_by:
            raise ConfigError(f"config key '{key}' cannot be overridden (got {v!r}); use {set_by} {v}")
        typ = hints[k]
        if dataclasses.is_dataclass(typ):
            if not isinstance(v, dict):
                raise ConfigError(f"config key '{key}' is a section; give its keys ({key}.NAME=VALUE)")
            _apply(getattr(obj, k), v, key + ".")
        else:
            setattr(obj, k, _coerce(v, _base_type(typ), key))


def validate(section: Any, prefix: str = "") -> None:
    """Check a config section and every section below it, field by field, in field order.

    A ``Literal`` field must hold one of its choices, a field with a :data:`CHECK` in its metadata must pass it, and
    a section's ``cross_check(prefix)`` method (rules between its fields) runs after its fields.

    Raises
    ------
    ConfigError
        At the first bad value: one line naming the key, the value and what is allowed.
    """
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        key, value, typ = prefix + f.name, getattr(section, f.name), hints[f.name]
        if dataclasses.is_dataclass(typ):
            validate(value, key + ".")
            continue
        if typing.get_origin(typ) is Literal and value not in typing.get_args(typ):
            shown = ", ".join(c or "''" for c in typing.get_args(typ))
            raise ConfigError(f"config key '{key}' is {value!r}; choose one of {shown}")
        problem = f.metadata[CHECK].problem(value) if CHECK in f.metadata else None
        if problem:
            raise ConfigError(f"config key '{key}' {problem}")
    cross_check = getattr(section, "cross_check", None)
    if cross_check is not None:
        cross_check(prefix)


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


def load_config(preset: str | os.PathLike[str] = DEFAULT_PRESET,
                yaml_file: str | os.PathLike[str] | None = None,
                overrides: Iterable[str | dict[str, Any]] = (), *,
                search_dirs: Sequence[str | os.PathLike[str]] | None = None) -> Config:
    """The one resolver of a preset into a validated :class:`Config`.

    Parameters
    ----------
    preset:
        Built-in preset name (:func:`available_presets`) or a YAML file (see :func:`find_preset`); such a file may
        start from a built-in preset with a ``preset: NAME`` key, its other keys applied on top.
    yaml_file:
        Optional user YAML applied after the preset.
    overrides:
        ``KEY=VALUE`` strings or nested dicts, applied last.
    search_dirs:
        Server mode: a preset that is not built in is a bare file name in these folders, never a path.

    Raises
    ------
    ConfigError
        One line: an unknown preset (naming the built-in ones), an unreadable file, a bad key or value.
    """
    path = find_preset(preset, search_dirs)
    if path is None:
        where = ("give a YAML file" if search_dirs is None else "a YAML file in the server's config folders "
                 f"(not found in {', '.join(map(str, search_dirs)) or 'none configured'})")
        raise ConfigError(f"unknown preset {os.fspath(preset)!r}; choose one of {', '.join(available_presets())} "
                          f"or {where}")
    cfg = Config()
    data = _read_yaml(path, "preset")
    base = data.pop("preset", None)
    if base is not None:  # a site preset built on a built-in one: `preset: cpu-test` plus its own keys
        if base not in available_presets() or base == path.stem:
            raise ConfigError(f"preset file {path.name}: 'preset: {base}' must name a built-in preset "
                              f"({', '.join(available_presets())})")
        _apply(cfg, _read_yaml(find_preset(base), "preset"))
    _apply(cfg, data)
    cfg.preset = path.stem
    if yaml_file:
        _apply(cfg, _read_yaml(Path(yaml_file), "config file"))
    for o in overrides:
        _apply(cfg, parse_override(o) if isinstance(o, str) else o)
    validate(cfg)
    return cfg


def config_from_dict(tree: dict[str, Any]) -> Config:
    """The validated :class:`Config` of a tree written by :meth:`Config.to_dict` (e.g. one stored with a fitted model);
    its ``preset`` is kept as the name it was loaded from.

    Raises
    ------
    ConfigError
        One line naming the first unknown key or bad value.
    """
    tree = dict(tree)
    preset = str(tree.pop("preset", ""))
    cfg = Config()
    _apply(cfg, tree)
    cfg.preset = preset
    validate(cfg)
    return cfg
