"""Predicted guidance: several plausible guidance maps for one blurry image.

The predictor (:class:`napari_afb.models.GuidanceNet`) gives per pixel the blur's axis and a
sign logit *relative to the rest of the image*. A sample is built from whole regions:

1. the logits are smoothed (a Gaussian of ``smooth`` times the long side: guidance is piecewise
   constant, and flat areas would otherwise flip pixel by pixel), the axis is the most likely
   one at each pixel (the blur shows it), the *mode* sign is the sign of the logit, and together
   they give the mode label map;
2. the mode map's connected regions of one label are the units that may flip: the largest
   ``max_regions`` of them (each at least ``min_region`` of the image) flip independently, the
   rest follow the image's overall orientation;
3. a sign pattern ``f`` (one +-1 per flippable region, relative to the mode) has probability
   ``P(f) = (prod_i s(f_i c_i) + prod_i s(-f_i c_i)) / 2`` with ``s`` the logistic function and
   ``c_i`` the region's mean logit: the global orientation is unknowable, so both are summed, and
   a pattern and its global flip are exactly as plausible;
4. ``n`` distinct patterns are drawn without replacement (Gumbel top-k, seeded) and returned in
   order of decreasing probability. A pattern and its global flip always tie, so the order is
   only partial: :func:`plausibility_ranks` gives equal ranks to equal scores, and
   :func:`describe_order` says in words what the order means. With ``unique=True`` a map is
   returned once even when fewer distinct maps exist than were asked for.

So samples differ in the sign of whole regions, never pixel by pixel, and the same seed always
gives the same samples. Large images are predicted at a working resolution (long side
``max_side``) and the logits scaled back up.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import cv2
import numpy as np

from .guidance import labels_from_axis_sign
from .images import to_rgb_float

__all__ = [
    "GuidanceSamples",
    "describe_order",
    "plausibility_ranks",
    "predict_guidance",
    "sample_guidance",
]

#: Working resolution: the predictor sees images with at most this many pixels on the long side.
DEFAULT_MAX_SIDE = 768
#: Regions whose signs are sampled independently (2**MAX_REGIONS patterns are scored).
MAX_REGIONS = 8
#: Smallest region, as a fraction of the image, that is sampled on its own.
MIN_REGION = 0.01
#: Gaussian smoothing of the logits before the mode map is read, as a fraction of the long side:
#: guidance is piecewise constant, and per-pixel argmax on flat, textureless areas is speckle.
SMOOTH = 0.01


@dataclass
class GuidanceSamples:
    """Samples and how plausible the model finds them.

    labels : (n, H, W) uint8 guidance maps, most plausible first
    log_prob : (n,) the log-probability of each sample's sign pattern under the model
    regions : how many regions' signs were sampled independently
    """

    labels: np.ndarray
    log_prob: np.ndarray
    regions: int


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _regions(mode: np.ndarray, min_area: int, max_regions: int) -> tuple[np.ndarray, int]:
    """(H, W) int32 region index (-1 where not flippable) of the largest connected regions of
    one label in ``mode``, and their count."""
    found = []  # (area, label, component index, component map)
    for label in range(1, 5):
        mask = (mode == label).astype(np.uint8)
        if not mask.any():
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for k in range(1, n):
            area = int(stats[k, cv2.CC_STAT_AREA])
            if area >= min_area:
                found.append((area, label, k, comp))
    found.sort(key=lambda t: -t[0])
    region = np.full(mode.shape, -1, np.int32)
    for i, (_, _, k, comp) in enumerate(found[:max_regions]):
        region[comp == k] = i
    return region, min(len(found), max_regions)


def sample_guidance(
    axis_logits: np.ndarray,
    sign_logit: np.ndarray,
    n_samples: int = 1,
    *,
    rng: np.random.Generator | None = None,
    max_regions: int = MAX_REGIONS,
    min_region: float = MIN_REGION,
    smooth: float = SMOOTH,
    out_shape: tuple[int, int] | None = None,
    unique: bool = False,
) -> GuidanceSamples:
    """Draw ``n_samples`` guidance maps from the predictor's outputs (see the module docstring).

    axis_logits : (3, h, w) logits of static / "/" axis / "\\" axis
    sign_logit : (h, w) logit of a positive sign (labels 1 and 4), relative to the image
    rng : the generator that draws the patterns (default: a fresh one)
    smooth : standard deviation of the Gaussian applied to the logits, as a fraction of the
        long side (0: none)
    out_shape : (H, W) of the maps to return when the logits are at a working resolution: the
        logits are scaled up (bilinear) and the regions with them (nearest)
    unique : return each distinct map once (fewer than ``n_samples`` when the image has fewer
        explanations); otherwise the most plausible ones repeat to make ``n_samples``
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    axis_logits = np.asarray(axis_logits, np.float32)
    sign_logit = np.asarray(sign_logit, np.float32)
    if (
        axis_logits.ndim != 3
        or axis_logits.shape[0] != 3
        or sign_logit.shape != axis_logits.shape[1:]
    ):
        raise ValueError(
            f"expected axis logits (3, h, w) and a sign logit (h, w), got {axis_logits.shape} "
            f"and {sign_logit.shape}"
        )
    rng = rng if rng is not None else np.random.default_rng()
    h, w = sign_logit.shape
    sigma = smooth * max(h, w)
    if sigma >= 0.5:
        axis_logits = np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in axis_logits])
        sign_logit = cv2.GaussianBlur(sign_logit, (0, 0), sigma)
    axis = axis_logits.argmax(axis=0).astype(np.uint8)
    mode = labels_from_axis_sign(axis, sign_logit)
    min_area = max(4, int(np.ceil(min_region * h * w)))
    region, m = _regions(mode, min_area, max_regions)
    # c_i >= 0: the mean confidence of region i in its mode sign.
    conf = np.array(
        [float(np.mean(np.abs(sign_logit[region == i]))) for i in range(m)], dtype=np.float64
    )
    patterns = np.array(list(itertools.product((1, -1), repeat=m)), dtype=np.float64)
    if m:
        fwd = _log_sigmoid(patterns * conf).sum(axis=1)
        bwd = _log_sigmoid(-patterns * conf).sum(axis=1)
        log_prob = np.logaddexp(fwd, bwd) - np.log(2.0)
    else:
        log_prob = np.zeros(1)
    # Gumbel top-k: n distinct patterns drawn without replacement, in proportion to P.
    keys = log_prob + rng.gumbel(size=len(log_prob))
    chosen = np.argsort(-keys, kind="stable")[: min(n_samples, len(log_prob))]
    chosen = chosen[np.argsort(-log_prob[chosen], kind="stable")]
    if len(chosen) < n_samples and not unique:  # fewer distinct maps than asked: repeat them
        chosen = np.resize(chosen, n_samples)

    if out_shape is not None and tuple(out_shape) != (h, w):
        oh, ow = int(out_shape[0]), int(out_shape[1])
        axis = _upsample_argmax(axis_logits, oh, ow)
        sign_logit = cv2.resize(sign_logit, (ow, oh), interpolation=cv2.INTER_LINEAR)
        region = cv2.resize(region, (ow, oh), interpolation=cv2.INTER_NEAREST)
    mode_sign = np.where(sign_logit > 0, 1, -1).astype(np.int8)
    areas = np.bincount(region[region >= 0].ravel(), minlength=m)[:m].astype(np.float64)
    out = np.empty((len(chosen),) + mode_sign.shape, np.uint8)
    for j, p in enumerate(chosen):
        flips = patterns[p]
        # The small regions follow the orientation that most of the flippable area took.
        rest = 1 if not m or float(np.dot(flips, areas)) >= 0 else -1
        lut = np.append(flips, rest).astype(np.int8)  # index -1 -> the rest
        out[j] = labels_from_axis_sign(axis, mode_sign * lut[region])
    scores = log_prob[chosen].astype(np.float32)
    if unique:  # two patterns can still give one map (a region lost when scaled): keep one
        seen, keep = set(), []
        for j, sample in enumerate(out):
            if sample.tobytes() not in seen:
                seen.add(sample.tobytes())
                keep.append(j)
        out, scores = out[keep], scores[keep]
    return GuidanceSamples(out, scores, m)


