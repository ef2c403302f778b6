"""The guidance predictor: a blurry image -> what its motion guidance could be.

A blur shows its axis but not which way along the axis time ran: the exposure's mean is the same
played forwards or backwards, for the whole image and, independently, for every object that moves
on its own. So instead of a cVAE-GAN that must learn this ambiguity from noise (the reference's,
whose authors call its training unstable), the network predicts the part that is determined and
leaves the ambiguous part explicit:

* **axis logits** (3 per pixel): static, the "/" diagonal (labels 1 and 3) or the "\\" diagonal
  (labels 2 and 4), trained with cross-entropy;
* **a sign logit** (1 per pixel): which way along the axis, *relative to the rest of the image*.
  Its loss takes the better of the two global orientations per image
  (:func:`napari_afb.training.losses.predictor_loss`), so the network learns relative signs where
  the image determines them (one rigid camera shake, a rotation) and says "unsure" (a logit near
  0) where it cannot (two objects that move independently).

Sampling then draws whole regions' signs, not pixels' (:mod:`napari_afb.predict`). Training is
plain supervised learning: no discriminator, no KL balance, nothing adversarial to diverge.

The network runs on the whole image at a working resolution (:mod:`napari_afb.predict` scales
large images down), so unlike the decomposer it may pool globally: its bottleneck sees the mean of
its own features, which helps relate distant regions' signs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ChannelNorm, Down, ResBlock, Up

#: Output channels: 3 axis logits, then 1 sign logit.
AXIS_CHANNELS = 3


class GlobalContext(nn.Module):
    """Adds a projection of the feature mean over the image to every pixel (zero-initialised)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.norm(x).mean(dim=(2, 3))
        return x + self.proj(F.gelu(pooled))[:, :, None, None]


class GuidanceNet(nn.Module):
    """U-Net guidance predictor: ``forward(image (B, 3, H, W) sRGB in [0, 1]) -> (B, 4, H, W)``
    logits (3 axis logits, 1 sign logit), with H and W multiples of :attr:`stride`.

    Parameters
    ----------
    widths : channels per level; ``len(widths) - 1`` halvings.
    enc_blocks, dec_blocks : residual blocks per encoder level (the last is the bottleneck) and
        per decoder level.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (24, 48, 96, 192),
        enc_blocks: tuple[int, ...] = (1, 1, 2, 3),
        dec_blocks: tuple[int, ...] = (1, 1, 1),
    ):
        super().__init__()
        widths, enc_blocks, dec_blocks = tuple(widths), tuple(enc_blocks), tuple(dec_blocks)
        if len(enc_blocks) != len(widths) or len(dec_blocks) != len(widths) - 1:
            raise ValueError(
                f"need one encoder entry per width and one decoder entry per upsampling: "
                f"widths={widths}, enc_blocks={enc_blocks}, dec_blocks={dec_blocks}"
            )
        self.stride = 2 ** (len(widths) - 1)
        # Image plus its horizontal and vertical differences: the blur's axis lives in where
        # edges are smeared, and handing the net the gradients saves it a layer of learning them.
        self.stem = nn.Conv2d(9, widths[0], 3, padding=1)
        self.encoder = nn.ModuleList(
            nn.Sequential(*[ResBlock(w) for _ in range(n)]) for w, n in zip(widths, enc_blocks)
        )
        self.context = GlobalContext(widths[-1])
        self.downs = nn.ModuleList(Down(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.ups = nn.ModuleList(Up(b, a) for a, b in zip(widths[:-1], widths[1:]))
        self.decoder = nn.ModuleList(
            nn.Sequential(*[ResBlock(w) for _ in range(n)]) for w, n in zip(widths[:-1], dec_blocks)
        )
        self.head_norm = ChannelNorm(widths[0])
        self.head = nn.Conv2d(widths[0], AXIS_CHANNELS + 1, 3, padding=1)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image - 0.5
        dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
        dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
        x = self.stem(torch.cat([x, 4 * dx, 4 * dy], dim=1))
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < len(self.downs):
                skips.append(x)
                x = self.downs[i](x)
        x = self.context(x)
        for i in reversed(range(len(self.ups))):
            x = self.decoder[i](self.ups[i](x, skips[i]))
        return self.head(F.gelu(self.head_norm(x)))
