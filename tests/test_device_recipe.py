"""The one-call GPU recipe (scripts/device_train.py), rehearsed on the CPU: the very flow a lent
GPU runs (data link, both trainings on time budgets, evaluation, fp16 conversion, split) with a
few steps of a small decomposer, then the join that brings the split weights back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_ARGS, perturbed_model

from napari_afb.weights import load_weights, save_weights

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the clips in ../shared/data")
def test_smoke_rehearsal_leaves_what_the_device_may_bring_back(tmp_path):
    init = tmp_path / "init.safetensors"
    args = {**SMALL_ARGS, "blur_cues": True}
    model = perturbed_model(0, "motion_deconv", head=(0.0, 0.0), **args)
    save_weights(model, init, architecture="motion_deconv", arch_args=args)
    out = tmp_path / "out"
    cmd = [
        sys.executable, "scripts/device_train.py", "--smoke", "--out", str(out),
        "--init", str(init), "--runs", str(tmp_path / "runs"), "--split-mib", "2.5",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    # The predictor (5.5 MiB in fp16) comes back in parts; the small decomposer in one piece.
    assert "predictor_fp16.safetensors.part00" in files
    assert "decomposer_fp16.safetensors" in files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] and summary["decomposer"]["steps"] == 2
    assert summary["predictor"]["steps"] == 2
    quality = json.loads((out / "quality.json").read_text())
    assert quality  # the evaluation ran and wrote its table
    for name in ("decomposer_log.jsonl", "predictor_log.jsonl"):
        assert any("val_" in line for line in (out / name).read_text().splitlines())

    joined = subprocess.run(
        [sys.executable, "scripts/device_train.py", "--join", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "predictor_fp16.safetensors" in joined.stdout
    predictor, info = load_weights(out / "predictor_fp16.safetensors")  # checksum verified
    assert info.role == "predictor" and info.metrics["dtype"] == "float16"
    decomposer, info = load_weights(out / "decomposer_fp16.safetensors")
    assert info.arch_args["blur_cues"] is True
