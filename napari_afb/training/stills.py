"""Training data from still photos: synthetic camera motion with exact frames and guidance.

A :class:`StillsSource` takes a CC0 / public-domain still that ships in scikit-image, moves it
along a random smooth camera path (translation ``v*tau + a*tau**2``, a little rotation and zoom,
``tau`` in [-0.5, 0.5] over the exposure), optionally pastes a soft-edged elliptical patch of
another still moving along its own path, and averages ``(n_frames - 1) * substeps + 1``
sub-positions in linear light. The sharp frames are the sub-positions at
``tau = linspace(-0.5, 0.5, n_frames)``; the flow is known analytically, so the frames, the flow
and the guidance are exact (no optical flow is estimated).

Geometry (x to the right, y downward, pixel centres at integer coordinates as in OpenCV): a layer
moves by the affine map ``G_tau(p) = c + s(tau) R(theta(tau)) (p - c) + v tau + a tau^2`` that
takes the output position ``p`` of a scene point at mid-exposure (``tau = 0``, where ``G`` is the
identity) to its output position at time ``tau``; ``s(tau) = exp(zoom * tau)``,
``theta(tau) = rotation * tau``. The flow at a pixel is ``(G_0.5(p) - G_-0.5(p)) / (n_frames - 1)``
for the layer that covers the pixel at mid-exposure.

Besides the default stills, a source can take folders of photos that
``scripts/prepare_stills.py`` prepares from Debian packages (``.afbstills/``, see
:func:`load_still_folder`); each JPEG is checked against the folder's ``MANIFEST.json``.

The parameters (paths, crops) are drawn with numpy and OpenCV; the exposures are rendered by
torch (:func:`render_batch`, on any device), many at once. scikit-image holds the default stills.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..models.layers import linear_to_srgb
from ..samples import srgb_to_linear
from .window import Window

__all__ = [
    "STILLS",
    "Exposure",
    "Layer",
    "MotionPath",
    "StillsFolderError",
    "StillsSource",
    "load_still_folder",
    "render_exposure",
]

#: The default stills: scikit-image ``data`` function -> (licence note, sampling weight).
#: Only images that ship inside the scikit-image wheel (no download) and whose docstring states
#: CC0 or public domain. Left out: ``immunohistochemistry`` and ``coins`` ("no known copyright
#: restrictions", no dedication), ``moon``/``page``/``logo`` (no licence note), ``colorwheel``
#: (synthetic), ``clock`` (already motion-blurred), ``cat`` (the same photo as ``chelsea``),
#: ``text``/``microaneurysms`` (too small), ``horse`` (binary), and the stills that scikit-image
#: downloads on demand (``eagle``, ``lily``, ``kidney``, ``skin``, ``human_mitosis``).
#: Grey-level stills are repeated into three channels and sampled half as often.
STILLS: dict[str, tuple[str, float]] = {
    "astronaut": ("public domain (NASA; 'released into the public domain')", 1.0),
    "coffee": ("CC0 (photographer Rachel Michetti)", 1.0),
    "chelsea": ("CC0 (photographer Stefan van der Walt)", 1.0),
    "rocket": ("public domain (SpaceX)", 1.0),
    "hubble_deep_field": ("public domain (NASA)", 1.0),
    "retina": ("CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)", 1.0),
    "camera": ("CC0 (photographer Lav Varshney)", 0.5),
    "brick": ("CC0 (CC0Textures Bricks25)", 0.5),
    "grass": ("CC0 (DeviantArt linolafett Grass-01)", 0.5),
    "gravel": ("CC0 (CC0Textures Gravel04)", 0.5),
}

# Regions (y0, y1, x0, x1) kept of a default still: the retina's fundus fills a circle on black.
_CROPS = {"retina": (260, 1150, 260, 1150)}

_BORDER = 2  # px of source kept beyond the bilinear footprint of every sub-position


# ---------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class MotionPath:
    """The motion of one layer over the exposure, in output pixels (see the module docstring).

    shift : (dx, dy) total displacement over the exposure, ``G_0.5 - G_-0.5`` of the pivot
    accel : (ax, ay) the quadratic term ``a`` of the translation ``v tau + a tau^2``
    rotation : degrees turned over the exposure (positive: clockwise as displayed, y down)
    zoom : log-scale change over the exposure (0.05: about 5 % larger at the end)
    center : (cx, cy) the pivot of rotation and zoom, in output pixels
    """

    shift: tuple[float, float] = (0.0, 0.0)
    accel: tuple[float, float] = (0.0, 0.0)
    rotation: float = 0.0
    zoom: float = 0.0
    center: tuple[float, float] = (0.0, 0.0)

    def linear(self, tau, inverse: bool = False) -> np.ndarray:
        """The 2x2 part ``s(tau) R(theta(tau))`` of ``G_tau`` (or of its inverse), for a scalar
        ``tau`` (2, 2) or an array of them (..., 2, 2)."""
        sign = -1.0 if inverse else 1.0
        tau = np.asarray(tau, np.float64)
        theta = sign * math.radians(self.rotation) * tau
        scale = np.exp(sign * self.zoom * tau)
        cos, sin = scale * np.cos(theta), scale * np.sin(theta)
        return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)

    def forward(self, tau) -> np.ndarray:
        """2x3 matrix of ``G_tau``: mid-exposure position -> position at ``tau``; (..., 2, 3)
        for an array of times."""
        tau = np.asarray(tau, np.float64)
        a = self.linear(tau)
        c = np.asarray(self.center, np.float64)
        t = np.multiply.outer(tau, self.shift) + np.multiply.outer(tau**2, self.accel)
        return np.concatenate([a, (c - a @ c + t)[..., None]], axis=-1)

    def inverse(self, tau) -> np.ndarray:
        """2x3 matrix of ``G_tau^-1``: position at ``tau`` -> mid-exposure position."""
        b = self.forward(tau)[..., 2]
        a_inv = self.linear(tau, inverse=True)
        return np.concatenate([a_inv, -(a_inv @ b[..., None])], axis=-1)

    def displacement_map(self) -> np.ndarray:
        """The 2x3 map ``p -> G_0.5(p) - G_-0.5(p)`` (the displacement over the exposure)."""
        d = self.linear(0.5) - self.linear(-0.5)
        c = np.asarray(self.center, np.float64)
        return np.concatenate([d, (np.asarray(self.shift, np.float64) - d @ c)[:, None]], axis=1)

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """``G_0.5(p) - G_-0.5(p)`` for (..., 2) mid-exposure positions ``p`` (float32)."""
        m = self.displacement_map()
        return (np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> MotionPath:
        """The inverse of :meth:`as_dict` (e.g. from a window's ``source["path"]``)."""
        return cls(**{k: (tuple(v) if isinstance(v, list | tuple) else v) for k, v in d.items()})


@dataclass
class Layer:
    """An image that moves along ``path``.

    image : (h, w, 3) linear-light float32 (background), or (h, w, 4) premultiplied linear RGB
        plus alpha (a foreground; transparent outside its patch)
    origin : (ox, oy) such that the output point ``p`` at mid-exposure shows ``image`` at
        ``p + origin``
    """

    image: np.ndarray
    origin: tuple[float, float]
    path: MotionPath

    def source_matrix(self, tau) -> np.ndarray:
        """2x3 map from an output pixel at time ``tau`` to the ``image`` position it shows
        ((..., 2, 3) for an array of times)."""
        m = self.path.inverse(tau)
        m[..., 2] += np.asarray(self.origin, np.float64)
        return m

    def warp(
        self, matrix: np.ndarray, size: tuple[int, int], offset: tuple[int, int] = (0, 0)
    ) -> np.ndarray:
        """The layer seen through ``matrix`` (a :meth:`source_matrix`) on the output pixels
        ``offset + [0, w) x [0, h)``."""
        h, w = size
        m = np.array(matrix, np.float64)
        m[:, 2] += m[:, :2] @ np.asarray(offset, np.float64)
        border = cv2.BORDER_REFLECT_101 if self.image.shape[2] == 3 else cv2.BORDER_CONSTANT
        return cv2.warpAffine(
            self.image,
            m,
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=border,
            borderValue=0,
        )

    def extent(self, taus: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1): the output pixels that the whole ``image`` touches at any of
        ``taus`` (clipped to the output; None if none)."""
        h, w = size
        ih, iw = self.image.shape[:2]
        corners = np.array([[-1, -1], [iw, -1], [-1, ih], [iw, ih]], np.float64)
        corners -= np.asarray(self.origin, np.float64)  # image -> mid-exposure output coords
        m = self.path.forward(taus)
        pts = (corners @ np.swapaxes(m[:, :, :2], 1, 2) + m[:, None, :, 2]).reshape(-1, 2)
        x0, y0 = max(0, math.floor(pts[:, 0].min())), max(0, math.floor(pts[:, 1].min()))
        x1, y1 = min(w, math.ceil(pts[:, 0].max()) + 1), min(h, math.ceil(pts[:, 1].max()) + 1)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


@dataclass
class Exposure:
    """What :func:`render_exposure` makes. ``subframes`` (S, H, W, 3) linear light, the
    ``(n_frames - 1) * substeps + 1`` sub-positions; ``blurry`` (H, W, 3) sRGB, their linear
    mean; ``frames`` (N, H, W, 3) sRGB, every ``substeps``-th; ``flow`` (H, W, 2) per frame step;
    ``foreground_mask`` (H, W) bool, where the foreground covers the pixel at mid-exposure;
    ``motion`` (N, H, W, 2) the exact per-frame sampling offsets from the middle frame
    (``frames[t](p) ~ frames[mid](p + motion[t](p))``, :attr:`.window.Window.motion`) of the
    layer that covers the pixel at mid-exposure."""

    subframes: np.ndarray
    blurry: np.ndarray
    frames: np.ndarray
    flow: np.ndarray
    foreground_mask: np.ndarray
    motion: np.ndarray | None = None


def render_exposure(
    background: Layer,
    foreground: Layer | None = None,
    *,
    size: tuple[int, int],
    n_frames: int = 7,
    substeps: int = 8,
) -> Exposure:
    """Move the layers over the exposure and average the sub-positions in linear light.

    The background must cover every output pixel at every sub-position (its ``image`` extends
    far enough beyond the output); the foreground is composited over it ("over", premultiplied).
    One exposure of :func:`render_batch`, as numpy arrays.
    """
    out = render_batch([background], [foreground], size=size, n_frames=n_frames, substeps=substeps)
    return Exposure(
        out["subframes"][0].permute(0, 2, 3, 1).numpy(),
        out["blurry"][0].permute(1, 2, 0).numpy(),
        out["frames"][0].permute(0, 2, 3, 1).numpy(),
        out["flow"][0].permute(1, 2, 0).numpy(),
        out["mask"][0].numpy(),
        out["motion"][0].permute(0, 2, 3, 1).numpy(),
    )


def _pixel_maps(matrices: np.ndarray, h: int, w: int, device) -> torch.Tensor:
    """2x3 maps (B, K, 2, 3) applied to every output pixel (x, y): (B, K, h, w, 2) float32."""
    m = torch.as_tensor(np.asarray(matrices, np.float32), device=device)
    xs = torch.arange(w, dtype=torch.float32, device=device).view(1, w)
    ys = torch.arange(h, dtype=torch.float32, device=device).view(h, 1)
    # x' = a x + b y + c, y' = d x + e y + f: two broadcast multiply-adds per coordinate
    out = m[..., 0, None, None] * xs + m[..., 1, None, None] * ys + m[..., 2, None, None]
    return out.movedim(2, -1)


def _sample(images: list[np.ndarray], coords: torch.Tensor, padding: str) -> torch.Tensor:
    """Bilinear samples of each window's image (h_i, w_i, C) at pixel coordinates
    (B, K, h, w, 2): (B, K, C, h, w). The images are zero-padded to a common canvas, which only
    shows where a coordinate leaves its image (``padding``: grid_sample's mode there)."""

    hc = max(im.shape[0] for im in images)
    wc = max(im.shape[1] for im in images)
    canvas = np.zeros((len(images), hc, wc, images[0].shape[2]), np.float32)
    for k, im in enumerate(images):
        canvas[k, : im.shape[0], : im.shape[1]] = im
    src = torch.from_numpy(canvas).to(coords.device).permute(0, 3, 1, 2)
    b, n, h, w, _ = coords.shape
    scale = coords.new_tensor([2.0 / max(wc - 1, 1), 2.0 / max(hc - 1, 1)])
    grid = (coords * scale - 1.0).reshape(b, n * h, w, 2)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode=padding, align_corners=True)
    return out.view(b, -1, n, h, w).permute(0, 2, 1, 3, 4)


def _translation_part(matrices: np.ndarray) -> np.ndarray:
    """``G(p) - p`` of 2x3 maps ``G``, as 2x3 maps."""
    out = np.array(matrices, np.float64)
    out[..., 0, 0] -= 1.0
    out[..., 1, 1] -= 1.0
    return out


def _layer_fields(layers: Sequence[Layer], n_frames: int, h: int, w: int, device) -> torch.Tensor:
    """Per layer, on every output pixel: the displacement over the exposure, then each frame's
    sampling offset from mid-exposure, (B, 1 + N, h, w, 2)."""
    taus = np.linspace(-0.5, 0.5, n_frames)
    maps = [
        np.concatenate([ly.path.displacement_map()[None], _translation_part(ly.path.inverse(taus))])
        for ly in layers
    ]
    return _pixel_maps(np.stack(maps), h, w, device)


def render_batch(
    backgrounds: Sequence[Layer],
    foregrounds: Sequence[Layer | None],
    *,
    size: tuple[int, int],
    n_frames: int = 7,
    substeps: int = 8,
    device="cpu",
    return_subframes: bool = True,
) -> dict:
    """Render B exposures at once with torch on ``device`` (see :func:`render_exposure`).

    Returns channel-first tensors: blurry (B, 3, h, w) and frames (B, N, 3, h, w) sRGB, flow
    (B, 2, h, w) per frame step, motion (B, N, 2, h, w), mask (B, h, w) bool (the foreground
    at mid-exposure) and, when asked, subframes (B, S, 3, h, w) in linear light.
    """
    h, w = size
    if n_frames < 2 or substeps < 1:
        raise ValueError(f"need n_frames >= 2 and substeps >= 1, got {n_frames}, {substeps}")
    steps = (n_frames - 1) * substeps + 1
    taus = np.linspace(-0.5, 0.5, steps)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    matrices = np.stack([bg.source_matrix(taus) for bg in backgrounds])  # (B, S, 2, 3)
    for bg, m in zip(backgrounds, matrices):
        seen = corners @ np.swapaxes(m[:, :, :2], 1, 2) + m[:, None, :, 2]
        bh, bw = bg.image.shape[:2]
        if seen.min() < 0 or (seen[..., 0] > bw - 1).any() or (seen[..., 1] > bh - 1).any():
            raise ValueError("the background image does not cover the output over the exposure")
    coords = _pixel_maps(matrices, h, w, device)
    sub = _sample([bg.image for bg in backgrounds], coords, "reflection")  # (B, S, 3, h, w)
    fields = _layer_fields(backgrounds, n_frames, h, w, device)
    mask = torch.zeros((len(backgrounds), h, w), dtype=torch.bool, device=sub.device)
    with_fg = [k for k, fg in enumerate(foregrounds) if fg is not None]
    if with_fg:
        fgs = [foregrounds[k] for k in with_fg]
        fg_m = np.stack(
            [np.concatenate([fg.source_matrix(taus), fg.source_matrix(np.zeros(1))]) for fg in fgs]
        )  # the sub-positions, then mid-exposure
        rgba = _sample([fg.image for fg in fgs], _pixel_maps(fg_m, h, w, device), "zeros")
        idx = torch.tensor(with_fg, device=sub.device)
        alpha = rgba[:, :steps, 3:]
        sub[idx] = sub[idx] * (1.0 - alpha) + rgba[:, :steps, :3]  # "over", premultiplied
        mask[idx] = rgba[:, steps, 3] > 0.5
        fg_fields = _layer_fields(fgs, n_frames, h, w, device)
        fields[idx] = torch.where(mask[idx][:, None, :, :, None], fg_fields, fields[idx])
    flow = fields[:, 0].permute(0, 3, 1, 2) / (n_frames - 1)
    motion = fields[:, 1:].permute(0, 1, 4, 2, 3)
    out = {
        "blurry": linear_to_srgb(sub.mean(1)),
        "frames": linear_to_srgb(sub[:, ::substeps]),
        "flow": flow.contiguous(),
        "motion": motion.contiguous(),
        "mask": mask,
    }
    if return_subframes:
        out["subframes"] = sub
    return out


# ---------------------------------------------------------------------------------------------
# Stills


@dataclass
class _Still:
    name: str
    licence: str
    weight: float
    levels: list[np.ndarray]  # linear light float32 (h, w, 3) at scales 1, 1/2, 1/4, ...


def _to_linear_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"a still must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    arr = arr[..., :3]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"a still must be uint8, uint16 or float in [0, 1], got {arr.dtype}")
    return np.ascontiguousarray(srgb_to_linear(arr))


def _make_still(name: str, image: np.ndarray, licence: str, weight: float) -> _Still:
    levels = [_to_linear_rgb(image)]
    while min(levels[-1].shape[:2]) >= 256:
        lv = levels[-1]
        half = (lv.shape[1] // 2, lv.shape[0] // 2)
        levels.append(cv2.resize(lv, half, interpolation=cv2.INTER_AREA))
    for lv in levels:
        lv.flags.writeable = False
    return _Still(name, licence, weight, levels)


@functools.cache
def _default_stills() -> tuple[_Still, ...]:
    from skimage import data

    out = []
    for name, (licence, weight) in STILLS.items():
        image = getattr(data, name)()
        if name in _CROPS:
            y0, y1, x0, x1 = _CROPS[name]
            image = image[y0:y1, x0:x1]
        out.append(_make_still(name, image, licence, weight))
    return tuple(out)


class StillsFolderError(ValueError):
    """A stills folder is missing, incomplete or does not match its ``MANIFEST.json``."""


_MANIFEST = "MANIFEST.json"
_RERUN = "rerun `python scripts/prepare_stills.py` (or `make stills`)"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify_still_folder(path: str | os.PathLike) -> tuple[tuple[str, str, str, str], ...]:
    """(name, file, sha256, licence) of every photo in the folder, each file checked against
    the manifest; raises :class:`StillsFolderError` naming what is wrong."""
    folder = Path(path)
    manifest_path = folder / _MANIFEST
    if not manifest_path.is_file():
        raise StillsFolderError(f"{manifest_path} not found: {_RERUN}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StillsFolderError(f"{manifest_path} is unreadable ({exc}): {_RERUN}") from exc
    out = []
    for entry in files:
        try:
            name, digest = str(entry["name"]), str(entry["sha256"])
        except (KeyError, TypeError) as exc:
            raise StillsFolderError(f"{manifest_path} has a bad entry {entry!r}: {_RERUN}") from exc
        file = folder / name
        if Path(name).name != name:  # only files directly in the folder
            raise StillsFolderError(f"{manifest_path} names a file outside the folder: {name!r}")
        if not file.is_file():
            raise StillsFolderError(f"{file} is missing: {_RERUN}")
        if _sha256(file) != digest:
            raise StillsFolderError(f"{file} does not match its sha256 in {_MANIFEST}: {_RERUN}")
        details = ", ".join(str(entry[k]) for k in ("author", "package", "version") if entry.get(k))
        licence = str(entry.get("licence", "unknown")) + (f" ({details})" if details else "")
        out.append((Path(name).stem, str(file.resolve()), digest, licence))
    if not out:
        raise StillsFolderError(f"{manifest_path} lists no photos: {_RERUN}")
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _decode_still_folder(
    entries: tuple[tuple[str, str, str, str], ...], weight: float
) -> tuple[_Still, ...]:
    # Keyed on the verified sha256s, so a changed file is never served from the cache.
    out = []
    for name, file, _, licence in entries:
        image = cv2.imread(file, cv2.IMREAD_COLOR)
        if image is None:
            raise StillsFolderError(f"OpenCV cannot read {file}: {_RERUN}")
        out.append(_make_still(name, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), licence, weight))
    return tuple(out)


def load_still_folder(path: str | os.PathLike, weight: float = 1.0) -> tuple[_Still, ...]:
    """The photos of a stills folder made by ``scripts/prepare_stills.py`` (``.afbstills/``).

    Parameters
    ----------
    path : the folder; its ``MANIFEST.json`` lists every JPEG with its sha256 and licence
    weight : sampling weight of each photo (the default stills have 1.0 or 0.5)

    Returns
    -------
    The stills, named by file stem (e.g. ``mate-ladybird``), their licence noted as
    ``"CC-BY-4.0 (author, package, version)"``. Every file is checked against the manifest on
    each call (a few ms); decoding is cached. Raises :class:`StillsFolderError` if the manifest
    or a file is missing or a file does not match its sha256.
    """
    if not weight > 0:
        raise ValueError(f"weight must be positive, got {weight}")
    return _decode_still_folder(_verify_still_folder(path), float(weight))


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


class StillsSource:
    """Random synthetic exposures of still photos moved along smooth camera paths.

    Parameters
    ----------
    n_frames : sharp frames per exposure (at ``tau = linspace(-0.5, 0.5, n_frames)``)
    size : (H, W) of the output
    substeps : sub-positions per frame interval averaged into the blur
    max_shift : largest total displacement of a layer over the exposure, in px
    foreground_prob : probability of a pasted moving foreground patch
    images : None for :data:`STILLS` (loaded once, lazily), or a mapping name -> image or a
        sequence of images (uint8, uint16 or float sRGB in [0, 1]; grey, RGB or RGBA)
    static_prob : probability that the background does not move at all
    small_prob : probability of a small background motion (under 15 % of ``max_shift``)
    max_rotation : largest rotation over the exposure, degrees (applied to half of the paths)
    max_zoom : largest log-scale change over the exposure (applied to half of the paths)
    scale_range : range of the random downscaling of the stills (log-uniform)
    folders : stills folders made by ``scripts/prepare_stills.py`` (:func:`load_still_folder`),
        whose photos are sampled besides the default stills (or ``images``), with weight 1.0
        each; checked here, decoded on first use
    """

    def __init__(
        self,
        n_frames: int = 7,
        size: tuple[int, int] = (128, 128),
        substeps: int = 8,
        max_shift: float = 24.0,
        foreground_prob: float = 0.5,
        images: Mapping[str, np.ndarray] | Sequence[np.ndarray] | None = None,
        *,
        static_prob: float = 0.1,
        small_prob: float = 0.25,
        max_rotation: float = 3.0,
        max_zoom: float = 0.05,
        scale_range: tuple[float, float] = (0.3, 1.0),
        folders: Sequence[str | os.PathLike] = (),
    ):
        if n_frames < 2 or substeps < 1:
            raise ValueError(f"need n_frames >= 2 and substeps >= 1, got {n_frames}, {substeps}")
        h, w = (int(size[0]), int(size[1]))
        if h < 1 or w < 1:
            raise ValueError(f"size must be positive, got {size}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
        self.n_frames = int(n_frames)
        self.size = (h, w)
        self.substeps = int(substeps)
        self.max_shift = float(max_shift)
        self.foreground_prob = float(foreground_prob)
        self.static_prob = float(static_prob)
        self.small_prob = float(small_prob)
        self.max_rotation = float(max_rotation)
        self.max_zoom = float(max_zoom)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self._images = images
        if isinstance(folders, str | os.PathLike):
            folders = [folders]
        self.folders = tuple(str(f) for f in folders)
        for folder in self.folders:  # fail here, not in a data-loader worker
            _verify_still_folder(folder)
        self._stills: tuple[_Still, ...] | None = None

    # -- data ----------------------------------------------------------------------------------

    @property
    def stills(self) -> tuple[_Still, ...]:
        if self._stills is None:
            if self._images is None:
                self._stills = _default_stills()
            else:
                items = (
                    self._images.items()
                    if isinstance(self._images, Mapping)
                    else ((f"image{i}", im) for i, im in enumerate(self._images))
                )
                self._stills = tuple(_make_still(n, im, "user", 1.0) for n, im in items)
                if not self._stills:
                    raise ValueError("images is empty")
            if self.folders:
                stills = self._stills + sum((load_still_folder(f) for f in self.folders), ())
                names = [s.name for s in stills]
                twice = sorted({n for n in names if names.count(n) > 1})
                if twice:
                    raise ValueError(f"stills with the same name in several sources: {twice}")
                self._stills = stills
        return self._stills

    @property
    def n_substeps(self) -> int:
        return (self.n_frames - 1) * self.substeps + 1

    # -- randomness ----------------------------------------------------------------------------

    def random_path(
        self, rng: np.random.Generator, center: tuple[float, float], *, static_prob: float
    ) -> MotionPath:
        """A random smooth path: static, small or large translation (monotone along it: the
        quadratic term is at most half the linear one), plus rotation and zoom half the time."""
        if rng.random() < static_prob:
            return MotionPath(center=center)
        if rng.random() < self.small_prob:
            mag = rng.uniform(0.0, 0.15) * self.max_shift
        else:
            mag = rng.uniform(0.15, 1.0) * self.max_shift
        ang, ang_a = rng.uniform(0, 2 * np.pi, size=2)
        mag_a = rng.uniform(0.0, 0.5) * mag
        rot = rng.uniform(-1, 1) * self.max_rotation if rng.random() < 0.5 else 0.0
        zoom = rng.uniform(-1, 1) * self.max_zoom if rng.random() < 0.5 else 0.0
        return MotionPath(
            shift=(mag * math.cos(ang), mag * math.sin(ang)),
            accel=(mag_a * math.cos(ang_a), mag_a * math.sin(ang_a)),
            rotation=float(rot),
            zoom=float(zoom),
            center=(float(center[0]), float(center[1])),
        )

    def _crop(
        self, rng: np.random.Generator, still: _Still, out_w: int, out_h: int
    ) -> tuple[np.ndarray, dict]:
        """A random region of ``still`` at a random scale, resized to (out_h, out_w)."""
        full_h, full_w = still.levels[0].shape[:2]
        needed = max(out_w / full_w, out_h / full_h)
        lo, hi = self.scale_range
        scale = needed if needed >= hi else _loguniform(rng, max(lo, needed), hi)
        level = 0
        while level + 1 < len(still.levels) and scale <= 0.5 ** (level + 1):
            level += 1
        img = still.levels[level]
        lh, lw = img.shape[:2]
        s = scale * 2**level  # scale relative to this level, in (0.5, 1] or above 1
        cw, ch = min(lw, math.ceil(out_w / s)), min(lh, math.ceil(out_h / s))
        x0, y0 = int(rng.integers(0, lw - cw + 1)), int(rng.integers(0, lh - ch + 1))
        crop = img[y0 : y0 + ch, x0 : x0 + cw]
        interp = cv2.INTER_AREA if (cw > out_w or ch > out_h) else cv2.INTER_LINEAR
        out = cv2.resize(crop, (out_w, out_h), interpolation=interp)
        f = 2**level
        info = {"scale": float(out_w / (cw * f)), "crop_yxhw": [y0 * f, x0 * f, ch * f, cw * f]}
        return out, info

    def _background(
        self, rng: np.random.Generator, still: _Still, path: MotionPath
    ) -> tuple[Layer, dict]:
        h, w = self.size
        corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float)
        m = path.inverse(np.linspace(-0.5, 0.5, self.n_substeps))
        pts = (corners @ np.swapaxes(m, 1, 2)).reshape(-1, 2)
        x0 = math.floor(pts[:, 0].min()) - _BORDER
        y0 = math.floor(pts[:, 1].min()) - _BORDER
        x1 = math.ceil(pts[:, 0].max()) + _BORDER
        y1 = math.ceil(pts[:, 1].max()) + _BORDER
        image, info = self._crop(rng, still, x1 - x0 + 1, y1 - y0 + 1)
        return Layer(image, (-x0, -y0), path), info

    def _foreground(
        self, rng: np.random.Generator, still: _Still, path: MotionPath | None
    ) -> tuple[Layer, dict]:
        h, w = self.size
        m = min(h, w)
        rx, ry = rng.uniform(0.12, 0.35, size=2) * m
        angle = rng.uniform(0.0, np.pi)
        feather = rng.uniform(1.0, 3.0)
        center = (rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h)
        if path is None:
            path = self.random_path(rng, center, static_prob=0.15)
        else:
            center = tuple(float(c) for c in path.center)
        half = math.ceil(max(rx, ry) + feather + _BORDER)
        side = 2 * half + 1
        image, info = self._crop(rng, still, side, side)
        yy, xx = (np.mgrid[0:side, 0:side] - half).astype(np.float32)
        cos, sin = math.cos(angle), math.sin(angle)
        u, v = (xx * cos + yy * sin) / rx, (-xx * sin + yy * cos) / ry
        rho = np.sqrt(u * u + v * v)
        alpha = np.clip(0.5 - (rho - 1.0) * min(rx, ry) / feather, 0.0, 1.0)[..., None]
        rgba = np.concatenate([image * alpha, alpha], axis=2).astype(np.float32)
        # The patch centre (half, half) sits at ``center`` at mid-exposure.
        layer = Layer(rgba, (half - center[0], half - center[1]), path)
        info.update(
            center=[float(center[0]), float(center[1])],
            axes=[float(rx), float(ry)],
            angle_deg=math.degrees(angle),
            feather=float(feather),
        )
        return layer, info

    # -- public --------------------------------------------------------------------------------

    def render(
        self,
        rng: np.random.Generator,
        *,
        background_path: MotionPath | None = None,
        foreground: bool | None = None,
        foreground_path: MotionPath | None = None,
    ) -> tuple[Exposure, dict]:
        """One random exposure with its sub-frames, and the ``source`` description.

        ``background_path`` / ``foreground_path`` fix a path instead of drawing one (the
        foreground path's ``center`` is where the patch sits at mid-exposure); ``foreground``
        forces the foreground on or off (default: with probability ``foreground_prob``, or on
        when ``foreground_path`` is given).
        """
        bg_layer, fg_layer, source = self.draw(
            rng,
            background_path=background_path,
            foreground=foreground,
            foreground_path=foreground_path,
        )
        exposure = render_exposure(
            bg_layer, fg_layer, size=self.size, n_frames=self.n_frames, substeps=self.substeps
        )
        return exposure, source

    def sample_batch(self, rng: np.random.Generator, count: int, device="cpu") -> dict:
        """``count`` random exposures rendered together on ``device``: channel-first tensors
        blurry, frames, flow and motion (see :func:`render_batch`), as ``count`` calls of
        :meth:`sample` would draw them."""
        drawn = [self.draw(rng) for _ in range(count)]
        return render_batch(
            [d[0] for d in drawn],
            [d[1] for d in drawn],
            size=self.size,
            n_frames=self.n_frames,
            substeps=self.substeps,
            device=device,
            return_subframes=False,
        )

    def draw(
        self,
        rng: np.random.Generator,
        *,
        background_path: MotionPath | None = None,
        foreground: bool | None = None,
        foreground_path: MotionPath | None = None,
    ) -> tuple[Layer, Layer | None, dict]:
        """The layers of one random exposure (see :meth:`render`) and its ``source``."""
        h, w = self.size
        stills = self.stills
        weights = np.array([s.weight for s in stills], float)
        bg_idx = int(rng.choice(len(stills), p=weights / weights.sum()))
        if background_path is None:
            pivot = (rng.uniform(0, w - 1), rng.uniform(0, h - 1))
            background_path = self.random_path(rng, pivot, static_prob=self.static_prob)
        bg_layer, bg_info = self._background(rng, stills[bg_idx], background_path)
        source = {
            "kind": "still",
            "image": stills[bg_idx].name,
            "licence": stills[bg_idx].licence,
            **bg_info,
            "path": background_path.as_dict(),
            "foreground": None,
        }
        if foreground is None:
            foreground = foreground_path is not None or rng.random() < self.foreground_prob
        fg_layer = None
        if foreground:
            others = [i for i in range(len(stills)) if i != bg_idx] or [bg_idx]
            p = weights[others] / weights[others].sum()
            fg_idx = int(others[int(rng.choice(len(others), p=p))])
            fg_layer, fg_info = self._foreground(rng, stills[fg_idx], foreground_path)
            source["foreground"] = {
                "image": stills[fg_idx].name,
                "licence": stills[fg_idx].licence,
                **fg_info,
                "path": fg_layer.path.as_dict(),
            }
        return bg_layer, fg_layer, source

    def sample(self, rng: np.random.Generator) -> Window:
        """One random training window (blurry, frames, flow, guidance, source)."""
        exposure, source = self.render(rng)
        return Window.from_flow(
            exposure.blurry, exposure.frames, exposure.flow, source, motion=exposure.motion
        )
