"""Blur synthesis from consecutive sharp video frames (ARCHITECTURE.md, "The physics of blur").

Clips filmed at 10-30 fps step too far between frames: averaging N raw frames gives ghost
copies, not streaks. So each interval between consecutive frames is densified with
``substeps - 1`` intermediate frames made from optical flow (OpenCV DIS, both directions), and
the blurry image is the mean of all ``(N - 1) * substeps + 1`` sub-frames in *linear* light,
encoded back to sRGB. The targets stay the real frames. The guidance is the paper's rule on the
mean per-step flow of the sharp frames. Windows are rejected, with a counted reason, for a scene
cut, too little motion, or poor forward-backward flow consistency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from ..flow import backward_warp, consistency_mask, dis_flow
from ..samples import linear_to_srgb, srgb_to_linear
from .window import Window


@dataclass(frozen=True)
class SynthesisConfig:
    """How windows are made and which are rejected.

    substeps : sub-frames per interval (8: seven made from flow, plus the real frame).
    min_motion : reject when the 95th percentile of the mean per-step motion is below this (px).
    max_inconsistent : reject when more than this fraction of pixels fails the forward-backward
        check (``|F01(x) + F10(x + F01(x))| > 1 px + 5 %``) in some interval.
    scene_cut : reject when, after warping by the flow, the mean absolute grey difference of
        some interval exceeds this (values in [0, 1]).
    noise_std, jpeg_prob, jpeg_quality : degradations of the blurry input: Gaussian noise with a
        standard deviation drawn from [0, noise_std] (sRGB), and with probability ``jpeg_prob`` a
        JPEG round trip at a quality drawn from ``jpeg_quality``.
    """

    substeps: int = 8
    min_motion: float = 0.5
    max_inconsistent: float = 0.3
    scene_cut: float = 0.12
    noise_std: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)


class Rejected(Exception):
    """A window unfit for training; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


REASONS = ("scene cut", "too little motion", "inconsistent flow", "unreadable")


class RejectionStats(Counter):
    """Counts of kept windows ("kept") and of each rejection reason."""

    def summary(self) -> str:
        total = sum(self.values())
        parts = [f"kept {self['kept']}/{total}"]
        parts += [f"{r} {self[r]}" for r in REASONS if self[r]]
        return ", ".join(parts)


def interpolate(i0, i1, f01, f10, v0, v1, s: float) -> np.ndarray:
    """The frame at fraction ``s`` of the way from ``i0`` to ``i1`` (linear light, (H, W, 3)).

    The flows from time s back to the two frames are approximated from the flows between them,
    assuming locally linear motion (Jiang et al., Super SloMo, CVPR 2018):
    ``F_s0 = -(1 - s) s F01 + s^2 F10`` and ``F_s1 = (1 - s)^2 F01 - s (1 - s) F10``. The two
    warped frames are blended by temporal distance times visibility (flow consistency).
    """
    fs0 = -(1 - s) * s * f01 + s * s * f10
    fs1 = (1 - s) * (1 - s) * f01 - s * (1 - s) * f10
    w0 = (1 - s) * backward_warp(v0, fs0)[..., None] + 1e-3 * (1 - s)
    w1 = s * backward_warp(v1, fs1)[..., None] + 1e-3 * s
    return (w0 * backward_warp(i0, fs0) + w1 * backward_warp(i1, fs1)) / (w0 + w1)


