"""The training module: synthesis physics, datasets, config, overfitting, resume, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_config

from napari_afb import models
from napari_afb.samples import linear_mean, linear_to_srgb
from napari_afb.training.config import ConfigError, load_config
from napari_afb.training.datasets import Clip, VideoWindows, WindowSpec, to_tensors
from napari_afb.training.losses import baseline_loss, decomposer_loss
from napari_afb.training.stills import StillsSource
from napari_afb.training.synthesis import Rejected, synthesize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]


def _translated(dx: float, dy: float, n: int = 7, size=(96, 112)) -> np.ndarray:
    """n frames of a real photo (scikit-image 'coffee', CC0) panning by (dx, dy) px per frame."""
    from skimage import data

    still = data.coffee()
    h, w = size
    frames = []
    for t in range(n):
        m = np.float32([[1, 0, t * dx - 60], [0, 1, t * dy - 60]])  # frame(x) = still(x + 60 - t d)
        frames.append(cv2.warpAffine(still, m, (w, h), flags=cv2.INTER_LINEAR))
    return np.stack(frames)


# --------------------------------------------------------------------------------- synthesis


def test_blurry_is_the_linear_light_mean_of_its_subframes():
    frames = _translated(3, 2)
    window, sub = synthesize(frames, rng=np.random.default_rng(0), return_subframes=True)
    assert sub.shape == (6 * 8 + 1, 96, 112, 3)
    assert np.allclose(linear_to_srgb(sub.mean(axis=0)), window.blurry, atol=1e-6)
    # the real frames are among the sub-frames, every 8th one
    assert np.allclose(linear_to_srgb(sub[::8]), frames / 255.0, atol=1e-5)
    assert np.allclose(window.frames, frames / 255.0)


@pytest.mark.parametrize(
    ("dx", "dy", "label"), [(3, 2, 4), (-3, 2, 3), (-2, -3, 2), (3, -2, 1), (3, 0, 1)]
)
def test_a_known_translation_gives_its_label(dx, dy, label):
    window = synthesize(_translated(dx, dy), rng=np.random.default_rng(0))
    inner = window.guidance[16:-16, 16:-16]
    assert np.mean(inner == label) > 0.95
    assert np.allclose(np.median(window.flow[16:-16, 16:-16], axis=(0, 1)), (dx, dy), atol=0.3)


def test_densified_blur_is_a_streak_not_ghosts():
    """Averaging the 7 raw frames of a fast pan gives ghost copies; the flow-densified blur is
    close to the blur of the exact continuous motion (rendered here with 49 exact positions)."""
    fast = _translated(6 / 8, 0, n=49)  # 6 px per frame step, 8 exact positions per step
    exact = linear_mean(fast / 255.0)
    frames = fast[::8]  # the 7 frames a video would give
    window = synthesize(frames, rng=np.random.default_rng(0))
    ghosts = linear_mean(frames / 255.0)
    c = np.s_[8:-8, 8:-8]
    err_dense = np.abs(window.blurry[c] - exact[c]).mean()
    err_ghost = np.abs(ghosts[c] - exact[c]).mean()
    assert err_dense < 0.6 * err_ghost, (err_dense, err_ghost)


def test_rejections_name_their_reason():
    with pytest.raises(Rejected) as exc:
        synthesize(_translated(0, 0))
    assert exc.value.reason == "too little motion"
    from skimage import data

    a = np.stack([cv2.resize(data.coffee(), (112, 96))] * 3)
    b = np.stack([cv2.resize(data.astronaut(), (112, 96))] * 4)
    with pytest.raises(Rejected) as exc:
        synthesize(np.concatenate([a, b]))
    assert exc.value.reason == "scene cut"


# --------------------------------------------------------------------------------- datasets


def test_video_clip_windows_are_deterministic_and_consistent(tmp_path):
    """Windows from a video the test writes: same (seed, epoch, index) -> same tensors; other
    epochs differ; the guidance always matches the labels of the (augmented) flow."""
    path = tmp_path / "pan.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (112, 96))
    for frame in _translated(3, 1, n=20):
        writer.write(frame[..., ::-1])
    writer.release()
    clip = Clip(path)
    assert clip.length == 20 and (clip.width, clip.height) == (112, 96)
    ds = VideoWindows([clip], WindowSpec(crop=64, margin=8), items_per_epoch=6, seed=3)
    a, b = ds[2], ds[2]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["blurry"], a["blurry"])
    assert a["frames"].shape == (7, 3, 64, 64) and a["guidance"].shape == (64, 64)
    assert ds.stats["kept"] >= 3
    # the pan is (3, 1) px/frame: after any flip/rotation/reversal one diagonal label dominates
    labels = np.bincount(a["guidance"].numpy().ravel(), minlength=5)
    assert labels[1:].max() > 0.9 * labels.sum()


@pytest.mark.shared_data
def test_shared_data_clips_open_with_correct_lengths():
    """Frame counts in containers can be off (box.mp4 claims 456 frames, 455 decode)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    box = Clip(SHARED / "opencv_doc_debian" / "box.mp4")
    assert box.length == 455
    last = box.read(box.length - 7, 7)
    assert last.shape == (7, 480, 640, 3)