def plausibility_ranks(log_prob, tol: float = 1e-4) -> np.ndarray:
    """Rank (1 = most plausible) of each sample of a list in decreasing order of ``log_prob``;
    samples whose scores differ by less than ``tol`` share a rank (a map and its time-reversal
    always do)."""
    log_prob = np.asarray(log_prob, np.float64)
    ranks = np.ones(len(log_prob), int)
    for j in range(1, len(log_prob)):
        tie = abs(log_prob[j] - log_prob[j - 1]) < tol
        ranks[j] = ranks[j - 1] if tie else ranks[j - 1] + 1
    return ranks


def describe_order(log_prob, asked: int | None = None) -> str:
    """What a list of samples (in :func:`sample_guidance`'s order) is, in words: how many
    distinct maps (and that the image has no more, when fewer than ``asked``) and which order
    they are in, claiming "most plausible first" only for scores that differ."""
    ranks = plausibility_ranks(log_prob)
    n = len(ranks)
    text = f"{n} distinct sample{'s' if n != 1 else ''}"
    if asked is not None and n < asked:
        text += f" (the image has no more than {n} distinct explanation{'s' if n != 1 else ''})"
    if n < 2:
        return text
    if ranks[-1] == 1:
        return text + ", all equally plausible (no order)"
    if ranks[-1] == n:
        return text + ", most plausible first"
    groups = [np.flatnonzero(ranks == r) + 1 for r in range(1, ranks[-1] + 1)]
    ties = "; ".join(" = ".join(map(str, g)) for g in groups if len(g) > 1)
    return text + f", most plausible first; equally plausible: {ties}"