def synthesize(
    frames: np.ndarray,
    config: SynthesisConfig | None = None,
    rng: np.random.Generator | None = None,
    *,
    source: dict | None = None,
    return_subframes: bool = False,
):
    """Make one training window from N consecutive sharp frames.

    frames : (N, H, W, 3) uint8 RGB, consecutive frames of a video (N >= 2).
    Returns a :class:`Window` (and the (S, H, W, 3) linear-light sub-frames when
    ``return_subframes``), or raises :class:`Rejected`.
    """
    cfg = config or SynthesisConfig()
    rng = rng or np.random.default_rng()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise ValueError(
            f"expected (N>=2, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}"
        )
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    lin = srgb_to_linear(frames / 255.0)
    n = len(frames)
    fwd = [dis_flow(grey[i], grey[i + 1]) for i in range(n - 1)]
    bwd = [dis_flow(grey[i + 1], grey[i]) for i in range(n - 1)]
    vis0 = [consistency_mask(fwd[i], bwd[i]) for i in range(n - 1)]
    vis1 = [consistency_mask(bwd[i], fwd[i]) for i in range(n - 1)]

    for i in range(n - 1):
        warped = backward_warp(grey[i + 1], fwd[i]).astype(np.float32)
        # All pixels count: at a cut the flow is inconsistent almost everywhere, and masking
        # those pixels out would hide the cut.
        err = float(np.mean(np.abs(warped - grey[i])) / 255.0)
        if err > cfg.scene_cut:
            raise Rejected("scene cut", f"interval {i}: warped difference {err:.3f}")
        bad = 1.0 - float(vis0[i].mean())
        if bad > cfg.max_inconsistent:
            raise Rejected("inconsistent flow", f"interval {i}: {bad:.0%} of pixels")
    flow = np.mean(fwd, axis=0).astype(np.float32)
    p95 = float(np.percentile(np.linalg.norm(flow, axis=-1), 95))
    if p95 < cfg.min_motion:
        raise Rejected("too little motion", f"p95 {p95:.2f} px per step")

    subframes = [lin[0]]
    for i in range(n - 1):
        for k in range(1, cfg.substeps):
            subframes.append(
                interpolate(lin[i], lin[i + 1], fwd[i], bwd[i], vis0[i], vis1[i], k / cfg.substeps)
            )
        subframes.append(lin[i + 1])
    subframes = np.stack(subframes).astype(np.float32)
    blurry = degrade(linear_to_srgb(subframes.mean(axis=0)), cfg, rng)
    window = Window.from_flow(
        blurry,
        frames / 255.0,
        flow,
        {**(source or {}), "kind": "video", "p95_motion": p95},
        motion=frame_motion(fwd, bwd),
    )
    return (window, subframes) if return_subframes else window


def frame_motion(fwd: list[np.ndarray], bwd: list[np.ndarray]) -> np.ndarray:
    """Per-frame sampling offsets from the middle frame, by chaining consecutive flows.

    ``fwd[i]`` is the flow from frame i to i + 1 and ``bwd[i]`` from i + 1 to i (each (H, W, 2),
    ``a(x) ~ b(x + flow(x))``). Returns (N, H, W, 2) float32 ``m`` with
    ``frame_t(x) ~ frame_mid(x + m[t](x))``, ``mid = N // 2`` and ``m[mid] = 0``: a frame steps
    to its neighbour nearer the middle, then follows that neighbour's offset from there.
    """
    n = len(fwd) + 1
    mid = n // 2
    out = np.zeros((n,) + fwd[0].shape, np.float32)
    for t in range(mid + 1, n):  # later frames: step back in time with bwd[t - 1]
        step = bwd[t - 1]
        out[t] = step + backward_warp(out[t - 1], step)
    for t in range(mid - 1, -1, -1):  # earlier frames: step forward with fwd[t]
        step = fwd[t]
        out[t] = step + backward_warp(out[t + 1], step)
    return out


def degrade(blurry: np.ndarray, cfg: SynthesisConfig, rng: np.random.Generator) -> np.ndarray:
    """Optional sensor noise and JPEG compression of an sRGB float image."""
    out = blurry
    if cfg.noise_std > 0:
        out = out + rng.normal(0.0, rng.uniform(0, cfg.noise_std), out.shape).astype(np.float32)
    if cfg.jpeg_prob > 0 and rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        u8 = np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] / 255.0
    return np.clip(out, 0, 1).astype(np.float32)
