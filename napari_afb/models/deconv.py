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
    blur_cues : also feed the stem :func:`blur_cues` of the image (the local autocorrelation of
        its directional derivatives at :data:`CUE_LAGS`): a blur of length L along a direction
        leaves a dip at lag L there, an explicit hint of the blur's *length*, which the plain
        network regressed towards the mean. Off in weights files from before it existed.
    downsample : the network (trunk and heads) sees the image and the guidance box-averaged by
        this factor; its motion (scaled by the factor) and blend weights are upsampled back
        (bilinear) and the deconvolution and warps run at full resolution. Motion fields are
        smooth, a blur of L px is then one of L / f px to the network, which underestimates long
        blurs less, and the network costs 1 / f^2 as much. 1 (the default, and what weights files
        from before it existed mean) is full resolution.

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
        blur_cues: bool = False,
        downsample: int = 1,
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
        if int(downsample) != downsample or downsample < 1:
            raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
        self.downsample = int(downsample)
        self.stride *= self.downsample
        self.blur_cues = blur_cues
        if blur_cues:
            self.stem = nn.Conv2d(3 + guidance_classes + N_CUES, widths[0], 3, padding=1)
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

    def inputs(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        x = super().inputs(image, guidance)
        return torch.cat([x, blur_cues(image.float()).to(x.dtype)], dim=1) if self.blur_cues else x

    def _heads(self, image: torch.Tensor, guidance: torch.Tensor):
        b, _, h, w = image.shape
        if h % self.stride or w % self.stride:
            raise ValueError(f"H and W must be multiples of {self.stride}, got {h}x{w}")
        f = self.downsample
        if f > 1:
            image, guidance = F.avg_pool2d(image, f), F.avg_pool2d(guidance, f)
        feats = self.features(image, guidance)
        motion = self._full_size(self.head(feats).float(), f).view(b, self.n_frames, 2, h, w)
        motion = motion * (self.motion_scale * f * self.keep)
        logits = None
        if self.blend:
            logits = self._full_size(self.blend_head(feats).float(), f)
            logits = logits.view(b, self.n_frames, 3, 1, h, w)
        return motion, logits

    @staticmethod
    def _full_size(x: torch.Tensor, f: int) -> torch.Tensor:
        if f == 1:
            return x
        return F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)

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


def warped_frames(image: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """sRGB ``image`` (B, 3, H, W) warped in linear light by each frame's offsets ``motion``
    (B, N, 2, H, W) and projected so the frames average to it: (B, N, 3, H, W) sRGB. The
    blend's second candidate, and what training's ``warped`` loss teaches the motion with."""
    return project_blur_consistent(linear_to_srgb(warp(srgb_to_linear(image), motion)), image)


#: directions (dx, dy) and lags (steps along them) of :func:`blur_cues`
CUE_DIRECTIONS = ((1, 0), (0, 1), (1, 1), (1, -1))
CUE_LAGS = (1, 2, 3, 4, 6, 8, 11, 16, 22, 32)
CUE_WINDOW = 15  # px, the side of the local (box) average
N_CUES = len(CUE_DIRECTIONS) * (len(CUE_LAGS) + 1)


def _box(x: torch.Tensor, size: int) -> torch.Tensor:
    """Separable local mean over ``size`` x ``size`` px (odd ``size``; at the borders, the mean
    of what is inside), by running sums."""
    r = size // 2
    for dim in (-1, -2):
        n = x.shape[dim]
        c = torch.cumsum(F.pad(x, (r + 1, r) if dim == -1 else (0, 0, r + 1, r)), dim=dim)
        total = c.narrow(dim, size, n) - c.narrow(dim, 0, n)
        idx = torch.arange(n, device=x.device, dtype=x.dtype)
        count = (idx + r).clamp(max=n - 1) - (idx - r).clamp(min=0) + 1
        x = total / (count if dim == -1 else count[:, None])
    return x


def blur_cues(image: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(B, 3, H, W) sRGB -> (B, :data:`N_CUES`, H, W) explicit cues of the local blur length.

    Per direction d of :data:`CUE_DIRECTIONS`: the derivative ``g = I(p + d) - I(p)`` of the grey
    image, its local energy ``log(<g^2> + eps)`` and its local normalized autocorrelation
    ``<g(p) g(p + l d)> / (<g^2> + eps)`` at each lag l of :data:`CUE_LAGS` (``<.>``: the mean
    over a :data:`CUE_WINDOW` px box). Motion blur of length L along d makes ``g`` the
    difference of two copies of the sharp derivative L apart, so the autocorrelation dips
    below zero near lag L. Reach: ``max(CUE_LAGS) + CUE_WINDOW // 2 + 1`` px along the diagonal.
    """
    grey = image.mean(dim=1, keepdim=True)
    h, w = grey.shape[-2:]
    reach = max(CUE_LAGS) + 1
    padded = F.pad(grey, (reach, reach, reach, reach), mode="replicate")

    def at(dx: int, dy: int) -> torch.Tensor:  # grey(p + (dx, dy)), borders replicated
        return padded[..., reach + dy : reach + dy + h, reach + dx : reach + dx + w]

    products = []  # per direction: g * g, then g times g shifted by each lag
    for dx, dy in CUE_DIRECTIONS:
        g = at(dx, dy) - grey
        shifted = [at((lag + 1) * dx, (lag + 1) * dy) - at(lag * dx, lag * dy) for lag in CUE_LAGS]
        products += [g * g] + [g * s for s in shifted]
    local = _box(torch.cat(products, dim=1), CUE_WINDOW)
    per_dir = local.view(len(image), len(CUE_DIRECTIONS), len(CUE_LAGS) + 1, *image.shape[-2:])
    energy = per_dir[:, :, :1] + eps
    energies = torch.log(energy) / 4 + 2  # about [-1, 1] over what photos hold
    correlations = per_dir[:, :, 1:] / energy
    return torch.cat([energies, correlations], dim=2).flatten(1, 2)


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


def with_blur_cues(model: MotionDeconv, **arch_args) -> MotionDeconv:
    """A copy of a trained ``model`` (built with ``arch_args``) that also sees
    :func:`blur_cues`, computing exactly what ``model`` computes until trained further: the
    stem's weights for the cue channels start at zero. (How a model trained without the cues
    continues with them.)"""
    if model.blur_cues or arch_args.get("blur_cues"):
        raise ValueError("the model already sees the blur cues")
    grown = MotionDeconv(**{**arch_args, "blur_cues": True})
    state = dict(model.state_dict())
    old = state["stem.weight"]
    extra = old.new_zeros(old.shape[0], N_CUES, *old.shape[2:])
    state["stem.weight"] = torch.cat([old, extra], dim=1)
    grown.load_state_dict(state)
    return grown
