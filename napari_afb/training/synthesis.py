"""Blur synthesis from consecutive sharp video frames (ARCHITECTURE.md, "The physics of blur").

Clips filmed at 10-30 fps step too far between frames: averaging N raw frames gives ghost
copies, not streaks. So each interval between consecutive frames is densified with
``substeps - 1`` intermediate frames made from optical flow (OpenCV DIS, both directions), and
the blurry image is the mean of all ``(N - 1) * substeps + 1`` sub-frames in *linear* light,
encoded back to sRGB. The targets stay the real frames. The guidance is the paper's rule on the
mean per-step flow of the sharp frames. Windows are rejected, with a counted reason, for a scene
cut, too little motion, or poor forward-backward flow consistency.

Optical flow is the only part that needs OpenCV on the CPU. Everything after it is batched torch
code, :func:`synthesize_batch`, which runs where the model trains: given the frames of B windows
and their flows (computed once per clip and cached, see :mod:`.device_data`), it makes the B
windows at once. :func:`synthesize` is the one-window front end: it computes the flows of its
frames and calls the same code (validation sets and tools use it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..flow import dis_flow
from ..guidance import _LABEL_OF_SIGNS
from ..models.decomposer import warp
from ..models.layers import linear_to_srgb, srgb_to_linear
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


# ---------------------------------------------------------------------------------------------
# The formulas, batched (torch, any device). Frames and images are channel-first: (B, C, H, W);
# flows (B, 2, H, W) in pixels (dx, dy) with ``a(x) ~ b(x + flow(x))``.


def warp_by(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``out(x) = image(x + flow(x))``, bilinear, borders replicated: (B, C, H, W) by
    (B, 2, H, W)."""
    return warp(image, flow[:, None])[:, 0]


def consistency(f01: torch.Tensor, f10: torch.Tensor) -> torch.Tensor:
    """(B, H, W) float 1 where the forward flow ``f01`` is confirmed by the backward ``f10``:
    ``|F01(x) + F10(x + F01(x))| <= 1 px + 5 % of |F01(x)|``."""
    err = (f01 + warp_by(f10, f01)).norm(dim=1)
    return (err <= 1.0 + 0.05 * f01.norm(dim=1)).float()


def interpolate(i0, i1, f01, f10, v0, v1, s: torch.Tensor) -> torch.Tensor:
    """The frames at fractions ``s`` (K,) of the way from ``i0`` to ``i1`` (linear light,
    (B, 3, H, W) each): (B, K, 3, H, W).

    The flows from time s back to the two frames are approximated from the flows between them,
    assuming locally linear motion (Jiang et al., Super SloMo, CVPR 2018):
    ``F_s0 = -(1 - s) s F01 + s^2 F10`` and ``F_s1 = (1 - s)^2 F01 - s (1 - s) F10``. The two
    warped frames are blended by temporal distance times visibility (flow consistency ``v0``,
    ``v1``, (B, H, W)).
    """
    s = s.view(1, -1, 1, 1, 1).to(f01)
    f01, f10 = f01[:, None], f10[:, None]
    fs0 = -(1 - s) * s * f01 + s * s * f10
    fs1 = (1 - s) * (1 - s) * f01 - s * (1 - s) * f10
    a = warp(torch.cat([i0, v0[:, None]], 1), fs0)  # colour and visibility in one warp
    b = warp(torch.cat([i1, v1[:, None]], 1), fs1)
    w0 = (1 - s) * (a[:, :, 3:] + 1e-3)
    w1 = s * (b[:, :, 3:] + 1e-3)
    return (w0 * a[:, :, :3] + w1 * b[:, :, :3]) / (w0 + w1)


def frame_motion(fwd: torch.Tensor, bwd: torch.Tensor) -> torch.Tensor:
    """Per-frame sampling offsets from the middle frame, by chaining consecutive flows.

    ``fwd[:, i]`` is the flow from frame i to i + 1 and ``bwd[:, i]`` from i + 1 to i (each
    (B, N - 1, 2, H, W)). Returns (B, N, 2, H, W) ``m`` with
    ``frame_t(x) ~ frame_mid(x + m[:, t](x))``, ``mid = N // 2`` and ``m[:, mid] = 0``: a frame
    steps to its neighbour nearer the middle, then follows that neighbour's offset from there.
    """
    n = fwd.shape[1] + 1
    mid = n // 2
    out = [None] * n
    out[mid] = torch.zeros_like(fwd[:, 0])
    for t in range(mid + 1, n):  # later frames: step back in time with bwd[t - 1]
        step = bwd[:, t - 1]
        out[t] = step + warp_by(out[t - 1], step)
    for t in range(mid - 1, -1, -1):  # earlier frames: step forward with fwd[t]
        step = fwd[:, t]
        out[t] = step + warp_by(out[t + 1], step)
    return torch.stack(out, 1)


_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY


