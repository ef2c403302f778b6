"""Blur paths: the trajectory the scene followed across the sensor during the exposure.

One representation serves every source (drawn, estimated, from a video): an ordered polyline in
image coordinates, (x to the right, y downward), whose direction is the direction of time.
Rendered, it is a blur kernel: the share of the exposure the scene spent at each offset.

A blurry image is B = S * k, with S the sharp scene at the kernel's *origin* (for a drawn path,
the path's mid-time point) and k the path's kernel. Frame i of N is S moved by the mean offset of
the path over the i-th N-th of the exposure, so the mean of the frames re-blurs to B.

numpy and OpenCV only (no torch), cheap to import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["BlurPath", "load_paths", "parse_path", "save_paths"]

# Shorter than this (in pixels) a path is no blur at all.
MIN_LENGTH = 0.5


@dataclass(eq=False)
class BlurPath:
    """An ordered blur path.

    points : (K, 2) float (x, y) image coordinates, in time order (K >= 2).
    times : (K,) increasing times in [0, 1] at the points; None: the scene moved at constant
        speed along the polyline (times from arc length).
    kernel : an estimated (k, k) kernel (odd k, sums to 1) that explains the blur better than
        the polyline rendered; None: render the polyline.
    origin : (x, y) image point at the kernel's centre pixel (the latent image's position);
        None: the path's mid-time point.
    source : "drawn", "estimated" or "video" (for messages).
    """

    points: np.ndarray
    times: np.ndarray | None = None
    kernel: np.ndarray | None = None
    origin: tuple[float, float] | None = None
    source: str = "drawn"
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        pts = np.asarray(self.points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise ValueError(
                f"a blur path needs at least two (x, y) points, as an array of shape (K, 2); "
                f"got shape {pts.shape}"
            )
        if not np.isfinite(pts).all():
            raise ValueError("a blur path's points must be finite numbers")
        self.points = pts
        seg = np.hypot(*np.diff(pts, axis=0).T)
        if self.times is None:
            total = seg.sum()
            t = np.concatenate([[0.0], np.cumsum(seg)]) / total if total > 0 else None
            self.times = t if t is not None else np.linspace(0, 1, len(pts))
        else:
            t = np.asarray(self.times, dtype=np.float64)
            if t.shape != (len(pts),) or np.any(np.diff(t) < 0) or t[0] < 0 or t[-1] > 1:
                raise ValueError("a blur path's times must be (K,) increasing values in [0, 1]")
            self.times = t
        if self.kernel is not None:
            self.kernel = _check_kernel(self.kernel)
        if self.origin is None:
            self.origin = tuple(float(v) for v in self.position(np.array([0.5]))[0])
        if self.extent() < MIN_LENGTH:
            raise ValueError(
                f"the blur path has zero length (its points span {self.extent():.2f} px): draw "
                f"it along a streak in the photo, from where the motion started to where it ended"
            )

    # -- geometry ------------------------------------------------------------------------------
    def length(self) -> float:
        """Arc length in pixels."""
        return float(np.hypot(*np.diff(self.points, axis=0).T).sum())

    def extent(self) -> float:
        """Largest distance between two points (the blur's size), in pixels."""
        d = self.points[:, None, :] - self.points[None, :, :]
        return float(np.sqrt((d**2).sum(-1)).max())

    def position(self, t: np.ndarray) -> np.ndarray:
        """(M,) times in [0, 1] -> (M, 2) (x, y) image positions along the path."""
        t = np.clip(np.asarray(t, dtype=np.float64), 0, 1)
        x = np.interp(t, self.times, self.points[:, 0])
        y = np.interp(t, self.times, self.points[:, 1])
        return np.stack([x, y], axis=1)

    def direction(self) -> np.ndarray:
        """(dx, dy) from the start to the end (the direction of time)."""
        return self.points[-1] - self.points[0]

    def reversed(self) -> BlurPath:
        """The same blur with time running the other way (the kernel is unchanged)."""
        return BlurPath(
            self.points[::-1].copy(),
            1.0 - self.times[::-1],
            kernel=self.kernel,
            origin=self.origin,
            source=self.source,
        )

    def scaled(self, factor: float, centre=(0.0, 0.0)) -> BlurPath:
        """The path in an image resized by ``factor`` about ``centre`` (drops an estimated
        kernel: it no longer matches)."""
        c = np.asarray(centre, dtype=np.float64)
        return BlurPath((self.points - c) * factor + c, self.times.copy(), source=self.source)

    def frame_offsets(self, n: int) -> np.ndarray:
        """(n, 2) mean (dx, dy) offsets of the scene from the origin during each n-th of the
        exposure: frame i is the latent moved by offsets[i]."""
        sub = 32
        t = (np.arange(n * sub) + 0.5) / (n * sub)
        pos = self.position(t).reshape(n, sub, 2).mean(axis=1)
        return pos - np.asarray(self.origin)

    # -- kernels ---------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The (k, k) blur kernel (odd k, sums to 1), centred on the origin."""
        if self.kernel is not None:
            return self.kernel
        if "kernel" not in self._cache:
            self._cache["kernel"] = render_kernel(self.position, self.origin, self.length())
        return self._cache["kernel"]

    def kernel_size(self) -> int:
        return int(self.render().shape[0])

    def to_json(self) -> dict:
        out = {"points": self.points.round(3).tolist(), "times": self.times.round(5).tolist()}
        out["source"] = self.source
        return out


def render_kernel(position, origin, length: float) -> np.ndarray:
    """Splat ``position(t)`` for t over [0, 1] (bilinear, 8 samples per pixel of length) into an
    odd square kernel centred on ``origin``; normalised to sum 1."""
    m = max(64, int(8 * length) + 1)
    pos = position((np.arange(m) + 0.5) / m) - np.asarray(origin)
    r = int(np.ceil(np.abs(pos).max())) + 1
    size = 2 * r + 1
    k = np.zeros((size, size), dtype=np.float64)
    x, y = pos[:, 0] + r, pos[:, 1] + r
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    return (k / k.sum()).astype(np.float32)


def _check_kernel(k) -> np.ndarray:
    k = np.asarray(k, dtype=np.float32)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise ValueError(f"a blur kernel must be an odd square array, got shape {k.shape}")
    if not np.isfinite(k).all() or k.min() < 0 or k.sum() <= 0:
        raise ValueError("a blur kernel must hold finite, non-negative values with a positive sum")
    return k / k.sum()


def path_from_kernel(kernel: np.ndarray, origin, *, n_points: int = 15) -> BlurPath:
    """The ordered path through an estimated kernel, keeping the kernel itself.

    The kernel's mass is time spent, so sorting its pixels along the kernel's principal axis and
    cutting the cumulative mass into equal shares gives the path's mean position in each share of
    the exposure. The order (which end is the start) is arbitrary: the kernel cannot say.
    """
    k = _check_kernel(kernel)
    r = k.shape[0] // 2
    ys, xs = np.nonzero(k > 0)
    w = k[ys, xs].astype(np.float64)
    xy = np.stack([xs - r, ys - r], axis=1).astype(np.float64)
    mean = (w[:, None] * xy).sum(0) / w.sum()
    cov = np.cov((xy - mean).T, aweights=w) if len(w) > 1 else np.eye(2)
    axis = np.linalg.eigh(np.atleast_2d(cov))[1][:, -1]
    order = np.argsort((xy - mean) @ axis, kind="stable")
    xy, w = xy[order], w[order]
    cum = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
    edges = np.linspace(0, 1, n_points + 1)
    pts, times = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        # the pixels' shares of mass inside [a, b] of the cumulative mass
        share = np.clip(np.minimum(cum[1:], b) - np.maximum(cum[:-1], a), 0, None)
        pts.append((share[:, None] * xy).sum(0) / max(share.sum(), 1e-12))
        times.append((a + b) / 2)
    # the two ends: the extreme 2 % of the mass at each side
    ends = []
    for lo, hi in ((0.0, 0.02), (0.98, 1.0)):
        share = np.clip(np.minimum(cum[1:], hi) - np.maximum(cum[:-1], lo), 0, None)
        ends.append((share[:, None] * xy).sum(0) / max(share.sum(), 1e-12))
    pts = np.array([ends[0], *pts, ends[1]]) + np.asarray(origin, dtype=np.float64)
    times = np.array([0.0, *times, 1.0])
    if np.hypot(*(pts.max(0) - pts.min(0))) < MIN_LENGTH:  # a delta: no blur
        pts[0] -= 0.3
        pts[-1] += 0.3
    return BlurPath(pts, times, kernel=k, origin=tuple(origin), source="estimated")


def mass_near_path(path: BlurPath, width: float = 1.5) -> float:
    """Share of the kernel's mass within ``width`` px of its path (1 for a clean trajectory; a
    blob or a scatter of specks scores low)."""
    k = path.render()
    r = k.shape[0] // 2
    pts = path.position(np.linspace(0, 1, 4 * k.shape[0])) - np.asarray(path.origin) + r
    yy, xx = np.mgrid[0 : k.shape[0], 0 : k.shape[1]]
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
    d = np.full(len(grid), np.inf)
    for chunk in np.array_split(pts, max(1, len(pts) // 64)):
        d = np.minimum(d, np.sqrt(((grid[:, None, :] - chunk[None]) ** 2).sum(-1)).min(1))
    return float(k.ravel()[d <= width].sum())


# ---------------------------------------------------------------------------------------------
# Reading paths from the user


def parse_path(text: str) -> BlurPath:
    """``"x0,y0,x1,y1,..."`` (image pixels, start to end) -> a drawn :class:`BlurPath`."""
    try:
        vals = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"a blur path is written x0,y0,x1,y1,... in pixels (start to end), got {text!r}"
        ) from None
    if len(vals) < 4 or len(vals) % 2:
        raise ValueError(
            f"a blur path needs an even number of at least 4 values, x0,y0,x1,y1,..., got "
            f"{len(vals)} in {text!r}"
        )
    return BlurPath(np.array(vals).reshape(-1, 2))


def as_paths(paths) -> list[BlurPath]:
    """Paths as the API takes them: a BlurPath, a "x0,y0,..." string, a (K, 2) (x, y) array, a
    file (JSON), or a list of these."""
    if paths is None:
        return []
    if isinstance(paths, BlurPath | str | os.PathLike):
        paths = [paths]
    else:
        try:  # numbers: one (K, 2) path, or (P, K, 2) paths of equal length
            arr = np.asarray(paths, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.ndim in (2, 3):
            paths = [arr] if arr.ndim == 2 else list(arr)
    out: list[BlurPath] = []
    for p in paths:
        if isinstance(p, BlurPath):
            out.append(p)
        elif isinstance(p, os.PathLike) or (isinstance(p, str) and Path(p).suffix == ".json"):
            out.extend(load_paths(p))
        elif isinstance(p, str):
            out.append(parse_path(p))
        else:
            out.append(BlurPath(np.asarray(p, dtype=np.float64)))
    return out


def load_paths(file: str | os.PathLike) -> list[BlurPath]:
    """Read paths from a JSON file: ``{"paths": [{"points": [[x, y], ...]}, ...]}`` (what
    :func:`save_paths` writes), or a plain list of point lists. Text files hold one
    ``x0,y0,x1,y1,...`` path per line."""
    file = Path(file)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read blur paths from {file}: {exc.strerror or exc}") from None
    if file.suffix.lower() != ".json":
        return [parse_path(line) for line in text.splitlines() if line.strip()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file} is not valid JSON: {exc}") from None
    items = data.get("paths") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError(f"{file} holds no blur paths (expected {{'paths': [...]}})")
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(BlurPath(np.asarray(item["points"], float), item.get("times")))
        else:
            out.append(BlurPath(np.asarray(item, dtype=np.float64)))
    return out


def save_paths(paths, file: str | os.PathLike) -> None:
    """Write paths as JSON (what :func:`load_paths` reads)."""
    Path(file).write_text(json.dumps({"paths": [p.to_json() for p in as_paths(paths)]}, indent=1))
