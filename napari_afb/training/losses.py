"""Losses for the decomposer and the guidance predictor.

Decomposer:

* ``l1``: per-pixel L1 on the frames;
* ``gradient``: L1 on horizontal and vertical differences of the frames (sharpness: a blurry
  frame has small gradients where the truth has edges, a penalty plain L1 barely feels);
* order-blind where the guidance is static: for label-0 pixels the guidance does not fix which
  way time runs, so those pixels take the better of forward and reversed order.

The decomposer is blur-consistent by construction, so no re-blur term is needed.
All take frames (B, N, 3, H, W) and guidance (B, H, W).

Predictor (:func:`predictor_loss`): cross-entropy on the blur's axis, and on moving pixels a
binary cross-entropy on the sign along the axis that takes, per image, the better of the two
global orientations (a single blurry image cannot say which way time ran; it can say which
regions moved the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..guidance import AXIS_OF_LABEL, SIGN_OF_LABEL
from ..models.decomposer import warp


@dataclass(frozen=True)
class LossConfig:
    """Loss weights. ``l1``, ``gradient`` and ``order_blind_static`` are the decomposer's;
    ``axis`` and ``sign`` the predictor's; ``motion`` and ``photometric`` those of a
    motion-supervised decomposer (:func:`motion_loss`), which adds ``frames`` x the frame loss
    of its output (teaching the blend) and ``warped`` x the frame loss of the blurry input
    warped by its motion and projected to the blur, with gradients into the motion.

    Why ``warped``: the photometric term warps the *sharp* middle frame, whose loss has narrow
    basins around the true offset of every edge, so a long blur's motion gets little gradient
    and the network settles short of it; the blurry input warped by the motion is what the
    frames mostly are (the blend leans on it), and its loss is smooth over the blur's length.
    ``warped_form = "psnr"`` makes that loss the metric itself (:func:`warped_psnr_loss`)."""

    l1: float = 1.0
    gradient: float = 0.5
    order_blind_static: bool = True
    axis: float = 1.0
    sign: float = 1.0
    motion: float = 0.1
    photometric: float = 1.0
    frames: float = 1.0
    frames_fraction: float = 0.5  # of each batch, for the frame loss (it needs a deconvolution)
    warped: float = 0.0  # the frame loss of the blurry input warped by the motion (whole batch)
    warped_form: str = "l1"  # of that loss, one of WARPED_FORMS


#: ``LossConfig.warped_form``: "l1" (l1 + gradient, as the frame loss) or "psnr" (the metric,
#: :func:`warped_psnr_loss`)
WARPED_FORMS = ("l1", "psnr")


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


_AXIS = torch.from_numpy(AXIS_OF_LABEL.astype("int64"))
_SIGN = torch.from_numpy(SIGN_OF_LABEL.astype("float32"))


def predictor_loss(
    logits: torch.Tensor, guidance: torch.Tensor, cfg: LossConfig = LossConfig()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scalar loss of predictor logits (B, 4, H, W) against labels (B, H, W), and its parts
    (detached): "axis" (cross-entropy), "sign" (orientation-free sign loss on moving pixels),
    "axis_acc" and "sign_acc" (fraction of moving pixels right, the sign under the better
    orientation)."""
    axis_target = _AXIS.to(guidance.device)[guidance]
    sign_target = _SIGN.to(guidance.device)[guidance]
    axis_logits, sign_logit = logits[:, :3].float(), logits[:, 3].float()
    axis_loss = torch.nn.functional.cross_entropy(axis_logits, axis_target)
    moving = (guidance > 0).float()
    n_moving = moving.sum(dim=(1, 2))
    has = n_moving > 0
    denom = n_moving.clamp_min(1.0)
    margin = sign_target * sign_logit
    forward = (torch.nn.functional.softplus(-margin) * moving).sum(dim=(1, 2)) / denom
    backward = (torch.nn.functional.softplus(margin) * moving).sum(dim=(1, 2)) / denom
    per_image = torch.minimum(forward, backward)
    sign_loss = (per_image * has).sum() / has.sum().clamp_min(1)
    loss = cfg.axis * axis_loss + cfg.sign * sign_loss
    with torch.no_grad():
        right_axis = (axis_logits.argmax(1) == axis_target).float() * moving
        agree = ((margin > 0).float() * moving).sum(dim=(1, 2))
        right_sign = torch.maximum(agree, n_moving - agree)
        total = n_moving.sum().clamp_min(1.0)
        parts = {
            "axis": axis_loss.detach(),
            "sign": sign_loss.detach(),
            "axis_acc": right_axis.sum() / total,
            "sign_acc": right_sign.sum() / total,
        }
    return loss, parts


def motion_loss(
    pred: torch.Tensor, true: torch.Tensor, frames: torch.Tensor, cfg: LossConfig = LossConfig()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of predicted per-frame offsets (B, N, 2, H, W) against the true ones, and its parts.

    Two terms: ``motion`` x the L1 distance to the true offsets (pixels; it teaches the motion
    everywhere, flat areas included), and ``photometric`` x the L1 error of the *true sharp*
    middle frame warped by the prediction against each true frame (it weighs the motion where
    errors are visible, at edges and texture, and is what frames made from a sharp latent
    need). The parts (detached): "epe" (mean end-point error, px), "photo", and "baseline", the
    loss of predicting no motion at all (the untrained network), so that loss / baseline is the
    plateau ratio as for the frame loss.
    """
    n = frames.shape[1]
    mid = frames[:, n // 2].float()
    pred, true = pred.float(), true.float()
    dist = (pred - true).abs().sum(dim=2)
    photo = (warp(mid, pred) - frames).abs().mean()
    loss = cfg.motion * dist.mean() + cfg.photometric * photo
    with torch.no_grad():
        still = (mid.unsqueeze(1) - frames).abs().mean()
        base = cfg.motion * true.abs().sum(dim=2).mean() + cfg.photometric * still
        parts = {
            "epe": (pred - true).norm(dim=2).mean(),
            "photo": photo.detach(),
            "baseline": base,
        }
    return loss, parts


def warped_psnr_loss(pred: torch.Tensor, blurry: torch.Tensor, target: torch.Tensor):
    """Minus the PSNR gain (dB / 10) of frames ``pred`` over the blurry input repeated, per frame
    and window as the validation metric averages it, so 0 for the identity: (B, N, 3, H, W),
    (B, 3, H, W), (B, N, 3, H, W) -> scalar. Per-window logs weigh a window with small errors as
    much as one with large ones, as the mean PSNR does and a pixel-averaged loss does not."""
    eps = 1e-5  # (0.003)^2: frames that match to a third of a level count as perfect

    def log_mse(x):
        return torch.log10(((x.float() - target.float()) ** 2).mean(dim=(2, 3, 4)) + eps)

    with torch.no_grad():
        base = log_mse(blurry.unsqueeze(1).expand_as(target))
    return (log_mse(pred) - base).mean()
