"""Weights files: safetensors tensors plus JSON metadata. Loading never unpickles anything.

A file holds the network's state dict and, in the safetensors header's ``__metadata__``, one
entry ``napari_afb`` with a JSON object::

    {"format_version": 1, "architecture": "motion_unet", "arch_args": {...}, "role": "decomposer",
     "n_frames": 7, "sha256": "<of the tensors>", "recipe": {...}, "data": {...}, "metrics": {...}}

``sha256`` covers every tensor's name, dtype, shape and bytes, so an edited file is refused.

Lookup order for the default weights: the ``weights`` argument, then the environment variable
``NAPARI_AFB_WEIGHTS`` (or ``NAPARI_AFB_PREDICTOR_WEIGHTS``), then the file inside the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import models

FORMAT_VERSION = 1
METADATA_KEY = "napari_afb"
PACKAGE_WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_FILES = {"decomposer": "decomposer.safetensors", "predictor": "predictor.safetensors"}
ENV_VARS = {"decomposer": "NAPARI_AFB_WEIGHTS", "predictor": "NAPARI_AFB_PREDICTOR_WEIGHTS"}


class WeightsError(ValueError):
    """A weights file is missing, corrupt, tampered with or does not match its architecture."""


class NoDefaultWeights(WeightsError):
    """No weights were named and none ship with the package (``role`` says for which model)."""

    def __init__(self, message: str, role: str):
        super().__init__(message)
        self.role = role


@dataclass
class WeightsInfo:
    """What a weights file says about itself (the metadata), and where it came from."""

    path: str | None
    architecture: str
    arch_args: dict[str, Any]
    role: str
    n_frames: int | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""

    def summary(self) -> str:
        name = Path(self.path).name if self.path else "(in memory)"
        return f"{name} [{self.architecture}, {self.sha256[:12]}]"


def state_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_weights(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    architecture: str,
    arch_args: dict[str, Any],
    dtype: torch.dtype | None = None,
    recipe: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights to ``path`` (atomically: a temporary file, then a rename).

    ``dtype`` (e.g. ``torch.float16``) converts floating-point tensors for a smaller file.
    """
    if architecture not in models.REGISTRY:
        raise WeightsError(f"unknown architecture {architecture!r}")
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t
    meta = {
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "arch_args": json.loads(json.dumps(arch_args)),  # tuples -> lists, and proves JSON-able
        "role": models.role_of(architecture),
        "n_frames": getattr(model, "n_frames", None),
        "sha256": state_digest(tensors),
        "recipe": recipe or {},
        "data": data or {},
        "metrics": metrics or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
        # safetensors writes 0600; a weights file is shared like any output: the umask decides
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_info(path: str | os.PathLike) -> WeightsInfo:
    """Read and check a file's metadata (not its tensors)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from None
    if raw is None:
        raise WeightsError(
            f"{path} has no '{METADATA_KEY}' metadata: not a napari-afb weights file"
        )
    try:
        meta = json.loads(raw)
        version = meta["format_version"]
        info = WeightsInfo(
            path=str(path),
            architecture=meta["architecture"],
            arch_args=dict(meta["arch_args"]),
            role=meta.get("role", ""),
            n_frames=meta.get("n_frames"),
            recipe=meta.get("recipe", {}),
            data=meta.get("data", {}),
            metrics=meta.get("metrics", {}),
            sha256=meta["sha256"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path} has malformed metadata ({exc!r})") from None
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{path} uses weights format version {version}; this napari-afb reads version "
            f"{FORMAT_VERSION}"
        )
    if info.architecture not in models.REGISTRY:
        raise WeightsError(
            f"{path} is for architecture {info.architecture!r}, which this napari-afb does not "
            f"know (known: {', '.join(sorted(models.REGISTRY))})"
        )
    return info


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Build the network a weights file describes and load its tensors.

    Returns ``(model, info)``: the model in eval mode, float32, on ``device``. Refuses (with a
    :class:`WeightsError` naming the problem) a corrupt or edited file, and one whose tensors do
    not match the architecture named in its metadata.
    """
    info = read_info(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:
        raise WeightsError(f"{path} is truncated or corrupt ({exc})") from None
    if state_digest(tensors) != info.sha256:
        raise WeightsError(f"{path} failed its checksum: the tensors were modified or damaged")
    try:
        model = models.build(info.architecture, **info.arch_args)
    except ValueError as exc:
        raise WeightsError(f"{path}: cannot build {info.architecture!r}: {exc}") from None
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensors {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_few(unexpected)}")
    for name in sorted(set(expected) & set(tensors)):
        if tuple(expected[name].shape) != tuple(tensors[name].shape):
            problems.append(
                f"{name} has shape {tuple(tensors[name].shape)}, the architecture needs "
                f"{tuple(expected[name].shape)}"
            )
    if problems:
        raise WeightsError(
            f"{path} does not match architecture {info.architecture!r} {info.arch_args}: "
            + "; ".join(problems[:5])
        )
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.eval().to(device), info


def _few(names: list[str], n: int = 4) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


#: What the napari widgets say instead of the command-line advice of :class:`NoDefaultWeights`.
GUI_NO_DEFAULT = {
    "decomposer": "No trained default decomposer weights ship with napari-afb yet: choose a "
    "weights file (.safetensors) in the Weights field, or train one with Plugins > Animation "
    "from Blur > Train on your videos.",
    "predictor": "No trained default predictor weights ship with napari-afb yet: choose a "
    "predictor weights file (.safetensors) in the Predictor field (Decompose) or the Weights "
    "field (Sample guidance from the predictor), or train one with Plugins > Animation from "
    "Blur > Train on your videos (model: predictor).",
}


def gui_message(exc: Exception) -> str:
    """The text a widget shows for ``exc``: for missing default weights, what to click."""
    if isinstance(exc, NoDefaultWeights):
        return GUI_NO_DEFAULT[exc.role]
    return str(exc)


def packaged_weights(role: str = "decomposer") -> Path:
    """The default weights file inside the package (WeightsError when none ships)."""
    path = _packaged_path(role)
    if not path.is_file():
        raise WeightsError(f"no default {role} weights ship with this installation ({path})")
    return path


def placeholder(role: str = "decomposer") -> str:
    """What an empty weights field in a widget says it will use: the environment variable's
    file, the packaged default, or that a file must be chosen."""
    env = os.environ.get(ENV_VARS[role])
    if env:
        return f"${ENV_VARS[role]}: {Path(env).name}"
    if _packaged_path(role).is_file():
        return f"default {role} weights"
    return f"choose a {role} weights file (no default ships yet)"


def _packaged_path(role: str) -> Path:
    return PACKAGE_WEIGHTS_DIR / DEFAULT_FILES[role]


def resolve_weights(weights: str | os.PathLike | None = None, role: str = "decomposer") -> Path:
    """Find the weights file to use: the argument, the environment variable, the package file."""
    if weights is not None:
        return Path(weights).expanduser()
    env = os.environ.get(ENV_VARS[role])
    if env:
        return Path(env).expanduser()
    packaged = _packaged_path(role)
    if packaged.is_file():
        return packaged
    how = {
        "decomposer": "weights=... in Python, --weights on the command line",
        "predictor": "predictor_weights=... in decompose(), weights=... in predict_guidance(), "
        "--predictor on the command line",
    }[role]
    raise NoDefaultWeights(
        f"no trained default {role} weights ship with this version of napari-afb yet. Pass a "
        f"weights file ({how}) or set {ENV_VARS[role]}; trained default weights arrive in a "
        f"later release",
        role,
    )


_cache: dict[tuple, tuple[torch.nn.Module, WeightsInfo]] = {}
_cache_lock = threading.Lock()


def cached_model(
    weights: str | os.PathLike | None, device: torch.device, role: str = "decomposer"
) -> tuple[torch.nn.Module, WeightsInfo]:
    """Load (once per file version and device) the model for ``weights`` (see resolve_weights)."""
    path = resolve_weights(weights, role).resolve()
    try:
        st = path.stat()
    except OSError:
        raise WeightsError(f"{role} weights file not found: {path}") from None
    key = (str(path), st.st_mtime_ns, st.st_size, str(device))
    with _cache_lock:
        if key not in _cache:
            model, info = load_weights(path, device)
            if info.role != role:
                raise WeightsError(f"{path} holds {info.role} weights, not {role} weights")
            # Keep one version per (file, device): drop stale entries for the same file.
            for old in [k for k in _cache if k[0] == key[0] and k[3] == key[3]]:
                del _cache[old]
            _cache[key] = (model, info)
        return _cache[key]


def model_on(
    model: torch.nn.Module | None, weights: str | os.PathLike | None, device: torch.device
) -> tuple[torch.nn.Module, str]:
    """The decomposer to run: ``model`` moved to ``device`` when one is given, else the (cached)
    model of the weights file (see resolve_weights). Returns it and a one-line description."""
    if model is not None:
        return model.to(device), "model passed in"
    model, info = cached_model(weights, device)
    return model, info.summary()
