"""The blur-kernel engine's jobs: estimate blur paths, deconvolve, make the frames.

Each job is a generator that yields :class:`~napari_afb.jobs.Progress` and returns its result,
like the learned engine's, so the API, the CLI and napari drive both the same way.

The steps (measurements behind the defaults: ../shared/design/KERNEL_NOTES.md):
1. paths: the user's (drawn), or estimated blindly per moving region at reduced scale, on the
   most textured window of at most :data:`ESTIMATE_SIDE` px; time order from the stroke, else
   from the guidance labels of the region, else unknown (the reversed frames are as plausible);
2. the latent sharp image per path by non-blind deconvolution, its prior on the sRGB values, its
   blur averaging the sRGB values or the light (chosen per path), strength from the noise level
   unless given;
3. checks that back off instead of hurting: no blur found, a kernel that is not a clean path,
   a result that rings (values far outside [0, 1]), a result that still looks blurred in parts
   (those moved another way than the estimated path);
4. frame i = the latent moved by the path's mean offset in the i-th N-th of the exposure, per
   region (soft masks), static pixels kept from the input.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..guidance import check_guidance
from ..images import alloc_output, store_rows, to_rgb_float
from ..jobs import Cancelled, Progress, run
from ..samples import linear_to_srgb, srgb_to_linear
from . import regions
from .blind import estimate_kernel, refine_kernel
from .deconv import BLURS, PRIORS, deconvolve
from .paths import BlurPath, as_paths, mass_near_path, path_from_kernel

__all__ = [
    "KernelResult",
    "decompose_iter",
    "estimate_blur_paths_iter",
    "estimate_paths_iter",
    "auto_strength",
]

DEFAULT_BOUND = 51  # px: KERNEL_NOTES: a bound of 1.5-2x the true blur works, 3x fails
ESTIMATE_SCALE_BOUND = 25  # the kernel bound, in px at the estimation scale
ESTIMATE_SIDE = 640  # px: the largest window estimated on, at the estimation scale
REFINE_SIDE = 512  # px: the window of the full-resolution refinement
MIN_REGION = 64 * 64  # px: smaller moving regions are not estimated on their own
NO_BLUR = 6.0  # px from the first to the last seventh of the path: shorter is "no blur"
MIN_AGREEMENT = 0.65  # the least similarity of the kernels of a window's halves to its own
MIN_PATH_MASS = 0.55  # KERNEL_NOTES: below this share of mass near its path a kernel failed
# An estimate spanning more than this share of the kernel bound ran into it: the blur is longer
# than the bound allows, or the estimate diverged (KERNEL_NOTES: a bound of 1.5-2x the blur
# works). Measured: a painted band moving 18 px estimated at 48.5 px with the bound of 51 (its
# frames lost 7.4 dB); on bench_kernel's 32 shakes, with bounds of 1.5x their blur, estimates
# spanned at most 0.70 of the bound.
NEAR_BOUND = 0.85
# Ringing, as the share of latent values beyond [-0.1, 1.1]: over the region, and in the 90th
# percentile of its 32 px tiles. Measured: the plate at its true length 0.9 % / 2.1 %, 1.25x too
# long 6.6 % / 17 %; bikes.mp4's car at its length 1.1 % / 3.6 %, twice too long 10 % / 26 %.
MAX_OVERSHOOT = 0.03
MAX_TILE_OVERSHOOT = 0.08
# A video's path is measured for a whole moving region (its median flow); where a part of the
# region moved otherwise, the deconvolution rings there in stripes while the rest is sharp, and
# no user looks at each frame. Such parts keep the input: every pixel of a 32 px window with
# more than VIDEO_TILE_OVERSHOOT of its values far outside [0, 1]. Seen on bikes.mp4 (frames at
# 2x): frame 60's taxi roof sign (zebra stripes under its region's 7 px path) goes back to the
# input, 14 % of its region (1.6 % of the frame's pixels changed); frame 160, 12 % of one region
# (0.2 % of the pixels). 3 % left stripes on the sign; 1 % also took frame 160's wheels, which
# were sharp (0.8 % of its pixels). Stripes within [0, 1] (the road under frame 160's car) stay.
VIDEO_TILE_OVERSHOOT = 0.02
# Blur left after deblurring along an estimated path, in a 3 x 3 grid of overlapping tiles (each
# half the region's size, at most RESIDUAL_TILE px at the estimation scale): a tile whose own
# blind estimate on the deblurred image (RESIDUAL_ITERS rounds per scale) spans RESIDUAL_BLUR px
# or more *at the estimation scale* (where a sharp image's spans 2-3.5 px) still looks blurred.
# With a third of the tiles or more so, the region backs off. Measured in the engine on
# bench_kernel's 6 clips and 32 camera shakes of 5-60 px (512 px): the three clips whose parts
# move different ways and that reach the check had 4, 4 and 5 such tiles of 9; of the 24 shakes
# that reach it, 20 had 0-2, 4 had 3-6 (they had gained -0.54, -0.05, +1.8 and +1.9 dB; all four
# blurred in linear light but one); the plate 1 of 9. With 5 rounds the check took twice as long
# and missed the camera shake with a box moving the other way (1 of 9 tiles). Like the ringing
# check, it judges a gamma solve: on a linear-light solve along the light's estimate, that clip
# had 1 such tile of 9 (the deblurred image lost 1.2-2.3 dB), on the gamma solve 3.
RESIDUAL_BLUR = 6.0
RESIDUAL_SHARE = 1 / 3
RESIDUAL_TILE = 256
RESIDUAL_GRID, RESIDUAL_FRACTION = 3, 1 / 2
RESIDUAL_ITERS = 3
# How the blur mixed the colours (deconv.BLURS): "gamma", the sRGB values were averaged (as in
# synthetic blur, and in KERNEL_NOTES' real photos); "linear", the light was, as a sensor
# integrates it. "auto" deconvolves the most textured window of the path's region (at most
# 2 CHOOSE_SIDE px) at half scale both ways and takes linear light where the energy the solver
# minimises (data misfit + prior) is below LIGHT_RATIO times gamma's. Measured with the true
# paths of bench_kernel's shakes (512 px), ratio linear / gamma: 0.74-1.036 on the 16 blurred
# in linear light, 1.056-13.4 on the 16 blurred in sRGB values (seeds 1000+, where 1.045 was
# chosen). Held out (seeds 2000+): 0.56-1.024 and one 1.143, and 1.016-11.7; the better model
# was taken for 28 of 32, the other 4 cost 0.4-1.0 dB; mean gains +4.64 dB (gamma alone +2.54)
# on linear-light blur, +5.25 (+5.32) on sRGB-value blur. With the linear solve kept in [0, 1]
# (the test itself still solves freely): the better of the two results (within 0.1 dB) on 31
# of 32, the other cost 1.0 dB; mean gains +5.12 and +5.26.
SPACES = ("auto", "gamma", "linear")
LIGHT_RATIO = 1.045
# With no painted motion, the path is estimated on the stored values and on the light; the
# light's estimate overrules one on the values whose blur test says gamma only where its own
# test is clear (energy ratio under CLEAR_LIGHT). Set on the 6 in-sample shakes of bench_kernel
# where the two tests disagreed: on 4 blurred in light the light's estimate was right (ratios
# 0.64, 0.86, 0.93 and 1.04), on 2 blurred in sRGB values the values' one (the light's wrong
# paths tested 1.005 and 1.034).
CLEAR_LIGHT = 0.95
# ... and wherever the values' estimate is shorter than COLLAPSED times the light's: estimated on
# the values, a blur of the light can collapse to a short path. Measured on bench_kernel's 64
# shakes (seeds 1000+ and 2000+): where both estimates succeeded, the values' was under half the
# light's on 4, all wrong (7.7-15 px for blurs of 31-45 px, the light's within 15 % of the true
# length); where the values' was right, the ratio was 0.58 or more. On the 13 clips with their
# guidance, a painted box moving 31 px got 11 px from its values and 28 px from its light.
COLLAPSED = 0.5
CHOOSE_SIDE = 512
MIN_STRENGTH, MAX_STRENGTH = 150.0, 3000.0
THREADED_PIXELS = 16_000_000  # larger images solve their colour planes one after another
STRENGTH_STEPS = (1.0, 0.67, 0.45, 0.3, 0.2, 0.13, 0.08)  # of the noise level's weight
STRENGTH_SIDE = 512


@dataclass
class KernelResult:
    """What the blur-kernel engine made: frames (N, H, W[, C]) in the input's layout, the sharp
    latent image (H, W, 3) float32, the paths used (time-ordered), the deconvolution weights,
    and notes for the user (a back-off, an unknown time order)."""

    frames: np.ndarray
    latent: np.ndarray
    paths: list[BlurPath]
    strength: float  # the first path's (or, with none, what "auto" would give)
    notes: list[str] = field(default_factory=list)
    strengths: list[float] = field(default_factory=list)  # per path
    applied: list[bool] = field(default_factory=list)  # per path: False where it backed off
    #: PSNR (dB) of the frames' mean against the input where paths were applied (away from the
    #: image's edges by a kernel's size), None where none was: the frames should re-blur to the
    #: input (the plate: about 40 dB)
    reblur_psnr: float | None = None
    #: per path: how its blur mixed the colours, "gamma" (the sRGB values) or "linear" (light)
    blurs: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Strength


def noise_sigma(grey: np.ndarray) -> float:
    """Standard deviation of white noise in a grey image (Immerkaer 1996: a Laplacian-difference
    mask cancels smooth content, the mean absolute response measures the noise), on a central
    window of at most 1024 px."""
    h, w = grey.shape
    y0, x0 = max(0, (h - 1024) // 2), max(0, (w - 1024) // 2)
    g = grey[y0 : y0 + 1024, x0 : x0 + 1024].astype(np.float32)
    if min(g.shape) < 3:
        return 0.0
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(g, -1, m)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).mean() / 6)


def auto_strength(
    rgb: np.ndarray, kernel: np.ndarray | None = None, region: np.ndarray | None = None
) -> float:
    """The deconvolution weight for an (H, W, 3) image: from its noise level sigma, about
    0.25 / sigma^2 within [150, 3000] (KERNEL_NOTES: about 2000 for the plate, 300-600 for a
    noisy street photo); given the ``kernel``, the largest of a few steps down from there whose
    deconvolution does not ring, on the most textured window of at most :data:`STRENGTH_SIDE`
    px (of ``region``, an (H, W) bool mask, where given), in grey.

    Why: on synthetic camera shake with 1 % noise the best weight went from 200 (kernels of
    45-57 px) to 3000 (5-40 px), and the noise level alone cannot tell them apart; the largest
    weight that does not ring was within 0.2 dB of the best on 7 of 8 such photos."""
    sigma = noise_sigma(rgb.mean(axis=-1))
    cap = float(np.clip(0.25 / max(sigma, 1e-4) ** 2, MIN_STRENGTH, MAX_STRENGTH))
    if kernel is None:
        return cap
    grey = rgb.mean(axis=-1)
    y0, x0 = _best_window(grey, region, STRENGTH_SIDE)
    win = (slice(y0, y0 + STRENGTH_SIDE), slice(x0, x0 + STRENGTH_SIDE))
    inside = np.ones(grey[win].shape, bool) if region is None else region[win]
    weight = cap
    for f in STRENGTH_STEPS:
        weight = max(MIN_STRENGTH, cap * f)
        lat = deconvolve(grey[win], kernel, weight=weight)
        if not ringing(lat, inside, margin=kernel.shape[0], strict=0.25):
            break
    return weight


# ---------------------------------------------------------------------------------------------
# Gamma or linear light


def blur_with(x: np.ndarray, kernel: np.ndarray, blur: str = "gamma") -> np.ndarray:
    """The (H, W[, 3]) image ``x`` (sRGB values in [0, 1]) blurred by ``kernel`` as the model
    ``blur`` says (averaging the values, or the light), edges reflected."""
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)  # filter2D correlates
    src = srgb_to_linear(x) if blur == "linear" else x.astype(np.float32, copy=False)
    out = cv2.filter2D(src, -1, flipped, borderType=cv2.BORDER_REFLECT101)
    return linear_to_srgb(out) if blur == "linear" else out


def choose_blur(
    rgb: np.ndarray,
    path: BlurPath,
    weight: float,
    where: np.ndarray,
    prior: str = "hyper-laplacian",
    cancel: Callable[[], bool] | None = None,
) -> tuple[str, float | None]:
    """Whether the blur along ``path`` over the (H, W) bool ``where`` of an (H, W, 3) image
    averaged the sRGB values ("gamma") or the light ("linear"), and the energy ratio (linear /
    gamma) it was told by (None: not tested; gamma). See :data:`LIGHT_RATIO`."""
    # the quadratic prior has no linear-light solver; under 2 px at half scale, nothing to tell
    if prior == "wiener" or path.extent() < 4 or not where.any():
        return "gamma", None
    grey = rgb.mean(axis=-1)
    side = 2 * CHOOSE_SIDE
    y0, x0 = _best_window(grey, where, side)
    crop, mask = rgb[y0 : y0 + side, x0 : x0 + side], where[y0 : y0 + side, x0 : x0 + side]
    h, w = crop.shape[0] // 2, crop.shape[1] // 2
    kernel = path.scaled(0.5).render()
    r = kernel.shape[0]
    if min(h, w) <= 2 * r + 16:
        return "gamma", None
    small = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    inner = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.99
    inner = cv2.erode(inner.astype(np.uint8), np.ones((r, r), np.uint8)).astype(bool)
    inner[:r], inner[-r:], inner[:, :r], inner[:, -r:] = False, False, False, False
    if inner.sum() < 32 * 32:
        return "gamma", None
    alpha = 1.0 if prior == "tv" else 2 / 3
    energy = []
    for blur in BLURS:
        planes = []
        for c in range(3):
            # the solver as LIGHT_RATIO was measured on (values beyond [0, 1] left free)
            plane = deconvolve(
                small[..., c],
                kernel,
                weight=weight,
                prior=prior,
                blur=blur,
                in_range=False,
                cancel=cancel,
            )
            if plane is None:
                raise Cancelled("cancelled while choosing gamma or linear light")
            planes.append(plane)
        x = np.clip(np.stack(planes, axis=-1), 0, 1)
        misfit = float(np.mean((blur_with(x, kernel, blur) - small)[inner] ** 2))
        gx, gy = np.diff(x, axis=1, append=x[:, -1:]), np.diff(x, axis=0, append=x[-1:])
        rough = float(np.mean((np.abs(gx) ** alpha + np.abs(gy) ** alpha)[inner]))
        energy.append(weight / 2 * misfit + rough)
    ratio = energy[1] / max(energy[0], 1e-12)
    return ("linear" if ratio < LIGHT_RATIO else "gamma"), ratio


# ---------------------------------------------------------------------------------------------
# Estimation


def _estimation_regions(labels: np.ndarray | None, shape) -> list[np.ndarray | None]:
    """Masks of the regions to estimate a path for: each large connected moving region, or the
    whole image (None) when the guidance is absent or shows no large moving region."""
    if labels is None or not (labels > 0).any():
        return [None]
    comp, n = regions.label_regions(labels)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:]
    big = [i + 1 for i in np.argsort(-sizes) if sizes[i] >= MIN_REGION]
    if not big:
        return [labels > 0]
    return [comp == c for c in big[:4]]


def _gradient_energy(grey: np.ndarray) -> np.ndarray:
    """|d/dy| + |d/dx| per pixel (forward differences, the last row and column repeated)."""
    return np.abs(np.diff(grey, axis=0, append=grey[-1:])) + np.abs(
        np.diff(grey, axis=1, append=grey[:, -1:])
    )


def _best_window(grey: np.ndarray, mask: np.ndarray | None, side: int) -> tuple[int, int]:
    """Top-left (y, x) of the side x side window with the most gradient energy inside mask."""
    h, w = grey.shape
    if h <= side and w <= side:
        return 0, 0
    energy = _gradient_energy(grey)
    if mask is not None:
        energy = energy * mask
    f = max(1, min(h, w) // 128)
    small = cv2.resize(energy, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    sh, sw = min(side, h) // f, min(side, w) // f
    box = cv2.boxFilter(small, -1, (sw, sh), normalize=False, anchor=(0, 0))
    box = box[: small.shape[0] - sh + 1, : small.shape[1] - sw + 1]
    y, x = np.unravel_index(np.argmax(box), box.shape)
    return int(min(y * f, h - min(side, h))), int(min(x * f, w - min(side, w)))


def estimate_paths_iter(
    rgb: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    kernel_bound: int = DEFAULT_BOUND,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, tuple[list[BlurPath], list[str]]]:
    """Estimate one blur path per moving region of an (H, W, 3) float image (gamma space).

    Returns (paths, notes): a region whose kernel is no blur or fails the path check gets no
    path and a note saying why. Paths are time-ordered by the region's guidance labels when
    there are any.
    """
    found = yield from _estimate_each_region(rgb, labels, _check_bound(kernel_bound), cancel)
    return [p for _, p, _ in found if p is not None], [n for _, _, n in found if n]


def _estimate_each_region(rgb, labels, bound, cancel):
    """[(region mask or None for the whole image, path or None, note or "")] for each region
    of :func:`_estimation_regions`, in order (see :func:`estimate_paths_iter`)."""
    h, w = rgb.shape[:2]
    f = min(1.0, ESTIMATE_SCALE_BOUND / bound)
    small = rgb if f == 1 else cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    grey = small.mean(axis=-1)
    sh, sw = grey.shape
    masks = _estimation_regions(labels, (h, w))
    found = []
    for r, mask in enumerate(masks):
        msmall = None
        if mask is not None:
            msmall = cv2.resize(mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST)
            msmall = msmall > 0
        # the window lies within the region's bounding box: a window reaching past it would
        # give the halves check a half with hardly any of the region in it (measured: painted
        # halves of a photo blurred one way failed that check at 44 %, every time)
        by0, by1, bx0, bx1 = 0, sh, 0, sw
        if msmall is not None and msmall.any():
            ys, xs = np.nonzero(msmall)
            by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        box = (slice(by0, by1), slice(bx0, bx1))
        y0, x0 = _best_window(grey[box], None if msmall is None else msmall[box], ESTIMATE_SIDE)
        y0, x0 = y0 + by0, x0 + bx0
        win = (slice(y0, min(y0 + ESTIMATE_SIDE, by1)), slice(x0, min(x0 + ESTIMATE_SIDE, bx1)))
        where = "the image" if mask is None else f"region {r + 1}"
        if min(small[win].shape[:2]) < 16:
            note = f"{where} is too small to estimate a blur path on; it keeps the input"
            found.append((mask, None, note))
            continue
        sub = small[win]
        sub_mask = None if msmall is None else msmall[win]
        size = max(5, int(round(bound * f)) | 1)
        kernels = []
        for part in [(slice(None), slice(None)), *_halves(sub.shape[:2])]:
            k = estimate_kernel(
                sub[part], size, mask=None if sub_mask is None else sub_mask[part], cancel=cancel
            )
            if k is None:
                raise Cancelled("cancelled while estimating the blur path")
            kernels.append(k)
        yield Progress(r + 1, len(masks), f"estimated the blur path of {where}")
        k = kernels[0]
        coarse = path_from_kernel(k, (0.0, 0.0))
        clean = mass_near_path(coarse)
        why = _doubt(kernels, f)
        if why == "no blur":
            note = f"no blur found in {where} (under {NO_BLUR} px); it keeps the input"
            found.append((mask, None, note))
            continue
        if why:
            note = (
                f"the blur path estimated for {where} is uncertain ({why}); it keeps the input. "
                f"Draw the path instead (or paint the guidance of each moving region), or try "
                f"another kernel bound"
            )
            found.append((mask, None, note))
            continue
        if clean < MIN_PATH_MASS:
            note = (
                f"the blur path estimated for {where} is not a clean trajectory ({clean:.0%} of "
                f"its mass near the path, under {MIN_PATH_MASS:.0%}); it keeps the input. Draw "
                f"the path instead, or try another kernel bound"
            )
            found.append((mask, None, note))
            continue
        # the path's place: the centre of the image, or the heart of the region
        origin = ((w - 1) / 2, (h - 1) / 2) if mask is None else regions.inner_point(mask)
        full = _upscale_kernel(k, 1 / f) if f < 1 else k
        if f < 1:  # thin the enlarged kernel at full resolution, on the window's centre
            full = _refine_at_full_scale(rgb, mask, full, (y0, x0), sub.shape[:2], f, cancel)
        path = path_from_kernel(full, origin)
        if path.extent() > NEAR_BOUND * bound:
            note = (
                f"the blur path estimated for {where} spans {path.extent():.0f} px, close to the "
                f"kernel bound of {bound} px: the blur may be longer than the bound allows, or "
                f"the estimate failed; it keeps the input. Set the bound to 1.5-2x the longest "
                f"streak, or draw the path"
            )
            found.append((mask, None, note))
            continue
        path = regions.orient(path, regions.dominant_direction(labels, _or_all(mask, (h, w))))
        found.append((mask, path, ""))
    return found


def estimate_blur_paths_iter(
    rgb: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    kernel_bound: int = DEFAULT_BOUND,
    space: str = "auto",
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, tuple[list[BlurPath], list[str]]]:
    """The paths the default run would estimate for an (H, W, 3) float image: one for the
    whole image or one per large painted moving region, estimated on the stored values and,
    unless ``space`` is "gamma", on the light (see :func:`_estimate_on_values_or_light`).
    Returns (paths, notes). What **Estimate blur path** and ``napari_afb.estimate_blur_paths``
    show."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, not {space!r}")
    bound = _check_bound(kernel_bound)
    paths, notes, _ = yield from _estimate_on_values_or_light(
        rgb, labels, bound, "auto", space, "hyper-laplacian", cancel
    )
    return paths, notes


