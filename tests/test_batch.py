"""Batch processing on Dask: ``napari_afb.batch`` and ``napari-afb batch`` on a real LocalCluster
of 2 worker processes, with small photos and clips the tests make from scikit-image photos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import cv2
import numpy as np
import pytest
from conftest import (
    PREDICTOR_ARGS,
    SMALL_ARGS,
    decode_video,
    perturbed_model,
    perturbed_predictor,
)
from distributed import Client, WorkerPlugin
from skimage import data

import napari_afb
from napari_afb import batch as batch_module
from napari_afb import cli, io
from napari_afb.batch import (
    BatchOptions,
    TorchThreads,
    batch,
    find_inputs,
    finished,
    plan_jobs,
    start_local_cluster,
)
from napari_afb.weights import save_weights

# The worker plugin below travels to the workers by value: they cannot import this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    cluster = start_local_cluster(2)
    c = Client(cluster)
    c.register_plugin(TorchThreads(1), name=TorchThreads.name)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "small.safetensors"
    return save_weights(perturbed_model(0), path, architecture="motion_unet", arch_args=SMALL_ARGS)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "predictor.safetensors"
    return save_weights(
        perturbed_predictor(0), path, architecture="guidance_net", arch_args=PREDICTOR_ARGS
    )


@pytest.fixture
def one_thread():
    """The references computed with one torch thread, as each test worker computes: sums
    split over other thread counts can round a pixel the other way."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def photo(k: int, size: int = 48) -> np.ndarray:
    """A crop of the 'astronaut' photo (public domain), different for every k."""
    y, x = 20 + 13 * k, 60 + 7 * k
    return np.ascontiguousarray(data.astronaut()[y : y + size, x : x + size + 16])


def write_clip(path: Path, frames: int = 7) -> Path:
    """A 10 fps clip: a patch of 'astronaut' moving right-down over 'coffee', 64 x 48."""
    background = cv2.resize(data.coffee(), (64, 48))
    patch = cv2.resize(data.astronaut()[50:250, 150:350], (16, 16))
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, 10, (64, 48))
    for t in range(frames):
        frame = background.copy()
        frame[10 + 2 * t : 26 + 2 * t, 10 + 3 * t : 26 + 3 * t] = patch
        writer.write(frame[..., ::-1].copy())
    writer.release()
    return path


def options(weights, **kw) -> BatchOptions:
    return BatchOptions(weights=str(weights), device="cpu", **kw)


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_outputs_equal_the_single_file_commands(
    tmp_path, client, weights, predictor, capsys, one_thread
):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    io.write_png(src / "a.png", photo(0))
    io.write_png(src / "sub" / "b.png", photo(1))
    guidance = np.zeros((48, 64), np.uint8)
    guidance[:, 32:] = 2
    io.write_guidance_png(src / "sub" / "b.guidance.png", guidance)  # used for b, not an input
    write_clip(src / "clip.avi")
    out = tmp_path / "out"
    # the 7-frame clip in 4 tasks over both workers; a.png takes the predictor's guidance
    # (AVI: Motion JPEG encodes the same frames to the same bytes; x264 through PyAV does not)
    opts = options(weights, chunk=2, predictor_weights=str(predictor), video_format="avi")
    summary = batch([src], out, opts, scheduler=client)
    assert summary.ok, summary.table()
    assert [(r.name, r.status, r.frames) for r in summary.results] == [
        ("a.png", "done", 1),
        ("clip.avi", "done", 7),
        ("sub/b.png", "done", 1),
    ]

    ref = tmp_path / "ref"
    w = ["--weights", weights, "--device", "cpu"]
    argv = ["decompose", src / "a.png", "--predictor", predictor, "--out", ref / "a", *w]
    assert cli.main([str(a) for a in argv]) == 0
    args = ["decompose", src / "sub" / "b.png", "--guidance", src / "sub" / "b.guidance.png"]
    assert cli.main([str(a) for a in [*args, "--out", ref / "b", *w]]) == 0
    assert (
        cli.main([str(a) for a in ["animate", src / "clip.avi", "--out", ref / "c.avi", *w]]) == 0
    )
    capsys.readouterr()
    same_files(out / "a", ref / "a")
    same_files(out / "sub" / "b", ref / "b")
    frames, fps = decode_video(out / "clip.avi")
    expected, expected_fps = decode_video(ref / "c.avi")
    assert frames.shape == (7 * 7, 48, 64, 3) and fps == pytest.approx(expected_fps)
    np.testing.assert_array_equal(frames, expected)
    assert not list(out.rglob("*partial*"))
    again = batch([src], out, opts, scheduler=client)
    assert [r.status for r in again.results] == ["skipped"] * 3


