"""Copy the best CPU-trained weights into the package as the provisional defaults.

    .venv/bin/python scripts/ship_default_weights.py [--decomposer FILE] [--predictor FILE]

Each file is checked and loaded, then written (fp16, same tensors and checksum) to
``napari_afb/weights/{decomposer,predictor}.safetensors`` with its metadata's ``status`` saying
that it is a provisional, CPU-trained default and what it gains. The figures come from
docs/MODEL_CARD.md (validation split, ``benchmarks/bench_quality.py``); rerun this script with
better files when they come (``napari-afb train --continue-default`` replaces them on its own).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from napari_afb.weights import DEFAULT_FILES, PACKAGE_WEIGHTS_DIR, load_weights, save_weights

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "docs" / "training"

#: What each shipped file is, with its measured gain (docs/MODEL_CARD.md, stage 5 and the
#: predictor's row of benchmarks/results/quality_warped_cpu.json).
STATUS = {
    "decomposer": {
        "file": TRAINING / "motion_deconv_warped_cpu.safetensors",
        "gain_db": 0.92,
        "status": "provisional, CPU-trained default (about 4.2 CPU-hours on 2 cores): +0.92 dB "
        "over the blurry baseline on the validation split with the true guidance (the bar for "
        "a final default is +1.5 dB); replaced when better weights are trained",
    },
    "predictor": {
        "file": TRAINING / "guidance_net_cpu.safetensors",
        "gain_db": 0.07,
        "status": "provisional, CPU-trained default (step 500 on the decomposer's window "
        "cache): 57 % of moving pixels on the right axis; the decomposer on its best of 5 "
        "samples gains +0.07 dB over the blurry baseline on the validation split (true "
        "guidance +0.92 dB), so give the guidance yourself where you can; replaced when better "
        "weights are trained",
    },
}


def ship(role: str, source: Path, out_dir: Path = PACKAGE_WEIGHTS_DIR) -> Path:
    model, info = load_weights(source)
    if info.role != role:
        raise SystemExit(f"{source} holds {info.role} weights, not {role} weights")
    spec = STATUS[role]
    metrics = {
        **info.metrics,
        "status": spec["status"],
        "gain_db": spec["gain_db"],
        "provisional": True,
        "shipped_from": f"docs/training/{source.name}",
    }
    path = save_weights(
        model,
        out_dir / DEFAULT_FILES[role],
        architecture=info.architecture,
        arch_args=info.arch_args,
        dtype=torch.float16,
        recipe=info.recipe,
        data=info.data,
        metrics=metrics,
    )
    print(f"{role}: {source.name} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decomposer", type=Path, default=STATUS["decomposer"]["file"])
    p.add_argument("--predictor", type=Path, default=STATUS["predictor"]["file"])
    args = p.parse_args()
    paths = [ship("decomposer", args.decomposer), ship("predictor", args.predictor)]
    total = sum(q.stat().st_size for q in paths) / 1e6
    if total > 30:
        raise SystemExit(f"the shipped weights take {total:.1f} MB, more than 30 MB")
    print(f"{total:.1f} MB in all")


if __name__ == "__main__":
    main()