def _estimate_on_values_or_light(rgb, labels, bound, strength, space, prior, cancel):
    """One path per region (the whole image, or each large painted moving region), estimated
    on the stored values and, unless ``space`` is "gamma", on the light (linear): (paths,
    notes, [(weight, blur) per path], empty with "gamma": nothing was judged).

    Estimation on the values of a photo blurred in light is biased at its contrasty edges.
    Measured on bench_kernel's 16 shakes blurred in linear light (paths used as drawn, so
    without the check for parts still blurred): estimated on the values +1.19 dB, on the light
    +2.23; on the plate, whose blur mixed its values, estimation on the light fails
    (KERNEL_NOTES). So in each region the light's estimate is taken where its own blur test
    says light and the values' estimate failed or says light too; against a values' estimate
    that says gamma, only where the light's test is clear (:data:`CLEAR_LIGHT`); and where the
    values' estimate collapsed to under half the light's length (:data:`COLLAPSED`). With
    space="linear", the light's estimate wherever it succeeds. Painted regions: on bench_kernel's
    13 clips (blurred in light) with their true guidance, estimating on the values alone gained
    +0.29 dB on average, on the light alone +1.55, with this choice +1.56 (+1.71 once the
    linear-light solve kept to [0, 1])."""
    h, w = rgb.shape[:2]

    def judged(path, mask):
        where = np.ones((h, w), bool) if mask is None else mask
        weight = auto_strength(rgb, path.render(), mask) if strength == "auto" else strength
        if space == "linear":
            return float(weight), "linear", 0.0
        return float(weight), *choose_blur(rgb, path, weight, where, prior, cancel)

    if space == "gamma":
        yield Progress(0, 0, "estimating the blur path...")
        paths, notes = yield from estimate_paths_iter(
            rgb, labels, kernel_bound=bound, cancel=cancel
        )
        return paths, notes, []
    # the two estimates at once, in two threads (numpy and FFT work that releases the GIL):
    # measured at 12 MP on 2 cores, 15.8 s one after the other, 10.3 s together
    yield Progress(0, 0, "estimating the blur path on the values and on the light...")
    light = srgb_to_linear(rgb)
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(run, _estimate_each_region(x, labels, bound, cancel)) for x in (rgb, light)
        ]
        on_values, on_light = (job.result() for job in jobs)
    del light
    yield Progress(0, 0, "estimated the blur paths")
    paths, notes, verdicts = [], [], []
    for (mask, values, values_note), (_, light, light_note) in zip(on_values, on_light):
        # the region keeps the values' estimate unless the light's is better
        chosen, note = values, values_note
        collapsed = (
            values is not None
            and light is not None
            and values.extent() < COLLAPSED * light.extent()
        )
        verdict = None if values is None or collapsed else judged(values, mask)
        if light is not None:
            weight, blur, ratio = judged(light, mask)
            values_gamma = verdict is not None and verdict[1] == "gamma"
            if collapsed or (
                blur == "linear" and (not values_gamma or (ratio or 1.0) < CLEAR_LIGHT)
            ):
                chosen, note, verdict = light, light_note, (weight, blur)
        if chosen is None:
            notes.append(note)
            continue
        paths.append(chosen)
        verdicts.append(verdict[:2])
    return paths, notes, verdicts