def test_a_direction_for_every_photo_equals_decompose(
    tmp_path, client, weights, capsys, one_thread
):
    io.write_png(tmp_path / "p.png", photo(2))
    summary = batch(
        tmp_path / "p.png",
        tmp_path / "out",
        options(weights, direction="left-up"),
        scheduler=client,
    )
    assert summary.ok
    argv = ["decompose", tmp_path / "p.png", "--direction", "left-up", "--out", tmp_path / "ref"]
    assert cli.main([str(a) for a in [*argv, "--weights", weights, "--device", "cpu"]]) == 0
    capsys.readouterr()
    same_files(tmp_path / "out" / "p", tmp_path / "ref")


def test_a_corrupt_file_is_reported_and_the_rest_complete(tmp_path, client, weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    io.write_png(src / "good.png", photo(3))
    (src / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    clip = write_clip(tmp_path / "whole.mp4", frames=4).read_bytes()
    (src / "cut.mp4").write_bytes(clip[: len(clip) // 3])  # truncated: no index
    write_clip(src / "ok.avi", frames=3)
    scheduler = client.scheduler.address
    argv = ["batch", src, "--out", tmp_path / "out", "--weights", weights, "--device", "cpu"]
    code = cli.main([str(a) for a in [*argv, "--direction", "right-up", "--scheduler", scheduler]])
    table = capsys.readouterr().out
    assert code == cli.EXIT_FAILED
    rows = {line.split()[1]: line for line in table.splitlines()[1:-1]}
    assert rows["bad.jpg"].startswith("failed") and "cannot read" in rows["bad.jpg"]
    assert rows["cut.mp4"].startswith("failed") and "cannot read" in rows["cut.mp4"]
    assert rows["good.png"].startswith("done") and rows["ok.avi"].startswith("done")
    assert "2 done, 0 skipped (already finished), 2 failed" in table
    assert (tmp_path / "out" / "good" / "frame_06.png").is_file()
    assert len(decode_video(tmp_path / "out" / "ok.mp4")[0]) == 21
    assert not (tmp_path / "out" / "bad").exists() and not (tmp_path / "out" / "cut.mp4").exists()


def test_rerun_after_a_kill_skips_finished_files_and_redoes_a_truncated_one(
    tmp_path, client, weights
):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(24):
        io.write_png(src / f"p{k:02d}.png", photo(k % 9, size=192))
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "napari_afb", "batch", src, "--out", out, "--weights", weights]
    argv += ["--device", "cpu", "--direction", "left-down", "--scheduler", client.scheduler.address]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([str(a) for a in argv], env=env, stderr=subprocess.PIPE, text=True)
    manifests = out / ".napari-afb-batch"
    deadline = time.monotonic() + 30
    while not (manifests.is_dir() and any(manifests.glob("*.json"))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    rc, err = proc.wait(timeout=30), proc.stderr.read()
    assert rc == cli.EXIT_INTERRUPTED, err
    assert "interrupted" in err
    assert not [p for p in out.rglob("*") if "partial" in p.name]
    kept = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/animation.gif")}
    assert 0 < len(kept) < 24

    opts = options(weights, direction="left-down")
    summary = batch([src], out, opts, scheduler=client)
    status = {r.name[:-4]: r.status for r in summary.results}
    assert summary.ok and all(status[name] == "skipped" for name in kept)
    assert sum(s == "done" for s in status.values()) == 24 - len(kept)
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/animation.gif")}.items() >= (
        kept.items()
    )
    # A finished output truncated on disk is redone; the rest is skipped.
    victim = out / "p03" / "frame_02.png"
    victim.write_bytes(victim.read_bytes()[:100])
    summary = batch([src], out, opts, scheduler=client)
    assert [r.name for r in summary.results if r.status == "done"] == ["p03.png"]
    assert summary.count("skipped") == 23
    assert io.read_image(victim).shape == (192, 208, 3)
    # Different options are a different output: redone.
    summary = batch(
        [src / "p00.png"], out, options(weights, direction="right-up"), scheduler=client
    )
    assert [r.status for r in summary.results] == ["done"]


def test_an_existing_output_not_made_by_batch_is_kept(tmp_path, client, weights):
    io.write_png(tmp_path / "p.png", photo(4))
    (tmp_path / "out" / "p").mkdir(parents=True)
    (tmp_path / "out" / "p" / "mine.txt").write_text("keep me")
    summary = batch(
        [tmp_path / "p.png"],
        tmp_path / "out",
        options(weights, direction="right-down"),
        scheduler=client,
    )
    assert summary.results[0].status == "failed" and "--overwrite" in summary.results[0].reason
    assert (tmp_path / "out" / "p" / "mine.txt").read_text() == "keep me"


def test_inputs_names_and_sidecars(tmp_path):
    (tmp_path / "in" / "deep").mkdir(parents=True)
    for name in [
        "a.png",
        "a.jpg",
        "v.mp4",
        "deep/c.tif",
        "a.guidance.png",
        "a.paths.json",
        ".hidden.png",
        "notes.txt",
    ]:
        (tmp_path / "in" / name).write_bytes(b"x")
    found = find_inputs([tmp_path / "in", str(tmp_path / "in" / "*.png")], tmp_path / "out")
    jobs = plan_jobs(found, tmp_path / "out", BatchOptions(video_format="avi"))
    names = {j.name: (j.kind, j.out.relative_to(tmp_path / "out").as_posix()) for j in jobs}
    assert names == {
        "a.jpg": ("photo", "a"),
        "a.png": ("photo", "a_png"),
        "deep/c.tif": ("photo", "deep/c"),
        "v.mp4": ("video", "v.avi"),
    }
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_inputs([tmp_path / "nothing*.png"], tmp_path / "out")
    with pytest.raises(ValueError, match="guidance must be one of"):
        BatchOptions(guidance="sideways").check()
    assert not finished(tmp_path / "out", jobs[0], BatchOptions().fingerprint())


def test_napari_afb_batch_is_the_function_also_after_importing_the_module():
    assert callable(napari_afb.batch) and callable(batch_module)
    assert napari_afb.batch.__doc__ is not None


def test_cli_batch_help_names_the_scheduler(capsys):
    with pytest.raises(SystemExit):
        cli.main(["batch", "--help"])
    text = capsys.readouterr().out
    assert "--scheduler" in text and "DASK_SCHEDULER_ADDRESS" in text and "--engine" in text


class KillOnce(WorkerPlugin):
    """Kills the worker process that starts the first task after ``marker`` appears."""

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing":
            try:
                os.unlink(self.marker)
            except FileNotFoundError:
                return
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_task_has_its_task_retried(tmp_path, client, weights):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        io.write_png(src / f"p{k}.png", photo(k + 5))
    write_clip(src / "clip.avi", frames=4)
    marker = tmp_path / "kill-once"
    marker.touch()
    client.register_plugin(KillOnce(str(marker)), name="kill-once")
    try:
        summary = batch(
            [src],
            tmp_path / "out",
            options(weights, chunk=2, direction="right-up"),
            scheduler=client,
        )
    finally:
        client.unregister_worker_plugin("kill-once")
    assert not marker.exists()  # a worker died in a task
    assert summary.ok, summary.table()
    assert [r.status for r in summary.results] == ["done"] * 4
    assert len(decode_video(tmp_path / "out" / "clip.mp4")[0]) == 28
    client.wait_for_workers(2, timeout=60)


def test_a_local_cluster_leaves_this_process_environment_alone(monkeypatch):
    """Dask's nannies set OMP_NUM_THREADS=1 for their workers in the parent's environment; a
    user's later subprocesses (training, exports) must not inherit it."""
    import os

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cluster = start_local_cluster(1)
    try:
        assert "OMP_NUM_THREADS" not in os.environ
    finally:
        cluster.close()