def _upsample_argmax(logits: np.ndarray, h: int, w: int) -> np.ndarray:
    """argmax over channels of the bilinearly upsampled logits, one channel in memory at a time."""
    best = cv2.resize(logits[0], (w, h), interpolation=cv2.INTER_LINEAR)
    arg = np.zeros((h, w), np.uint8)
    for c in range(1, logits.shape[0]):
        up = cv2.resize(logits[c], (w, h), interpolation=cv2.INTER_LINEAR)
        better = up > best
        arg[better] = c
        np.maximum(best, up, out=best)
    return arg


def predictor_logits(rgb, model, device, *, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """The predictor's (4, h, w) float32 logits for an (H, W, 3) float32 image in [0, 1] (as
    :func:`napari_afb.images.to_rgb_float` returns it), at a working resolution whose long side
    is at most ``max_side`` (the image's own when smaller)."""
    import torch
    import torch.nn.functional as F

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    sh, sw = rgb.shape[:2]
    stride = int(getattr(model, "stride", 8))
    ph, pw = -sh % stride, -sw % stride
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)
    if ph or pw:
        mode = "reflect" if sh > ph and sw > pw else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    model.eval()
    with torch.inference_mode():
        logits = model(x)[0, :, :sh, :sw].float().cpu().numpy()
    return logits


def predict_guidance(
    image,
    n_samples: int = 1,
    *,
    seed: int | None = None,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    model=None,
    max_side: int = DEFAULT_MAX_SIDE,
    return_log_prob: bool = False,
    unique: bool = False,
):
    """Sample ``n_samples`` plausible guidance maps for a blurry image.

    Parameters
    ----------
    image : (H, W[, 3 or 4]) uint8, uint16 or float in [0, 1], as for :func:`decompose`
    n_samples : how many maps. They are distinct while the image has that many distinct
        explanations (2 ** regions); beyond that the most plausible ones repeat.
    seed : the samples are a pure function of (image, weights, seed); None draws fresh ones.
    device : "auto", "cpu", "cuda", "cuda:N" or "mps"
    weights : predictor weights; default ``$NAPARI_AFB_PREDICTOR_WEIGHTS``, then the packaged file
    model : an already built predictor module, used instead of ``weights``
    max_side : working resolution (long side, pixels) of the predictor
    return_log_prob : also return the samples' log-probabilities under the model
    unique : return each distinct map once: fewer than ``n_samples`` maps when the image has
        fewer distinct explanations (what the CLI and the napari dock show)

    Returns
    -------
    (n_samples, H, W) uint8 label maps (fewer with ``unique``), in decreasing order of
    plausibility (and the log-probs). A map and its time-reversal are always equally plausible:
    :func:`describe_order` says which samples tie.
    """
    from . import engine
    from .weights import cached_model

    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if max_side < 8:
        raise ValueError(f"max_side must be at least 8, got {max_side}")
    dev = engine.select_device(device)
    if model is None:
        model, _ = cached_model(weights, dev, role="predictor")
    else:
        model = model.to(dev)
    rgb, _, _ = to_rgb_float(image)
    logits = predictor_logits(rgb, model, dev, max_side=max_side)
    samples = sample_guidance(
        logits[:3],
        logits[3],
        int(n_samples),
        rng=np.random.default_rng(seed),
        out_shape=rgb.shape[:2],
        unique=unique,
    )
    if return_log_prob:
        return samples.labels, samples.log_prob
    return samples.labels
