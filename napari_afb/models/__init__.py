"""Networks, as plain ``nn.Module`` s, and the explicit registry that names them.

The weights format stores an architecture name and its constructor arguments; :func:`build`
turns them back into a module. Nothing here imports napari or Qt.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .decomposer import MotionUNet
from .deconv import MotionDeconv
from .predictor import GuidanceNet
from .refine import MotionRefine

#: name -> (class, role). The role says what a weights file of that architecture is for.
REGISTRY: dict[str, tuple[type[nn.Module], str]] = {
    "motion_unet": (MotionUNet, "decomposer"),
    "motion_deconv": (MotionDeconv, "decomposer"),
    "motion_refine": (MotionRefine, "decomposer"),
    "guidance_net": (GuidanceNet, "predictor"),
}


def _entry(name: str) -> tuple[type[nn.Module], str]:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown architecture {name!r}; known: {known}") from None


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture by name with its constructor arguments."""
    cls, _ = _entry(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for architecture {name!r}: {exc}") from None


def rebuild(name: str, model: nn.Module, **kwargs: Any) -> nn.Module:
    """Architecture ``name`` built with ``kwargs`` and holding ``model``'s tensors (for arguments
    that change what the tensors compute, not their shapes: inference settings, resolution)."""
    rebuilt = build(name, **kwargs)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def role_of(name: str) -> str:
    """'decomposer' or 'predictor' for a registered architecture name (ValueError naming the
    known ones for any other name)."""
    return _entry(name)[1]


__all__ = [
    "REGISTRY",
    "GuidanceNet",
    "MotionDeconv",
    "MotionRefine",
    "MotionUNet",
    "build",
    "rebuild",
    "role_of",
]
