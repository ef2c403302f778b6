"""Building blocks shared by the networks. Every block is spatially local (no global pooling,
no normalisation over H and W), so a network built from them gives the same result on a tile as
on the whole image wherever the tile holds the receptive field: tiled inference depends on it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelNorm(nn.Module):
    """Layer normalisation over channels at each pixel: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ResBlock(nn.Module):
    """Pre-norm residual block, norm -> conv3x3 -> GELU -> conv3x3, with a learned scale that
    starts at zero so a fresh block is the identity: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv2(F.gelu(self.conv1(self.norm(x))))


class Down(nn.Module):
    """Stride-2 convolution: (B, Cin, H, W) -> (B, Cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Up(nn.Module):
    """Pixel-shuffle upsampling then a merge with the skip: (B, Cin, H, W), (B, Cout, 2H, 2W)
    -> (B, Cout, 2H, 2W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.expand = nn.Conv2d(cin, cout * 4, 1)
        self.merge = nn.Conv2d(cout * 2, cout, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.pixel_shuffle(self.expand(x), 2)
        return self.merge(torch.cat([x, skip], dim=1))


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1), elementwise."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).pow(2.4))


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] -> sRGB encoding, elementwise."""
    x = x.clamp(0.0, 1.0)
    return torch.where(
        x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308).pow(1 / 2.4) - 0.055
    )
