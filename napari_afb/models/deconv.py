"""The motion-deconvolution decomposer: learn the per-frame motion, let physics do the deblurring.

What TRAINING_NOTES.md measured shapes it: frames made by warping a *sharp* latent image along
the true per-frame motion, with the latent recovered by non-blind deconvolution, gain +2.9 dB over
the blurry baseline with no learning at all, while every network trained on 2 CPU cores only
learned to shift the blurry input. So the only learned part here is the one a small network can
learn on a CPU: the motion.

* A U-Net (the :class:`~.decomposer.MotionUNet` trunk, spatially local) sees RGB + one-hot
  guidance and predicts, per output frame t, a sampling offset field ``m_t`` (pixels, (dx, dy))
  with ``frame_t(x) = latent(x + m_t(x))``; the latent is the middle frame (``m_mid = 0``).
  Training supervises ``m`` directly with the synthesis's true motion and photometrically with the
  true sharp frames (:func:`napari_afb.training.losses.motion_loss`), not through a deblurring
  loss.
* The blur of a latent S along that motion is the mean, in linear light, of S warped to
  ``substeps`` sub-positions per frame interval (linear between frames). The latent is found by
  ``deconv_iters`` steps of accelerated projected gradient descent on
  ``|A S - B|^2 + prior * |grad S|^2`` with ``0 <= S <= 1``, from ``S = B``. The adjoint ``A^T`` is
  the blur along the reversed offsets (exact for locally uniform motion), and the step sizes are
  fixed, so every operation is local: a tile that holds the reach gives what the whole image gives.
* The frames are the latent warped by ``m_t``, blended per pixel (weights from a second head,
  trained by the frame loss) with the blurry input warped by ``m_t`` and the blurry input, then
  encoded to sRGB and projected so that their linear-light mean is exactly the input
  (:func:`~.decomposer.project_blur_consistent`). The blend is the hedge: a sharp frame at the
  wrong place scores worse than a blurry one, so where the motion is uncertain it leans on the
  input.

The head starts at zero: an untrained network predicts no motion, the blur operator is then the
identity and the frames are N copies of the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .decomposer import MotionUNet, project_blur_consistent, warp
from .layers import linear_to_srgb, srgb_to_linear


class MotionDeconv(MotionUNet):
    """Motion-predicting U-Net + fixed deconvolution + warping.

    Parameters (beyond :class:`MotionUNet`'s trunk: ``widths``, ``enc_blocks``, ``dec_blocks``)
    ----------
    motion_scale : pixels per unit of the head's output (a zero-initialised head learns faster
        when its outputs are O(1)).
    deconv_iters : gradient steps of the deconvolution (0: the latent is the blurry input).
    substeps : sub-positions per frame interval in the blur operator.
    prior : weight of the gradient (Tikhonov) prior.
    step : the gradient step (the operator has norm <= 1, so up to ~1.9 / (1 + 8 prior)).
    blend : per frame and pixel, blend (softmax weights from a second head) the frames made
        from the deconvolved latent with the blurry input warped by the motion and the blurry
        input itself: where the motion is uncertain, sharp frames at the wrong place score
        worse than blurry ones, and the blend learns where to trust which.

    ``forward(image (B, 3, H, W), guidance one-hot (B, G, H, W)) -> frames (B, N, 3, H, W)``;
    :meth:`predict_motion` gives the offsets alone, (B, N, 2, H, W).
    """

    def __init__(
        self,
        n_frames: int = 7,
        widths: tuple[int, ...] = (24, 48, 96, 192),
        enc_blocks: tuple[int, ...] = (1, 1, 2, 4),
        dec_blocks: tuple[int, ...] = (1, 1, 1),
        guidance_classes: int = 5,
        motion_scale: float = 4.0,
        deconv_iters: int = 10,
        substeps: int = 2,
        prior: float = 0.003,
        step: float = 1.5,
        blend: bool = True,
    ):
        super().__init__(
            n_frames=n_frames,
            widths=widths,
            enc_blocks=enc_blocks,
            dec_blocks=dec_blocks,
            guidance_classes=guidance_classes,
            blur_consistent=True,
        )
        if deconv_iters < 0 or substeps < 1 or prior < 0 or not 0 < step < 2:
            raise ValueError(
                f"need deconv_iters >= 0, substeps >= 1, prior >= 0, 0 < step < 2; got "
                f"{deconv_iters}, {substeps}, {prior}, {step}"
            )
        self.head = nn.Conv2d(widths[0], 2 * n_frames, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.blend = blend
        if blend:  # per frame and pixel: weights of the deconvolved, warped and blurry frames
            self.blend_head = nn.Conv2d(widths[0], 3 * n_frames, 3, padding=1)
            nn.init.zeros_(self.blend_head.weight)
            nn.init.zeros_(self.blend_head.bias)
        self.motion_scale = motion_scale
        self.deconv_iters, self.substeps = deconv_iters, substeps
        self.prior, self.step = prior, step
        keep = torch.ones(1, n_frames, 1, 1, 1)
        if n_frames % 2:
            keep[:, n_frames // 2] = 0  # the latent is the middle frame: no offset
        self.register_buffer("keep", keep, persistent=False)

    #: what training supervises (see napari_afb.training.train): the motion directly, and the
    #: frames only through the blend weights
    supervision = "motion"

    def _heads(self, image: torch.Tensor, guidance: torch.Tensor):
        b, _, h, w = image.shape
        if h % self.stride or w % self.stride:
            raise ValueError(f"H and W must be multiples of {self.stride}, got {h}x{w}")
        feats = self.features(image, guidance)
        motion = self.head(feats).float().view(b, self.n_frames, 2, h, w)
        motion = motion * (self.motion_scale * self.keep)
        logits = None
        if self.blend:
            logits = self.blend_head(feats).float().view(b, self.n_frames, 3, 1, h, w)
        return motion, logits

    def predict_motion(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W), (B, G, H, W) -> (B, N, 2, H, W) sampling offsets in pixels."""
        return self._heads(image, guidance)[0]

    def candidates(self, image: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """(B, N, K, 3, H, W) linear-light frame candidates: the deconvolved latent warped by the
        motion, then (with ``blend``) the blurry input warped by it, and the blurry input."""
        blurry = srgb_to_linear(image.float())
        latent = deconvolve(blurry, motion, self.deconv_iters, self.substeps, self.prior, self.step)
        out = [warp(latent, motion)]
        if self.blend:
            out += [warp(blurry, motion), blurry.unsqueeze(1).expand_as(out[0])]
        return torch.stack(out, dim=2)

    def forward(
        self,
        image: torch.Tensor,
        guidance: torch.Tensor,
        output: str = "frames",
        frames_of: int | None = None,
    ):
        """The frames (B, N, 3, H, W); with ``output="motion"`` the offsets alone; with
        ``output="train"`` both, as (motion, frames of the first ``frames_of`` items), the
        candidates made from the detached motion without gradients (training teaches the
        motion by its own loss and the blend by the frame loss; the deconvolution is the
        costly part of a step, hence ``frames_of``)."""
        motion, logits = self._heads(image, guidance)
        if output == "motion":
            return motion
        if output == "train":
            k = len(image) if frames_of is None else frames_of
            image, motion_k = image[:k], motion[:k]
            logits = None if logits is None else logits[:k]
            with torch.no_grad():
                cands = self.candidates(image, motion_k.detach())
        else:
            cands = self.candidates(image, motion)
        if logits is None:
            lin = cands[:, :, 0]
        else:
            lin = (torch.softmax(logits, dim=2) * cands).sum(dim=2)
        frames = project_blur_consistent(linear_to_srgb(lin), image.float())
        return (motion, frames) if output == "train" else frames


def trajectory(motion: torch.Tensor, substeps: int) -> torch.Tensor:
    """(B, N, 2, H, W) per-frame offsets -> (B, (N - 1) * substeps + 1, 2, H, W), linear between
    consecutive frames: the sub-positions that make the blur."""
    if substeps == 1:
        return motion
    a, b = motion[:, :-1], motion[:, 1:]
    w = torch.arange(substeps, device=motion.device, dtype=motion.dtype) / substeps
    w = w.view(1, 1, substeps, 1, 1, 1)
    inner = a.unsqueeze(2) * (1 - w) + b.unsqueeze(2) * w  # (B, N-1, s, 2, H, W)
    inner = inner.flatten(1, 2)
    return torch.cat([inner, motion[:, -1:]], dim=1)


def blur(latent: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The mean of ``latent`` (B, C, H, W) warped to every sub-position (B, K, 2, H, W)."""
    return warp(latent, positions).mean(dim=1)


def _laplacian(x: torch.Tensor) -> torch.Tensor:
    """``D^T D x`` for forward differences with replicated borders: (B, C, H, W)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return 4 * x - p[..., 1:-1, :-2] - p[..., 1:-1, 2:] - p[..., :-2, 1:-1] - p[..., 2:, 1:-1]


def deconvolve(
    blurry: torch.Tensor,
    motion: torch.Tensor,
    iters: int,
    substeps: int = 2,
    prior: float = 0.003,
    step: float = 1.5,
) -> torch.Tensor:
    """Non-blind deconvolution of a linear-light ``blurry`` (B, C, H, W) whose blur is the
    per-frame ``motion`` (B, N, 2, H, W): ``iters`` steps of Nesterov-accelerated projected
    gradient descent on ``|A S - B|^2 + prior |grad S|^2`` over ``[0, 1]``, from ``S = B``.
    Returns the latent sharp image S (B, C, H, W), linear light."""
    if iters == 0:
        return blurry
    positions = trajectory(motion, substeps)
    reverse = -positions  # A^T: the blur along the reversed offsets
    x = y = blurry
    for k in range(iters):
        grad = blur(blur(y, positions) - blurry, reverse)
        if prior:
            grad = grad + prior * _laplacian(y)
        x_next = (y - step * grad).clamp(0.0, 1.0)
        y = x_next + (k / (k + 3)) * (x_next - x)
        x = x_next
    return x
