"""Training and evaluating the guidance predictor: its loss, a tiny model learning, the training
loop and CLI for the predictor role, and the guidance-source evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import perturbed_model, perturbed_predictor

from napari_afb import cli, models
from napari_afb.guidance import Augmentation
from napari_afb.training.config import load_config
from napari_afb.training.datasets import Clip, WindowSpec, to_tensors, validation_windows
from napari_afb.training.evaluate_guidance import (
    diversity,
    evaluate_guidance,
    guidance_accuracy,
)
from napari_afb.training.losses import predictor_loss
from napari_afb.training.stills import StillsSource


def _batch(n=4, size=48, seed=0):
    src = StillsSource(size=(size, size), max_shift=12, foreground_prob=0.0)
    rng = np.random.default_rng(seed)
    items = [to_tensors(src.sample(rng)) for _ in range(n)]
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


def test_predictor_loss_does_not_care_which_way_time_ran():
    labels = _batch()["guidance"]
    logits = torch.randn(
        len(labels), 4, *labels.shape[1:], generator=torch.Generator().manual_seed(0)
    )
    rev = Augmentation(reverse=True)
    reversed_labels = torch.from_numpy(
        np.stack([rev.apply_guidance(g) for g in labels.numpy()]).astype(np.int64)
    )
    a, pa = predictor_loss(logits, labels)
    b, pb = predictor_loss(logits, reversed_labels)
    assert torch.allclose(a, b) and torch.allclose(pa["sign"], pb["sign"])
    # ...but it does care about relative signs: flipping half the image costs
    mixed = labels.clone()
    mixed[:, :, : labels.shape[2] // 2] = reversed_labels[:, :, : labels.shape[2] // 2]
    assert not torch.allclose(predictor_loss(logits, mixed)[0], a)


def test_predictor_loss_is_low_for_the_right_logits():
    labels = _batch()["guidance"]
    axis = torch.tensor([0, 1, 2, 1, 2])[labels]
    sign = torch.tensor([0.0, 1.0, -1.0, -1.0, 1.0])[labels]
    right = torch.cat(
        [8 * torch.nn.functional.one_hot(axis, 3).permute(0, 3, 1, 2).float(), -8 * sign[:, None]],
        dim=1,
    )  # fmt: skip  (the other global orientation)
    loss, parts = predictor_loss(right, labels)
    assert (
        float(loss) < 0.01 and float(parts["axis_acc"]) == 1.0 and float(parts["sign_acc"]) == 1.0
    )
    wrong, _ = predictor_loss(torch.zeros_like(right), labels)
    assert float(wrong) > 1.0  # log(3) + log(2) for a net that knows nothing


def test_a_tiny_predictor_learns_the_axis():
    """Eight 48x48 stills windows moving along known paths: 80 AdamW steps take the axis
    accuracy on moving pixels from near 0 (an untrained net calls everything static) to above
    0.75 (measured 0.03 -> 0.83)."""
    b = _batch(8)
    torch.manual_seed(0)
    model = models.build(
        "guidance_net", widths=[16, 32, 64], enc_blocks=[1, 1, 1], dec_blocks=[1, 1]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        opt.zero_grad()
        loss, parts = predictor_loss(model(b["blurry"]), b["guidance"])
        loss.backward()
        opt.step()
        first = first or float(parts["axis_acc"])
    assert first < 0.5 and float(parts["axis_acc"]) > 0.75, (first, float(parts["axis_acc"]))


def _config(tmp_path: Path, steps: int = 3, architecture: str = "guidance_net") -> Path:
    cfg = {
        "out_dir": str(tmp_path / "run"),
        "seed": 3,
        "log_every": 1,
        "val_every": 100,
        "checkpoint_every": 1,
        "model": {
            "architecture": architecture,
            "args": {"widths": [8, 16], "enc_blocks": [1, 1], "dec_blocks": [1]},
        },
        "data": {
            "stills": True, "crop": 32, "batch_size": 2, "items_per_epoch": 6, "workers": 0,
            "val_windows": 2,
        },
        "optim": {"steps": steps, "warmup_steps": 1, "lr": 1e-3},
    }  # fmt: skip
    path = tmp_path / "predictor.json"
    path.write_text(json.dumps(cfg))
    return path


def test_predictor_training_run_logs_validates_and_exports(tmp_path):
    from napari_afb.predict import predict_guidance
    from napari_afb.training.train import train
    from napari_afb.weights import load_weights

    result = train(load_config(_config(tmp_path)), device="cpu", progress=False)
    log = [json.loads(x) for x in (result.out_dir / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "sign" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["axis"] > 0 and 0 <= r["axis_acc"] <= 1 for r in steps)
    val = [r for r in log if "val_acc_moving_best5" in r]
    assert val and val[-1]["val_acc_moving_best5"] >= val[-1]["val_acc_moving_best1"]
    model, info = load_weights(result.best_weights)
    assert info.role == "predictor" and "acc_moving_best5" in info.metrics
    image = np.zeros((20, 30, 3), np.uint8)
    assert predict_guidance(image, 2, seed=0, weights=result.best_weights, device="cpu").shape == (
        2,
        20,
        30,
    )
    assert (result.out_dir / "curves.png").stat().st_size > 1000


def test_cli_refuses_a_config_of_the_other_role(tmp_path, capsys):
    code = cli.main(["train", "decomposer", "--config", str(_config(tmp_path))])
    assert code == 2
    assert "napari-afb train predictor" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_guidance_accuracy_and_diversity_by_hand():
    truth = np.array([[0, 1, 1, 2]], np.uint8)
    pred = np.array([[0, 1, 3, 1]], np.uint8)
    acc = guidance_accuracy(pred, truth)
    assert acc["acc_all"] == 0.5 and acc["acc_moving"] == pytest.approx(1 / 3)
    assert acc["axis_moving"] == pytest.approx(2 / 3)  # 3 is on 1's axis, 1 is not on 2's
    assert math.isnan(guidance_accuracy(pred, np.zeros_like(truth))["acc_moving"])
    d, sign_only = diversity(np.stack([truth, pred]))
    assert d == 0.5 and sign_only == 0.5


@pytest.fixture(scope="module")
def video_clip(tmp_path_factory):
    """A 30-frame clip: 'astronaut' panning right-down by (3, 2) px per frame, 96x72."""
    from skimage import data

    path = tmp_path_factory.mktemp("clip") / "pan.avi"
    still = data.astronaut()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 72))
    for t in range(30):
        crop = still[100 + 2 * t : 172 + 2 * t, 100 + 3 * t : 196 + 3 * t]
        writer.write(np.ascontiguousarray(crop[..., ::-1]))
    writer.release()
    return path


def test_validation_windows_carry_their_neighbouring_exposures(video_clip):
    clip = Clip(video_clip)
    windows, stats = validation_windows([clip], 2, WindowSpec(n_frames=7), width=96, neighbors=True)
    assert len(windows) == 2, stats.summary()
    for w in windows:
        prev, nxt = w.neighbors
        assert prev.shape == nxt.shape == w.blurry.shape
        assert not np.allclose(prev, w.blurry) and not np.allclose(nxt, w.blurry)
        assert w.source["start"] >= 7


def test_evaluate_guidance_reports_every_source(video_clip):
    windows, _ = validation_windows(
        [Clip(video_clip)], 2, WindowSpec(n_frames=7), width=96, neighbors=True
    )
    report = evaluate_guidance(
        perturbed_model(0), windows, predictor=perturbed_predictor(0), device="cpu"
    )
    names = list(report.rows)
    assert names == [
        "blurry baseline", "true guidance", "predicted, best of 1", "predicted, best of 3",
        "predicted, best of 5", "neighbouring frames", "uniform direction, best of 4",
    ]  # fmt: skip
    # the clip pans right-down everywhere: the best uniform direction is label 4 on all pixels
    assert report.accuracy["uniform direction, best of 4"]["acc_moving"] > 0.9
    psnr = [report.rows[f"predicted, best of {k}"]["psnr"] for k in (1, 3, 5)]
    assert psnr[0] <= psnr[1] <= psnr[2]
    acc = [report.accuracy[f"predicted, best of {k}"]["acc_moving"] for k in (1, 3, 5)]
    assert acc[0] <= acc[1] <= acc[2]
    # the clip pans right-down: neighbour guidance finds label 4 on most moving pixels
    assert report.accuracy["neighbouring frames"]["acc_moving"] > 0.8
    assert 0 < report.diversity <= 1 and report.sign_only == 1.0
    assert "best of 5" in report.table() and report.to_dict()["n_cases"] == 2
    assert report.rows["true guidance"]["psnr"] != report.rows["blurry baseline"]["psnr"]


def test_predictor_trains_under_torchrun_with_two_gloo_processes(tmp_path):
    """The predictor role through the same DistributedDataParallel path as the decomposer: two
    real processes end with identical parameters, rank 0 alone logs and exports."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cfg = _config(tmp_path, steps=2)
    run = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(30500 + os.getpid() % 1000),
            str(root / "tests" / "ddp_worker.py"), str(cfg), str(tmp_path),
        ],
        capture_output=True, text=True, timeout=300, cwd=root,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    digests = [(tmp_path / f"digest_rank{r}.txt").read_text().split() for r in (0, 1)]
    assert digests[0] == digests[1] and digests[0][0] == "2"
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in log if '"sign"' in x] == [1, 2]


