"""Motion guidance: the four-direction label convention and the rules that act on it.

A guidance map is an (H, W) integer array with one label per pixel (x to the right, y downward):

=====  ========  ===========  ======
label  (sx, sy)  direction    colour
=====  ========  ===========  ======
0      (0, 0)    static       transparent
1      (+1, -1)  right-up     red
2      (-1, -1)  left-up      green
3      (-1, +1)  left-down    yellow
4      (+1, +1)  right-down   blue
=====  ========  ===========  ======

The direction is that of the motion during the exposure, so it also fixes the order of the
frames: reversing time maps 1 <-> 3 and 2 <-> 4. This module is numpy only (no torch, no Qt).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ARROWS",
    "AXIS_OF_LABEL",
    "COLORS",
    "NAMES",
    "N_CLASSES",
    "SIGN_OF_LABEL",
    "TRAINING_THRESHOLD",
    "VECTORS",
    "VIDEO_THRESHOLD",
    "Augmentation",
    "check_guidance",
    "guidance_from_flow",
    "label_from_name",
    "labels_from_axis_sign",
    "labels_to_vectors",
    "one_hot",
    "vectors_to_labels",
]

N_CLASSES = 5

#: (sx, sy) per label, indexed by label.
VECTORS = np.array([(0, 0), (1, -1), (-1, -1), (-1, 1), (1, 1)], dtype=np.int8)
NAMES = ("static", "right-up", "left-up", "left-down", "right-down")
ARROWS = ("\u00b7", "\u2197", "\u2196", "\u2199", "\u2198")  # · ↗ ↖ ↙ ↘
#: RGBA in [0, 1]; label 0 is transparent in a Labels layer (black in figures).
COLORS = {
    0: (0.0, 0.0, 0.0, 0.0),
    1: (1.0, 0.0, 0.0, 1.0),
    2: (0.0, 0.8, 0.0, 1.0),
    3: (1.0, 0.85, 0.0, 1.0),
    4: (0.1, 0.3, 1.0, 1.0),
}

#: The blur's axis per label: 0 static, 1 for labels 1 and 3 (the "/" diagonal), 2 for labels 2
#: and 4 (the "\\" diagonal). A blurry image shows the axis; the sign along it (which way time
#: ran) is what a single image leaves ambiguous.
AXIS_OF_LABEL = np.array([0, 1, 2, 1, 2], dtype=np.uint8)
#: The sign along the axis per label, as the sign of sx: +1 for labels 1 and 4, -1 for 2 and 3.
#: Time reversal negates it.
SIGN_OF_LABEL = np.array([0, 1, -1, -1, 1], dtype=np.int8)
# Label of (axis, sign), indexed [axis, sign > 0].
_LABEL_OF_AXIS_SIGN = np.array([[0, 0], [3, 1], [2, 4]], dtype=np.uint8)

#: Static thresholds of the reference method, in pixels per time step of the average flow.
TRAINING_THRESHOLD = 0.2
VIDEO_THRESHOLD = 0.5

# Label of every (sx, sy) with sx, sy in {-1, 0, +1}, indexed [sy + 1, sx + 1]. Diagonals are
# the four classes; a zero on one axis breaks the tie as (0,+1)->4, (0,-1)->2, (+1,0)->1,
# (-1,0)->3 (the reference rule; it is point-symmetric, so it commutes with time reversal and
# with 90-degree rotations, but not with flips: see Augmentation).
_LABEL_OF_SIGNS = np.array(
    [
        # sx = -1, 0, +1
        [2, 2, 1],  # sy = -1
        [3, 0, 1],  # sy = 0
        [3, 4, 4],  # sy = +1
    ],
    dtype=np.uint8,
)


def label_from_name(name: str | int) -> int:
    """Return the label for a direction name ("right-up", ...), an arrow, or a label number."""
    if isinstance(name, int | np.integer) and 0 <= int(name) < N_CLASSES:
        return int(name)
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    if key in NAMES:
        return NAMES.index(key)
    if key in ARROWS:
        return ARROWS.index(key)
    if key.isdigit() and int(key) < N_CLASSES:
        return int(key)
    raise ValueError(f"unknown direction {name!r}: expected one of {', '.join(NAMES)} or 0-4")


def guidance_from_flow(flow: np.ndarray, *, threshold: float = VIDEO_THRESHOLD) -> np.ndarray:
    """Quantise a flow field into guidance labels by the reference rule.

    Parameters
    ----------
    flow : (H, W, 2) array
        Motion (dx, dy) in pixels per time step, averaged over the exposure.
    threshold : float
        Per-axis static threshold: a component with ``|d| < threshold`` counts as zero.
        The reference uses 0.2 px for training data (:data:`TRAINING_THRESHOLD`) and 0.5 px
        for guidance estimated from video (:data:`VIDEO_THRESHOLD`, the default).

    Returns
    -------
    (H, W) uint8 array of labels 0-4.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    if not np.issubdtype(flow.dtype, np.number):
        raise TypeError(f"flow must be numeric, got dtype {flow.dtype}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    flow = flow.astype(np.float32, copy=False)
    if not np.isfinite(flow).all():
        raise ValueError("flow contains NaN or infinite values")
    signs = np.where(np.abs(flow) < threshold, 0, np.sign(flow)).astype(np.intp)
    return _LABEL_OF_SIGNS[signs[..., 1] + 1, signs[..., 0] + 1]


def labels_from_axis_sign(axis: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Labels from an axis map (0 static, 1 "/", 2 "\\"; see :data:`AXIS_OF_LABEL`) and a sign
    map (> 0 for labels 1 and 4, <= 0 for 2 and 3; ignored where the axis is 0)."""
    axis = np.asarray(axis)
    if axis.size and (axis.min() < 0 or axis.max() > 2):
        raise ValueError("axis values must be 0 (static), 1 or 2")
    return _LABEL_OF_AXIS_SIGN[axis, (np.asarray(sign) > 0).astype(np.intp)]


def labels_to_vectors(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 2) int8 (sx, sy) direction signs."""
    return VECTORS[check_guidance(labels)]


def vectors_to_labels(vectors: np.ndarray) -> np.ndarray:
    """(H, W, 2) direction vectors -> (H, W) labels, by sign with the tie rule."""
    return guidance_from_flow(np.sign(np.asarray(vectors, dtype=np.float32)), threshold=0.5)


def one_hot(labels: np.ndarray, dtype=np.float32) -> np.ndarray:
    """(H, W) labels -> (5, H, W) one-hot encoding (channel first, as the networks take it)."""
    labels = check_guidance(labels)
    return (np.arange(N_CLASSES, dtype=np.uint8)[:, None, None] == labels[None]).astype(dtype)


def check_guidance(labels, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a guidance map and return it as a uint8 array.

    Accepts any integer (or integral float) array with values 0-4, such as a napari Labels
    layer's data. ``shape`` is the (H, W) it must have, when known.
    """
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"guidance must be a 2-D (H, W) label map, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(
            f"guidance shape {arr.shape[0]}x{arr.shape[1]} (HxW) does not match the image's "
            f"{shape[0]}x{shape[1]}"
        )
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"guidance must hold integer labels 0-4, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise ValueError("guidance must hold integer labels 0-4, got non-integer values")
    if arr.size and (arr.min() < 0 or arr.max() >= N_CLASSES):
        bad = np.unique(arr[(arr < 0) | (arr >= N_CLASSES)])[:5].tolist()
        raise ValueError(f"guidance labels must be 0-4, found {bad}")
    return arr.astype(np.uint8, copy=False)


# ---------------------------------------------------------------------------------------------
# Geometric and temporal transformations, applied consistently to images, frames, flows and
# guidance. Label permutations are derived from VECTORS, so they cannot drift from the table.


def _permutation(vector_map) -> np.ndarray:
    out = np.zeros(N_CLASSES, dtype=np.uint8)
    for label, (sx, sy) in enumerate(VECTORS.tolist()):
        out[label] = _LABEL_OF_SIGNS[vector_map(sx, sy)[1] + 1, vector_map(sx, sy)[0] + 1]
    return out


_FLIP_X = _permutation(lambda sx, sy: (-sx, sy))  # left-right mirror
_FLIP_Y = _permutation(lambda sx, sy: (sx, -sy))  # up-down mirror
_ROT90 = _permutation(lambda sx, sy: (sy, -sx))  # np.rot90: counter-clockwise as displayed
_REVERSE = _permutation(lambda sx, sy: (-sx, -sy))  # time reversal


@dataclass(frozen=True)
class Augmentation:
    """A flip / 90-degree rotation / time reversal, applied the same way to every modality.

    The operations run in this order: left-right flip, up-down flip, ``rot90`` counter-clockwise
    quarter turns (as displayed, like ``np.rot90``), then time reversal.

    Spatial axes are the first two of an image ``(H, W[, C])``, a flow ``(H, W, 2)`` or a
    guidance map ``(H, W)``, and axes 1-2 of frames ``(N, H, W[, C])``.

    Note: for motion along an image axis the reference tie rule picks one of the two adjacent
    diagonals by convention, so a flipped label map can differ from the labels of the flipped
    flow there (the sign along the motion's axis still agrees). Rotations and time reversal
    commute with the rule exactly.
    """

    flip_x: bool = False
    flip_y: bool = False
    rot90: int = 0
    reverse: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator) -> Augmentation:
        b = rng.integers(0, 2, size=3)
        return cls(bool(b[0]), bool(b[1]), int(rng.integers(0, 4)), bool(b[2]))

    def _spatial(self, arr, y_axis: int):
        x_axis = y_axis + 1
        if self.flip_x:
            arr = _flip(arr, x_axis)
        if self.flip_y:
            arr = _flip(arr, y_axis)
        if self.rot90 % 4:
            arr = _rot90(arr, self.rot90 % 4, (y_axis, x_axis))
        return _contiguous(arr)

    def apply_image(self, image, *, batched: bool = False):
        """(H, W[, C]) -> transformed image (a blurry input is unchanged by time reversal).
        ``batched``: (B, H, W, C), numpy or torch."""
        return self._spatial(_array(image), int(batched))

    def apply_frames(self, frames, *, batched: bool = False):
        """(N, H, W[, C]) frames in time order -> transformed frames in the new time order.
        ``batched``: (B, N, H, W, C), numpy or torch."""
        t = int(batched)
        out = self._spatial(_array(frames), t + 1)
        return _contiguous(_flip(out, t)) if self.reverse else out

    def apply_guidance(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) labels -> transformed labels (moved and relabelled)."""
        out = check_guidance(labels)
        if self.flip_x:
            out = _FLIP_X[np.flip(out, axis=1)]
        if self.flip_y:
            out = _FLIP_Y[np.flip(out, axis=0)]
        for _ in range(self.rot90 % 4):
            out = _ROT90[np.rot90(out)]
        if self.reverse:
            out = _REVERSE[out]
        return np.ascontiguousarray(out)

    def _vectors(self, field):
        """Turn a field of (dx, dy) vectors, (..., H, W, 2), with the image."""
        out = _array(field, np.float32)
        y = out.ndim - 3
        if self.flip_x:
            out = _flip(out, y + 1) * _scale(out, -1, 1)
        if self.flip_y:
            out = _flip(out, y) * _scale(out, 1, -1)
        for _ in range(self.rot90 % 4):  # (dx, dy) -> (dy, -dx)
            out = _flip(_rot90(out, 1, (y, y + 1)), -1) * _scale(out, 1, -1)
        return out

    def apply_flow(self, flow):
        """(..., H, W, 2) per-step motion (dx, dy) -> transformed motion (numpy or torch)."""
        out = self._vectors(flow)
        return _contiguous(-out if self.reverse else out)

    def apply_motion(self, motion):
        """(..., N, H, W, 2) per-frame sampling offsets from a middle frame (see
        ``training.window.Window.motion``) -> transformed offsets in the new time order. Each
        field is a displacement, so it turns with the image like a flow; time reversal only
        reorders the frames (the middle frame of an odd N stays the middle frame)."""
        out = self._vectors(motion)
        return _contiguous(_flip(out, out.ndim - 4) if self.reverse else out)

    def inverse(self) -> Augmentation:
        """The augmentation that undoes this one."""
        # Forward is R^k . Fy^b . Fx^a (flips first); its inverse Fx^a . Fy^b . R^-k. A flip turns
        # a rotation into the opposite one (F R^m = R^-m F), so moving R^-k past an odd number of
        # flips gives R^+k: the flips stay, the turn is negated only when the flips cancel out.
        odd_flips = (self.flip_x + self.flip_y) % 2 == 1
        k = self.rot90 % 4 if odd_flips else (-self.rot90) % 4
        return Augmentation(self.flip_x, self.flip_y, k, self.reverse)


# Array helpers that work on numpy arrays and torch tensors alike (torch is not imported here:
# a tensor is recognised only when torch is already loaded).


def _is_tensor(arr) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(arr, torch.Tensor)


def _array(arr, dtype=None):
    if _is_tensor(arr):
        return arr if dtype is None else arr.float()
    return np.asarray(arr, dtype=dtype)


def _flip(arr, axis: int):
    return arr.flip(axis) if _is_tensor(arr) else np.flip(arr, axis=axis)


def _rot90(arr, k: int, axes: tuple[int, int]):
    return arr.rot90(k, axes) if _is_tensor(arr) else np.rot90(arr, k=k, axes=axes)


def _contiguous(arr):
    return arr.contiguous() if _is_tensor(arr) else np.ascontiguousarray(arr)


def _scale(arr, sx: float, sy: float):
    """A multiplier of the (dx, dy) channels, of ``arr``'s kind."""
    return arr.new_tensor([sx, sy]) if _is_tensor(arr) else np.array([sx, sy], np.float32)
