"""Non-blind deconvolution with FFTs: Wiener (Tikhonov on gradients), total variation and a
hyper-Laplacian prior (half-quadratic splitting, after Krishnan & Fergus 2009).

Images are (H, W) float32 planes. The borders are made periodic by a smooth wrap-around pad
(:func:`periodic_pad`) so that the FFT's circular convolution does not ring at the edges.
scipy's FFTs in float32 with all cores: about 2x faster than numpy's on 2 cores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft as sfft

__all__ = ["deconvolve", "periodic_pad", "PRIORS", "BLURS"]

PRIORS = ("hyper-laplacian", "tv", "wiener")
BLURS = ("gamma", "linear")
# A quadratic prior needs about 30x the regularisation of the sparse ones for the same look
# (the plate at weight 3000: 1x is buried in ringing, 30x reads like the hyper-Laplacian).
WIENER_FACTOR = 30.0
_WORKERS = -1


def periodic_pad(img: np.ndarray, pad: int) -> np.ndarray:
    """(H, W) -> (H', W') with H' >= H + pad, W' >= W + pad (sizes the FFT is fast at): the
    image at the top left, and after it on each axis a smooth crossing from the image's far edge
    back to its near edge (two mirror images blended with a cosine), so that the result, seen as
    periodic, has no seam."""
    out = img
    for axis in (0, 1):
        n = out.shape[axis]
        total = sfft.next_fast_len(n + max(pad, 2), real=True)
        gap = total - n
        d = np.arange(gap)
        from_end = np.clip(n - 1 - d, 0, n - 1)  # mirror of the far edge, going outwards
        from_start = np.clip(gap - 1 - d, 0, n - 1)  # mirror of the near edge, coming back
        w = (0.5 * (1 + np.cos(np.pi * (d + 0.5) / gap))).astype(np.float32)
        shape = [1, 1]
        shape[axis] = gap
        w = w.reshape(shape)
        a = np.take(out, from_end, axis=axis)
        b = np.take(out, from_start, axis=axis)
        out = np.concatenate([out, w * a + (1 - w) * b], axis=axis)
    return out


def kernel_otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The kernel's transfer function for rfft2 of ``shape`` (its centre at the origin)."""
    k = np.zeros(shape, dtype=np.float32)
    r = kernel.shape[0] // 2
    k[: kernel.shape[0], : kernel.shape[1]] = kernel
    k = np.roll(k, (-r, -r), axis=(0, 1))
    return sfft.rfft2(k, workers=_WORKERS)


