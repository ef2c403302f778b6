"""Blur synthesis on the training device: the batched torch formulas against the numpy/OpenCV
windows they replaced, cached clip flows, and batches made step by step."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_config

from napari_afb.flow import backward_warp, dis_flow
from napari_afb.guidance import TRAINING_THRESHOLD, Augmentation, guidance_from_flow
from napari_afb.training.config import load_config
from napari_afb.training.datasets import Clip, WindowSpec
from napari_afb.training.device_data import ClipFlows, DeviceBatches
from napari_afb.training.synthesis import (
    SynthesisConfig,
    labels_from_flow,
    synthesize,
    synthesize_batch,
)

REFERENCE = Path(__file__).with_name("data") / "synthesis_reference.npz"
ALL_AUGMENTATIONS = [
    Augmentation(fx, fy, k, r)
    for fx in (False, True)
    for fy in (False, True)
    for k in range(4)
    for r in (False, True)
]


def _pan(dx: float, dy: float, n: int = 7, size=(96, 112), still=None) -> np.ndarray:
    """n frames of a real photo (scikit-image 'coffee', CC0) panning by (dx, dy) px per frame."""
    from skimage import data

    still = data.coffee() if still is None else still
    h, w = size
    out = []
    for t in range(n):
        m = np.float32([[1, 0, t * dx - 60], [0, 1, t * dy - 60]])
        out.append(cv2.warpAffine(still, m, (w, h), flags=cv2.INTER_LINEAR))
    return np.stack(out)


def test_torch_synthesis_matches_the_numpy_windows_it_replaced():
    """The reference was made by the numpy/OpenCV synthesis (commit 30de90d) on 7 real frames of
    bikes.mp4, with the DIS flows it used; given the same frames and flows the torch code makes
    the same window: blurry and sub-frames within 1e-5 (float32 rounding), the mean flow and
    the guidance exactly, the chained per-frame motion within 0.05 px (mean 1e-3 px)."""
    ref = np.load(REFERENCE)
    window, sub = synthesize(ref["frames"], flows=(ref["fwd"], ref["bwd"]), return_subframes=True)
    assert np.abs(window.blurry - ref["blurry"]).max() < 1e-5
    assert np.abs(sub[[3, 12, 20, 29, 45]] - ref["subframes"]).max() < 1e-5
    assert np.array_equal(window.flow, ref["flow"])
    assert np.array_equal(window.guidance, ref["guidance"])
    err = np.abs(window.motion - ref["motion"])
    assert err.max() < 0.05 and err.mean() < 1e-3
    # and the blur is not a copy of a frame: the reference holds real motion
    assert window.source["p95_motion"] > 2.0
    assert np.abs(window.blurry - ref["frames"][3] / 255).mean() > 0.01


def test_a_batch_is_its_windows_made_one_by_one_and_rejections_keep_their_reasons():
    from skimage import data

    good = [_pan(3, 2), _pan(-2, 1, still=data.chelsea())]
    static = _pan(0, 0)
    cut = np.concatenate([_pan(3, 2)[:3], _pan(3, 2, still=data.astronaut())[:4]])
    frames = [good[0], static, cut, good[1]]
    flows = [tuple(np.stack(f) for f in _flows(x)) for x in frames]
    batch = synthesize_batch(
        torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3),
        torch.from_numpy(np.stack([f for f, _ in flows])).permute(0, 1, 4, 2, 3),
        torch.from_numpy(np.stack([b for _, b in flows])).permute(0, 1, 4, 2, 3),
    )
    assert batch.kept == [0, 3]
    assert [r and r[0] for r in batch.reasons] == [None, "too little motion", "scene cut", None]
    for k, i in enumerate(batch.kept):
        one = synthesize(frames[i], flows=flows[i])
        assert torch.allclose(batch.blurry[k].permute(1, 2, 0), torch.from_numpy(one.blurry))
        assert torch.allclose(batch.motion[k].permute(0, 2, 3, 1), torch.from_numpy(one.motion))


def _flows(frames):
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    fwd = [dis_flow(grey[i], grey[i + 1]) for i in range(len(grey) - 1)]
    bwd = [dis_flow(grey[i + 1], grey[i]) for i in range(len(grey) - 1)]
    return fwd, bwd


def test_torch_labels_are_the_reference_rule():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 0.5, (3, 2, 20, 24)).astype(np.float32)
    flow[0, :, :5] = 0.0  # static pixels and exact ties on an axis
    flow[1, 0, :, :4] = 0.0
    got = labels_from_flow(torch.from_numpy(flow), TRAINING_THRESHOLD).numpy()
    for k in range(3):
        want = guidance_from_flow(flow[k].transpose(1, 2, 0), threshold=TRAINING_THRESHOLD)
        assert np.array_equal(got[k], want)


@pytest.mark.parametrize("aug", ALL_AUGMENTATIONS, ids=str)
def test_batched_torch_augmentation_equals_the_numpy_one(aug):
    rng = np.random.default_rng(1)
    image = rng.random((2, 12, 12, 3), dtype=np.float32)
    frames = rng.random((2, 5, 12, 12, 3), dtype=np.float32)
    flow = rng.normal(size=(2, 12, 12, 2)).astype(np.float32)
    motion = rng.normal(size=(2, 5, 12, 12, 2)).astype(np.float32)
    t = torch.from_numpy
    got = (
        aug.apply_image(t(image), batched=True),
        aug.apply_frames(t(frames), batched=True),
        aug.apply_flow(t(flow)),
        aug.apply_motion(t(motion)),
    )
    for k in range(2):
        want = (
            aug.apply_image(image[k]),
            aug.apply_frames(frames[k]),
            aug.apply_flow(flow[k]),
            aug.apply_motion(motion[k]),
        )
        for g, w in zip(got, want):
            assert np.array_equal(g[k].numpy(), w)


def _frame_folder(path: Path, frames: np.ndarray) -> Path:
    path.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(path / f"{i:03d}.png"), f[..., ::-1])
    return path


def test_clip_flows_are_computed_once_and_keyed_by_content_and_scale(tmp_path):
    frames = _pan(3, 1, n=10)
    clip = Clip(_frame_folder(tmp_path / "pan", frames))
    cache = tmp_path / "flows"
    flows = ClipFlows.build(clip, cache, workers=2, progress=False)
    assert flows.frames.shape == (10, 96, 112, 3) and flows.fwd.shape == (9, 96, 112, 2)
    assert np.array_equal(flows.frames.numpy(), frames)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    assert np.allclose(flows.fwd[4].float().numpy(), dis_flow(grey[4], grey[5]), atol=0.01)
    assert np.allclose(flows.bwd[4].float().numpy(), dis_flow(grey[5], grey[4]), atol=0.01)
    (folder,) = cache.iterdir()
    stamp = (folder / "fwd.npy").stat().st_mtime_ns
    again = ClipFlows.build(clip, cache, progress=False)
    assert again.folder == folder and (folder / "fwd.npy").stat().st_mtime_ns == stamp
    clip.scale = 0.5
    half = ClipFlows.build(clip, cache, workers=1, progress=False)
    assert half.folder != folder and half.frames.shape == (10, 48, 56, 3)
    cv2.imwrite(str(clip.files[0]), frames[0, ..., ::-1] // 2)  # the clip's content changed
    clip.scale = 1.0
    assert ClipFlows.build(clip, cache, workers=1, progress=False).folder != folder
    assert json.loads((folder / "meta.json").read_text())["frames"] == 10
    assert not list(cache.glob("*.partial"))


def test_device_batches_are_a_function_of_the_step_and_keep_the_windows_exact(tmp_path):
    clip = Clip(_frame_folder(tmp_path / "pan", _pan(3, 1, n=14)))
    flows = [ClipFlows.build(clip, tmp_path / "flows", workers=1, progress=False)]
    spec = WindowSpec(crop=48, margin=8, synthesis=SynthesisConfig(noise_std=0.01))
    data = DeviceBatches(flows, spec, batch_size=6, seed=2)
    a, b, c = data.batch(3), data.batch(3), data.batch(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blurry"], c["blurry"])
    ahead = data.batches(start=3, prefetch=2)  # made by a thread, still step by step
    assert next(ahead)["blurry"].equal(a["blurry"]) and next(ahead)["blurry"].equal(c["blurry"])
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name == "afb-device-batches"]
    assert next(data.batches(start=4, prefetch=0))["blurry"].equal(c["blurry"])
    assert a["blurry"].shape == (6, 3, 48, 48) and a["frames"].shape == (6, 7, 3, 48, 48)
    assert a["motion"].shape == (6, 7, 2, 48, 48) and a["guidance"].dtype == torch.int64
    assert data.stats["kept"] >= 12
    # The pan is (3, 1) px per frame: after any flip/rotation/reversal one diagonal dominates,
    # and every frame is the middle frame moved by its motion (the augmented motion is exact).
    for k in range(6):
        labels = np.bincount(a["guidance"][k].numpy().ravel(), minlength=5)
        assert labels[1:].max() > 0.9 * labels.sum()
        frames = a["frames"][k].permute(0, 2, 3, 1).numpy()
        motion = a["motion"][k].permute(0, 2, 3, 1).numpy()
        inner = np.s_[12:-12, 12:-12]
        for t in (0, 6):
            moved = backward_warp(frames[3], motion[t])
            assert np.abs(moved[inner] - frames[t][inner]).mean() < 0.02
            assert np.abs(frames[3][inner] - frames[t][inner]).mean() > 0.04


def test_a_camera_path_moves_a_static_clip_and_its_motion_is_exact(tmp_path):
    """data.camera_motion: a clip of a still photo has nothing to learn from (every window is
    rejected as static); cut along camera paths, each window's motion is the path's whole-pixel
    offset from the middle frame, uniform over the crop, and every frame is the middle frame
    moved by it."""
    from skimage import data as skdata

    photo = skdata.astronaut()
    still = np.repeat(photo[None, 100:260, 100:280], 10, axis=0)  # 10 identical 160x180 frames
    clip = Clip(_frame_folder(tmp_path / "still", still))
    flows = [ClipFlows.build(clip, tmp_path / "flows", workers=1, progress=False)]
    spec = WindowSpec(crop=64, margin=8, synthesis=SynthesisConfig(noise_std=0.0, jpeg_prob=0.0))
    with pytest.raises(RuntimeError, match="no usable window"):
        DeviceBatches(flows, spec, batch_size=2, seed=0, augment=False).batch(0)
    moving = DeviceBatches(
        flows, spec, batch_size=6, seed=0, augment=False, camera_motion=1.0, camera_speed=3.0
    )
    batch = moving.batch(0)
    inner = np.s_[8:-8, 8:-8]
    for k in range(6):
        motion = batch["motion"][k].permute(0, 2, 3, 1).numpy()  # (7, h, w, 2) as (dx, dy)
        per_frame = motion[(slice(None), *inner)].reshape(7, -1, 2)
        assert np.abs(per_frame - per_frame.mean(axis=1, keepdims=True)).max() < 0.05
        offsets = per_frame.mean(axis=1)
        assert np.abs(offsets - np.round(offsets)).max() < 0.05 and np.abs(offsets[3]).max() < 0.05
        assert np.abs(offsets).max() >= 1  # a window that was kept moves
        frames = batch["frames"][k].permute(0, 2, 3, 1).numpy()
        for t in (0, 6):
            moved = backward_warp(frames[3], motion[t])
            assert np.abs(moved[inner] - frames[t][inner]).mean() < 0.01
    for span in [(0, 5), (3, 40)]:
        path = moving.camera_path(np.random.default_rng(1), span)
        assert path.shape == (7, 2) and path.min() == 0
        assert (path.max(axis=0) <= np.array(span)).all()


def test_too_small_clips_are_refused_with_the_crop_named(tmp_path):
    clip = Clip(_frame_folder(tmp_path / "pan", _pan(3, 1, n=8)))
    flows = [ClipFlows.build(clip, tmp_path / "flows", workers=1, progress=False)]
    with pytest.raises(ValueError, match="smaller than the 112-px region of a 96-px crop"):
        DeviceBatches(flows, WindowSpec(crop=96, margin=8), batch_size=2)


def test_a_run_with_device_synthesis_trains_and_resumes_exactly(tmp_path):
    from napari_afb.training.train import train

    folder = _frame_folder(tmp_path / "pan", _pan(3, 1, n=12))

    def config(name, steps):
        extra = {"videos": [str(folder)], "synthesis": "device", "stills_fraction": 0.5}
        flows = {"flow_cache_dir": str(tmp_path / "flows"), "workers": 1, "val_windows": 0}
        return load_config(tiny_config(tmp_path, name, steps, **extra, **flows))

    whole = train(config("whole", 4), device="cpu", progress=False)
    log = [json.loads(x) for x in (whole.out_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "ratio" in r] == [1, 2, 3, 4]
    last = [r for r in log if "ratio" in r][-1]
    assert last["windows"]["kept"] >= 1  # the video windows kept and rejected, by reason
    first = train(config("split", 4), device="cpu", progress=False, should_stop=_after(2))
    assert first.cancelled and first.step == 2
    resumed = train(config("split", 4), resume=True, device="cpu", progress=False)
    assert resumed.step == 4 and resumed.param_digest == whole.param_digest


def _after(n: int):
    calls = iter(range(10**6))
    return lambda: next(calls) >= n


def test_device_synthesis_refuses_a_window_cache(tmp_path):
    from napari_afb.training.config import ConfigError

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": {"synthesis": "device", "cache_windows": 10}}))
    with pytest.raises(ConfigError, match="cache_windows = 0"):
        load_config(path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (none on this machine)")
def test_cuda_batches_match_the_cpu_ones(tmp_path):
    clip = Clip(_frame_folder(tmp_path / "pan", _pan(3, 1, n=14)))
    flows = [ClipFlows.build(clip, tmp_path / "flows", workers=1, progress=False)]
    spec = WindowSpec(crop=48, margin=8)
    cpu = DeviceBatches(flows, spec, batch_size=4, seed=2).batch(1)
    gpu_flows = [ClipFlows(flows[0].folder)]
    gpu = DeviceBatches(gpu_flows, spec, batch_size=4, seed=2).to("cuda").batch(1)
    for k in ("blurry", "frames", "motion"):
        assert gpu[k].device.type == "cuda"
        assert torch.allclose(gpu[k].cpu(), cpu[k], atol=2e-3), k
