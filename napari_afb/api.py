"""The scripting API behind ``napari_afb.decompose``. No napari, no Qt."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from . import engine
from .weights import model_on

__all__ = ["decompose"]


def decompose(
    image,
    guidance=None,
    *,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    model=None,
    predictor_weights: str | os.PathLike | None = None,
    seed: int = 0,
    tile: int | None = None,
    overlap: int = engine.DEFAULT_OVERLAP,
    precision: str = "auto",
    progress: bool | Callable[[engine.Progress], None] = False,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Decompose a motion-blurred image into the sharp frames of its exposure.

    Parameters
    ----------
    image : (H, W, 3) RGB array, uint8 or float in [0, 1]
        Also (H, W) grey, (H, W, 4) RGBA (alpha is carried into every frame) and uint16.
    guidance : (H, W) integer label map, 0-4 (see :mod:`napari_afb.guidance`)
        Motion direction per pixel; it fixes which way time runs. ``None``: the most plausible
        of the guidance predictor's samples for ``seed`` (:func:`predict_guidance`); a single
        blurry image cannot say which way time ran, so this order is a guess the predictor makes.
    device : "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps".
    weights : decomposer weights file; default: ``$NAPARI_AFB_WEIGHTS``, then the packaged file.
    model : an already built decomposer module, used instead of ``weights``.
    predictor_weights, seed : for ``guidance=None``: the predictor's weights (default
        ``$NAPARI_AFB_PREDICTOR_WEIGHTS``, then the packaged file) and the sampling seed.
    tile, overlap : tile side and overlap in pixels (tile=None: a default for the device, 0: the
        whole image at once). Results agree with untiled ones to well under 1/255.
    precision : "auto" (bf16/fp16 autocast on CUDA, float32 elsewhere), "float32", "bfloat16",
        "float16".
    progress : True for a progress bar on stderr, or a callable that receives each
        :class:`napari_afb.engine.Progress`.
    cancel : a callable polled between tiles; when it returns True the run raises
        :class:`napari_afb.engine.Cancelled`.

    Returns
    -------
    (N, H, W, 3) array of frames in time order, in the input's dtype (and channel layout).
    """
    dev = engine.select_device(device)
    model, _ = model_on(model, weights, dev)
    if guidance is None:
        from .predict import predict_guidance

        guidance = predict_guidance(
            image, 1, seed=seed, device=str(dev), weights=predictor_weights
        )[0]
    gen = engine.decompose_iter(
        image,
        guidance,
        model=model,
        device=dev,
        tile=tile,
        overlap=overlap,
        precision=precision,
        cancel=cancel,
    )
    return engine.drive(gen, progress, desc="decompose", unit="tile")
