"""The unit of training data: one synthesized exposure with its ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..guidance import TRAINING_THRESHOLD, Augmentation, guidance_from_flow


@dataclass
class Window:
    """A blurry image and what made it.

    blurry : (H, W, 3) float32, sRGB in [0, 1] (the linear-light mean of the exposure)
    frames : (N, H, W, 3) float32, sRGB in [0, 1], the sharp frames in time order
    flow : (H, W, 2) float32, mean motion per frame step (dx, dy) in pixels, over the exposure
    guidance : (H, W) uint8 labels of ``flow`` by the training threshold (0.2 px)
    source : where it came from (clip and frame, or still and path), for reports
    neighbors : for evaluation, the blurry exposures just before and after (H, W, 3) each, when
        the window was made with its neighbours; None otherwise
    motion : (N, H, W, 2) float32 or None, the true per-frame motion: sampling offsets (dx, dy)
        such that ``frames[t](x) ~ frames[N // 2](x + motion[t](x))`` (zero for the middle
        frame), the target of motion-supervised decomposers; None where it is not known
    """

    blurry: np.ndarray
    frames: np.ndarray
    flow: np.ndarray
    guidance: np.ndarray
    source: dict = field(default_factory=dict)
    neighbors: tuple[np.ndarray, np.ndarray] | None = None
    motion: np.ndarray | None = None

    @classmethod
    def from_flow(cls, blurry, frames, flow, source=None, motion=None) -> Window:
        flow = np.asarray(flow, np.float32)
        labels = guidance_from_flow(flow, threshold=TRAINING_THRESHOLD)
        return cls(
            blurry.astype(np.float32),
            frames.astype(np.float32),
            flow,
            labels,
            dict(source or {}),
            motion=None if motion is None else np.asarray(motion, np.float32),
        )

    def augmented(self, aug: Augmentation) -> Window:
        """The same window flipped / rotated / time-reversed; guidance recomputed from the
        transformed flow (exact even for axis-aligned motion)."""
        return Window.from_flow(
            aug.apply_image(self.blurry),
            aug.apply_frames(self.frames),
            aug.apply_flow(self.flow),
            {**self.source, "augmentation": aug},
            motion=None if self.motion is None else aug.apply_motion(self.motion),
        )

    def crop(self, y: int, x: int, h: int, w: int) -> Window:
        s = np.s_[y : y + h, x : x + w]
        return Window(
            self.blurry[s],
            self.frames[:, y : y + h, x : x + w],
            self.flow[s],
            self.guidance[s],
            dict(self.source),
            motion=None if self.motion is None else self.motion[:, y : y + h, x : x + w],
        )
