"""Shared fixtures: small seeded networks and real test images made at test time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_afb import models

SMALL_ARGS = {"n_frames": 7, "widths": [8, 16, 32], "enc_blocks": [1, 1, 2], "dec_blocks": [1, 1]}


def perturbed_model(
    seed: int = 0,
    architecture: str = "motion_unet",
    head: tuple[float, float] = (0.05, 0.5),
    **overrides,
) -> torch.nn.Module:
    """A seeded decomposer pushed far from its identity start: random residual scales and
    output head (weight and bias standard deviations ``head``), so frames move by several
    pixels and tests cannot pass by copying the input."""
    args = {**SMALL_ARGS, **overrides}
    torch.manual_seed(seed)
    model = models.build(architecture, **args)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.normal_(0.0, 0.2)
        model.head.weight.normal_(0.0, head[0])
        model.head.bias.normal_(0.0, head[1])
    return model.eval()


@pytest.fixture
def small_model() -> torch.nn.Module:
    return perturbed_model(0)


@pytest.fixture
def rgb_image() -> np.ndarray:
    """A real photo (scikit-image 'astronaut', public domain), cropped to an odd size."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[40:237, 100:323])  # 197 x 223 x 3 uint8


@pytest.fixture
def random_guidance():
    def make(shape, seed=0):
        return np.random.default_rng(seed).integers(0, 5, size=shape, dtype=np.uint8)

    return make


PREDICTOR_ARGS = {"widths": [8, 16], "enc_blocks": [1, 1], "dec_blocks": [1]}


def perturbed_predictor(seed: int = 0) -> torch.nn.Module:
    """A seeded, untrained GuidanceNet whose head gives logits of a few units: its maps have
    moving regions of both axes and signs, so sampling has something to choose between."""
    torch.manual_seed(seed)
    model = models.build("guidance_net", **PREDICTOR_ARGS)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.normal_(0.0, 0.3)
        model.head.weight.normal_(0.0, 0.5)
    return model.eval()


def decode_video(path) -> tuple[np.ndarray, float]:
    """Every frame of a video by plain sequential OpenCV decoding, as (T, H, W, 3) RGB uint8,
    and the frame rate the container states: the reference the tests compare against."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return np.stack(frames), fps


class SlowModel(torch.nn.Module):
    """Wraps a decomposer and sleeps in each forward pass (the sleep releases the GIL)."""

    def __init__(self, inner: torch.nn.Module, delay: float):
        super().__init__()
        self.inner, self.delay, self.calls = inner, delay, 0
        self.n_frames, self.stride = inner.n_frames, inner.stride

    def forward(self, x, g):
        self.calls += 1
        time.sleep(self.delay)
        return self.inner(x, g)


def tiny_config(tmp_path: Path, name: str, steps: int, **extra) -> Path:
    """A JSON training config of a tiny motion_unet that trains in seconds on the CPU (stills,
    32-px crops); ``extra`` adds or replaces keys of its data section."""
    out = tmp_path / name
    cfg = {
        "out_dir": str(out),
        "seed": 11,
        "log_every": 1,
        "val_every": 100,
        "checkpoint_every": 1,
        "model": {"args": {"widths": [8, 16], "enc_blocks": [1, 1], "dec_blocks": [1]}},
        "data": {
            "stills": True,
            "crop": 32,
            "batch_size": 2,
            "items_per_epoch": 6,
            "workers": 0,
            "val_windows": 2,
            **extra,
        },
        "optim": {"steps": steps, "warmup_steps": 2, "lr": 1e-3},
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture(autouse=True)
def _own_qsettings(tmp_path_factory):
    """The docks keep their settings in QSettings (napari_afb._dock): each test gets a folder of
    its own, so nothing reaches the user's configuration or leaks between tests."""
    try:
        from qtpy.QtCore import QSettings
    except Exception:  # noqa: BLE001 (no Qt binding: nothing to isolate)
        yield
        return
    QSettings.setPath(
        QSettings.Format.IniFormat,
        QSettings.Scope.UserScope,
        str(tmp_path_factory.mktemp("qsettings")),
    )
    yield
