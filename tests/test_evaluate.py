"""Evaluation: metrics, the blurry baseline, the report and the contact sheet."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import perturbed_model
from PIL import Image

from napari_afb import models
from napari_afb.io import guidance_rgb
from napari_afb.samples import synthetic_blur
from napari_afb.training.evaluate import (
    METRICS,
    PSNR_MAX,
    CaseResult,
    Report,
    baseline,
    contact_sheet,
    evaluate,
    frame_scores,
    scores,
)
from napari_afb.training.window import Window

SIZE = (64, 80)
MOTIONS = [((24.0, 12.0), (-18.0, -18.0)), ((-20.0, 8.0), (16.0, -12.0)), ((0.0, 20.0), (20, 0))]


@pytest.fixture(scope="module")
def windows() -> list[Window]:
    out = []
    for i, (bg, fg) in enumerate(MOTIONS):
        s = synthetic_blur(size=SIZE, background_motion=bg, foreground_motion=fg, substeps=4)
        out.append(
            Window(
                blurry=s.blurry.astype(np.float32) / 255,
                frames=s.frames.astype(np.float32) / 255,
                flow=np.zeros((*SIZE, 2), np.float32),
                guidance=s.guidance,
                source={"sample": "synthetic", "index": i, "background": bg},
            )
        )
    return out


@pytest.fixture(scope="module")
def untrained() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build("motion_unet", widths=[8, 16, 32], enc_blocks=[1, 1, 2], dec_blocks=[1, 1])


def _moving_frames(n=5, h=24, w=28, seed=0) -> np.ndarray:
    """Frames of a random texture sliding right, so each frame differs from the others."""
    tex = np.random.default_rng(seed).random((h, w + 2 * n, 3)).astype(np.float32)
    return np.stack([tex[:, 2 * t : 2 * t + w] for t in range(n)])


# --- metrics -------------------------------------------------------------------------------------


def test_perfect_prediction_scores_perfect():
    truth = _moving_frames()
    s = frame_scores(truth.copy(), truth)
    assert s["psnr"] == PSNR_MAX
    assert s["ssim"] == pytest.approx(1.0, abs=1e-9)
    full = scores(truth.copy(), truth)
    assert set(full) == set(METRICS)
    assert full["psnr"] == full["psnr_agnostic"] and full["ssim_agnostic"] == pytest.approx(1.0)


def test_noisy_prediction_psnr_matches_its_noise():
    truth = np.full((3, 32, 32, 3), 0.5, np.float32)
    noise = np.random.default_rng(1).choice([-0.01, 0.01], size=truth.shape).astype(np.float32)
    s = frame_scores(truth + noise, truth)
    assert s["psnr"] == pytest.approx(40.0, abs=0.01)  # MSE = 1e-4
    assert 0 < s["ssim"] < 1


def test_psnr_is_capped_so_one_perfect_frame_cannot_dominate_the_mean():
    truth = _moving_frames(n=3)
    pred = truth.copy()
    pred[1] = np.clip(pred[1] + 0.1, 0, 1)
    psnr = frame_scores(pred, truth)["psnr"]
    assert math.isfinite(psnr) and PSNR_MAX / 2 < psnr < PSNR_MAX


@pytest.mark.parametrize("n", [5, 6])
def test_reversed_prediction_low_strict_but_perfect_agnostic(n):
    truth = _moving_frames(n=n)
    s = scores(truth[::-1].copy(), truth)
    assert s["psnr"] < (15 if n % 2 == 0 else 35) and s["ssim"] < 0.5
    assert s["psnr_agnostic"] == PSNR_MAX
    assert s["ssim_agnostic"] == pytest.approx(1.0)


@pytest.mark.parametrize("side", [2, 4, 5, 6])
def test_ssim_handles_tiny_images(side):
    truth = _moving_frames(n=3, h=side, w=9)
    assert frame_scores(truth.copy(), truth)["ssim"] == pytest.approx(1.0)
    other = frame_scores(np.clip(truth + 0.2, 0, 1), truth)["ssim"]
    assert np.isfinite(other) and other < 0.99


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        frame_scores(np.zeros((3, 8, 8, 3)), np.zeros((4, 8, 8, 3)))


def test_baseline_is_the_blurry_input_repeated(windows):
    w = windows[0]
    b = baseline(w)
    assert b.shape == w.frames.shape
    for frame in b:
        np.testing.assert_array_equal(frame, w.blurry)


# --- evaluate() and the report -------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_run(windows, untrained, tmp_path_factory):
    seen = []
    sheet = tmp_path_factory.mktemp("sheet") / "sheet.png"
    report = evaluate(
        untrained,
        windows,
        sheet_path=sheet,
        sheet_cases=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    return report, seen, sheet


@pytest.fixture(scope="module")
def perturbed_report(windows):
    return evaluate(perturbed_model(0), windows)


def test_untrained_model_scores_like_the_baseline(untrained_run):
    report, seen, _ = untrained_run
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert report.n_cases == 3 and report.n_frames == 7 and report.guidance == "true"
    for case in report.cases:
        for k in METRICS:
            assert case.model[k] == pytest.approx(case.baseline[k], abs=1e-6), k
        assert case.reblur > 60  # copies of the input re-blur to the input
        assert 20 < case.reblur_truth < 60  # the truth, quantised to 8 bits, nearly does
    for k in METRICS:
        assert report.model[k] == pytest.approx(report.baseline[k], abs=1e-6)
        assert report.gain[k] == pytest.approx(0.0, abs=1e-6)
    # the baseline is far from perfect on these windows: the metrics do see the blur
    assert report.baseline["psnr"] < 35 and report.baseline["ssim"] < 0.95


def test_evaluate_writes_the_contact_sheet(untrained_run):
    _, _, sheet = untrained_run
    img = Image.open(sheet)
    tile_w = round(SIZE[1] * 128 / SIZE[0])
    assert img.size == (8 * tile_w, 2 * 128)  # 2 rows x (input, guidance, 3 pred, 3 true)


def test_perturbed_model_scores_differently(untrained_run, perturbed_report):
    plain, moved = untrained_run[0], perturbed_report
    for k in ("psnr", "ssim"):
        assert moved.model[k] != pytest.approx(plain.model[k], abs=1e-3), k
        assert moved.baseline[k] == pytest.approx(plain.baseline[k], abs=1e-9), k
    assert moved.gain["psnr"] != pytest.approx(0.0, abs=1e-3)


def test_reversed_guidance_changes_what_the_model_sees(windows, perturbed_report):
    rev = evaluate(perturbed_model(0), windows[:1], guidance="reversed")
    true = perturbed_report.cases[0]
    assert rev.guidance == "reversed"
    assert rev.cases[0].model["psnr"] != pytest.approx(true.model["psnr"], abs=1e-4)
    assert rev.cases[0].baseline == true.baseline
    with pytest.raises(ValueError, match="guidance"):
        evaluate(perturbed_model(0), windows[:1], guidance="sideways")


def test_frame_count_mismatch_is_refused(windows):
    with pytest.raises(ValueError, match="5"):
        evaluate(perturbed_model(0, n_frames=5), windows[:1])


def test_report_table_and_dict(perturbed_report):
    report = perturbed_report
    table = report.table()
    lines = table.splitlines()
    assert any(line.startswith("model") for line in lines)
    assert any(line.startswith("blurry baseline") for line in lines)
    assert any(line.startswith("gain") for line in lines)
    for header in ("PSNR", "SSIM", "PSNR agnostic", "SSIM agnostic", "re-blur PSNR", "n cases"):
        assert header in table
    assert f"{report.model['psnr']:.2f}" in table
    assert f"{report.baseline['ssim']:.4f}" in table
    assert f"{report.gain['psnr']:+.2f}" in table
    assert f"{report.reblur:.2f}" in table
    # aligned: the model / baseline / gain rows have the same length
    body = [line for line in lines if line.split()[0] in ("model", "blurry", "gain")]
    assert len({len(line) for line in body}) == 1

    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["n_cases"] == 3 and len(d["cases"]) == 3
    assert d["mean"]["model"]["psnr"] == pytest.approx(report.model["psnr"])
    assert d["cases"][1]["source"]["index"] == 1


def test_report_to_dict_survives_non_finite_numbers():
    truth = _moving_frames()
    perfect = scores(truth, truth)
    tmp = object()
    case = CaseResult({"path": tmp}, (24, 28), perfect, perfect, math.nan, 1.0, False)
    report = Report([case], n_frames=5)
    assert report.model["psnr"] == PSNR_MAX and report.gain["psnr"] == 0.0
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["mean"]["model"]["psnr"] == PSNR_MAX and d["mean"]["reblur"] is None
    assert d["cases"][0]["source"]["path"] == repr(tmp)
    assert "nan" in report.table() and "100.00" in report.table()
    assert Report([]).table()  # no cases: still a table


# --- contact sheet -------------------------------------------------------------------------------


def test_contact_sheet_layout(tmp_path):
    truth = _moving_frames(n=7, h=32, w=48)
    blurry = truth.mean(axis=0)
    guidance = np.random.default_rng(0).integers(0, 5, size=(32, 48), dtype=np.uint8)
    rows = [(blurry, guidance, truth[::-1], truth)] * 3
    out = contact_sheet(rows, tmp_path / "sub" / "sheet.png", height=64)
    img = np.asarray(Image.open(tmp_path / "sub" / "sheet.png").convert("RGB"))
    assert img.shape == out.shape == (3 * 64, 8 * 96, 3)
    np.testing.assert_array_equal(img, out)
    # tiles land where they should: columns input, guidance, pred 1/4/7, true 1/4/7, and
    # pred = truth reversed, so pred 1 == true 7, pred 4 == true 4, pred 7 == true 1
    col = [img[128:192, c * 96 : (c + 1) * 96] for c in range(8)]
    for p, t in ((2, 7), (3, 6), (4, 5)):
        np.testing.assert_array_equal(col[p], col[t])
    assert not np.array_equal(col[2], col[5])
    np.testing.assert_allclose(col[0].mean(axis=(0, 1)) / 255, blurry.mean(axis=(0, 1)), atol=0.01)
    assert {tuple(v) for v in col[1].reshape(-1, 3)} <= {
        tuple(v) for v in guidance_rgb(guidance).reshape(-1, 3)
    }
    # the first row carries labels (white text on black boxes), the others do not
    box = img[:16, :40]  # "input": light anti-aliased text on a black box
    assert (box.min(axis=-1) > 200).any() and (box.max(axis=-1) == 0).any()
    assert not np.array_equal(img[:64], img[64:128])
    np.testing.assert_array_equal(img[64:128], img[128:192])
