"""Blur paths from a video's neighbouring frames.

The flow from a frame to its neighbours says how far each pixel moves in one frame interval;
the exposure covers ``shutter`` of that interval (0.5 for the "180 degree" rule most cameras
follow; up to 1 in low light), centred on the frame's time. So a region moving v px per frame
was smeared along a straight path of ``shutter * v`` px, in the direction of v: time's order
comes with the flow. One path per moving region (connected labels of the flow's guidance),
from the region's median motion, which is robust to the flow's errors on blurry frames.
"""

from __future__ import annotations

import numpy as np

from ..flow import motion_from_neighbors
from ..guidance import guidance_from_flow
from .paths import MIN_LENGTH, BlurPath
from .regions import inner_point, label_regions

__all__ = ["DEFAULT_SHUTTER", "blur_paths_from_neighbors", "paths_from_motion"]

DEFAULT_SHUTTER = "auto"
#: Shutter fractions "auto" tries, longest first: the first whose path does not ring wins (a
#: path too long rings, one too short only sharpens less: on the plate the true length is
#: clean and 1.25x rings).
SHUTTER_STEPS = (1.0, 0.8, 0.64, 0.5, 0.4, 0.32, 0.25, 0.2, 0.16, 0.125, 0.1)
MIN_REGION = 32 * 32  # px: smaller moving regions keep the input


def paths_from_motion(
    motion: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    shutter: float | str = DEFAULT_SHUTTER,
    image=None,
    max_regions: int = 8,
) -> tuple[list[BlurPath], np.ndarray]:
    """(H, W, 2) motion in px per frame -> (paths, guidance labels): a straight path per large
    moving region (the labels of :func:`~napari_afb.guidance.guidance_from_flow`), through the
    region's centre, ``shutter`` times its median motion long, in the motion's direction.
    ``shutter="auto"`` picks the fraction per region on ``image`` (the frame): the longest of
    :data:`SHUTTER_STEPS` whose deconvolution does not ring."""
    if shutter == "auto":
        if image is None:
            raise ValueError('shutter="auto" needs the image')
    elif not 0 < float(shutter) <= 1:
        raise ValueError(
            f"the shutter is a fraction of the frame interval in (0, 1], got {shutter}"
        )
    labels = guidance_from_flow(motion)
    if valid is not None:
        labels[~valid] = 0
    comp, n = label_regions(labels)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:]
    paths = []
    kept = np.zeros(labels.shape, bool)
    for c in np.argsort(-sizes)[:max_regions]:
        if sizes[c] < MIN_REGION:
            break
        region = comp == c + 1
        v = np.median(motion[region], axis=0)
        centre = np.array(inner_point(region))  # on the region: the stroke touches it
        fraction = _fit_shutter(image, region, v) if shutter == "auto" else float(shutter)
        if fraction is None or np.hypot(*v) * fraction < MIN_LENGTH:
            continue
        v = v * fraction
        paths.append(BlurPath(np.stack([centre - v / 2, centre + v / 2]), source="video"))
        kept |= region
    labels[~kept] = 0  # small or still regions keep the input
    return paths, labels


def _fit_shutter(image, region: np.ndarray, v: np.ndarray, side: int = 384) -> float | None:
    """The longest shutter fraction whose path, deconvolved on the region's grey crop (at most
    ``side`` px, around its centre), does not ring; None when even the shortest rings."""
    from ..images import to_rgb_float
    from .decompose import auto_strength, ringing
    from .deconv import deconvolve

    rgb = to_rgb_float(image)[0]
    ys, xs = np.nonzero(region)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    y0, x0 = max(0, cy - side // 2), max(0, cx - side // 2)
    crop = (slice(y0, y0 + side), slice(x0, x0 + side))
    grey, inside = rgb[crop].mean(axis=-1), region[crop]
    weight = auto_strength(rgb[crop])
    for i, fraction in enumerate(SHUTTER_STEPS):
        d = v * fraction
        if np.hypot(*d) < MIN_LENGTH:
            return fraction
        kernel = BlurPath(np.stack([-d / 2, d / 2])).render()
        # a quarter of the colour check's limits (grey rings less than colour does), and then
        # one step shorter still: a video frame has no user to judge it, and a path too short
        # only sharpens less. bikes.mp4 frame 160, the car: 0.5 is 2.7 % in grey, 10 % in
        # colour, zebra stripes; 0.4 passes this check and still stripes; 0.32 looks clean.
        lat = deconvolve(grey, kernel, weight=weight)
        if not ringing(lat, inside, margin=kernel.shape[0], strict=0.25):
            return SHUTTER_STEPS[min(i + 1, len(SHUTTER_STEPS) - 1)]
    return None


def blur_paths_from_neighbors(
    prev, current, next=None, *, shutter: float | str = DEFAULT_SHUTTER
) -> tuple[list[BlurPath], np.ndarray]:  # noqa: A002 (as guidance_from_neighbors)
    """Blur paths and guidance labels for the video frame ``current`` from its neighbouring
    frames (either may be None, not both); ``shutter``: the exposure's share of the frame
    interval, or "auto" (see :func:`paths_from_motion`)."""
    motion, valid = motion_from_neighbors(prev, current, next)
    return paths_from_motion(motion, valid, shutter=shutter, image=current)
