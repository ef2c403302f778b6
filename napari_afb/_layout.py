"""Where the plugin's result stacks go in the viewer's dimensions.

napari lines layers up by axis position, counted from the right. A 7-frame result added beside a
250-frame video would share the video's time axis: at t = 120 the result would be out of view,
and stepping through the frames would move the video. So every stack the plugin adds (the
frames of a decomposition, guidance samples, an animated video) gets **its own new leading
axis**, named after what it holds ("frame", "sample", ...), and a singleton on each axis that
already exists (but the viewer's first axis, when it already holds stacks of the same kind: a
second photo's frames share the 'frame' axis of the first):

* on the axis of the video frame it came from, the singleton is pinned to that frame (scale
  and translate of the video), so the result shows at that time and hides at others;
* on any other axis, the singleton is stretched over the axis's whole range, so the result
  shows wherever that slider is.

A viewer with only 2-D images gets plain ``(n, H, W[, C])`` stacks. Qt-free; napari is only
read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Placement", "is_result", "leading_index", "stack_placement", "squeeze_leading"]

METADATA_KEY = "napari_afb"


def is_result(layer) -> bool:
    """Whether ``layer`` holds frames the plugin made (a decomposition or an animation)."""
    meta = getattr(layer, "metadata", None) or {}
    return "n_frames" in (meta.get(METADATA_KEY) or {})


@dataclass(frozen=True)
class Placement:
    """How to add a stack of ``n`` 2-D images: reshape it with :meth:`shaped` and pass
    :meth:`kwargs` to ``viewer.add_image`` / ``add_labels``."""

    singletons: int  # size-1 axes after the stack axis, one per existing leading viewer axis
    translate: tuple[float, ...]  # stack axis, singletons, then y, x
    scale: tuple[float, ...]
    axis_labels: tuple[str, ...]

    def shaped(self, stack: np.ndarray) -> np.ndarray:
        """(n, H, W[, C]) -> (n, 1, ..., 1, H, W[, C])."""
        n, rest = stack.shape[0], stack.shape[1:]
        return stack.reshape(n, *([1] * self.singletons), *rest)

    def kwargs(self) -> dict:
        return {"translate": self.translate, "scale": self.scale, "axis_labels": self.axis_labels}


def _unique(label: str, taken) -> str:
    name, k = label, 2
    while name in taken:
        name, k = f"{label} {k}", k + 1
    return name


def stack_placement(viewer, source, frame: int | None, label: str) -> Placement:
    """The placement of a new stack made from ``source`` (an Image layer), at its video frame
    ``frame`` (None for a single image), on a new axis called ``label`` (made unique).

    ``source``'s frame axis is the first of its non-spatial axes; the stack's y and x take the
    source's last two axes' translate and scale, so it lies on top of the source."""
    world = viewer.dims.ndim
    lead = max(world - 2, 0)
    labels = tuple(viewer.dims.axis_labels)[:lead]
    ranges = viewer.dims.range[:lead]
    src_lead = source.ndim - 2  # the source's non-spatial axes (rgb is not an axis)
    pinned = lead - src_lead if frame is not None and src_lead > 0 else None
    # the viewer's first axis already holds stacks of this kind ("frame"): share it rather
    # than add "frame 2" (and a size-1 axis for the old one)
    shared = 1 if lead and labels[0] == label and pinned != 0 else 0
    translate, scale = [0.0], [1.0]
    for axis in range(shared, lead):
        if axis == pinned:
            translate.append(float(source.translate[0]) + frame * float(source.scale[0]))
            scale.append(float(source.scale[0]))
        else:
            start, stop, step = (float(v) for v in ranges[axis])
            translate.append((start + stop) / 2)
            scale.append(stop - start + step)
    if pinned is not None and labels[pinned].lstrip("-").isdigit():  # napari's default name
        labels = (*labels[:pinned], _unique("t", labels), *labels[pinned + 1 :])
    translate += [float(v) for v in source.translate[-2:]]
    scale += [float(v) for v in source.scale[-2:]]
    return Placement(
        singletons=lead - shared,
        translate=tuple(translate),
        scale=tuple(scale),
        axis_labels=(label, *labels[1:], "y", "x")
        if shared
        else (_unique(label, labels), *labels, "y", "x"),
    )


def leading_index(viewer, layer) -> tuple[int, ...]:
    """The indices along ``layer``'s non-spatial axes at the viewer's current position
    (clipped to the layer's shape)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    n_lead = layer.ndim - 2
    pos = layer.world_to_data(viewer.dims.point)
    return tuple(
        int(np.clip(np.round(pos[axis]), 0, data.shape[axis] - 1)) for axis in range(n_lead)
    )


def squeeze_leading(data, rgb: bool):
    """A stack ``(n, 1, ..., 1, H, W[, C])`` as ``(n, H, W[, C])``: the plugin's own result
    layers, for export and for use as input. Other shapes come back unchanged."""
    spatial = 3 if rgb else 2
    lead = data.shape[: data.ndim - spatial]
    if len(lead) > 1 and all(s == 1 for s in lead[1:]):
        return data.reshape(lead[0], *data.shape[data.ndim - spatial :])
    return data