def _halves(shape) -> list[tuple[slice, slice]]:
    """The two halves of a window, split across its longer side."""
    h, w = shape
    if w >= h:
        return [(slice(None), slice(0, w // 2)), (slice(None), slice(w // 2, None))]
    return [(slice(0, h // 2), slice(None)), (slice(h // 2, None), slice(None))]


def _span(k: np.ndarray) -> tuple[float, float]:
    """(direction in degrees mod 180, length in px) of a kernel's path from its first to its
    last seventh of the exposure: robust to the faint tails blind kernels have."""
    off = path_from_kernel(k, (0.0, 0.0)).frame_offsets(7)
    v = off[-1] - off[0]
    return float(np.degrees(np.arctan2(v[1], v[0])) % 180), float(np.hypot(*v))


def _doubt(kernels: list[np.ndarray], scale: float) -> str:
    """Why the kernels estimated on a window and on its two halves do not describe one blur
    ("" when they do, "no blur" when the window's is too short to act on).

    Measured: blind estimation on scikit-image's sharp stills still returns paths of 3.5-7 px
    (the rocket's 18 px, its halves' kernels correlating 0.59-0.66 with it); on 16 synthetic
    camera shakes of 5-60 px the halves of the 12 whose estimate helped correlated 0.69-1.0
    with the window's, of the two whose estimate lost 4 dB 0.37-0.52; the plate's 0.96-0.99."""
    if _span(kernels[0])[1] / scale < NO_BLUR:
        return "no blur"
    agree = min(kernel_similarity(kernels[0], k) for k in kernels[1:])
    if agree < MIN_AGREEMENT:
        return f"the kernels of its two halves match it only {agree:.0%}"
    return ""


def kernel_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two kernels at their best offset, also with one of them
    turned by 180 degrees (blind estimates on parts of one photo sometimes come out turned);
    1: the same trajectory."""
    from scipy.signal import fftconvolve

    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    best = max(fftconvolve(a, b, mode="full").max(), fftconvolve(a, b[::-1, ::-1]).max())
    return float(best / (na * nb))


def _refine_at_full_scale(rgb, mask, kernel, top_left, window, f, cancel):
    """:func:`~.blind.refine_kernel` on the full-resolution window under the estimation
    window's centre (at most :data:`REFINE_SIDE` px)."""
    h, w = rgb.shape[:2]
    cy = int((top_left[0] + window[0] / 2) / f)
    cx = int((top_left[1] + window[1] / 2) / f)
    side = REFINE_SIDE
    y0, x0 = max(0, min(cy - side // 2, h - side)), max(0, min(cx - side // 2, w - side))
    win = (slice(y0, y0 + side), slice(x0, x0 + side))
    k = refine_kernel(rgb[win], kernel, mask=None if mask is None else mask[win], cancel=cancel)
    if k is None:
        raise Cancelled("cancelled while estimating the blur path")
    return k


def _or_all(mask, shape):
    return np.ones(shape, bool) if mask is None else mask


def _upscale_kernel(k: np.ndarray, factor: float) -> np.ndarray:
    size = int(round(k.shape[0] * factor)) | 1
    out = cv2.resize(k, (size, size), interpolation=cv2.INTER_CUBIC)
    out = np.maximum(out, 0)
    out[out < 0.02 * out.max()] = 0
    return (out / out.sum()).astype(np.float32)


def _check_bound(bound) -> int:
    b = int(bound)
    if b != bound or b < 3:
        raise ValueError(f"the kernel bound must be a whole number of pixels >= 3, got {bound!r}")
    return b | 1


# ---------------------------------------------------------------------------------------------
# Decomposition


def ringing(
    latent: np.ndarray, region: np.ndarray, *, margin: int = 0, tile: int = 32, strict: float = 1.0
) -> str:
    """Why a deconvolved ``latent`` rings inside the (H, W) bool ``region`` ("" if it does
    not): too many values far outside [0, 1] over the region, or in its worst tenth of tiles
    (ringing from a path too long, or wrong, gathers at edges). ``margin`` px at the image's
    edges do not count (the kernel's size: there the blur reached beyond the photo, and every
    kernel leaves some ringing; the plate's blind kernel, 51 px with its faint tails, gave 11 %
    in the worst tiles with them and none without). ``strict`` scales the limits down."""
    if margin > 0:
        inner = np.zeros_like(region)
        inner[margin:-margin, margin:-margin] = True
        region = region & inner
    far = _far_outside(latent)
    if not region.any():
        return ""
    share = float(far[region].mean())
    if share > MAX_OVERSHOOT * strict:
        return f"{share:.1%} of its values far outside the range"
    ys, xs = np.nonzero(region)
    y0, x0 = ys.min(), xs.min()
    shares = []
    for y in range(y0, ys.max() + 1 - tile // 2, tile):
        for x in range(x0, xs.max() + 1 - tile // 2, tile):
            inside = region[y : y + tile, x : x + tile]
            if inside.mean() >= 0.5:
                shares.append(far[y : y + tile, x : x + tile][inside].mean())
    if (
        len(shares) >= 10
        and (worst := float(np.quantile(shares, 0.9))) > MAX_TILE_OVERSHOOT * strict
    ):
        return f"{worst:.0%} of the values far outside the range in its worst tenth of tiles"
    return ""


def _far_outside(latent: np.ndarray) -> np.ndarray:
    """(H, W): per pixel, the share of its values far outside [0, 1] (beyond [-0.1, 1.1]),
    what the ringing checks count."""
    far = (latent < -0.1) | (latent > 1.1)
    return far.mean(axis=-1) if far.ndim == 3 else far.astype(np.float32)


def ringing_parts(latent: np.ndarray, region: np.ndarray, *, tile: int = 32) -> np.ndarray:
    """(H, W) bool: the pixels of ``region`` in a ``tile`` px window of it whose share of
    values far outside [0, 1] exceeds :data:`VIDEO_TILE_OVERSHOOT` (see there)."""
    far = _far_outside(latent)
    inside = region.astype(np.float32)
    box = (tile, tile)
    count = cv2.boxFilter(inside, -1, box, normalize=False, borderType=cv2.BORDER_CONSTANT)
    hits = cv2.boxFilter(far * inside, -1, box, normalize=False, borderType=cv2.BORDER_CONSTANT)
    centres = (hits > VIDEO_TILE_OVERSHOOT * np.maximum(count, 1)) & (count >= tile * tile / 4)
    window = np.ones(box, np.uint8)
    return cv2.dilate(centres.astype(np.uint8), window).astype(bool) & region


def residual_blur(
    latent: np.ndarray,
    region: np.ndarray,
    *,
    kernel_bound: int = DEFAULT_BOUND,
    cancel: Callable[[], bool] | None = None,
) -> tuple[float, list[float]]:
    """How much of a region still looks blurred after deblurring along one path: the blind
    estimate (at the estimation scale of ``kernel_bound``) on each of a 3 x 3 grid of
    overlapping tiles of the (H, W[, 3]) deblurred ``latent`` (gamma space) inside the (H, W)
    bool ``region``. Returns (the share of textured tiles whose estimate spans
    :data:`RESIDUAL_BLUR` px or more at the estimation scale, each tile's span in px of the
    image); (0, []) when too small to judge.

    Why: deblurring with a wrong kernel still re-blurs to the input (the data term is fitted
    everywhere), but where a part of the photo moved another way than the path says, its blur
    is still there afterwards, and a blind estimate finds it; where the path was right, blind
    estimates on the sharp result span 3-7 px."""
    bound = _check_bound(kernel_bound)
    f = min(1.0, ESTIMATE_SCALE_BOUND / bound)
    grey = latent.mean(axis=-1) if latent.ndim == 3 else latent
    grey = np.clip(grey, 0, 1).astype(np.float32)
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return 0.0, []
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box = grey[y0:y1, x0:x1]
    inside = region[y0:y1, x0:x1]
    if f < 1:
        size = (max(1, round(box.shape[1] * f)), max(1, round(box.shape[0] * f)))
        box = cv2.resize(box, size, interpolation=cv2.INTER_AREA)
        inside = cv2.resize(inside.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    h, w = box.shape
    n = RESIDUAL_GRID
    th = min(int(h * RESIDUAL_FRACTION), RESIDUAL_TILE)
    tw = min(int(w * RESIDUAL_FRACTION), RESIDUAL_TILE)
    size = max(5, int(round(bound * f)) | 1)
    if min(th, tw) < 2 * size:
        return 0.0, []
    energy = _gradient_energy(box)
    tiles = []
    for i in range(n):
        for j in range(n):
            ty, tx = round(i * (h - th) / (n - 1)), round(j * (w - tw) / (n - 1))
            t = (slice(ty, ty + th), slice(tx, tx + tw))
            if inside[t].mean() >= 0.5:
                tiles.append((t, float(energy[t][inside[t]].mean())))
    if not tiles:
        return 0.0, []
    floor = 0.25 * float(np.median([e for _, e in tiles]))  # flat tiles give arbitrary kernels
    spans = []
    for t, e in tiles:
        if e < floor:
            continue
        k = estimate_kernel(box[t], size, mask=inside[t], iters=RESIDUAL_ITERS, cancel=cancel)
        if k is None:
            raise Cancelled("cancelled while checking the deblurred image")
        spans.append(_span(k)[1] / f)
    if not spans:
        return 0.0, []
    return float(np.mean([s * f >= RESIDUAL_BLUR for s in spans])), spans


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """img moved by (dx, dy) px (content at x goes to x + (dx, dy)), bicubic, edges reflected."""
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)


def decompose_iter(
    image,
    guidance=None,
    paths=None,
    *,
    n_frames: int = 7,
    kernel_bound: int = DEFAULT_BOUND,
    strength: float | str = "auto",
    prior: str = "hyper-laplacian",
    space: str = "auto",
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, KernelResult]:
    """Decompose a blurry image with the blur-kernel engine (see the module's docstring).

    ``paths``: drawn paths (anything :func:`~napari_afb.kernel.paths.as_paths` takes); None
    estimates them; an empty list means no blur (the frames are copies of the input).
    ``strength``: the deconvolution weight, or "auto" from the noise level.
    ``space``: how the blur mixed the colours: "gamma" (the sRGB values), "linear" (the light,
    as a sensor integrates it), or "auto" (per path, the one that explains the image better;
    see :data:`LIGHT_RATIO`). The prior is on the sRGB values either way.
    """
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive whole number, got {n_frames!r}")
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {', '.join(PRIORS)}, not {prior!r}")
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, not {space!r}")
    rgb, alpha, layout = to_rgb_float(image)
    h, w = rgb.shape[:2]
    labels = None if guidance is None else check_guidance(guidance, shape=(h, w))
    bound = _check_bound(kernel_bound)
    notes: list[str] = []
    given = as_paths(paths)
    for i, p in enumerate(given):
        if p.extent() > bound:
            raise ValueError(
                f"blur path {i + 1} spans {p.extent():.0f} px, longer than the kernel bound of "
                f"{bound} px allows: raise the bound (kernel_bound / --kernel-bound) or check "
                f"the path's coordinates"
            )
    if strength != "auto" and not (isinstance(strength, numbers.Real) and strength > 0):
        raise ValueError(f"strength must be a positive number or 'auto', got {strength!r}")
    # no painted motion: one path (estimated or drawn) stands for the whole image
    whole_image = labels is None or not (labels > 0).any()
    verdicts = []  # (weight, blur) per path, where estimation already worked them out
    if paths is not None:  # drawn or measured; an empty list (nothing moved) keeps the input
        used = given
    else:
        used, notes, verdicts = yield from _estimate_on_values_or_light(
            rgb, labels, bound, strength, space, prior, cancel
        )
    owner = regions.assign(used, labels, (h, w)) if used else np.full((h, w), -1, np.int32)
    if paths is None and used and not whole_image:
        # a painted region whose own estimate failed keeps the input: the nearest region's path
        # is another motion (measured: two halves moving down and right, the right one's path
        # laid over the left cost it 1.6 dB)
        strokes = [regions.stroke_mask(p, (h, w)) for p in used]
        for mask in _estimation_regions(labels, (h, w)):
            if mask is not None and not any((s & mask).any() for s in strokes):
                owner[mask] = -1
    if verdicts:
        weights = [weight for weight, _ in verdicts]
    elif strength == "auto":
        weights = [auto_strength(rgb, p.render(), owner == i) for i, p in enumerate(used)]
    else:
        weights = [float(strength)] * len(used)
    latents, blurs = [], []
    total = len(used) * 3 + n_frames
    done = 0
    for i, p in enumerate(used):
        blur = space
        if verdicts:
            blur = verdicts[i][1]
        elif space == "auto":
            yield Progress(done, total, f"gamma or linear light for path {i + 1}")
            blur, _ = choose_blur(rgb, p, weights[i], owner == i, prior, cancel)
        region = owner == i
        # The ringing check is calibrated on gamma solves; where a linear-light solve rings, the
        # gamma solve decides (and is kept if it rings too). Where the path was estimated for
        # the whole image, the gamma solve made for the check for parts still blurred must not
        # ring either: before the linear solve kept to [0, 1] between its steps, it rang on
        # 6 of bench_kernel's 16 shakes blurred in light at their true paths (falsely: it
        # gained 1.5-3.2 dB over gamma), and on a clip whose box moved another way (rightly),
        # where the gamma solve rang too. Now it rings on neither; the gamma solve still does
        # on the clip. On 64 shakes a gamma solve never rang where the free linear one did not.
        doing = f"deconvolving along path {i + 1} of {len(used)}"
        lat = yield from _deconvolve_rgb(
            rgb, p, weights[i], prior, blur, cancel, done, total, doing
        )
        done += 3
        why = ringing(lat, region, margin=p.kernel_size())
        # check that the one path explains every part of the image (with guidance, each
        # painted region has its own path, and masked tiles judged poorly: measured)
        residual_check = p.source == "estimated" and whole_image
        check = None  # a gamma solve along a linear path, for the checks (gamma-calibrated)
        if blur == "linear" and (why or residual_check):
            total += 3
            check = yield from _deconvolve_rgb(
                rgb, p, weights[i], prior, "gamma", cancel, done, total, doing
            )
            done += 3
            why = ringing(check, region, margin=p.kernel_size())
            if why:
                lat, blur = check, "gamma"
        blurs.append(blur)
        if why:
            why = f"the deconvolution along path {i + 1} rings ({why})"
        elif residual_check:
            yield Progress(done, total, f"checking the result of path {i + 1}")
            judged = lat if check is None else check
            share, spans = residual_blur(judged, region, kernel_bound=bound, cancel=cancel)
            if share >= RESIDUAL_SHARE:
                blurred = round(share * len(spans))
                why = (
                    f"the blur differs across the image: after deblurring along the estimated "
                    f"path, {blurred} of {len(spans)} parts still look blurred (they moved "
                    f"another way)"
                )
        if why and p.source == "drawn":  # the user's own path: say so, keep their result
            notes.append(f"{why}: check the path")
        elif why:
            remedy = (
                "paint the guidance of each moving region, or draw a path on each"
                if why.startswith("the blur differs")
                else "lower the strength, or draw the path"
            )
            where = "the image keeps" if whole_image and len(used) == 1 else "that region keeps"
            notes.append(f"{why}; {where} the input: {remedy}")
            owner[region] = -1
            lat = None
        if lat is not None and p.source == "video":
            rang = ringing_parts(lat, region)
            if rang.any():
                owner[rang] = -1
                notes.append(
                    f"{rang.sum() / region.sum():.0%} of path {i + 1}'s region rang in parts "
                    f"that moved otherwise; they keep the input"
                )
        latents.append(None if lat is None else np.clip(lat, 0, 1, out=lat))
    feather = max(2.0, 0.25 * max((p.extent() for p in used), default=0.0))
    masks = regions.soft_masks(owner, len(used), feather)
    offsets = [p.frame_offsets(n_frames) for p in used]
    out = alloc_output(n_frames, h, w, layout)
    latent = masks[-1][..., None] * rgb
    for i, lat in enumerate(latents):
        if lat is not None:
            latent += masks[i][..., None] * lat
    applied = [lat is not None for lat in latents]
    # the frames' mean, on every other pixel (a check: 1-2 s less at 12 MP), as the paths'
    # model blurs: their light averaged where any path's blur is linear
    mean = np.zeros_like(rgb[::2, ::2]) if any(applied) else None
    in_light = any(b == "linear" for b, a in zip(blurs, applied) if a)
    for t in range(n_frames):
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled after {t} of {n_frames} frames")
        frame = masks[-1][..., None] * rgb
        for i, lat in enumerate(latents):
            if lat is not None:
                frame += masks[i][..., None] * _shift(lat, *offsets[i][t])
        if mean is not None:
            sub = frame[::2, ::2]
            mean += srgb_to_linear(sub) if in_light else sub
        store_rows(out[t : t + 1], 0, frame[None], layout, alpha)
        done += 1
        yield Progress(done, total, f"frame {t + 1} of {n_frames}")
    if not any(applied):
        notes.append("nothing was deblurred: the frames are copies of the input")
    elif paths is None and whole_image:
        notes.append(
            "the time order is unknown without guidance: the reversed frames are as "
            "plausible (paint the guidance, or draw the path from start to end)"
        )
    reblur = None
    if mean is not None:
        margin = max(p.kernel_size() for p, a in zip(used, applied) if a)
        mean /= n_frames
        reblur = reblur_psnr(
            linear_to_srgb(mean) if in_light else mean,
            rgb[::2, ::2],
            (owner >= 0)[::2, ::2],
            margin=(margin + 1) // 2,
        )
    fallback = auto_strength(rgb) if strength == "auto" else float(strength)
    return KernelResult(
        out,
        latent,
        used,
        weights[0] if weights else fallback,
        notes,
        weights,
        applied,
        reblur,
        blurs,
    )


def _deconvolve_rgb(rgb, path, weight, prior, blur, cancel, done, total, doing):
    """The (H, W, 3) deconvolution of ``rgb`` along ``path``; yields a Progress (``done`` +
    planes finished, of ``total``) as each plane is done.

    The planes are solved in 3 threads: outside its FFTs a solve is numpy work on whole
    arrays, which releases the GIL, so two cores share it. Measured at 12 MP on 2 cores, one
    plane after another / 2 threads / 3 threads: linear light 20.4 / 14.9-16.5 / 13.3 s, gamma
    9.4 / 7.2-7.8 / 6.9 s, the same planes to the bit. Each solve in flight holds about 60
    bytes per pixel (12 MP: peak 1.5 GiB one by one, 2.9 GiB in threads), so above
    :data:`THREADED_PIXELS` the planes go one after another (an 8K frame: 33 MP)."""
    kernel = path.render()

    def solve(c):
        return deconvolve(rgb[..., c], kernel, weight=weight, prior=prior, blur=blur, cancel=cancel)

    planes = [None] * 3
    threads = 3 if rgb.shape[0] * rgb.shape[1] <= THREADED_PIXELS else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = {pool.submit(solve, c): c for c in range(3)}
        try:
            for n, future in enumerate(as_completed(futures), 1):
                plane = future.result()
                if plane is None:
                    raise Cancelled("cancelled during the deconvolution")
                planes[futures[future]] = plane
                yield Progress(done + n, total, doing)
        finally:  # an error, a cancel or a closed generator: start no plane still waiting
            for future in futures:
                future.cancel()
    return np.stack(planes, axis=-1)


def reblur_psnr(mean: np.ndarray, rgb: np.ndarray, where: np.ndarray, *, margin: int = 0):
    """PSNR (dB, values in [0, 1]) of the frames' ``mean`` against the input ``rgb`` over the
    (H, W) bool ``where``, leaving out ``margin`` px at the edges (where the frames were moved
    in from beyond the photo); None when nothing is left to compare."""
    inner = where.copy()
    if margin > 0:
        inner[:margin] = inner[-margin:] = False
        inner[:, :margin] = inner[:, -margin:] = False
    if not inner.any():
        return None
    mse = float(np.mean((mean[inner] - rgb[inner]) ** 2))
    return float(10 * np.log10(1 / max(mse, 1e-12)))