# --------------------------------------------------------------------------------- config


def test_config_errors_name_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[data]\ncrops = 64\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) data.crops; known: batch_size"):
        load_config(cfg)
    cfg.write_text('[optim]\nsteps = "many"\n')
    with pytest.raises(ConfigError, match="optim.steps must be int"):
        load_config(cfg)
    cfg.write_text("[data]\ncrop = 100\n")
    with pytest.raises(ConfigError, match="multiple of 8"):
        load_config(cfg)
    cfg.write_text("[optim]\nema = 1.0\n")
    with pytest.raises(ConfigError, match=r"optim.ema 1.0: use a decay in \[0, 1\)"):
        load_config(cfg)
    cfg.write_text('[loss]\nwarped_form = "mse"\n')
    with pytest.raises(ConfigError, match="warped_form must be 'l1' or 'psnr'"):
        load_config(cfg)
    cfg.write_text("seed = 5\n[data]\ncrop = 64\n")
    c = load_config(cfg, {"optim.steps": 3})
    assert (c.seed, c.data.crop, c.optim.steps) == (5, 64, 3)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


# --------------------------------------------------------------------------------- learning


def test_a_tiny_model_overfits_a_handful_of_windows():
    """Four fixed 48x48 windows of stills moving along known paths; 100 AdamW steps bring the
    loss from the blurry baseline's (ratio 1.0 at the identity start) below 0.6 of it (measured
    0.39 at step 100)."""
    src = StillsSource(size=(48, 48), max_shift=12, foreground_prob=0.0)
    rng = np.random.default_rng(0)
    batch = [to_tensors(src.sample(rng)) for _ in range(4)]
    b = {k: torch.stack([item[k] for item in batch]) for k in batch[0]}
    onehot = torch.nn.functional.one_hot(b["guidance"], 5).permute(0, 3, 1, 2).float()
    torch.manual_seed(0)
    model = models.build(
        "motion_unet", widths=[16, 32, 64], enc_blocks=[1, 1, 2], dec_blocks=[1, 1]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    base = float(baseline_loss(b["blurry"], b["frames"], b["guidance"]))
    ratios = []
    for _ in range(100):
        opt.zero_grad()
        loss = decomposer_loss(model(b["blurry"], onehot), b["frames"], b["guidance"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ratios.append(float(loss.detach()) / base)
    assert ratios[0] == pytest.approx(1.0, abs=1e-3)
    assert ratios[-1] < 0.6, ratios[::10]


def test_training_run_writes_logs_checkpoint_weights_and_plot(tmp_path):
    from napari_afb.training.train import train
    from napari_afb.weights import load_weights

    result = train(load_config(tiny_config(tmp_path, "run", 4)), device="cpu", progress=False)
    out = result.out_dir
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "ratio" in r] == [1, 2, 3, 4]
    assert all(r["ratio"] > 0 and r["baseline"] > 0 for r in log if "ratio" in r)
    assert any("val_psnr" in r and "val_baseline_psnr" in r for r in log)
    model, info = load_weights(result.best_weights)
    assert info.metrics["step"] == 4 and "psnr" in info.metrics
    assert info.recipe["optim"]["steps"] == 4 and model.n_frames == 7
    assert (out / "checkpoint.pt").is_file() and (out / "curves.png").stat().st_size > 1000
    assert not list(out.glob(".*tmp*"))


def test_ema_weights_are_the_average_of_the_trained_ones_and_resume_exactly(tmp_path):
    """optim.ema: training itself is unchanged, what is validated and exported is the moving
    average ema += (1 - decay) (w - ema) over the steps' weights, the checkpoint keeps it, and a
    run stopped part way resumes to the same exported weights."""
    from napari_afb.training.train import train
    from napari_afb.weights import load_weights

    decay, steps = 0.7, 5
    plain = train(load_config(tiny_config(tmp_path, "plain", steps)), device="cpu", progress=False)
    cfg = tiny_config(tmp_path, "ema", steps)
    ckpt = tmp_path / "ema" / "checkpoint.pt"
    trained = []  # the weights after steps 1.. n-1, from the checkpoint written each step

    def keep(record):
        if "ratio" in record and record["step"] > 1:
            trained.append(torch.load(ckpt, weights_only=True)["model"])

    run = train(load_config(cfg, {"optim.ema": decay}), device="cpu", progress=False, callback=keep)
    assert run.param_digest == plain.param_digest  # the average does not touch training
    trained.append(torch.load(ckpt, weights_only=True)["model"])
    assert len(trained) == steps
    expected = {k: v.clone() for k, v in trained[0].items()}
    for weights in trained[1:]:
        for k, v in weights.items():
            if v.is_floating_point():
                expected[k] += (1 - decay) * (v - expected[k])
    exported = load_weights(run.last_weights)[0].state_dict()
    moved = 0
    for k, v in expected.items():
        assert torch.allclose(exported[k], v, atol=1e-6), k
        moved += not torch.equal(exported[k], trained[-1][k])
    assert moved > 0  # the exported weights are not simply the last step's
    assert load_weights(run.best_weights)[1].metrics["step"] == steps

    calls = iter(range(100))
    stopped = train(
        load_config(tiny_config(tmp_path, "stopped", steps), {"optim.ema": decay}),
        device="cpu",
        progress=False,
        should_stop=lambda: next(calls) >= 2,
    )
    assert stopped.cancelled and stopped.step == 2
    resumed = train(
        load_config(tmp_path / "stopped.json", {"optim.ema": decay}),
        resume=True,
        device="cpu",
        progress=False,
    )
    again = load_weights(resumed.last_weights)[0].state_dict()
    assert all(torch.equal(again[k], exported[k]) for k in exported)


def test_sampler_resumes_mid_epoch_with_the_same_keys():
    from napari_afb.training.train import EpochSampler

    def first(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    whole = first(EpochSampler(10, seed=1, rank=0, world=1, batch=3), 30)
    assert sampler_epochs(whole) == [0] * 9 + [1] * 9 + [2] * 9 + [3] * 3  # 3 batches/epoch
    assert first(EpochSampler(10, seed=1, rank=0, world=1, batch=3, start=4), 18) == whole[12:]
    ranks = [first(EpochSampler(10, seed=1, rank=r, world=2, batch=2), 4) for r in (0, 1)]
    assert not {k for k in ranks[0]} & {k for k in ranks[1]}  # ranks split each epoch


def sampler_epochs(keys):
    return [epoch for epoch, _ in keys]


def test_training_with_worker_processes_after_opencv_was_used(tmp_path):
    """Regression: a DataLoader worker forked from a process that had run OpenCV's threaded DIS
    flow hung in cv2.setNumThreads. Workers now start fresh (forkserver) and persist. Runs in a
    subprocess with a timeout, so a deadlock fails the test instead of hanging CI."""
    cfg = tiny_config(tmp_path, "workers", 3, workers=1, val_windows=0)
    code = (
        "import numpy as np, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_training import _translated\n"
        "from napari_afb.training.synthesis import synthesize\n"
        "from napari_afb.training.config import load_config\n"
        "from napari_afb.training.train import train\n"
        "synthesize(_translated(3, 2), rng=np.random.default_rng(0))  # OpenCV threads used\n"
        f"r = train(load_config({str(cfg)!r}), device='cpu', progress=False)\n"
        "print('steps', r.step)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "steps 3" in run.stdout


def _start_training(cfg: Path, *extra: str, **popen) -> subprocess.Popen:
    """`napari-afb train decomposer --config cfg --device cpu [extra]` as a real process."""
    command = [sys.executable, "-m", "napari_afb", "train", "decomposer", "--config", str(cfg)]
    return subprocess.Popen(
        [*command, "--device", "cpu", *extra], stdout=subprocess.DEVNULL, cwd=ROOT, **popen
    )


def _wait_for_steps(proc: subprocess.Popen, log: Path, steps: int) -> None:
    """Until ``log`` holds ``steps`` step records (at most 2 minutes); the run must still run."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and sum('"ratio"' in x for x in log.read_text().splitlines()) >= steps:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be stopped"


def test_killed_run_resumes_exactly(tmp_path):
    """A run killed (SIGKILL) part way and resumed ends with exactly the parameters of an
    uninterrupted run with the same seed. Every run is a real `napari-afb train` process, as a
    user's are, so nothing the test process did before (other tests' thread pools, a Dask
    cluster) can make the runs differ."""
    from napari_afb.weights import load_weights, state_digest

    steps = 8
    whole_cfg = tiny_config(tmp_path, "whole", steps)
    assert _start_training(whole_cfg).wait(timeout=300) == 0

    cfg = tiny_config(tmp_path, "killed", steps)
    log = tmp_path / "killed" / "log.jsonl"
    proc = _start_training(cfg, stderr=subprocess.DEVNULL)
    _wait_for_steps(proc, log, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert 0 < ckpt["step"] < steps
    assert _start_training(cfg, "--resume").wait(timeout=300) == 0

    def digest(run: str) -> str:
        model, info = load_weights(tmp_path / run / "last.safetensors")
        assert info.metrics["step"] == steps
        return state_digest(model.state_dict())

    assert digest("killed") == digest("whole")


def test_two_gloo_processes_stay_in_sync(tmp_path):
    """torchrun, two real processes, Gloo on the CPU: after training both ranks hold the same
    parameters, and only rank 0 wrote a checkpoint and weights."""
    cfg = tiny_config(tmp_path, "ddp", 3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(29500 + os.getpid() % 1000),
            str(ROOT / "tests" / "ddp_worker.py"),
            str(cfg),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    digests = [(tmp_path / f"digest_rank{r}.txt").read_text().split() for r in (0, 1)]
    assert digests[0] == digests[1] and digests[0][0] == "3"
    out = tmp_path / "ddp"
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "best.safetensors",
        "last.safetensors",
    ]
    steps = [
        json.loads(x)["step"]
        for x in (out / "log.jsonl").read_text().splitlines()
        if '"ratio"' in x
    ]
    assert steps == [1, 2, 3]  # one logger: rank 0


def _processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose environment holds ``marker`` (children inherit it, the
    DataLoader's forkserver and its workers included)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            env = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if marker.encode() in env and state != "Z":
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the processes")
def test_sigterm_stops_with_a_checkpoint_and_leaves_no_process(tmp_path):
    """`kill <pid>` on `napari-afb train`: the run stops at a step boundary with a resumable
    checkpoint, exits 143, and its data-loading worker and forkserver are gone too."""
    steps = 400
    cfg = tiny_config(tmp_path, "term", steps, workers=1, val_windows=0)
    marker = f"NAPARI_AFB_TEST_RUN={os.getpid()}_{time.time_ns()}"
    key, value = marker.split("=")
    proc = _start_training(cfg, stderr=subprocess.PIPE, text=True, env={**os.environ, key: value})
    _wait_for_steps(proc, tmp_path / "term" / "log.jsonl", 2)
    assert len(_processes_with(marker)) >= 2  # the trainer and at least its worker
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr
    ckpt = torch.load(tmp_path / "term" / "checkpoint.pt", weights_only=True)
    assert 2 <= ckpt["step"] < steps
    deadline = time.time() + 10
    while _processes_with(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []
    from napari_afb.training.train import train

    more = {"optim.steps": ckpt["step"] + 2}
    resumed = train(load_config(cfg, more), resume=True, device="cpu", progress=False)
    assert resumed.step == ckpt["step"] + 2
