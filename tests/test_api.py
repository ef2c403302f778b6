"""The public API contract: lazy import, no napari/Qt in the core, exact signatures."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
from conftest import perturbed_model

import napari_afb
from napari_afb.weights import save_weights


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_package_does_not_import_torch():
    r = _python(
        "import sys, napari_afb\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "napari_afb.guidance_from_flow\n"
        "assert 'torch' not in sys.modules, 'guidance pulled in torch'\n"
        "print(sorted(napari_afb.__all__))"
    )
    assert r.returncode == 0, r.stderr
    assert "decompose" in r.stdout


def test_the_core_runs_with_napari_and_qt_blocked():
    """Imports point one way: the numeric core never imports napari or Qt."""
    r = _python(
        "import sys\n"
        "for name in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np, torch\n"
        "import napari_afb, napari_afb.engine, napari_afb.weights, napari_afb.models,\\\n"
        "    napari_afb.samples, napari_afb.io, napari_afb.cli, napari_afb._sample_data\n"
        "torch.manual_seed(0)\n"
        "m = napari_afb.models.build('motion_unet', widths=[8, 16], enc_blocks=[1, 1],"
        " dec_blocks=[1])\n"
        "out = napari_afb.decompose(np.zeros((9, 9, 3), np.uint8), np.zeros((9, 9)), model=m,"
        " device='cpu')\n"
        "print(out.shape)"
    )
    assert r.returncode == 0, r.stderr
    assert "(7, 9, 9, 3)" in r.stdout


def test_signatures_match_the_architecture_contract():
    sig = inspect.signature(napari_afb.decompose)
    params = list(sig.parameters.values())
    assert [p.name for p in params[:3]] == ["image", "guidance", "device"]
    assert params[1].default is None
    assert params[2].kind is inspect.Parameter.KEYWORD_ONLY and params[2].default == "auto"
    sig = inspect.signature(napari_afb.guidance_from_flow)
    assert list(sig.parameters) == ["flow", "threshold"]
    assert sig.parameters["threshold"].kind is inspect.Parameter.KEYWORD_ONLY


def test_decompose_without_guidance_or_predictor_says_why(monkeypatch, tmp_path):
    monkeypatch.delenv("NAPARI_AFB_PREDICTOR_WEIGHTS", raising=False)
    with pytest.raises(ValueError, match="predictor"):
        napari_afb.decompose(
            np.zeros((8, 8, 3), np.uint8),
            model=perturbed_model(0),
            predictor_weights=tmp_path / "missing.safetensors",
            device="cpu",
        )


def test_decompose_from_a_weights_file_equals_the_model(tmp_path, rgb_image, random_guidance):
    from conftest import SMALL_ARGS

    model = perturbed_model(3)
    path = save_weights(
        model, tmp_path / "w.safetensors", architecture="motion_unet", arch_args=SMALL_ARGS
    )
    g = random_guidance(rgb_image.shape[:2])
    a = napari_afb.decompose(rgb_image, g, weights=path, device="cpu")
    b = napari_afb.decompose(rgb_image, g, model=model, device="cpu")
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - rgb_image[None].astype(int)).mean() > 5


def test_decompose_a_real_motion_blurred_photo(small_model):
    """skimage's clock: a real camera-shake photo; grey in, grey frames out, in time order."""
    from skimage import data

    clock = data.clock()
    guidance = np.full(clock.shape, 1, np.uint8)
    seen = []
    frames = napari_afb.decompose(
        clock, guidance, model=small_model, device="cpu", progress=seen.append, tile=160, overlap=32
    )
    assert frames.shape == (7, *clock.shape) and frames.dtype == np.uint8
    assert seen and seen[-1].done == seen[-1].total > 1
    # the middle frame moves least; frames at the ends differ from each other
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1


def test_progress_bar_on_stderr(capsys, rgb_image, random_guidance, small_model):
    napari_afb.decompose(
        rgb_image,
        random_guidance(rgb_image.shape[:2]),
        model=small_model,
        device="cpu",
        progress=True,
        tile=96,
        overlap=32,
    )
    assert "decompose" in capsys.readouterr().err
