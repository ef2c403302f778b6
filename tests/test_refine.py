"""The motion-refining decomposer (napari_afb.models.refine): grown from motion_deconv weights it
computes what they compute; trained, its correction moves the motion; tiles agree; the weights
file and the conversion script carry it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_deconv import SMALL, _onehot, _perturbed, _photo, assert_tiles_agree

from napari_afb import models
from napari_afb.models.refine import MotionRefine, with_refiner
from napari_afb.weights import load_weights, save_weights

REFINE = {"refine_widths": [8, 16], "refine_blocks": [1, 1], "refine_iters": 3}


def _grown(seed=0, head=0.05):
    """A perturbed motion_deconv, the refine model grown from it, and its arguments; the
    grown model's correction head perturbed when ``head`` is not 0."""
    source = _perturbed(seed, motion_scale=1.0)
    grown, args = with_refiner(source, **SMALL, motion_scale=1.0, **REFINE)
    if head:
        with torch.no_grad():
            grown.refine_head.weight.normal_(0.0, head, generator=torch.Generator().manual_seed(1))
    return source, grown.eval(), args


def _inputs(h=48, w=64):
    labels = torch.randint(0, 5, (1, h, w), generator=torch.Generator().manual_seed(0))
    return _photo(h, w), _onehot(labels)


def test_a_grown_refiner_computes_what_the_source_did_until_trained():
    source, grown, args = _grown(head=0)
    assert args["refine_widths"] == [8, 16] and args["refine_substeps"] == 1  # defaults filled in
    image, guidance = _inputs()
    with torch.no_grad():
        assert torch.equal(source(image, guidance), grown(image, guidance))
        grown.refine_head.weight.normal_(0.0, 0.05)
        moved = grown.predict_motion(image, guidance)
        first = source.predict_motion(image, guidance)
    assert (moved - first).abs().mean() > 0.01
    assert torch.equal(moved[:, 3], torch.zeros_like(moved[:, 3]))  # the middle frame stays
    with pytest.raises(ValueError, match="already"):
        with_refiner(grown, **args)


def test_the_refiner_sees_the_deconvolution_of_the_first_motion():
    """What it looks at changes with the first motion (the latent and the re-blur residual),
    and no gradient flows back through that view into the first motion."""
    _, grown, _ = _grown()
    image, guidance = _inputs()
    motion = grown.predict_motion(image, guidance)
    view = grown.view(image, guidance, motion)
    assert view.shape == (1, 5 + 6 + 14, 48, 64)
    assert not view.requires_grad
    still = grown.view(image, guidance, torch.zeros_like(motion))
    latent = slice(5, 8)
    # no motion: the latent is the input (but for the weak smoothness prior)
    assert (still[:, latent] - (image * 2 - 1)).abs().mean() < 2e-3
    assert (view[:, latent] - still[:, latent]).abs().mean() > 1e-2


def test_tiles_agree_with_a_refiner(rgb_image, random_guidance):
    """The refiner's deconvolution and U-Net reach further: tiles with the default overlap still
    give the whole image."""
    _, grown, _ = _grown(2)
    big = np.tile(rgb_image, (2, 2, 1))  # 394 x 446
    assert_tiles_agree(grown, big, random_guidance(big.shape[:2]), tile=288)


def test_weights_files_and_the_conversion_carry_the_refiner(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    source, grown, args = _grown(3)
    path = save_weights(
        grown, tmp_path / "r.safetensors", architecture="motion_refine", arch_args=args
    )
    loaded, info = load_weights(path)
    assert isinstance(loaded, MotionRefine) and info.role == "decomposer"
    image, guidance = _inputs()
    with torch.no_grad():
        assert torch.allclose(loaded(image, guidance), grown(image, guidance), atol=1e-6)

    plain = save_weights(
        source,
        tmp_path / "d.safetensors",
        architecture="motion_deconv",
        arch_args={**SMALL, "motion_scale": 1.0},
    )
    script = Path(__file__).resolve().parent.parent / "scripts" / "convert_decomposer.py"
    out = tmp_path / "grown.safetensors"
    subprocess.run([sys.executable, str(script), str(plain), str(out), "--refiner"], check=True)
    converted, info = load_weights(out)
    assert info.architecture == "motion_refine"
    with torch.no_grad():
        assert torch.allclose(converted(image, guidance), source(image, guidance), atol=1e-6)


def test_bad_refiner_settings_are_refused():
    with pytest.raises(ValueError, match="refine_iters"):
        models.build("motion_refine", refine_iters=0)
    assert models.role_of("motion_refine") == "decomposer"
