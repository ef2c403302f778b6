"""The guidance predictor's sampling and ``predict_guidance``: seeds, order, region structure,
odd inputs, and ``decompose(image)`` with no guidance."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import PREDICTOR_ARGS, perturbed_model, perturbed_predictor

import napari_afb
from napari_afb.guidance import AXIS_OF_LABEL, Augmentation
from napari_afb.predict import predict_guidance, sample_guidance
from napari_afb.weights import WeightsError, save_weights


def _logits(blocks):
    """Axis and sign logits for an image made of rectangles: [(y0, y1, x0, x1, axis, sign
    logit)], static elsewhere."""
    axis = np.zeros((3, 64, 96), np.float32)
    axis[0] = 2.0
    sign = np.zeros((64, 96), np.float32)
    for y0, y1, x0, x1, a, s in blocks:
        axis[:, y0:y1, x0:x1] = 0.0
        axis[a, y0:y1, x0:x1] = 3.0
        sign[y0:y1, x0:x1] = s
    return axis, sign


TWO_UNSURE = [(0, 30, 0, 40, 1, 0.2), (34, 64, 50, 96, 2, -0.1)]


def test_same_seed_same_samples_other_seed_other_samples():
    axis, sign = _logits(TWO_UNSURE)
    a = sample_guidance(axis, sign, 3, rng=np.random.default_rng(7))
    b = sample_guidance(axis, sign, 3, rng=np.random.default_rng(7))
    c = sample_guidance(axis, sign, 3, rng=np.random.default_rng(8))
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    # two unsure regions: four sign patterns, all drawn when four are asked for, all distinct
    d = sample_guidance(axis, sign, 4, rng=np.random.default_rng(0))
    assert d.regions == 2
    assert len({s.tobytes() for s in d.labels}) == 4


def test_samples_differ_in_the_sign_of_whole_regions_not_in_the_axis():
    axis, sign = _logits(TWO_UNSURE)
    s = sample_guidance(axis, sign, 4, rng=np.random.default_rng(1)).labels
    axes = AXIS_OF_LABEL[s]
    assert (axes == axes[0]).all(), "the axis is what the image shows: samples share it"
    for y0, y1, x0, x1, a, _ in TWO_UNSURE:
        block = s[:, y0:y1, x0:x1]
        assert (axes[:, y0:y1, x0:x1] == a).all()
        for sample in block:  # one label per region and sample: flipped as a whole
            assert len(np.unique(sample)) == 1
    assert (s[:, 30:34, :] == 0).all()


def test_confident_relative_signs_are_kept_and_ordered_first():
    """Regions A and B are sure of their signs relative to each other, C is not: the four most
    plausible samples keep A and B consistent and try both signs of C (and both orientations)."""
    blocks = [(0, 20, 0, 40, 1, 5.0), (0, 20, 50, 96, 2, 5.0), (40, 64, 0, 96, 1, 0.0)]
    axis, sign = _logits(blocks)
    out = sample_guidance(axis, sign, 8, rng=np.random.default_rng(3))
    assert np.all(np.diff(out.log_prob) <= 1e-6), "most plausible first"
    top, rest = out.labels[:4], out.labels[4:]
    # label 1 in A goes with label 4 in B (both positive); flipping both is the other orientation
    consistent = {(1, 4), (3, 2)}
    assert all((int(s[10, 20]), int(s[10, 70])) in consistent for s in top)
    assert all((int(s[10, 20]), int(s[10, 70])) not in consistent for s in rest)
    assert len({int(s[50, 50]) for s in top}) == 2
    assert out.log_prob[3] - out.log_prob[4] > 3


def test_a_map_and_its_time_reversal_are_equally_plausible():
    axis, sign = _logits([(0, 64, 0, 96, 2, 4.0)])  # one region: camera shake
    out = sample_guidance(axis, sign, 2, rng=np.random.default_rng(0))
    assert out.regions == 1
    assert np.isclose(out.log_prob[0], out.log_prob[1])
    assert np.array_equal(Augmentation(reverse=True).apply_guidance(out.labels[0]), out.labels[1])


def test_more_samples_than_explanations_repeat_the_most_plausible():
    axis, sign = _logits([])  # all static: one explanation
    out = sample_guidance(axis, sign, 3, rng=np.random.default_rng(0))
    assert out.labels.shape == (3, 64, 96) and (out.labels == 0).all()


def test_upsampled_samples_keep_regions_whole():
    axis, sign = _logits(TWO_UNSURE)
    out = sample_guidance(axis, sign, 4, rng=np.random.default_rng(2), out_shape=(256, 384))
    assert out.labels.shape == (4, 256, 384)
    for sample in out.labels:
        assert len(np.unique(sample[8:110, 8:150])) == 1  # inside the first region, scaled x4


def test_signature_matches_the_architecture_contract():
    params = inspect.signature(napari_afb.predict_guidance).parameters
    assert list(params)[:5] == ["image", "n_samples", "seed", "device", "weights"]
    assert params["n_samples"].default == 1
    assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY and params["seed"].default is None
    assert params["device"].default == "auto"


def test_predict_guidance_is_deterministic_per_seed(rgb_image):
    model = perturbed_predictor(0)
    a = predict_guidance(rgb_image, 3, seed=5, model=model, device="cpu")
    b = predict_guidance(rgb_image, 3, seed=5, model=model, device="cpu")
    assert a.shape == (3, *rgb_image.shape[:2]) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    others = [predict_guidance(rgb_image, 3, seed=s, model=model, device="cpu") for s in (6, 7)]
    assert any(not np.array_equal(a, o) for o in others)
    assert set(np.unique(a)) <= {0, 1, 2, 3, 4} and len(np.unique(a)) > 2


@pytest.mark.parametrize(
    "shape, dtype",
    [((1, 1, 3), np.uint8), ((5, 7), np.uint8), ((33, 20, 4), np.uint16), ((40, 9, 3), np.float32)],
)
def test_predict_guidance_on_odd_inputs(shape, dtype):
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        image = rng.random(shape, dtype=np.float32)
    else:
        image = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    out = predict_guidance(image, 2, seed=0, model=perturbed_predictor(1), device="cpu")
    assert out.shape == (2, *shape[:2])


def test_large_images_run_at_the_working_resolution(rgb_image):
    model = perturbed_predictor(2)
    big = np.repeat(np.repeat(rgb_image, 3, axis=0), 3, axis=1)  # 591 x 669
    out, log_prob = predict_guidance(
        big, 2, seed=0, model=model, device="cpu", max_side=128, return_log_prob=True
    )
    assert out.shape == (2, *big.shape[:2]) and log_prob.shape == (2,)
    assert log_prob[0] >= log_prob[1]


def test_bad_arguments_are_refused(rgb_image):
    model = perturbed_predictor(0)
    with pytest.raises(ValueError, match="n_samples"):
        predict_guidance(rgb_image, 0, model=model, device="cpu")
    with pytest.raises(ValueError, match="channels first"):
        predict_guidance(rgb_image.transpose(2, 0, 1), model=model, device="cpu")


def test_missing_and_wrong_role_weights_say_so(tmp_path, rgb_image, monkeypatch):
    monkeypatch.delenv("NAPARI_AFB_PREDICTOR_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match="not found|no trained default predictor"):
        predict_guidance(rgb_image, weights=tmp_path / "none.safetensors", device="cpu")
    from conftest import SMALL_ARGS

    path = save_weights(
        perturbed_model(0),
        tmp_path / "d.safetensors",
        architecture="motion_unet",
        arch_args=SMALL_ARGS,
    )
    with pytest.raises(WeightsError, match="decomposer weights, not predictor"):
        predict_guidance(rgb_image, weights=path, device="cpu")


def test_decompose_without_guidance_uses_the_first_sample(tmp_path, rgb_image, small_model):
    predictor = perturbed_predictor(4)
    path = save_weights(
        predictor,
        tmp_path / "p.safetensors",
        architecture="guidance_net",
        arch_args=PREDICTOR_ARGS,
    )
    first = predict_guidance(rgb_image, 1, seed=3, weights=path, device="cpu")[0]
    auto = napari_afb.decompose(
        rgb_image, model=small_model, predictor_weights=path, seed=3, device="cpu"
    )
    assert np.array_equal(
        auto, napari_afb.decompose(rgb_image, first, model=small_model, device="cpu")
    )


def test_smoothing_turns_per_pixel_speckle_into_regions():
    """Noisy logits (noise twice the signal, independent per pixel) over two regions of two
    axes: without smoothing about a third of the pixels take another axis; with the default
    smoothing the map follows the regions."""
    rng = np.random.default_rng(0)
    axis, sign = _logits([(0, 64, 0, 48, 1, 1.0), (0, 64, 48, 96, 2, 1.0)])
    axis = axis / 3.0 + rng.normal(0, 2.0 / 3.0, axis.shape).astype(np.float32)
    sign = sign + rng.normal(0, 2.0, sign.shape).astype(np.float32)
    truth = np.zeros((64, 96), np.uint8)
    truth[:, :48], truth[:, 48:] = 1, 4
    raw = sample_guidance(axis, sign, 1, rng=np.random.default_rng(0), smooth=0.0).labels[0]
    smooth = sample_guidance(axis, sign, 1, rng=np.random.default_rng(0)).labels[0]
    inner = np.s_[4:-4, np.r_[4:44, 52:92]]
    assert np.mean(AXIS_OF_LABEL[raw][inner] == AXIS_OF_LABEL[truth][inner]) < 0.8
    assert np.mean(AXIS_OF_LABEL[smooth][inner] == AXIS_OF_LABEL[truth][inner]) > 0.95


def test_cli_predict_writes_samples_that_decompose_reads_back(tmp_path, capsys):
    from conftest import SMALL_ARGS, perturbed_model

    from napari_afb import cli, io

    path = save_weights(
        perturbed_predictor(0), tmp_path / "p.safetensors", architecture="guidance_net",
        arch_args=PREDICTOR_ARGS,
    )  # fmt: skip
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[100:180, 150:250])
    io.write_png(tmp_path / "in.png", image)
    out = tmp_path / "samples"
    argv = ["predict", str(tmp_path / "in.png"), "--out", str(out), "--samples", "3",
            "--seed", "2", "--predictor", str(path), "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    expected = predict_guidance(image, 3, seed=2, weights=path, device="cpu")
    for k in range(3):
        assert np.array_equal(io.read_guidance(out / f"sample_{k + 1}.png"), expected[k])
    assert "sample_1.png" in capsys.readouterr().out
    assert cli.main(argv) == 2  # the folder exists: refused, kept
    assert "--overwrite" in capsys.readouterr().err
    # a sample feeds decompose --guidance
    w = save_weights(
        perturbed_model(0), tmp_path / "d.safetensors", architecture="motion_unet",
        arch_args=SMALL_ARGS,
    )  # fmt: skip
    code = cli.main(
        ["decompose", str(tmp_path / "in.png"), "--guidance", str(out / "sample_2.png"),
         "--out", str(tmp_path / "frames"), "--weights", str(w), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    frames = napari_afb.decompose(image, expected[1], weights=w, device="cpu")
    assert np.array_equal(io.read_image(tmp_path / "frames" / "frame_03.png"), frames[3])
