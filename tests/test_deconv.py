"""The motion-deconvolution decomposer and what trains it: true per-frame motion in the training
windows (video and stills), its augmentation, the motion loss, the window cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import perturbed_model

from napari_afb import engine, models
from napari_afb.flow import backward_warp
from napari_afb.guidance import Augmentation
from napari_afb.models.decomposer import warp
from napari_afb.models.deconv import deconvolve, trajectory
from napari_afb.models.layers import linear_to_srgb, srgb_to_linear
from napari_afb.training.losses import motion_loss

SMALL = {"n_frames": 7, "widths": [8, 16, 32], "enc_blocks": [1, 1, 1], "dec_blocks": [1, 1]}
CPU = torch.device("cpu")


def _psnr(a, b) -> float:
    return float(-10 * np.log10(np.mean((np.asarray(a) - np.asarray(b)) ** 2) + 1e-12))


def _photo(h=64, w=80, seed=0) -> torch.Tensor:
    """A crop of a real photo (scikit-image 'astronaut', public domain), (1, 3, h, w) sRGB."""
    from skimage import data

    y, x = 60 + 7 * seed, 150 + 5 * seed
    img = data.astronaut()[y : y + h, x : x + w] / 255.0
    return torch.from_numpy(img.transpose(2, 0, 1)).float()[None]


def _uniform_motion(n, h, w, dx, dy) -> torch.Tensor:
    """Offsets of a uniform translation by (dx, dy) per frame step, middle frame fixed."""
    steps = torch.arange(n, dtype=torch.float32) - n // 2
    m = torch.zeros(1, n, 2, h, w)
    m[:, :, 0] = steps.view(n, 1, 1) * dx
    m[:, :, 1] = steps.view(n, 1, 1) * dy
    return -m  # frame t shows what the middle frame had (t - mid) steps back along the motion


def _perturbed(seed=0, **kw) -> torch.nn.Module:
    model = perturbed_model(seed, "motion_deconv", head=(0.02, 0.3), **{**SMALL, **kw})
    with torch.no_grad():  # the blend: mostly the deconvolved frames, some of the other two
        model.blend_head.weight.normal_(0.0, 0.02)
        model.blend_head.bias.view(-1, 3)[:, 0] = 2.0
    return model


def _onehot(labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, 5).permute(0, 3, 1, 2).float()


def assert_tiles_agree(model, rgb, guidance, **tiling) -> None:
    """The model's frames, tiled with ``tiling`` (engine.decompose_iter's tile and overlap),
    are its whole-image frames within one uint8 level, and those differ from the input."""
    image = rgb.astype(np.float32) / 255
    run = engine.run
    whole = run(engine.decompose_iter(image, guidance, model=model, device=CPU, tile=0))
    tiled = run(engine.decompose_iter(image, guidance, model=model, device=CPU, **tiling))
    assert np.abs(whole - image[None]).mean() > 0.005
    assert np.abs(whole - tiled).max() < 1.5 / 255


# ------------------------------------------------------------------------------------- network


def test_untrained_network_returns_copies_and_predicts_no_motion():
    torch.manual_seed(0)
    model = models.build("motion_deconv", **SMALL).eval()
    image = _photo()
    guidance = _onehot(torch.randint(0, 5, (1, 64, 80)))
    with torch.no_grad():
        frames = model(image, guidance)
        motion = model(image, guidance, output="motion")
    assert frames.shape == (1, 7, 3, 64, 80)
    assert float(motion.abs().max()) == 0.0
    assert torch.allclose(frames, image[:, None].expand_as(frames), atol=1e-5)


def test_frames_are_blur_consistent_and_the_middle_offset_is_zero():
    model = _perturbed()
    image = _photo(seed=1)
    guidance = _onehot(torch.randint(0, 5, (1, 64, 80)))
    with torch.no_grad():
        frames = model(image, guidance)
        motion = model(image, guidance, output="motion")
    assert float(motion.abs().mean()) > 0.5  # it moves content by pixels
    assert float(motion[:, 3].abs().max()) == 0.0
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    mean = srgb_to_linear(frames).mean(dim=1)
    assert torch.allclose(mean, srgb_to_linear(image), atol=2e-3)
    assert float((frames[:, 0] - frames[:, -1]).abs().mean()) > 0.01  # the frames differ


def test_deconvolution_with_the_true_motion_sharpens_a_real_photo():
    """Blur a sharp photo along a known uniform motion (linear light, 49 sub-positions), then
    deconvolve with that motion: the latent is much nearer the sharp middle frame than the
    blurry input is, and the frames made from it beat the blurry baseline."""
    sharp = _photo(96, 96, seed=2)
    n, h, w = 7, 96, 96
    dense = _uniform_motion(49, h, w, 0.25, 0.125)  # 8 sub-steps per frame step of (2, 1) px
    lin = srgb_to_linear(sharp)
    blurry_lin = warp(lin, dense).mean(dim=1)
    motion = _uniform_motion(n, h, w, 2.0, 1.0)
    truth = linear_to_srgb(warp(lin, motion))[0]
    inner = np.s_[..., 12:-12, 12:-12]
    latent = deconvolve(blurry_lin, motion, iters=10)
    before = _psnr(linear_to_srgb(blurry_lin)[inner], sharp[inner])
    after = _psnr(linear_to_srgb(latent)[inner], sharp[inner])
    assert after > before + 3.0, (before, after)
    frames = linear_to_srgb(warp(latent, motion))[0]
    base = _psnr(linear_to_srgb(blurry_lin).expand_as(truth)[inner], truth[inner])
    assert _psnr(frames[inner], truth[inner]) > base + 2.0


def test_deconvolution_with_no_motion_and_no_prior_is_the_identity():
    """(With the prior it smooths a little; the frames' blur-consistent projection then gives
    back the input exactly where nothing moves, see the untrained-network test.)"""
    blurry = srgb_to_linear(_photo())
    still = torch.zeros(1, 7, 2, 64, 80)
    assert torch.allclose(deconvolve(blurry, still, iters=10, prior=0.0), blurry, atol=1e-6)
    assert torch.equal(deconvolve(blurry, still, iters=0), blurry)


def test_trajectory_interpolates_between_frames():
    motion = _uniform_motion(7, 4, 5, 2.0, -1.0)
    sub = trajectory(motion, 4)
    assert sub.shape == (1, 25, 2, 4, 5)
    assert torch.allclose(sub[:, ::4], motion)
    assert torch.allclose(sub[:, 1], 0.75 * motion[:, 0] + 0.25 * motion[:, 1])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="0 < step < 2"):
        models.build("motion_deconv", step=2.5)
    assert models.role_of("motion_deconv") == "decomposer"


@pytest.mark.parametrize(("tile", "overlap"), [(112, 48), (160, 64)])
def test_tiled_and_untiled_results_agree(rgb_image, random_guidance, tile, overlap):
    """The deconvolution has fixed steps (no global inner products), so tiles that hold its
    reach give what the whole image gives (within one uint8 level)."""
    model = _perturbed(3, motion_scale=1.0)
    guidance = random_guidance(rgb_image.shape[:2])
    assert_tiles_agree(model, rgb_image, guidance, tile=tile, overlap=overlap)


# ---------------------------------------------------------------------------- motion targets


def test_video_windows_carry_the_true_per_frame_motion():
    """A synthetic video of a textured photo translating by (+2, -1) px per frame: the chained
    flows give offsets near the true ones, and the middle frame warped by them is each frame."""
    from skimage import data

    from napari_afb.training.synthesis import synthesize

    big = data.astronaut()
    frames = np.stack([big[100 - t : 228 - t, 120 + 2 * t : 248 + 2 * t] for t in range(7)])
    window = synthesize(np.ascontiguousarray(frames))
    assert window.motion.shape == (7, 128, 128, 2)
    inner = np.s_[:, 16:-16, 16:-16]
    expected = np.zeros_like(window.motion)
    for t in range(7):
        expected[t] = (2.0 * (t - 3), -1.0 * (t - 3))
    err = np.abs(window.motion - expected)[inner]
    assert np.median(err) < 0.1, np.median(err)
    for t in (0, 6):
        warped = backward_warp(window.frames[3], window.motion[t])
        assert _psnr(warped[16:-16, 16:-16], window.frames[t][16:-16, 16:-16]) > 30


def test_stills_windows_carry_exact_motion_through_augmentation():
    from napari_afb.training.stills import StillsSource

    rng = np.random.default_rng(4)
    src = StillsSource(n_frames=7, size=(96, 96), substeps=8, max_shift=12, static_prob=0.0)
    window = src.sample(rng)
    assert float(np.abs(window.motion[0]).max()) > 0.5
    for aug in (Augmentation(True, False, 1, True), Augmentation(False, True, 3, False)):
        w = window.augmented(aug)
        for t in (0, 6):
            warped = backward_warp(w.frames[3], w.motion[t])
            inner = np.s_[8:-8, 8:-8]
            assert _psnr(warped[inner], w.frames[t][inner]) > 30
            assert _psnr(w.frames[3][inner], w.frames[t][inner]) < 30  # it did move


def test_time_reversal_reorders_the_offsets():
    motion = np.random.default_rng(0).normal(size=(7, 5, 6, 2)).astype(np.float32)
    out = Augmentation(reverse=True).apply_motion(motion)
    assert np.array_equal(out, motion[::-1])


# ---------------------------------------------------------------------------------- the loss


def test_motion_loss_ratio_is_one_for_no_motion_and_below_for_the_truth():
    frames = _photo(48, 48).expand(1, 3, 48, 48)
    true = _uniform_motion(7, 48, 48, 1.0, 0.5)
    seq = warp(frames, true)  # (1, 7, 3, H, W) frames that move
    loss0, parts0 = motion_loss(torch.zeros_like(true), true, seq)
    assert math.isclose(float(loss0), float(parts0["baseline"]), rel_tol=1e-6)
    loss1, parts1 = motion_loss(true, true, seq)
    assert float(parts1["epe"]) == 0.0
    assert float(loss1) < 0.05 * float(parts1["baseline"])


def test_a_few_steps_lower_the_motion_loss():
    torch.manual_seed(0)
    model = models.build("motion_deconv", **SMALL)
    image = _photo(32, 32)
    seq = warp(image, _uniform_motion(7, 32, 32, 1.5, 0.0))
    blurry = seq.mean(dim=1)
    true = _uniform_motion(7, 32, 32, 1.5, 0.0)
    guidance = _onehot(torch.full((1, 32, 32), 1))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(30):
        loss, _ = motion_loss(model(blurry, guidance, output="motion"), true, seq)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_warped_loss_pulls_a_short_motion_to_a_long_blur():
    """The blurry input warped by the motion (the frames the blend leans on) keeps a loss that
    falls all the way from no motion to the true one over a 24 px blur, and the training step
    sends its gradient into the network's motion."""
    from napari_afb.models.deconv import warped_frames
    from napari_afb.training.config import TrainConfig
    from napari_afb.training.losses import LossConfig, decomposer_loss
    from napari_afb.training.train import _step_loss

    image = _photo(64, 96)
    true = _uniform_motion(7, 64, 96, 4.0, 0.0)
    seq = linear_to_srgb(warp(srgb_to_linear(image), true))
    blurry = linear_to_srgb(srgb_to_linear(seq).mean(dim=1))
    guidance = torch.full((1, 64, 96), 1)
    scale = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], requires_grad=True)
    losses = [decomposer_loss(warped_frames(blurry, s * true), seq, guidance) for s in scale]
    assert all(a > b for a, b in zip(losses, losses[1:])), [float(x) for x in losses]
    (grad,) = torch.autograd.grad(losses[1], scale)
    assert grad[1] < 0  # from a quarter of the motion, the gradient lengthens it

    # in the metric's form: 0 for the identity, minus the PSNR gain / 10 for the frames
    from napari_afb.training.evaluate import frame_scores
    from napari_afb.training.losses import warped_psnr_loss

    def numpy_frames(x):
        return x[0].permute(0, 2, 3, 1).detach().numpy()

    assert float(warped_psnr_loss(blurry.unsqueeze(1).expand_as(seq), blurry, seq)) == 0.0
    frames = warped_frames(blurry, true)
    gain = (
        frame_scores(numpy_frames(frames), numpy_frames(seq))["psnr"]
        - frame_scores(numpy_frames(blurry.unsqueeze(1).expand_as(seq)), numpy_frames(seq))["psnr"]
    )
    assert gain > 1.5  # a real gain to compare with (measured 1.96 dB)
    assert float(warped_psnr_loss(frames, blurry, seq)) == pytest.approx(-gain / 10, abs=0.01)

    for form, key in (("l1", "warped_ratio"), ("psnr", "warped_gain_db")):
        torch.manual_seed(0)
        model = _perturbed(3)
        cfg = TrainConfig(loss=LossConfig(warped=1.0, warped_form=form, frames_fraction=0.5))
        batch = {"blurry": blurry, "guidance": guidance, "frames": seq, "motion": true}
        loss, parts = _step_loss("decomposer", model, batch, CPU, None, cfg, supervision="motion")
        loss.backward()
        assert key in parts and math.isfinite(float(parts[key]))
        assert model.head.weight.grad.abs().sum() > 0
    assert float(parts["warped_gain_db"]) == pytest.approx(-10 * float(parts["warped"]))


