"""Quality benchmark of napari-afb on the validation split, and re-blur on real blurry photos.

Run from the repository root::

    .venv/bin/python benchmarks/bench_quality.py --weights D.safetensors --predictor P.safetensors
        [--windows 40] [--width 320] [--json PATH]

Without --weights / --predictor the packaged (or $NAPARI_AFB_*) weights are used; the predicted
rows are left out when no predictor can be found.

1. Decomposition quality on the validation split, the CC BY-NC co-tracker clips of
   ../shared/data (never trained on): fixed, seeded windows of 7 consecutive frames resized to
   ``--width``, blur synthesized as in training (flow-densified, linear light), each with the
   exposures just before and after it. PSNR/SSIM, strict time order and order-agnostic, for the
   blurry baseline, ground-truth guidance, predicted guidance best of 1/3/5, ``decompose(image)``
   with no guidance (the predictor's most plausible sample for seed 0), and guidance from the
   neighbouring exposures. Guidance accuracy and sample diversity beside them.
2. Re-blur consistency on real blurry photos (scikit-image's clock and the licence-plate photo of
   the OpenCV docs): PSNR between the input and the linear-light mean of ``decompose(image)``'s
   frames (with predicted guidance; a uniform direction when there is no predictor).

Prints tables and writes JSON (default ``benchmarks/results/quality_<host>.json``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import socket
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VAL_CLIPS = ROOT.parent / "shared" / "data" / "cotracker_gradio_videos"
PLATE = ROOT.parent / "shared" / "data" / "opencv_doc_debian" / "licenseplate_motion.jpg"


def _load(weights, role, device):
    from napari_afb.weights import WeightsError, cached_model

    try:
        model, info = cached_model(weights, device, role=role)
    except WeightsError as exc:
        if weights is not None or role == "decomposer":
            raise
        print(f"no {role}: {exc}")
        return None, None
    print(f"{role}: {info.summary()}")
    return model, info


def quality(decomposer, predictor, ppath, device, windows: int, width: int, seed: int) -> dict:
    from napari_afb import decompose
    from napari_afb.training.datasets import WindowSpec, open_clips, validation_windows
    from napari_afb.training.evaluate import METRICS, scores
    from napari_afb.training.evaluate_guidance import evaluate_guidance

    clips = open_clips([str(VAL_CLIPS)], 3.0)
    spec = WindowSpec(n_frames=int(decomposer.n_frames))
    wins, stats = validation_windows(clips, windows, spec, seed=seed, width=width, neighbors=True)
    print(f"validation windows: {stats.summary()} from {len(clips)} clips at width {width}")
    report = evaluate_guidance(
        decomposer, wins, predictor=predictor, device=str(device), progress=True
    )
    if predictor is not None:  # the one-call API: decompose(image), guidance predicted
        rows = []
        for win in wins:
            pred = decompose(
                win.blurry, model=decomposer, predictor_weights=ppath, device=str(device), tile=0
            )
            rows.append(scores(np.clip(pred, 0, 1), win.frames))
        report.rows["decompose(image), no guidance"] = {
            k: float(np.mean([r[k] for r in rows])) for k in METRICS
        }
    print(report.table())
    return {"windows": stats.summary(), "width": width, **report.to_dict()}


def reblur(decomposer, predictor, ppath, device) -> dict:
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio

    from napari_afb import decompose, io
    from napari_afb.images import to_rgb_float
    from napari_afb.samples import linear_mean

    photos = {"skimage clock": data.clock()}
    if PLATE.is_file():
        photos["licenseplate_motion.jpg"] = io.read_image(PLATE)
    out = {}
    for name, image in photos.items():
        t0 = time.perf_counter()
        if predictor is not None:
            frames = decompose(image, model=decomposer, predictor_weights=ppath, device=str(device))
            how = "predicted guidance"
        else:
            guidance = np.full(image.shape[:2], 4, np.uint8)
            frames = decompose(image, guidance, model=decomposer, device=str(device))
            how = "uniform right-down guidance"
        rgb, _, _ = to_rgb_float(image)
        mean = linear_mean(np.stack([to_rgb_float(f)[0] for f in frames]))
        value = float(peak_signal_noise_ratio(rgb, mean, data_range=1.0))
        out[name] = {
            "psnr_db": value,
            "guidance": how,
            "size": f"{image.shape[1]}x{image.shape[0]}",
            "seconds": time.perf_counter() - t0,
        }
        print(f"re-blur consistency, {name} ({how}): {value:.2f} dB")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", type=Path, help="decomposer weights")
    p.add_argument("--predictor", type=Path, help="predictor weights")
    p.add_argument("--windows", type=int, default=40)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from napari_afb.engine import select_device

    device = select_device(args.device)
    decomposer, dinfo = _load(args.weights, "decomposer", device)
    predictor, pinfo = _load(args.predictor, "predictor", device)
    ppath = pinfo.path if pinfo else None
    result = {
        "date": _dt.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {socket.gethostname()}",
        "device": str(device),
        "decomposer": dinfo.summary(),
        "predictor": pinfo.summary() if pinfo else None,
        "quality": quality(
            decomposer, predictor, ppath, device, args.windows, args.width, args.seed
        ),
        "reblur": reblur(decomposer, predictor, ppath, device),
    }
    path = args.json or ROOT / "benchmarks" / "results" / f"quality_{socket.gethostname()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
