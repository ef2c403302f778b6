"""Typed training configuration: dataclasses filled from a TOML, YAML or JSON file and checked
with messages that name the key, the file and what was expected."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .losses import WARPED_FORMS, LossConfig


class ConfigError(ValueError):
    """A configuration file that cannot be used, with the reason."""


@dataclass
class ModelSection:
    architecture: str = "motion_unet"
    args: dict = field(default_factory=dict)


@dataclass
class DataSection:
    """Where windows come from. ``videos`` and ``val_videos`` take files, folders and globs."""

    videos: list[str] = field(default_factory=list)
    val_videos: list[str] = field(default_factory=list)
    stills: bool = True
    stills_fraction: float = 0.3
    stills_only_steps: int = 0
    # folders made by scripts/prepare_stills.py (`make stills`): more real photos for the stills
    stills_dirs: list[str] = field(default_factory=list)
    n_frames: int = 7
    crop: int = 128
    batch_size: int = 8
    items_per_epoch: int = 2000
    workers: int = 2
    max_step_motion: float = 3.0
    substeps: int = 8
    noise_std: float = 0.01
    jpeg_prob: float = 0.3
    cache_windows: int = 0  # > 0: synthesize this many windows once, re-augment every epoch
    cache_dir: str = ""  # where the cache lives ("": <out_dir>/window_cache); runs may share it
    # "workers": each window made by numpy/OpenCV in DataLoader workers, its own flow computed;
    # "device": flows computed once per clip (cached in flow_cache_dir), batches synthesized by
    # torch on the training device (training/device_data.py)
    synthesis: str = "workers"
    flow_cache_dir: str = ""  # "": <out_dir>/flow_cache; runs on the same clips may share it
    # synthesis = "device" only: this fraction of video windows is cut along a random camera
    # path (about camera_speed px per frame per axis at most), so static-camera clips move as
    # hand-held footage does (device_data.DeviceBatches)
    camera_motion: float = 0.0
    camera_speed: float = 1.5
    val_windows: int = 16
    val_width: int = 320  # 0: validate on crops of `crop` px instead of resized full frames


@dataclass
class OptimSection:
    lr: float = 7e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    steps: int = 2000
    grad_clip: float = 1.0
    precision: str = "auto"  # bf16 autocast on CUDA; float32 elsewhere
    # Validate and export an exponential moving average of the weights (this decay per step;
    # 0 = off, the weights as trained). It smooths the step-to-step noise of small batches.
    ema: float = 0.0


@dataclass
class TrainConfig:
    out_dir: str = "runs/decomposer"
    seed: int = 0
    log_every: int = 10
    val_every: int = 250
    checkpoint_every: int = 100
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossConfig = field(default_factory=LossConfig)

    def check(self) -> TrainConfig:
        d, o = self.data, self.optim
        problems = []
        if not d.videos and not d.stills:
            problems.append("data.videos is empty and data.stills is false: nothing to train on")
        if d.crop < 16 or d.crop % 8:
            problems.append(f"data.crop must be a multiple of 8, at least 16 (got {d.crop})")
        for name in ("batch_size", "items_per_epoch", "n_frames", "substeps"):
            if getattr(d, name) < 1:
                problems.append(f"data.{name} must be at least 1")
        if not 0 <= d.stills_fraction <= 1:
            problems.append(f"data.stills_fraction must be in [0, 1] (got {d.stills_fraction})")
        if d.synthesis not in ("workers", "device"):
            problems.append(f"data.synthesis must be 'workers' or 'device' (got {d.synthesis!r})")
        elif d.synthesis == "device" and d.cache_windows:
            problems.append(
                "data.cache_windows is for synthesis = 'workers'; with 'device' the flows are "
                "cached and every window is new: set cache_windows = 0"
            )
        if not 0.0 <= d.camera_motion <= 1.0:
            problems.append(f"data.camera_motion {d.camera_motion}: use a fraction in [0, 1]")
        elif d.camera_motion > 0 and not 0 < d.camera_speed <= d.max_step_motion:
            problems.append(
                f"data.camera_speed {d.camera_speed}: use (0, max_step_motion = "
                f"{d.max_step_motion}] px per frame"
            )
        elif d.camera_motion > 0 and d.synthesis != "device":
            problems.append("data.camera_motion needs synthesis = 'device'")
        if o.lr <= 0 or o.steps < 1:
            problems.append("optim.lr must be > 0 and optim.steps >= 1")
        if not 0.0 <= o.ema < 1.0:
            problems.append(f"optim.ema {o.ema}: use a decay in [0, 1) (0 = off)")
        if o.precision not in ("auto", "float32", "bfloat16", "float16"):
            problems.append(
                f"optim.precision {o.precision!r}: use auto, float32, bfloat16, float16"
            )
        if self.loss.warped_form not in WARPED_FORMS:
            forms = " or ".join(repr(f) for f in WARPED_FORMS)
            problems.append(f"loss.warped_form must be {forms} (got {self.loss.warped_form!r})")
        for name in ("log_every", "val_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_mapping(path: str | Path) -> dict:
    """Parse a .toml, .yaml/.yml or .json file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError(
                    "YAML configs need PyYAML (pip install pyyaml); or use TOML"
                ) from None
            return yaml.safe_load(text) or {}
        if path.suffix == ".json":
            return json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from None
    raise ConfigError(f"{path}: unknown config format {path.suffix!r} (use .toml, .yaml, .json)")


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read and check a training config; ``overrides`` ({"optim.steps": 10}) win over the file."""
    return config_from_mapping(read_mapping(path), overrides, where=str(path))


def config_from_mapping(raw: dict, overrides: dict | None = None, where: str = "config"):
    """Build and check a TrainConfig from a (nested) mapping, with dotted-key overrides applied
    to a copy. Errors name ``where`` (a file name, or e.g. "built-in settings")."""
    raw = json.loads(json.dumps(raw))  # a deep copy: the caller's mapping is left as it was
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        return from_dict(TrainConfig, raw, "").check()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def from_dict(cls, raw: Any, where: str):
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'the top level'} must be a table/mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(_join(where, k) for k in unknown)}; "
            f"known: {', '.join(sorted(fields))}"
        )
    values = {k: _convert(hints[k], v, _join(where, k)) for k, v in raw.items()}
    return cls(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool):
        if type(value) is not hint:
            raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
        return value
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [
            v if item is Any else _convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)
        ]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table/mapping, got {value!r}")
        return dict(value)
    if hint is float:
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return value