def test_a_time_limit_stops_with_a_checkpoint_and_resume_finishes(tmp_path):
    from napari_afb.training.train import train

    cfg = load_config(_config(tmp_path, steps=50))
    first = train(cfg, device="cpu", progress=False, max_minutes=1e-9)  # stops at once
    assert first.timed_out and not first.cancelled and first.step < 50
    assert (first.out_dir / "checkpoint.pt").is_file() and first.last_weights.is_file()
    log = (first.out_dir / "log.jsonl").read_text()
    assert "time limit" in log
    cfg.optim.steps = 3
    done = train(cfg, resume=True, device="cpu", progress=False)
    assert done.step == 3 and not done.timed_out


def test_convert_writes_fp16_weights_that_predict_the_same(tmp_path, capsys):
    from conftest import PREDICTOR_ARGS

    from napari_afb.predict import predict_guidance
    from napari_afb.weights import load_weights, save_weights

    src = save_weights(
        perturbed_predictor(0), tmp_path / "p32.safetensors", architecture="guidance_net",
        arch_args=PREDICTOR_ARGS, metrics={"acc": 0.5},
    )  # fmt: skip
    out = tmp_path / "p16.safetensors"
    assert cli.main(["convert", str(src), "--out", str(out)]) == 0
    model, info = load_weights(out)
    assert info.metrics["acc"] == 0.5 and info.metrics["dtype"] == "float16"
    assert out.stat().st_size < 0.6 * src.stat().st_size
    image = np.ascontiguousarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), np.uint8))
    a = predict_guidance(image, 3, seed=1, weights=src, device="cpu")
    b = predict_guidance(image, 3, seed=1, weights=out, device="cpu")
    assert np.mean(a == b) > 0.97  # fp16 rounding may move a few boundary pixels
    assert cli.main(["convert", str(src), "--out", str(out)]) == 2  # exists: refused
    assert "--overwrite" in capsys.readouterr().err