# --------------------------------------------------------------------------------- the cache


def test_window_cache_fills_once_reaugments_and_refuses_other_settings(tmp_path):
    from napari_afb.training.datasets import CachedWindows, VideoWindows, WindowSpec
    from napari_afb.training.stills import StillsSource

    def source():
        stills = StillsSource(n_frames=7, size=(48, 48), substeps=2, max_shift=8)
        return VideoWindows([], WindowSpec(crop=48), 6, seed=1, stills=stills, stills_fraction=1)

    key = {"crop": 48}
    cache = CachedWindows(source(), 6, tmp_path / "c", key)
    cache.fill(workers=0, progress=False)
    made = (tmp_path / "c" / "motion.npy").stat().st_mtime_ns
    meta = json.loads((tmp_path / "c" / "cache.json").read_text())
    assert meta == {"crop": 48, "count": 6, "seed": 1}
    again = CachedWindows(source(), 6, tmp_path / "c", key)
    again.fill(workers=0, progress=False)  # already there: nothing is rewritten
    assert (tmp_path / "c" / "motion.npy").stat().st_mtime_ns == made
    a, b, c = again[(0, 2)], again[(0, 2)], again[(1, 2)]
    assert set(a) == {"blurry", "frames", "guidance", "motion"}
    assert torch.equal(a["frames"], b["frames"])
    for item in (a, c):  # the motion still explains the frames after augmentation
        mid = item["frames"][3][None]
        warped = warp(mid, item["motion"][None])[0]
        assert float((warped - item["frames"])[..., 6:-6, 6:-6].abs().mean()) < 0.01
    with pytest.raises(ValueError, match="other settings"):
        CachedWindows(source(), 6, tmp_path / "c", {"crop": 64}).fill(workers=0)
    # a setting added after the cache was written: fine at the value the cache was made with
    later = {"crop": 48, "dirs": []}
    assert CachedWindows(source(), 6, tmp_path / "c", later, implied={"dirs": []}).ready()
    with pytest.raises(ValueError, match="other settings"):
        CachedWindows(
            source(), 6, tmp_path / "c", {**later, "dirs": ["x"]}, implied={"dirs": []}
        ).ready()


