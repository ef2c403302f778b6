"""Losses for the decomposer.

* ``l1``: per-pixel L1 on the frames;
* ``gradient``: L1 on horizontal and vertical differences of the frames (sharpness: a blurry
  frame has small gradients where the truth has edges, a penalty plain L1 barely feels);
* order-blind where the guidance is static: for label-0 pixels the guidance does not fix which
  way time runs, so those pixels take the better of forward and reversed order.

The decomposer is blur-consistent by construction, so no re-blur term is needed.
All take frames (B, N, 3, H, W) and guidance (B, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossConfig:
    l1: float = 1.0
    gradient: float = 0.5
    order_blind_static: bool = True


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def per_pixel_loss(pred: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """(B, N, 3, H, W) x2 -> (B, H, W): the loss at each pixel, summed over frames' mean."""
    loss = cfg.l1 * (pred - target).abs().mean(dim=(1, 2))
    if cfg.gradient:
        (px, py), (tx, ty) = _grad(pred), _grad(target)
        gx = (px - tx).abs().mean(dim=(1, 2))
        gy = (py - ty).abs().mean(dim=(1, 2))
        loss = loss.clone()
        loss[..., :, :-1] += 0.5 * cfg.gradient * gx
        loss[..., :-1, :] += 0.5 * cfg.gradient * gy
    return loss


def decomposer_loss(pred, target, guidance, cfg: LossConfig = LossConfig()) -> torch.Tensor:
    """Scalar loss of predicted frames against the true frames under the guidance."""
    forward = per_pixel_loss(pred, target, cfg)
    if cfg.order_blind_static:
        static = guidance == 0
        if bool(static.any()):
            backward = per_pixel_loss(pred, target.flip(1), cfg)
            forward = torch.where(static, torch.minimum(forward, backward), forward)
    return forward.mean()


def baseline_loss(blurry, target, guidance, cfg: LossConfig = LossConfig()) -> torch.Tensor:
    """The loss of the blurry input repeated N times: the identity a model starts from. The
    training loss divided by this is the plateau ratio (1.0 = learned nothing)."""
    repeated = blurry.unsqueeze(1).expand_as(target)
    return decomposer_loss(repeated, target, guidance, cfg)
