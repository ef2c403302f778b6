"""A PNG of the training curves, drawn with Pillow (no plotting library needed).

Decomposer: left, the training loss as a ratio to the blurry baseline's loss on the same batch
(the identity plateau is 1.0, drawn dashed); right, validation PSNR of the model and of the blurry
baseline. Predictor: left, the axis and sign losses; right, validation accuracy of the guidance
on moving pixels (first sample and best of 5).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

W, H, PAD = 480, 300, 44


def read_log(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _panel(title: str, series: dict[str, tuple[list, list, tuple]], hline: float | None = None):
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    xs = [x for s in series.values() for x in s[0]]
    ys = [y for s in series.values() for y in s[1]] + ([hline] if hline is not None else [])
    d.text((PAD, 8), title, fill="black")
    if not xs:
        d.text((PAD, H // 2), "no data yet", fill="gray")
        return img
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    margin = 0.05 * (y1 - y0)
    y0, y1 = y0 - margin, y1 + margin

    def at(x, y):
        return (
            PAD + (x - x0) / (x1 - x0) * (W - 2 * PAD),
            H - PAD - (y - y0) / (y1 - y0) * (H - 2 * PAD),
        )

    d.rectangle([PAD, PAD, W - PAD, H - PAD], outline="black")
    for frac in (0.0, 0.5, 1.0):
        y = y0 + frac * (y1 - y0)
        d.text((2, at(x0, y)[1] - 6), f"{y:.3g}", fill="black")
        x = x0 + frac * (x1 - x0)
        d.text((at(x, y0)[0] - 10, H - PAD + 6), f"{x:.0f}", fill="black")
    d.text((W // 2 - 10, H - 16), "step", fill="black")
    if hline is not None:
        ya = at(x0, hline)[1]
        for xa in range(PAD, W - PAD, 12):
            d.line([(xa, ya), (min(xa + 6, W - PAD), ya)], fill="gray")
    for i, (name, (sx, sy, colour)) in enumerate(series.items()):
        pts = [at(x, y) for x, y in zip(sx, sy)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for p in pts[-1:] if len(pts) > 1 else pts:
            d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
        d.text((W - PAD - 150, PAD + 6 + 14 * i), name, fill=colour)
    return img


def plot_training_log(log_path: str | Path, png_path: str | Path) -> Path:
    """Draw the curves of a training log (JSON lines) into a PNG; returns its path."""
    records = read_log(log_path)
    if any("sign" in r for r in records):
        left, right = _predictor_panels(records)
    else:
        left, right = _decomposer_panels(records)
    sheet = Image.new("RGB", (2 * W, H), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (W, 0))
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    sheet.save(tmp)
    tmp.replace(png_path)
    return png_path


def _series(records, key, colour):
    rows = [r for r in records if key in r]
    return ([r["step"] for r in rows], [r[key] for r in rows], colour)


def _predictor_panels(records):
    left = _panel(
        "training losses (axis cross-entropy, orientation-free sign)",
        {
            "axis": _series(records, "axis", (200, 30, 30)),
            "sign": _series(records, "sign", (30, 150, 60)),
        },
    )
    right = _panel(
        "validation: right labels on moving pixels",
        {
            "first sample": _series(records, "val_acc_moving", (30, 90, 200)),
            "best of 5": _series(records, "val_acc_moving_best5", (200, 120, 0)),
            "axis": _series(records, "val_axis_moving", (120, 120, 120)),
        },
    )
    return left, right


def _decomposer_panels(records):
    train = [r for r in records if "ratio" in r]
    val = [r for r in records if "val_psnr" in r]
    left = _panel(
        "training loss / blurry-baseline loss (1.0 = identity)",
        {"ratio": ([r["step"] for r in train], [r["ratio"] for r in train], (200, 30, 30))},
        hline=1.0,
    )
    right = _panel(
        "validation PSNR (dB)",
        {
            "model": ([r["step"] for r in val], [r["val_psnr"] for r in val], (30, 90, 200)),
            "blurry baseline": (
                [r["step"] for r in val],
                [r.get("val_baseline_psnr", float("nan")) for r in val],
                (120, 120, 120),
            ),
        },
    )
    return left, right