def labels_from_flow(flow: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 2, H, W) mean per-step flow -> (B, H, W) int64 guidance labels by the reference rule
    (the table of :func:`napari_afb.guidance.guidance_from_flow`)."""
    signs = torch.where(flow.abs() < threshold, 0, torch.sign(flow)).long()
    table = torch.as_tensor(_LABEL_OF_SIGNS, device=flow.device).long()
    return table[signs[:, 1] + 1, signs[:, 0] + 1]


@dataclass
class SynthBatch:
    """What :func:`synthesize_batch` makes for the windows it keeps.

    kept : indices (into the input batch) of the windows kept, in order
    reasons : per input window, None (kept) or (reason, detail) of its rejection
    blurry (K, 3, h, w), frames (K, N, 3, h, w): sRGB in [0, 1]; flow (K, 2, h, w) mean motion
    per frame step; motion (K, N, 2, h, w) per-frame offsets from the middle frame;
    p95 (K,) the 95th percentile of the mean motion (px per step, on the whole region);
    subframes (K, S, 3, H, W) linear light over the whole region, when asked for.
    """

    kept: list[int]
    reasons: list[tuple[str, str] | None]
    blurry: torch.Tensor
    frames: torch.Tensor
    flow: torch.Tensor
    motion: torch.Tensor
    p95: torch.Tensor
    subframes: torch.Tensor | None = None


def _as_srgb(frames: torch.Tensor) -> torch.Tensor:
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()


def rejections(frames, fwd, bwd, cfg: SynthesisConfig):
    """Per window: None or (reason, detail); the (B,) p95 of the mean per-step motion; and the
    forward flows' consistency masks (B, N - 1, H, W), which the sub-frames use too.
    frames (B, N, 3, H, W) sRGB; fwd, bwd (B, N - 1, 2, H, W)."""
    b, n1 = fwd.shape[:2]
    grey = _as_srgb(frames) * frames.new_tensor(_GREY, dtype=torch.float32).view(3, 1, 1)
    grey = (grey.sum(2) * 255).round()  # (B, N, H, W), as the uint8 grey frames of the flow
    fwd_flat = fwd.reshape(b * n1, *fwd.shape[2:])
    warped = warp_by(grey[:, 1:].reshape(b * n1, 1, *grey.shape[2:]), fwd_flat).round()
    # All pixels count: at a cut the flow is inconsistent almost everywhere, and masking those
    # pixels out would hide the cut.
    cut = (warped[:, 0] - grey[:, :-1].reshape(warped[:, 0].shape)).abs().mean((1, 2)) / 255.0
    vis = consistency(fwd_flat, bwd.reshape(fwd_flat.shape))
    bad = 1.0 - vis.mean((1, 2))
    cut, bad = cut.view(b, n1).cpu(), bad.view(b, n1).cpu()
    p95 = torch.quantile(fwd.mean(1).norm(dim=1).flatten(1), 0.95, dim=1)
    reasons = []
    for k in range(b):
        reason = None
        for i in range(n1):
            if cut[k, i] > cfg.scene_cut:
                reason = ("scene cut", f"interval {i}: warped difference {cut[k, i]:.3f}")
            elif bad[k, i] > cfg.max_inconsistent:
                reason = ("inconsistent flow", f"interval {i}: {bad[k, i]:.0%} of pixels")
            if reason:
                break
        if reason is None and p95[k] < cfg.min_motion:
            reason = ("too little motion", f"p95 {float(p95[k]):.2f} px per step")
        reasons.append(reason)
    return reasons, p95, vis.view(b, n1, *vis.shape[1:])


@torch.no_grad()
def synthesize_batch(
    frames: torch.Tensor,
    fwd: torch.Tensor,
    bwd: torch.Tensor,
    config: SynthesisConfig | None = None,
    rng: np.random.Generator | None = None,
    *,
    crop: int | None = None,
    return_subframes: bool = False,
) -> SynthBatch:
    """Make B training windows at once, on the device of the inputs.

    frames : (B, N, 3, H, W) consecutive sharp frames, uint8 or float sRGB in [0, 1]
    fwd, bwd : (B, N - 1, 2, H, W) the DIS flows from frame i to i + 1 and back
    crop : the size of the central crop kept of each window (None: all of it); the rejection
        rules and the flow-based sub-frames use the whole region, so the crop has context
    rng : draws the degradations (noise, JPEG) of ``config``
    """
    cfg = config or SynthesisConfig()
    rng = rng or np.random.default_rng()
    if frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[1] < 2:
        raise ValueError(f"expected (B, N>=2, 3, H, W) frames, got {tuple(frames.shape)}")
    reasons, p95, vis = rejections(frames, fwd, bwd, cfg)
    kept = [k for k, r in enumerate(reasons) if r is None]
    srgb = _as_srgb(frames[kept])
    fwd, bwd, vis = fwd[kept].float(), bwd[kept].float(), vis[kept]
    lin = srgb_to_linear(srgb)
    n = srgb.shape[1]
    s = torch.arange(1, cfg.substeps, device=lin.device, dtype=torch.float32) / cfg.substeps
    total = lin.sum(1)
    subframes = [lin[:, :1]] if return_subframes else None
    for i in range(n - 1):
        f01, f10 = fwd[:, i], bwd[:, i]
        mid = interpolate(lin[:, i], lin[:, i + 1], f01, f10, vis[:, i], consistency(f10, f01), s)
        total = total + mid.sum(1)
        if return_subframes:
            subframes += [mid, lin[:, i + 1 : i + 2]]
    blurry = linear_to_srgb(total / ((n - 1) * cfg.substeps + 1))
    blurry = degrade(blurry, cfg, rng)
    flow = fwd.mean(1)
    motion = frame_motion(fwd, bwd)
    h, w = srgb.shape[-2:]
    c = np.s_[...]
    if crop is not None:
        y, x = (h - crop) // 2, (w - crop) // 2
        c = np.s_[..., y : y + crop, x : x + crop]
    return SynthBatch(
        kept,
        reasons,
        blurry[c].contiguous(),
        srgb[c].contiguous(),
        flow[c].contiguous(),
        motion[c].contiguous(),
        p95[kept],
        torch.cat(subframes, 1) if return_subframes else None,
    )


def degrade(blurry: torch.Tensor, cfg: SynthesisConfig, rng: np.random.Generator):
    """Optional sensor noise and JPEG compression of sRGB float images (B, 3, H, W)."""
    out = blurry
    if cfg.noise_std > 0 and len(out):
        std = torch.as_tensor(rng.uniform(0, cfg.noise_std, len(out)), dtype=out.dtype)
        gen = torch.Generator(device=out.device).manual_seed(int(rng.integers(2**62)))
        noise = torch.randn(out.shape, generator=gen, device=out.device, dtype=out.dtype)
        out = out + noise * std.to(out.device).view(-1, 1, 1, 1)
    if cfg.jpeg_prob > 0:
        for k in np.flatnonzero(rng.random(len(out)) < cfg.jpeg_prob):
            q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            out[k] = _jpeg(out[k], q)
    return out.clamp(0, 1)


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A JPEG round trip (OpenCV, on the CPU) of one (3, H, W) sRGB image."""
    u8 = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).flip(-1).cpu().numpy()
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(u8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    back = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] / 255.0
    return torch.from_numpy(np.ascontiguousarray(back.transpose(2, 0, 1))).to(image)


