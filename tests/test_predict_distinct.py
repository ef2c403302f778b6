"""Predicted guidance never shows a map twice and claims an order only where the scores differ
(issue 23, item 4): on the clock, 5 samples were 2 distinct maps, all with log_prob -0.693,
under "most plausible first"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import PREDICTOR_ARGS, perturbed_predictor

from napari_afb import cli, io
from napari_afb.predict import (
    describe_order,
    plausibility_ranks,
    predict_guidance,
    sample_guidance,
)
from napari_afb.weights import save_weights


def _logits(blocks):
    axis = np.zeros((3, 64, 96), np.float32)
    axis[0] = 2.0
    sign = np.zeros((64, 96), np.float32)
    for y0, y1, x0, x1, a, s in blocks:
        axis[:, y0:y1, x0:x1] = 0.0
        axis[a, y0:y1, x0:x1] = 3.0
        sign[y0:y1, x0:x1] = s
    return axis, sign


def test_one_region_gives_two_equally_plausible_maps_not_five():
    axis, sign = _logits([(0, 64, 0, 96, 2, 4.0)])  # camera shake: one region
    out = sample_guidance(axis, sign, 5, rng=np.random.default_rng(0), unique=True)
    assert out.labels.shape[0] == 2
    assert len({s.tobytes() for s in out.labels}) == 2
    assert np.allclose(out.log_prob, np.log(0.5))  # the clock's -0.693
    text = describe_order(out.log_prob, asked=5)
    assert text == (
        "2 distinct samples (the image has no more than 2 distinct explanations), all equally "
        "plausible (no order)"
    )
    assert "most plausible first" not in text
    # without unique (the API's default) the count asked for is kept, repeating the maps
    assert sample_guidance(axis, sign, 5, rng=np.random.default_rng(0)).labels.shape[0] == 5


def test_a_static_image_gives_one_sample():
    axis, sign = _logits([])
    out = sample_guidance(axis, sign, 3, rng=np.random.default_rng(0), unique=True)
    assert out.labels.shape == (1, 64, 96) and (out.labels == 0).all()
    assert describe_order(out.log_prob, 3).startswith("1 distinct sample (the image has no more")


def test_scores_that_differ_are_ordered_and_ties_named():
    """A and B are sure of their signs relative to each other, C is not: eight distinct maps in
    four plausibility levels, each a map and its global flip."""
    blocks = [(0, 20, 0, 40, 1, 5.0), (0, 20, 50, 96, 2, 5.0), (40, 64, 0, 96, 1, 0.0)]
    axis, sign = _logits(blocks)
    out = sample_guidance(axis, sign, 8, rng=np.random.default_rng(3), unique=True)
    assert len({s.tobytes() for s in out.labels}) == 8
    ranks = plausibility_ranks(out.log_prob)
    assert list(ranks) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert describe_order(out.log_prob, 8) == (
        "8 distinct samples, most plausible first; equally plausible: 1 = 2 = 3 = 4; 5 = 6 = 7 = 8"
    )
    assert describe_order([-0.1, -0.5, -0.9]) == "3 distinct samples, most plausible first"


def test_cli_predict_writes_each_distinct_map_once_and_says_the_order(tmp_path, capsys):
    from skimage import data

    path = save_weights(
        perturbed_predictor(0), tmp_path / "p.safetensors", architecture="guidance_net",
        arch_args=PREDICTOR_ARGS,
    )  # fmt: skip
    image = np.ascontiguousarray(data.astronaut()[100:180, 150:250])
    io.write_png(tmp_path / "in.png", image)
    out = tmp_path / "samples"
    argv = ["predict", str(tmp_path / "in.png"), "--out", str(out), "--samples", "32",
            "--seed", "2", "--predictor", str(path), "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    every = predict_guidance(image, 32, seed=2, weights=path, device="cpu")
    distinct = len({s.tobytes() for s in every})
    files = sorted(out.glob("sample_*.png"))
    assert len(files) == distinct
    maps = [io.read_guidance(f).tobytes() for f in files]
    assert len(set(maps)) == len(maps)
    summary = json.loads((out / "samples.json").read_text())
    assert summary["order"] in printed and f"{distinct} distinct sample" in printed
    lp = [s["log_prob"] for s in summary["samples"]]
    assert [s["rank"] for s in summary["samples"]] == list(plausibility_ranks(lp))
    if len(set(np.round(lp, 4))) < len(lp):  # ties exist: named, never a bare claim
        assert "equally plausible" in summary["order"]


@pytest.mark.parametrize("n", [1, 3])
def test_predict_guidance_unique_keeps_the_api_order(rgb_image, n):
    model = perturbed_predictor(0)
    a, lp = predict_guidance(
        rgb_image, n, seed=5, model=model, device="cpu", return_log_prob=True, unique=True
    )
    b = predict_guidance(rgb_image, n, seed=5, model=model, device="cpu")
    assert np.array_equal(a, b[: len(a)]) and len(lp) == len(a)
    assert np.all(np.diff(lp) <= 1e-6)
