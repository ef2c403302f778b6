"""The motion-refining decomposer: ``motion_deconv`` plus a second look at its own deconvolution.

``research/code/bench_ceiling.py`` measured that the motion is what limits ``motion_deconv``: with
the true motion its frames gain +2.0 dB by warping and +4.4 dB with the deconvolution on the
validation clips, with the network's +0.9 and -0.2. A motion that is wrong leaves marks in the
latent deconvolved along it (blur left over where it is too short, echoes where it is too
long), marks that the blurry image alone does not show. So a small full-resolution U-Net, the
*refiner*, sees the image, the guidance, the latent deconvolved along the first motion, the
re-blur residual and that motion, and adds a correction to it; the frames are then made from the
corrected motion exactly as ``motion_deconv`` makes them.

The correction head starts at zero: a refiner grown from trained ``motion_deconv`` weights
(:func:`with_refiner`) computes what they compute until it is trained.
"""

from __future__ import annotations

import torch
from torch import nn

from .decomposer import MotionUNet
from .deconv import MotionDeconv, blur, deconvolve, trajectory
from .layers import linear_to_srgb, srgb_to_linear

#: the refiner's settings that :func:`with_refiner` writes into a grown file's arguments
REFINE_DEFAULTS = {
    "refine_widths": (16, 32, 64),
    "refine_blocks": (1, 1, 2),
    "refine_iters": 10,
    "refine_substeps": 1,
}


class MotionRefine(MotionDeconv):
    """:class:`~.deconv.MotionDeconv` whose motion is corrected by a refiner.

    Parameters (beyond :class:`~.deconv.MotionDeconv`'s)
    ----------
    refine_widths, refine_blocks : the refiner U-Net's channels per level and residual blocks
        per encoder level (one block per decoder level); it runs at full resolution.
    refine_iters, refine_substeps : the deconvolution that the refiner looks at (steps and
        sub-positions per frame interval; :func:`~.deconv.deconvolve`).
    """

    def __init__(
        self,
        *,
        refine_widths: tuple[int, ...] = REFINE_DEFAULTS["refine_widths"],
        refine_blocks: tuple[int, ...] = REFINE_DEFAULTS["refine_blocks"],
        refine_iters: int = REFINE_DEFAULTS["refine_iters"],
        refine_substeps: int = REFINE_DEFAULTS["refine_substeps"],
        **kwargs,
    ):
        super().__init__(**kwargs)
        if refine_iters < 1 or refine_substeps < 1:
            raise ValueError(
                f"need refine_iters >= 1 and refine_substeps >= 1, got {refine_iters}, "
                f"{refine_substeps}"
            )
        refine_widths = tuple(refine_widths)
        n = self.n_frames
        # The refiner's "guidance" channels: the guidance, the latent and the re-blur residual
        # (3 each) and the first motion (2 per frame).
        self.refiner = MotionUNet(
            n_frames=n,
            widths=refine_widths,
            enc_blocks=tuple(refine_blocks),
            dec_blocks=(1,) * (len(refine_widths) - 1),
            guidance_classes=self.guidance_classes + 6 + 2 * n,
        )
        del self.refiner.head  # its own frame head is not used: the correction head is below
        self.refine_head = nn.Conv2d(refine_widths[0], 2 * n, 3, padding=1)
        nn.init.zeros_(self.refine_head.weight)
        nn.init.zeros_(self.refine_head.bias)
        self.stride = max(self.stride, self.refiner.stride)
        self.refine_iters, self.refine_substeps = refine_iters, refine_substeps

    def view(self, image: torch.Tensor, guidance: torch.Tensor, motion: torch.Tensor):
        """What the refiner sees besides the image: (B, G + 6 + 2N, H, W), from the first
        ``motion`` (detached: the refiner corrects it, it does not train it)."""
        motion = motion.detach()
        with torch.no_grad():
            blurry = srgb_to_linear(image.float())
            latent = deconvolve(
                blurry, motion, self.refine_iters, self.refine_substeps, self.prior, self.step
            )
            residual = blur(latent, trajectory(motion, self.refine_substeps)) - blurry
        scale = self.motion_scale * self.downsample
        return torch.cat(
            [
                guidance,
                linear_to_srgb(latent) * 2 - 1,
                residual * 10,
                motion.flatten(1, 2) / scale,
            ],
            dim=1,
        ).to(guidance.dtype)

    def _heads(self, image: torch.Tensor, guidance: torch.Tensor):
        motion, logits = super()._heads(image, guidance)
        feats = self.refiner.features(image, self.view(image, guidance, motion))
        b, _, h, w = image.shape
        step = self.refine_head(feats).float().view(b, self.n_frames, 2, h, w)
        return motion + step * (self.motion_scale * self.keep), logits


def with_refiner(model: MotionDeconv, seed: int = 0, **arch_args) -> tuple[MotionRefine, dict]:
    """A :class:`MotionRefine` holding a trained ``model``'s tensors (built with ``arch_args``;
    ``refine_*`` arguments missing there take :data:`REFINE_DEFAULTS`): a fresh refiner whose
    correction head is zero, so it computes what ``model`` computes until trained. Returns the
    model and its full arguments (for the weights file)."""
    if isinstance(model, MotionRefine):
        raise ValueError("the model already has a refiner")
    arch_args = {**REFINE_DEFAULTS, **arch_args}
    torch.manual_seed(seed)
    grown = MotionRefine(**arch_args)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("refiner.", "refine_head.")) for k in missing):
        raise ValueError(f"not a motion_deconv state: missing {missing}, unexpected {unexpected}")
    return grown, arch_args
