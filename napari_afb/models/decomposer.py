"""The decomposer: (blurry image, motion guidance) -> N sharp frames in time order.

Design (ours, not the reference's), from what TRAINING_NOTES.md measured:

* a U-Net with skips over RGB + one-hot guidance (the reference has no skips);
* **motion first**: the frames are the blurry input warped along a predicted per-pixel motion.
  One linear velocity per pixel moves frame t by ``tau_t * v`` with ``tau_t`` from -1 to +1, plus
  a small per-frame correction; this path leaves the identity plateau quickly in training and
  follows the guidance's sign;
* a **restoration residual** per frame on top of the warp, to sharpen what warping cannot;
* an **exactly blur-consistent** output: in linear light the frames are rescaled so that their
  mean is the input (``mean_t frame_t == input``), without leaving [0, 1].

All output heads start at zero, so an untrained network returns N copies of its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ChannelNorm, Down, ResBlock, Up, linear_to_srgb, srgb_to_linear


class MotionUNet(nn.Module):
    """Guidance-conditioned motion-first U-Net decomposer.

    Parameters
    ----------
    n_frames : number of output frames N (>= 2).
    widths : channels per level; ``len(widths) - 1`` halvings, so the stride is
        ``2 ** (len(widths) - 1)``.
    enc_blocks, dec_blocks : residual blocks per encoder level / decoder level (the last encoder
        entry is the bottleneck; the decoder has ``len(widths) - 1`` levels).
    guidance_classes : one-hot guidance channels (5: static + four directions).
    blur_consistent : project the frames so their linear-light mean equals the input.

    Shapes: ``forward(image (B, 3, H, W) in [0, 1] sRGB, guidance (B, G, H, W) one-hot)
    -> frames (B, N, 3, H, W) in [0, 1]``, with H and W multiples of :attr:`stride`.
    """

    def __init__(
        self,
        n_frames: int = 7,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        enc_blocks: tuple[int, ...] = (1, 2, 2, 6),
        dec_blocks: tuple[int, ...] = (1, 1, 1),
        guidance_classes: int = 5,
        blur_consistent: bool = True,
    ):
        super().__init__()
        widths, enc_blocks, dec_blocks = tuple(widths), tuple(enc_blocks), tuple(dec_blocks)
        if n_frames < 2:
            raise ValueError(f"n_frames must be >= 2, got {n_frames}")
        if len(enc_blocks) != len(widths) or len(dec_blocks) != len(widths) - 1:
            raise ValueError(
                f"need one encoder entry per width and one decoder entry per upsampling: "
                f"widths={widths}, enc_blocks={enc_blocks}, dec_blocks={dec_blocks}"
            )
        self.n_frames = n_frames
        self.guidance_classes = guidance_classes
        self.blur_consistent = blur_consistent
        self.stride = 2 ** (len(widths) - 1)

        self.stem = nn.Conv2d(3 + guidance_classes, widths[0], 3, padding=1)
        self.encoder = nn.ModuleList(
            nn.Sequential(*[ResBlock(w) for _ in range(n)]) for w, n in zip(widths, enc_blocks)
        )
        self.downs = nn.ModuleList(Down(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.ups = nn.ModuleList(Up(b, a) for a, b in zip(widths[:-1], widths[1:]))
        self.decoder = nn.ModuleList(
            nn.Sequential(*[ResBlock(w) for _ in range(n)]) for w, n in zip(widths[:-1], dec_blocks)
        )
        self.head_norm = ChannelNorm(widths[0])
        # Heads: 2 (velocity) + 2N (per-frame motion correction) + 3N (restoration residual).
        self.head = nn.Conv2d(widths[0], 2 + 5 * n_frames, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        taus = torch.linspace(-1.0, 1.0, n_frames)
        self.register_buffer("taus", taus.view(1, n_frames, 1, 1, 1), persistent=False)

    def inputs(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """What the stem sees: the image in [-1, 1] and the guidance, (B, 3 + G, H, W)."""
        return torch.cat([image * 2 - 1, guidance], dim=1)

    def features(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W), (B, G, H, W) -> (B, widths[0], H, W) decoder features."""
        x = self.stem(self.inputs(image, guidance))
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < len(self.downs):
                skips.append(x)
                x = self.downs[level](x)
        for level in reversed(range(len(self.ups))):
            x = self.decoder[level](self.ups[level](x, skips[level]))
        return F.gelu(self.head_norm(x))

    def forward(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        if h % self.stride or w % self.stride:
            raise ValueError(f"H and W must be multiples of {self.stride}, got {h}x{w}")
        n = self.n_frames
        out = self.head(self.features(image, guidance)).float()
        velocity = out[:, None, 0:2]  # (B, 1, 2, H, W), pixels from the middle to the end
        correction = out[:, 2 : 2 + 2 * n].view(b, n, 2, h, w)
        residual = out[:, 2 + 2 * n :].view(b, n, 3, h, w)
        motion = self.taus * velocity + correction  # (B, N, 2, H, W) sampling offsets (dx, dy)
        frames = (warp(image.float(), motion) + residual).clamp(0.0, 1.0)
        if self.blur_consistent:
            frames = project_blur_consistent(frames, image.float())
        return frames


def warp(image: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Backward-warp one image by N offset fields.

    image (B, C, H, W), motion (B, N, 2, H, W) in pixels (dx, dy) -> (B, N, C, H, W), where
    ``out[:, t, :, y, x] = image[:, :, y + dy, x + dx]`` (bilinear, borders replicated).
    """
    b, c, h, w = image.shape
    n = motion.shape[1]
    sx, sy = 2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)  # pixels -> grid_sample's [-1, 1]
    xs = torch.arange(w, device=image.device, dtype=motion.dtype) * sx - 1.0
    ys = torch.arange(h, device=image.device, dtype=motion.dtype) * sy - 1.0
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2)
    grid = base + motion.movedim(2, -1) * motion.new_tensor([sx, sy])  # (B, N, H, W, 2)
    # The N fields stacked along y sample the one image: no N-fold copy of it.
    out = F.grid_sample(
        image.to(grid.dtype),
        grid.reshape(b, n * h, w, 2),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    return out.view(b, c, n, h, w).transpose(1, 2)


def project_blur_consistent(frames: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Make frames (B, N, 3, H, W) average to image (B, 3, H, W) in linear light, exactly.

    Returns sRGB frames (B, N, 3, H, W) in [0, 1]. Per pixel and channel, with ``m`` the frames'
    linear mean and ``b`` the input's: when ``m > b`` every frame is scaled toward 0 by ``b / m``;
    when ``m < b`` toward 1, ``1 - (1 - f) (1 - b) / (1 - m)``. Both keep the frames in [0, 1]
    (an additive shift would push dark frames below 0 and need clipping, which breaks the
    average) and preserve their relative contrast.
    """
    lin = srgb_to_linear(frames)
    target = srgb_to_linear(image).unsqueeze(1)
    mean = lin.mean(dim=1, keepdim=True)
    eps = 1e-6
    down = lin * (target / mean.clamp_min(eps))
    up = 1 - (1 - lin) * ((1 - target) / (1 - mean).clamp_min(eps))
    return linear_to_srgb(torch.where(mean > target, down, up))
