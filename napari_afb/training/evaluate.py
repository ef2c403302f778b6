"""Evaluation: how well a decomposer recovers the sharp frames of held-out windows.

For each :class:`~napari_afb.training.window.Window` the model decomposes the blurry image (with
the true guidance, or with the time-reversed guidance as a control) and its frames are scored
against the ground truth:

* PSNR and SSIM per frame, averaged over frames, in strict time order;
* the same, order-agnostic: the better (by PSNR) of the prediction and its reverse, as the
  reference paper reports;
* re-blur consistency: the PSNR between the blurry input and the linear-light mean of the
  predicted frames (:func:`napari_afb.samples.linear_mean`).

The blurry input repeated N times is the baseline every model must beat. Results come back as
a :class:`Report` (per-case rows and means, ``to_dict()`` and ``table()``); a contact sheet PNG
(input, guidance, first/middle/last predicted and true frames per case) shows what the numbers
mean. numpy, scikit-image, Pillow and torch only; no napari.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import io as afb_io
from ..guidance import Augmentation
from ..samples import linear_mean
from .window import Window

__all__ = [
    "METRICS",
    "PSNR_MAX",
    "CaseResult",
    "Report",
    "baseline",
    "contact_sheet",
    "evaluate",
    "frame_scores",
    "mean_psnr",
    "scores",
]

#: The keys of :func:`scores`, in table order.
METRICS = ("psnr", "ssim", "psnr_agnostic", "ssim_agnostic")

#: PSNR ceiling in dB (an MSE of 1e-10): a frame that matches exactly scores this, not ``inf``,
#: so one perfect frame (e.g. the middle one of a reversed prediction) cannot make a mean infinite.
PSNR_MAX = 100.0

_SSIM_WIN = 7  # scikit-image's default window


# ---------------------------------------------------------------------------------------------
# Metrics


def _as_frames(arr, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (N, H, W, 3), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be float in [0, 1], got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _psnr(truth: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB for data range 1, at most :data:`PSNR_MAX` (identical images score that)."""
    from skimage.metrics import peak_signal_noise_ratio  # (pulls in scipy.stats: ~1 s)

    if np.array_equal(truth, pred):
        return PSNR_MAX
    return min(float(peak_signal_noise_ratio(truth, pred, data_range=1.0)), PSNR_MAX)


def _ssim(truth: np.ndarray, pred: np.ndarray) -> float:
    """SSIM of two (H, W, 3) images; the window shrinks (odd, >= 3) for images under 7 px, and
    images under 3 px use one window over the whole image."""
    from skimage.metrics import structural_similarity

    side = min(truth.shape[:2])
    if side >= 3:
        win = min(_SSIM_WIN, side if side % 2 else side - 1)
        return float(
            structural_similarity(truth, pred, win_size=win, data_range=1.0, channel_axis=-1)
        )
    return _global_ssim(truth, pred)


