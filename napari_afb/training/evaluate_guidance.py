"""Evaluation of the guidance sources: the predictor's samples and neighbouring frames.

For held-out windows it reports, beside the blurry baseline and the ground-truth guidance:

* **guidance accuracy**: the fraction of pixels whose label is right, over all pixels and over
  the truly moving ones (label > 0), and the axis alone on moving pixels;
* **best of k** (k = 1, 3, 5, as the reference paper): of the predictor's first k samples (most
  plausible first), the one whose decomposition scores the best strict PSNR; its accuracy is the
  best moving-pixel accuracy among the k;
* **diversity**: the mean fraction of pixels on which two of the k samples differ, and the share
  of those differences that are in sign only (same axis);
* **neighbour guidance**: :func:`napari_afb.guidance_from_neighbors` on the synthesized blurry
  exposures just before and after each window (windows made with ``neighbors=True``);
* **a uniform direction, best of 4** (``uniform=True``): the one label over the whole image that
  decomposes best, the camera-shake guess that a predictor has to beat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..guidance import AXIS_OF_LABEL
from .evaluate import METRICS, _fmt, _jsonable, baseline, scores
from .window import Window

__all__ = ["GuidanceReport", "evaluate_guidance", "guidance_accuracy", "predictor_scores"]

KS = (1, 3, 5)
ACCURACY_KEYS = ("acc_all", "acc_moving", "axis_moving")


def guidance_accuracy(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Fractions right: all pixels, moving pixels (truth > 0), the axis on moving pixels. NaN
    where the truth has no moving pixel."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"guidance {pred.shape} and truth {truth.shape} differ in shape")
    moving = truth > 0
    n = int(moving.sum())
    right = pred == truth
    return {
        "acc_all": float(right.mean()),
        "acc_moving": float(right[moving].mean()) if n else math.nan,
        "axis_moving": float((AXIS_OF_LABEL[pred] == AXIS_OF_LABEL[truth])[moving].mean())
        if n
        else math.nan,
    }


def diversity(samples: np.ndarray) -> tuple[float, float]:
    """(mean fraction of pixels on which two samples differ, share of those differences that
    keep the axis: sign only). (0, nan) for a single sample or identical ones."""
    k = len(samples)
    if k < 2:
        return 0.0, math.nan
    differ, sign_only = [], []
    axes = AXIS_OF_LABEL[samples]
    for i in range(k):
        for j in range(i + 1, k):
            d = samples[i] != samples[j]
            differ.append(d.mean())
            if d.any():
                sign_only.append((axes[i] == axes[j])[d].mean())
    return float(np.mean(differ)), float(np.mean(sign_only)) if sign_only else math.nan


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def predictor_scores(model, windows: Sequence[Window], *, device: str = "cpu", seed: int = 0):
    """Guidance accuracy of the predictor on windows, without decomposing (for validation during
    training): mean ``acc_moving`` / ``acc_all`` of the first sample, best-of-k ``acc_moving``,
    ``axis_moving`` and the sample diversity."""
    from ..predict import predict_guidance

    rows = []
    for i, win in enumerate(windows):
        samples = predict_guidance(win.blurry, max(KS), seed=seed + i, model=model, device=device)
        accs = [guidance_accuracy(s, win.guidance) for s in samples]
        row = {"acc_all": accs[0]["acc_all"], "acc_moving": accs[0]["acc_moving"]}
        row["axis_moving"] = accs[0]["axis_moving"]
        for k in KS:
            row[f"acc_moving_best{k}"] = max((a["acc_moving"] for a in accs[:k]), default=math.nan)
        row["diversity"] = diversity(samples)[0]
        rows.append(row)
    return {key: _mean([r[key] for r in rows]) for key in rows[0]} if rows else {}


@dataclass
class GuidanceReport:
    """Mean decomposition scores per guidance source (``rows``: name -> :data:`METRICS`), mean
    guidance accuracy per source (``accuracy``: name -> :data:`ACCURACY_KEYS`), diversity."""

    rows: dict[str, dict[str, float]]
    accuracy: dict[str, dict[str, float]]
    diversity: float = math.nan
    sign_only: float = math.nan
    n_cases: int = 0
    seconds: float = 0.0
    cases: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return _jsonable(
            {
                "n_cases": self.n_cases,
                "seconds": self.seconds,
                "decomposition": self.rows,
                "guidance_accuracy": self.accuracy,
                "diversity": {"differ": self.diversity, "sign_only": self.sign_only},
                "cases": self.cases,
            }
        )

    def table(self) -> str:
        head = ["guidance", "PSNR", "SSIM", "PSNR agnostic", "SSIM agnostic"]
        body = [
            [name] + [_fmt(r[k], "psnr" if "psnr" in k else "ssim") for k in METRICS]
            for name, r in self.rows.items()
        ]
        lines = [f"decomposition, {self.n_cases} windows (means)"]
        lines += _aligned([head, *body])
        head = ["guidance", "right (all px)", "right (moving px)", "axis right (moving)"]
        body = [
            [name] + [_fmt(a[k], "ssim") for k in ACCURACY_KEYS]
            for name, a in self.accuracy.items()
        ]
        lines += ["", "guidance accuracy (fraction of pixels)"]
        lines += _aligned([head, *body])
        if not math.isnan(self.diversity):
            lines.append(
                f"\nsample diversity: two samples differ on {self.diversity:.1%} of pixels; "
                f"{self.sign_only:.1%} of those differences are in sign only"
            )
        return "\n".join(lines)

    __str__ = table


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
        for r in rows
    ]


def evaluate_guidance(
    decomposer,
    windows: Sequence[Window],
    *,
    predictor=None,
    neighbors: bool = True,
    uniform: bool = True,
    device: str = "cpu",
    seed: int = 0,
    progress: bool | Callable[[int, int], None] = False,
) -> GuidanceReport:
    """Decompose every window with each guidance source and score it (see the module docstring).

    decomposer : the decomposer module; predictor : the predictor module (None: no predicted
    rows); neighbors : score neighbour guidance on windows that carry their neighbours.
    """
    from ..api import decompose
    from ..flow import guidance_from_neighbors
    from ..predict import predict_guidance

    def run(win, labels):
        pred = decompose(win.blurry, labels, model=decomposer, device=device, tile=0)
        return scores(np.clip(pred.astype(np.float32), 0, 1), win.frames)

    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(windows), unit="window", desc="evaluate guidance")
    start = time.perf_counter()
    per_row: dict[str, list[dict]] = {}
    per_acc: dict[str, list[dict]] = {}
    div, sign_only, cases = [], [], []
    for i, win in enumerate(windows):
        truth = np.asarray(win.frames, np.float32)
        case = {"source": win.source}
        per_row.setdefault("blurry baseline", []).append(scores(baseline(win), truth))
        per_row.setdefault("true guidance", []).append(run(win, win.guidance))
        if predictor is not None:
            samples = predict_guidance(
                win.blurry, max(KS), seed=seed + i, model=predictor, device=device
            )
            results = [run(win, s) for s in samples]
            accs = [guidance_accuracy(s, win.guidance) for s in samples]
            for k in KS:
                best = max(range(k), key=lambda j: results[j]["psnr"])
                per_row.setdefault(f"predicted, best of {k}", []).append(results[best])
                best_acc = max(range(k), key=lambda j: _nan_low(accs[j]["acc_moving"]))
                per_acc.setdefault(f"predicted, best of {k}", []).append(accs[best_acc])
            d, s = diversity(samples)
            div.append(d)
            sign_only.append(s)
            case["predicted_psnr"] = [r["psnr"] for r in results]
        if neighbors and win.neighbors is not None:
            prev, nxt = win.neighbors
            labels = guidance_from_neighbors(prev, win.blurry, nxt)
            per_row.setdefault("neighbouring frames", []).append(run(win, labels))
            per_acc.setdefault("neighbouring frames", []).append(
                guidance_accuracy(labels, win.guidance)
            )
        if uniform:
            maps = [np.full(win.guidance.shape, label, np.uint8) for label in (1, 2, 3, 4)]
            results = [run(win, m) for m in maps]
            best = max(range(4), key=lambda j: results[j]["psnr"])
            per_row.setdefault("uniform direction, best of 4", []).append(results[best])
            accs = [guidance_accuracy(m, win.guidance) for m in maps]
            best_acc = max(range(4), key=lambda j: _nan_low(accs[j]["acc_moving"]))
            per_acc.setdefault("uniform direction, best of 4", []).append(accs[best_acc])
        case["true_psnr"] = per_row["true guidance"][-1]["psnr"]
        case["baseline_psnr"] = per_row["blurry baseline"][-1]["psnr"]
        cases.append(case)
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(i + 1, len(windows))
    if bar is not None:
        bar.close()
    rows = {n: {k: _mean([r[k] for r in rs]) for k in METRICS} for n, rs in per_row.items()}
    acc = {n: {k: _mean([a[k] for a in rs]) for k in ACCURACY_KEYS} for n, rs in per_acc.items()}
    return GuidanceReport(
        rows,
        acc,
        diversity=_mean(div) if div else math.nan,
        sign_only=_mean(sign_only) if sign_only else math.nan,
        n_cases=len(windows),
        seconds=time.perf_counter() - start,
        cases=cases,
    )


def _nan_low(v: float) -> float:
    return -1.0 if math.isnan(v) else v