# ---------------------------------------------------------------- continuing from the default


def _tiny_config(tmp_path, name, steps, lr=1e-3):
    cfg = {
        "out_dir": str(tmp_path / name),
        "seed": 3,
        "log_every": 1,
        "val_every": 2,
        "checkpoint_every": 2,
        "model": {"architecture": "motion_deconv", "args": {**SMALL, "n_frames": 7}},
        "data": {
            "stills": True,
            "crop": 32,
            "batch_size": 2,
            "items_per_epoch": 4,
            "workers": 0,
            "val_windows": 2,
        },
        "optim": {"steps": steps, "warmup_steps": 1, "lr": lr},
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def test_continue_default_validates_the_default_first_and_keeps_it_unless_beaten(
    tmp_path, monkeypatch
):
    from napari_afb import weights
    from napari_afb.cli import main

    first = _tiny_config(tmp_path, "first", 2)
    assert main(["train", "decomposer", "--config", str(first), "--device", "cpu"]) == 0
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    default = pkg / "decomposer.safetensors"
    default.write_bytes((tmp_path / "first" / "last.safetensors").read_bytes())
    monkeypatch.setattr(weights, "PACKAGE_WEIGHTS_DIR", pkg)
    before = default.read_bytes()

    # a learning rate too small to change any prediction: nothing can beat the start
    again = _tiny_config(tmp_path, "again", 2, lr=1e-30)
    args = ["train", "decomposer", "--config", str(again), "--device", "cpu", "--continue-default"]
    assert main(args) == 0
    records = [json.loads(x) for x in (tmp_path / "again" / "log.jsonl").read_text().splitlines()]
    assert records[0]["event"].startswith("start from")
    assert records[1]["step"] == 0 and "val_psnr" in records[1]
    assert records[-1]["promoted"] is False and "kept" in records[-1]["event"]
    assert default.read_bytes() == before
    assert not (tmp_path / "again" / "best.safetensors").exists()


def test_promote_replaces_the_default_in_fp16_when_the_best_beats_it(tmp_path):
    from napari_afb.training.commands import promote
    from napari_afb.training.train import TrainResult
    from napari_afb.weights import load_weights, read_info, save_weights

    model = _perturbed(1)
    best = save_weights(
        model,
        tmp_path / "best.safetensors",
        architecture="motion_deconv",
        arch_args=SMALL,
        metrics={"psnr": 21.0},
    )
    default = save_weights(
        models.build("motion_deconv", **SMALL),
        tmp_path / "default.safetensors",
        architecture="motion_deconv",
        arch_args=SMALL,
    )
    result = TrainResult(
        tmp_path,
        5,
        best_weights=best,
        best_metrics={"psnr": 21.0, "step": 4},
        initial_metrics={"psnr": 20.5},
    )
    message = promote(result, default, "decomposer")
    assert "replaced" in message and "+0.5000" in message
    info = read_info(default)
    assert info.metrics["replaced"] == {"psnr": 20.5}
    loaded, _ = load_weights(default)
    with torch.no_grad():
        for (name, a), b in zip(loaded.state_dict().items(), model.state_dict().values()):
            assert torch.allclose(a, b.half().float()), name
    from safetensors import safe_open

    with safe_open(str(default), "pt") as f:
        assert f.get_tensor("head.weight").dtype == torch.float16
    log = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert log["promoted"] is True


# ------------------------------------------------------------------------------ blur cues


def test_blur_cues_dip_at_the_blur_length():
    """A horizontal box blur of L px of a real photo leaves the horizontal derivative's
    autocorrelation high at lags up to L / 2 (higher than the vertical one) and most negative
    near lag L. (Below about 8 px a photo's own texture correlation hides the dip: the cue is
    for the longer blurs, whose length the plain network underestimated most.)"""
    from skimage import data

    from napari_afb.models.deconv import CUE_LAGS, blur_cues

    grey = data.astronaut()[:256, 128:384].mean(axis=2).astype(np.float32) / 255
    for length in (11, 16, 22):
        kernel = np.ones(length, np.float32) / length
        blurred = np.stack([np.convolve(row, kernel, mode="same") for row in grey])
        image = torch.from_numpy(np.repeat(blurred[None], 3, 0))[None]
        cues = blur_cues(image)[0, :, 48:208, 48:208].mean(dim=(1, 2))
        per_dir = cues.view(4, len(CUE_LAGS) + 1)
        horizontal, vertical = per_dir[0, 1:], per_dir[1, 1:]
        lag = CUE_LAGS[int(torch.argmin(horizontal))]
        assert abs(lag - length) <= 0.3 * length, (length, lag, horizontal)
        short = [k for k, lag_k in enumerate(CUE_LAGS) if lag_k <= length / 2]
        assert horizontal[short].min() > 0.1 and horizontal.min() < 0, horizontal
        assert horizontal[short].mean() > vertical[short].mean() + 0.1, (horizontal, vertical)


def test_a_model_grown_with_blur_cues_computes_what_it_did():
    from napari_afb.models.deconv import N_CUES, with_blur_cues

    model = _perturbed(4, motion_scale=1.0)
    grown = with_blur_cues(model, **SMALL, motion_scale=1.0).eval()
    assert grown.stem.in_channels == model.stem.in_channels + N_CUES
    image = _photo(48, 64)
    guidance = _onehot(torch.randint(0, 5, (1, 48, 64), generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        assert torch.equal(model(image, guidance), grown(image, guidance))
        grown.stem.weight[:, -N_CUES:].normal_(0.0, 0.5)  # once it learns to use them, they count
        assert not torch.allclose(model(image, guidance), grown(image, guidance))
    with pytest.raises(ValueError, match="already"):
        with_blur_cues(grown, **SMALL, blur_cues=True)


def test_tiles_agree_with_blur_cues(rgb_image, random_guidance):
    """The cues reach 40 px: tiles with the default overlap still give the whole image."""
    model = _perturbed(5, motion_scale=1.0, blur_cues=True)
    with torch.no_grad():
        model.stem.weight[:, -10:].normal_(0.0, 0.3)
    big = np.tile(rgb_image, (2, 2, 1))  # 394 x 446
    assert_tiles_agree(model, big, random_guidance(big.shape[:2]), tile=288)


def test_a_downsampled_trunk_sees_the_image_at_lower_resolution():
    """``downsample=2``: the same weights applied to the 2x box-averaged image and guidance, the
    motion scaled by 2 and upsampled; the stride doubles; the default keeps old files' meaning."""
    full = _perturbed(6, motion_scale=1.0)
    half = models.build("motion_deconv", **SMALL, motion_scale=1.0, downsample=2)
    half.load_state_dict(full.state_dict())
    assert (full.stride, half.stride, full.downsample) == (4, 8, 1)
    image = _photo(64, 80)
    labels = torch.randint(0, 5, (1, 64, 80), generator=torch.Generator().manual_seed(2))
    guidance = _onehot(labels)
    with torch.no_grad():
        small = full.predict_motion(
            torch.nn.functional.avg_pool2d(image, 2), torch.nn.functional.avg_pool2d(guidance, 2)
        )
        got = half.predict_motion(image, guidance)
    assert got.shape == (1, 7, 2, 64, 80)
    assert small.abs().max() > 0.05  # the perturbed head predicts some motion
    up = torch.nn.functional.interpolate(small.flatten(1, 2), scale_factor=2, mode="bilinear")
    assert torch.allclose(got, 2 * up.view_as(got), atol=1e-5)  # offsets in full-size pixels
    assert torch.allclose(got[..., 1::2, 1::2].mean(), 2 * small.mean(), atol=1e-3)
    with pytest.raises(ValueError, match="multiples of 8"):
        half(image[..., :60, :], guidance[..., :60, :])
    with pytest.raises(ValueError, match="downsample"):
        models.build("motion_deconv", downsample=0)


def test_tiles_agree_with_a_downsampled_trunk(rgb_image, random_guidance):
    model = _perturbed(7, motion_scale=1.0, downsample=2)
    guidance = random_guidance(rgb_image.shape[:2])
    assert_tiles_agree(model, rgb_image, guidance, tile=160, overlap=64)


def test_convert_decomposer_moves_a_weights_file_to_half_resolution(tmp_path):
    import importlib.util
    from pathlib import Path

    from napari_afb.weights import load_weights, save_weights

    path = Path(__file__).resolve().parent.parent / "scripts" / "convert_decomposer.py"
    spec = importlib.util.spec_from_file_location("convert_decomposer", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    source = save_weights(
        _perturbed(8), tmp_path / "a.safetensors", architecture="motion_deconv", arch_args=SMALL
    )
    dest = tmp_path / "b.safetensors"
    assert script.main([str(source), str(dest), "--blur-cues", "--downsample", "2"]) == 0
    model, info = load_weights(dest)
    assert info.arch_args == {**SMALL, "blur_cues": True, "downsample": 2}
    assert (model.downsample, model.stride, model.blur_cues) == (2, 8, True)
    assert "1/2 resolution" in info.metrics["status"]
    old = dict(load_weights(source)[0].state_dict())
    assert torch.equal(model.state_dict()["head.weight"], old["head.weight"])
    with pytest.raises(SystemExit):
        script.main([str(source), str(dest)])  # nothing to change