def _global_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM with a single window covering the whole image, averaged over channels."""
    c1, c2 = (0.01**2), (0.03**2)  # K1, K2 of Wang et al. for data range 1
    x = x.reshape(-1, x.shape[-1])
    y = y.reshape(-1, y.shape[-1])
    mx, my = x.mean(0), y.mean(0)
    vx, vy = x.var(0), y.var(0)
    cxy = ((x - mx) * (y - my)).mean(0)
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _frame_pair(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_frames(pred, "pred")
    truth = _as_frames(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} differ in shape")
    return pred, truth


def mean_psnr(pred, truth) -> float:
    """PSNR (dB) of (N, H, W, 3) float frames in [0, 1] in strict time order, per frame,
    averaged over frames: the ``psnr`` of :func:`frame_scores` without the cost of SSIM."""
    pred, truth = _frame_pair(pred, truth)
    return float(np.mean([_psnr(t, p) for p, t in zip(pred, truth)]))


def frame_scores(pred, truth) -> dict[str, float]:
    """PSNR (dB) and SSIM of (N, H, W, 3) float frames in [0, 1], per frame, averaged over
    frames. A perfect prediction has PSNR :data:`PSNR_MAX` (100 dB) and SSIM 1."""
    pred, truth = _frame_pair(pred, truth)
    ssim = [_ssim(t, p) for p, t in zip(pred, truth)]
    return {"psnr": mean_psnr(pred, truth), "ssim": float(np.mean(ssim))}


def scores(pred, truth) -> dict[str, float]:
    """Strict time-order scores and order-agnostic ones (the better, by PSNR, of ``pred`` and
    ``pred[::-1]``; ties keep the forward order). Keys: :data:`METRICS`."""
    fwd = frame_scores(pred, truth)
    rev = frame_scores(np.asarray(pred)[::-1], truth)
    best = rev if rev["psnr"] > fwd["psnr"] else fwd
    return {
        "psnr": fwd["psnr"],
        "ssim": fwd["ssim"],
        "psnr_agnostic": best["psnr"],
        "ssim_agnostic": best["ssim"],
    }


def baseline(window: Window) -> np.ndarray:
    """The trivial decomposition: the blurry input repeated N times, (N, H, W, 3)."""
    n = window.frames.shape[0]
    return np.repeat(np.asarray(window.blurry)[None], n, axis=0)


# ---------------------------------------------------------------------------------------------
# Report


@dataclass
class CaseResult:
    """One evaluated window.

    source : the window's ``source`` (where it came from)
    shape : (H, W)
    model, baseline : :func:`scores` of the model's frames and of the blurry baseline
    reblur : PSNR (dB) of the blurry input against the linear-light mean of the model's frames
        (a model with ``blur_consistent=True`` projects onto this constraint, so it scores near
        :data:`PSNR_MAX` whatever its frames)
    reblur_truth : the same for the true frames (how consistent the ground truth itself is)
    reversed_better : whether the order-agnostic model score came from the reversed frames
    """

    source: dict
    shape: tuple[int, int]
    model: dict[str, float]
    baseline: dict[str, float]
    reblur: float
    reblur_truth: float
    reversed_better: bool

    def to_dict(self) -> dict:
        return {
            "source": _jsonable(self.source),
            "shape": list(self.shape),
            "model": _jsonable(self.model),
            "baseline": _jsonable(self.baseline),
            "reblur": _jsonable(self.reblur),
            "reblur_truth": _jsonable(self.reblur_truth),
            "reversed_better": bool(self.reversed_better),
        }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


@dataclass
class Report:
    """Per-case results and their means over cases.

    ``model``, ``baseline`` and ``gain`` are dicts keyed by :data:`METRICS`; ``reblur`` and
    ``reblur_truth`` are mean PSNRs in dB (each at most :data:`PSNR_MAX`).
    """

    cases: list[CaseResult]
    guidance: str = "true"
    n_frames: int = 0
    seconds: float = 0.0
    model: dict[str, float] = field(init=False)
    baseline: dict[str, float] = field(init=False)
    gain: dict[str, float] = field(init=False)
    reblur: float = field(init=False)
    reblur_truth: float = field(init=False)

    def __post_init__(self) -> None:
        self.model = {k: _mean([c.model[k] for c in self.cases]) for k in METRICS}
        self.baseline = {k: _mean([c.baseline[k] for c in self.cases]) for k in METRICS}
        self.gain = {k: _diff(self.model[k], self.baseline[k]) for k in METRICS}
        self.reblur = _mean([c.reblur for c in self.cases])
        self.reblur_truth = _mean([c.reblur_truth for c in self.cases])

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    def to_dict(self) -> dict:
        """Everything as plain JSON types (non-finite numbers become ``None``)."""
        return {
            "guidance": self.guidance,
            "n_frames": int(self.n_frames),
            "n_cases": self.n_cases,
            "seconds": float(self.seconds),
            "mean": {
                "model": _jsonable(self.model),
                "baseline": _jsonable(self.baseline),
                "gain": _jsonable(self.gain),
                "reblur": _jsonable(self.reblur),
                "reblur_truth": _jsonable(self.reblur_truth),
            },
            "cases": [c.to_dict() for c in self.cases],
        }

    def table(self) -> str:
        """A readable, aligned text table of the means: model / blurry baseline / gain."""
        head = ["", "PSNR", "SSIM", "PSNR agnostic", "SSIM agnostic", "re-blur PSNR", "n cases"]
        n = str(self.n_cases)
        body = [
            ["model", *_cells(self.model), _fmt(self.reblur, "psnr"), n],
            ["blurry baseline", *_cells(self.baseline), "-", n],
            ["gain", *_cells(self.gain, signed=True), "-", n],
        ]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = [
            f"guidance: {self.guidance}   frames: {self.n_frames}   cases: {self.n_cases}"
            f"   true-frame re-blur PSNR: {_fmt(self.reblur_truth, 'psnr')}"
        ]
        for row in [head, *body]:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _diff(a: float, b: float) -> float:
    if math.isinf(a) and math.isinf(b) and a == b:
        return 0.0
    return a - b


def _fmt(value: float, kind: str, signed: bool = False) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return ("+inf" if signed else "inf") if value > 0 else "-inf"
    spec = ".2f" if kind == "psnr" else ".4f"
    return format(value, ("+" if signed else "") + spec)


def _cells(d: dict[str, float], signed: bool = False) -> list[str]:
    return [_fmt(d[k], "psnr" if k.startswith("psnr") else "ssim", signed) for k in METRICS]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    model,
    windows: Iterable[Window],
    *,
    device: str = "cpu",
    guidance: str = "true",
    precision: str = "auto",
    sheet_path: str | Path | None = None,
    sheet_cases: int = 4,
    progress: bool | Callable[[int, int | None], None] = False,
) -> Report:
    """Decompose every window with ``model`` and score it against its true frames.

    Parameters
    ----------
    model : a decomposer module exposing ``n_frames`` (it must match the windows' N)
    windows : Windows (any iterable; a sequence gives the progress bar its total)
    device : passed to :func:`napari_afb.decompose` (whole image at once, ``tile=0``)
    guidance : "true" (the window's labels) or "reversed" (time-reversed labels: a control
        that shows the model follows the guidance; strict scores should then drop)
    precision : passed to :func:`napari_afb.decompose`
    sheet_path : when given, a contact sheet PNG of the first ``sheet_cases`` cases
    progress : True for a tqdm bar over windows, or a callable ``(done, total_or_None)``
    """
    from ..api import decompose  # torch loads here, not on import

    if guidance not in ("true", "reversed"):
        raise ValueError(f"guidance must be 'true' or 'reversed', not {guidance!r}")
    n_frames = int(model.n_frames)
    total = len(windows) if isinstance(windows, Sequence) else None
    reverse = Augmentation(reverse=True)

    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="window", desc="evaluate")
    callback = progress if callable(progress) else None

    cases: list[CaseResult] = []
    sheet_rows: list[tuple] = []
    start = time.perf_counter()
    try:
        for i, win in enumerate(windows):
            truth = np.asarray(win.frames, dtype=np.float32)
            if truth.shape[0] != n_frames:
                raise ValueError(
                    f"window {i} ({win.source}) has {truth.shape[0]} frames but the model "
                    f"makes {n_frames}"
                )
            labels = win.guidance if guidance == "true" else reverse.apply_guidance(win.guidance)
            blurry = np.asarray(win.blurry, dtype=np.float32)
            pred = decompose(
                blurry, labels, model=model, device=device, tile=0, precision=precision
            )
            pred = np.clip(pred.astype(np.float32, copy=False), 0.0, 1.0)
            m = scores(pred, truth)
            cases.append(
                CaseResult(
                    source=dict(win.source),
                    shape=tuple(blurry.shape[:2]),
                    model=m,
                    baseline=scores(baseline(win), truth),
                    reblur=_psnr(blurry.astype(np.float64), linear_mean(pred).astype(np.float64)),
                    reblur_truth=_psnr(
                        blurry.astype(np.float64), linear_mean(truth).astype(np.float64)
                    ),
                    reversed_better=m["psnr_agnostic"] != m["psnr"],
                )
            )
            if sheet_path is not None and len(sheet_rows) < sheet_cases:
                sheet_rows.append((blurry, labels, pred, truth))
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(i + 1, total)
    finally:
        if bar is not None:
            bar.close()

    if sheet_path is not None and sheet_rows:
        contact_sheet(sheet_rows, sheet_path)
    return Report(cases, guidance=guidance, n_frames=n_frames, seconds=time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Contact sheet

SHEET_HEIGHT = 128


def _tile(img: np.ndarray, height: int, nearest: bool = False) -> np.ndarray:
    img = afb_io.to_uint8(np.asarray(img))
    h, w = img.shape[:2]
    width = max(1, round(w * height / h))
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def contact_sheet(rows, path: str | Path, *, height: int = SHEET_HEIGHT) -> np.ndarray:
    """Write a PNG with one row per case and return it as (H, W, 3) uint8.

    ``rows``: a sequence of ``(blurry, guidance, pred, truth)``: (H, W, 3) float in [0, 1],
    (H, W) labels, (N, H, W, 3) predicted and true frames. Each row shows the input, the
    guidance (:func:`napari_afb.io.guidance_rgb`), then the first, middle and last predicted and
    true frames, every tile resized to ``height`` px (keeping its aspect ratio; a column is as
    wide as its widest tile). The first row carries small text labels.
    """
    from PIL import Image, ImageDraw, ImageFont

    rows = list(rows)
    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    tiled: list[list[np.ndarray]] = []
    labels: list[str] = []
    for blurry, guidance, pred, truth in rows:
        pred, truth = np.asarray(pred), np.asarray(truth)
        picks = sorted({0, pred.shape[0] // 2, pred.shape[0] - 1})
        row = [_tile(blurry, height), _tile(afb_io.guidance_rgb(guidance), height, nearest=True)]
        row += [_tile(pred[t], height) for t in picks]
        row += [_tile(truth[t], height) for t in picks]
        tiled.append(row)
        if not labels:
            labels = ["input", "guidance"]
            labels += [f"pred {t + 1}/{pred.shape[0]}" for t in picks]
            labels += [f"true {t + 1}/{truth.shape[0]}" for t in picks]
    n_cols = max(len(r) for r in tiled)
    col_w = [max(r[c].shape[1] for r in tiled if c < len(r)) for c in range(n_cols)]
    x0 = np.concatenate([[0], np.cumsum(col_w)])
    sheet = np.zeros((height * len(tiled), int(x0[-1]), 3), dtype=np.uint8)
    for r, row in enumerate(tiled):
        for c, tile in enumerate(row):
            sheet[r * height : (r + 1) * height, x0[c] : x0[c] + tile.shape[1]] = tile

    image = Image.fromarray(sheet)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for c, text in enumerate(labels):
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x, y = int(x0[c]) + 3, 3
        draw.rectangle((x - 2, y - 2, x + right - left + 2, y + bottom - top + 2), fill=(0, 0, 0))
        draw.text((x - left, y - top), text, fill=(255, 255, 255), font=font)
    sheet = np.asarray(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    afb_io.write_png(path, sheet)
    return sheet