def _gradient_otfs(shape: tuple[int, int]):
    """Transfer functions of the forward differences x[j+1] - x[j] along x and along y."""
    h, w = shape
    fx = (np.exp(2j * np.pi * np.arange(w // 2 + 1) / w) - 1).astype(np.complex64)[None, :]
    fy = (np.exp(2j * np.pi * np.arange(h) / h) - 1).astype(np.complex64)[:, None]
    return fx, fy


def fft_terms(plane: np.ndarray, kernel: np.ndarray, *, with_otf: bool = False):
    """The frequency-domain terms of a deconvolution of the (H, W) ``plane`` by ``kernel``,
    padded by :func:`periodic_pad` to the kernel's reach: (padded plane, conj(K) B, |K|^2,
    |D|^2) with D the forward differences; what the solvers here and in :mod:`.blind` share.
    ``with_otf`` adds K itself at the end."""
    ks = kernel.shape[0]
    padded = periodic_pad(plane.astype(np.float32, copy=False), ks + ks // 2)
    shape = padded.shape
    K = kernel_otf(kernel, shape)
    fx, fy = _gradient_otfs(shape)
    D2 = (np.abs(fx) ** 2 + np.abs(fy) ** 2).astype(np.float32)
    K2 = (np.abs(K) ** 2).astype(np.float32)
    KtB = np.conj(K) * sfft.rfft2(padded, workers=_WORKERS)
    return (padded, KtB, K2, D2, K) if with_otf else (padded, KtB, K2, D2)


def _grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Circular forward differences (what :func:`_gradient_otfs` describes)."""
    gx = np.roll(x, -1, axis=1)
    gx -= x
    gy = np.roll(x, -1, axis=0)
    gy -= x
    return gx, gy


def _grad_adjoint(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The adjoint of :func:`_grad`."""
    out = np.roll(gx, 1, axis=1)
    out -= gx
    out += np.roll(gy, 1, axis=0)
    out -= gy
    return out


def shrink(v: np.ndarray, beta: float, alpha: float) -> np.ndarray:
    """argmin_w (beta / 2) (w - v)^2 + |w|^alpha, element-wise, for 0 < alpha <= 1.

    alpha = 1 is soft thresholding; below 1, generalised iterated shrinkage (Zuo et al. 2013):
    zero under the threshold, else a few fixed-point steps from |v|.
    """
    lam = 1.0 / beta
    if alpha >= 1:
        return np.sign(v) * np.maximum(np.abs(v) - lam, 0)
    c = 2 * lam * (1 - alpha)
    tau = c ** (1 / (2 - alpha)) + lam * alpha * c ** ((alpha - 1) / (2 - alpha))
    keep = np.abs(v) > tau
    vk = v[keep]
    a = np.abs(vk)
    w = a.copy()
    step = np.float32(lam * alpha)
    for _ in range(3):  # only the values above the threshold; cbrt is 5x faster than power
        w = a - step / np.cbrt(w) if alpha == 2 / 3 else a - step * w ** (alpha - 1)
    out = np.zeros_like(v)
    out[keep] = np.copysign(w, vk)
    return out


def deconvolve(
    plane: np.ndarray,
    kernel: np.ndarray,
    *,
    weight: float = 1000.0,
    prior: str = "hyper-laplacian",
    alpha: float = 2 / 3,
    beta_max: float = 256.0,
    beta_rate: float = 2 * np.sqrt(2),
    blur: str = "gamma",
    in_range: bool = True,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """The sharp (H, W) plane S minimising (weight / 2) |blur_k(S) - B|^2 + sum |grad S|^alpha.

    prior : "hyper-laplacian" (alpha, default 2/3), "tv" (alpha = 1) or "wiener" (a quadratic
        prior on gradients, one closed-form step: the fastest, for previews).
    weight : the data term's weight: higher is sharper and noisier (about 2000 for a clean
        photo, 300-600 for a noisy one).
    blur : how the blur mixed the sRGB values of the plane: "gamma", the values themselves were
        averaged (blur_k(S) = k * S); "linear", the light was averaged, as a sensor does
        (blur_k(S) = srgb(k * linear(S))). The prior stays on the sRGB values either way (in
        linear light it left black blotches in dark areas: KERNEL_NOTES). Sparse priors only.
    in_range : with blur="linear", keep the plane in [0, 1] between steps (see the loop); False
        is the solver as it was before, which the blur test (``choose_blur``) was measured on.
    cancel : polled between iterations; returning True stops with ``None`` returned.
    """
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {', '.join(PRIORS)}, not {prior!r}")
    if weight <= 0:
        raise ValueError(f"the deconvolution weight (strength) must be positive, got {weight}")
    if blur not in BLURS:
        raise ValueError(f"blur must be one of {', '.join(BLURS)}, not {blur!r}")
    h, w = plane.shape
    padded, KtB, K2, D2, K = fft_terms(plane, kernel, with_otf=True)
    shape = padded.shape
    del padded
    light = blur == "linear" and prior != "wiener"
    in_range = light and in_range
    if prior == "wiener":
        x = sfft.irfft2(KtB / (K2 + D2 * (WIENER_FACTOR / weight)), s=shape, workers=_WORKERS)
        return x[:h, :w].astype(np.float32)
    alpha = 1.0 if prior == "tv" else alpha
    KtB *= weight
    K2 *= weight
    # start from the Wiener solution (K2 and KtB are scaled by the weight here)
    x = sfft.irfft2(KtB / (K2 + D2 * WIENER_FACTOR), s=shape, workers=_WORKERS).astype(np.float32)
    if light:  # the data term's target is B - (srgb(k * linear(x)) - k * x), see _seen
        KtB0, wKt = KtB, weight * np.conj(K)
        if in_range:
            np.clip(x, 0, 1, out=x)
    else:
        del K
    X = None
    beta = 1.0
    while beta <= beta_max:
        if cancel is not None and cancel():
            return None
        if light:
            # conj(K) (B - seen + K X) weighted, with K2 (already weighted) = weight |K|^2
            X = sfft.rfft2(x, workers=_WORKERS) if X is None else X
            KtB = KtB0 + K2 * X - wKt * _seen(x, K, shape)
        gx, gy = _grad(x)
        gx = shrink(gx, beta, alpha)
        gy = shrink(gy, beta, alpha)
        num = KtB + beta * sfft.rfft2(_grad_adjoint(gx, gy), workers=_WORKERS)
        X = num / (K2 + beta * D2)
        x = sfft.irfft2(X, s=shape, workers=_WORKERS).astype(np.float32)
        beta *= beta_rate
        if in_range and beta <= beta_max:
            # the sensor's curves clip to [0, 1]: a value beyond has no effect on the blur the
            # target is worked out from, but counted in k * x it did, and the fixed point took
            # it (dark areas fell to black). Kept inside between steps, the last step left free
            # for the ringing check. Measured with the true paths of bench_kernel's 16 shakes
            # blurred in linear light (engine, space="linear"): latent +0.37 dB on average (+2.4
            # on the astronaut, 45 px, whose solve rang and was replaced by gamma's before),
            # pixels under 0.02 where the truth is over 0.08: 1.15 % -> 0.49 % (gamma 0.30 %);
            # the ringing check on the solve alone rang on 0 of 16 (was 6) and on 11 of 16 paths
            # 1.5x too long (gamma: 7)
            X = None
            np.clip(x, 0, 1, out=x)
    return x[:h, :w]


def _seen(x, K, shape):
    """The spectrum of srgb(k * linear(x)): the plane ``x`` blurred as a sensor blurs, light
    averaged. The solver's target, B - (that - k * x), is re-computed at each step: a fixed
    point, where srgb(k * linear(x)) = B the target is k * x. Updating it only in the first 4
    of the 6 steps lost 0.6 dB on bench_kernel's 16 shakes blurred in linear light."""
    from ..samples import linear_to_srgb, srgb_to_linear

    # the curves clip to [0, 1]. Continued beyond (linearly below 0, and/or along the slope
    # above 1), the fixed point did worse on bench_kernel's shakes blurred in linear light (the
    # astronaut, 45 px: +0.96 or +0.67 dB against +3.50 clipped, its dark sky and white suit
    # ringing)
    lin = sfft.rfft2(srgb_to_linear(x), workers=_WORKERS)
    seen = linear_to_srgb(sfft.irfft2(K * lin, s=shape, workers=_WORKERS))
    return sfft.rfft2(seen, workers=_WORKERS)
