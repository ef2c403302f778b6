"""Blind blur-kernel estimation: coarse to fine, alternating an L0-gradient latent image and a
kernel update (after Xu et al. 2013 and Pan et al. 2014; our own implementation).

Measured on real photos (KERNEL_NOTES.md): on the grey image, in gamma space, at half resolution,
with a kernel bound of 1.5-2x the true blur, this finds the plate's 23 px path; a bound of 3x or
more, linear light, or an intensity prior fail. So those are the defaults, and the bound is the
user's to change.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from .deconv import _grad, _grad_adjoint, fft_terms, kernel_otf

__all__ = ["estimate_kernel"]

_W = -1
PRUNE = 0.1  # kernel values under this share of the peak are dropped


class _Cancelled(Exception):
    pass


def _l0_latent(blurry, kernel, lam, *, beta_max=1e5, rate=2.0):
    """argmin_S |k * S - B|^2 + lam |grad S|_0 by half-quadratic splitting (Xu et al. 2013)."""
    h, w = blurry.shape
    x, KtB, K2, D2 = fft_terms(blurry, kernel)
    shape = x.shape
    beta = 2 * lam
    while beta < beta_max:
        gx, gy = _grad(x)
        small = gx * gx + gy * gy < lam / beta
        gx[small] = 0
        gy[small] = 0
        num = KtB + beta * sfft.rfft2(_grad_adjoint(gx, gy), workers=_W)
        x = sfft.irfft2(num / (K2 + beta * D2), s=shape, workers=_W).astype(np.float32)
        beta *= rate
    return x[:h, :w]


def _kernel_step(latent, blurry, size, *, mask=None, gamma=2.0, iters=15):
    """argmin_k |grad S * k - grad B|^2 + gamma |k|^2 over a (size, size) support, by conjugate
    gradients with FFT products; then non-negative, small values pruned, normalised."""
    # Gradients inside the image only, zero elsewhere: a mirrored border would add the mirror
    # image of the blur (a +45 degree streak mirrored is a -45 degree one) and the kernel then
    # grows an X.
    h, w = latent.shape
    shape = (sfft.next_fast_len(h + size, real=True), sfft.next_fast_len(w + size, real=True))
    m = size // 2 + 1
    inside = np.ones((h - 2 * m, w - 2 * m), bool) if mask is None else mask[m : h - m, m : w - m]

    def grads(img):
        gx = np.zeros(shape, np.float32)
        gy = np.zeros(shape, np.float32)
        gx[m : h - m, m : w - m] = (img[:, 1:] - img[:, :-1])[m : h - m, m : w - m] * inside
        gy[m : h - m, m : w - m] = (img[1:] - img[:-1])[m : h - m, m : w - m] * inside
        return sfft.rfft2(gx, workers=_W), sfft.rfft2(gy, workers=_W)

    SX, SY = grads(latent)
    BX, BY = grads(blurry)
    M = (np.abs(SX) ** 2 + np.abs(SY) ** 2).astype(np.float32)
    r = size // 2

    def crop(F):  # the (size, size) window of a circular signal around the origin
        x = sfft.irfft2(F, s=shape, workers=_W)
        return np.roll(x, (r, r), axis=(0, 1))[:size, :size]

    def A(k):
        return crop(M * kernel_otf(k, shape)) + gamma * k

    b = crop(np.conj(SX) * BX + np.conj(SY) * BY)
    k = np.zeros((size, size), np.float32)
    res = b - A(k)
    p = res.copy()
    rr = float((res * res).sum())
    for _ in range(iters):
        Ap = A(p)
        a = rr / max(float((p * Ap).sum()), 1e-20)
        k += a * p
        res -= a * Ap
        rr_new = float((res * res).sum())
        if rr_new < 1e-12:
            break
        p = res + (rr_new / rr) * p
        rr = rr_new
    return _clean_kernel(k, rel=PRUNE)


def _clean_kernel(k: np.ndarray, rel: float = 0.05) -> np.ndarray:
    """Non-negative, values below ``rel`` of the peak dropped, specks (connected pieces holding
    under 10 % of the mass, away from the largest piece) removed, centred on its mass, sum 1."""
    k = np.maximum(k, 0)
    if k.max() <= 0:
        out = np.zeros_like(k)
        out[k.shape[0] // 2, k.shape[1] // 2] = 1
        return out
    k[k < rel * k.max()] = 0
    lab, n = ndimage.label(k > 0, structure=np.ones((3, 3)))
    if n > 1:
        mass = ndimage.sum(k, lab, index=np.arange(1, n + 1))
        keep = np.concatenate([[False], mass >= 0.1 * mass.max()])
        k[~keep[lab]] = 0
    k /= k.sum()
    # centre the mass (an off-centre kernel only moves the latent, and wastes the support)
    r = k.shape[0] // 2
    cy, cx = ndimage.center_of_mass(k)
    k = ndimage.shift(k, (round(r - cy), round(r - cx)), order=0, mode="constant")
    return (k / k.sum()).astype(np.float32)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def _resize(img, size_xy):
    return cv2.resize(img, size_xy, interpolation=cv2.INTER_AREA)


def _resize_kernel(k: np.ndarray, size: int) -> np.ndarray:
    out = cv2.resize(k, (size, size), interpolation=cv2.INTER_LINEAR)
    return _clean_kernel(out, rel=0.0)


def estimate_kernel(
    rgb: np.ndarray,
    bound: int,
    *,
    mask: np.ndarray | None = None,
    lam: float = 4e-3,
    iters: int = 5,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray | None:
    """Estimate one blur kernel (odd size <= ``bound``, sums to 1) for an (H, W, 3) float image
    in [0, 1] (gamma space), coarse to fine; with ``mask`` ((H, W) bool) only the pixels it
    marks (shrunk by the kernel's reach) inform the kernel. The caller picks the region and the
    scale (a smaller image is much cheaper: :func:`~.decompose.estimate_paths_iter`).

    Returns None when ``cancel`` asks to stop.
    """
    grey = _grey(rgb) if rgb.ndim == 3 else rgb.astype(np.float32)
    bound = int(bound) | 1
    # kernel sizes from about 5 px up to the bound, by factors of sqrt(2)
    sizes = [bound]
    while sizes[-1] > 7:
        sizes.append(int(round(sizes[-1] / np.sqrt(2))) | 1)
    sizes = sizes[::-1]
    h, w = grey.shape
    k = np.zeros((sizes[0], sizes[0]), np.float32)
    k[sizes[0] // 2, sizes[0] // 2 - 1 : sizes[0] // 2 + 1] = 0.5
    for s, size in enumerate(sizes):
        f = size / bound
        size_xy = (max(8, round(w * f)), max(8, round(h * f)))
        b = _resize(grey, size_xy) if f < 1 else grey
        m = None
        if mask is not None:
            m = cv2.resize(mask.astype(np.uint8), size_xy, interpolation=cv2.INTER_NEAREST)
            m = ndimage.binary_erosion(m > 0, iterations=size // 2 + 1)
        if s > 0:
            k = _resize_kernel(k, size)
        lam_s = lam
        for _ in range(iters):
            if cancel is not None and cancel():
                return None
            latent = _l0_latent(b, k, lam_s)
            k = _kernel_step(latent, b, size, mask=m)
            lam_s = max(lam_s / 1.1, 1e-4)
    return k


def refine_kernel(
    rgb: np.ndarray,
    kernel: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    lam: float = 2e-3,
    iters: int = 3,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray | None:
    """A few more rounds of latent and kernel updates at the image's own scale, from a kernel
    estimated at a reduced scale and enlarged: the enlarged kernel is thick and carries specks;
    these rounds thin it back to a trajectory. Returns None when ``cancel`` asks to stop."""
    grey = _grey(rgb) if rgb.ndim == 3 else rgb.astype(np.float32)
    m = None
    if mask is not None:
        m = ndimage.binary_erosion(mask, iterations=kernel.shape[0] // 2 + 1)
    k = kernel
    for _ in range(iters):
        if cancel is not None and cancel():
            return None
        latent = _l0_latent(grey, k, lam)
        k = _kernel_step(latent, grey, kernel.shape[0], mask=m)
    return k