# ---------------------------------------------------------------------------------------------
# One window from numpy frames


def grey_frames(frames: np.ndarray) -> list[np.ndarray]:
    """(N, H, W, 3) uint8 RGB -> the uint8 grey frames the flow is computed on."""
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]


def pair_flows(grey: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The DIS flows of consecutive grey frames: forward and backward, (N - 1, H, W, 2) each."""
    fwd = [dis_flow(grey[i], grey[i + 1]) for i in range(len(grey) - 1)]
    bwd = [dis_flow(grey[i + 1], grey[i]) for i in range(len(grey) - 1)]
    return np.stack(fwd), np.stack(bwd)


def synthesize(
    frames: np.ndarray,
    config: SynthesisConfig | None = None,
    rng: np.random.Generator | None = None,
    *,
    source: dict | None = None,
    return_subframes: bool = False,
    flows: tuple[np.ndarray, np.ndarray] | None = None,
):
    """Make one training window from N consecutive sharp frames.

    frames : (N, H, W, 3) uint8 RGB, consecutive frames of a video (N >= 2).
    flows : the (forward, backward) DIS flows of the frames, (N - 1, H, W, 2) each, when known
        (default: computed here).
    Returns a :class:`Window` (and the (S, H, W, 3) linear-light sub-frames when
    ``return_subframes``), or raises :class:`Rejected`.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise ValueError(
            f"expected (N>=2, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}"
        )
    fwd, bwd = flows if flows is not None else pair_flows(grey_frames(frames))

    def tensor(a, perm):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(perm)))[None]

    out = synthesize_batch(
        tensor(frames, (0, 3, 1, 2)),
        tensor(fwd, (0, 3, 1, 2)).float(),
        tensor(bwd, (0, 3, 1, 2)).float(),
        config,
        rng,
        return_subframes=return_subframes,
    )
    if out.reasons[0] is not None:
        raise Rejected(*out.reasons[0])
    window = Window.from_flow(
        out.blurry[0].permute(1, 2, 0).numpy(),
        frames / 255.0,
        out.flow[0].permute(1, 2, 0).numpy(),
        {**(source or {}), "kind": "video", "p95_motion": float(out.p95[0])},
        motion=out.motion[0].permute(0, 2, 3, 1).numpy(),
    )
    if return_subframes:
        return window, out.subframes[0].permute(0, 2, 3, 1).numpy()
    return window
