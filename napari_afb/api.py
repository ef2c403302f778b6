"""The scripting API behind ``napari_afb.decompose``. No napari, no Qt."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

from . import engine as _engine
from .weights import model_on

__all__ = ["decompose", "estimate_blur_paths", "ENGINES"]

#: "kernel": blur paths + deconvolution (no training, strong on camera shake and on things moving
#: one way); "learned": the decomposer network; "auto": "learned" when weights or a model are
#: given, else "kernel" (on the benchmark and on real photos it is the one that sharpens:
#: docs/KERNEL_ENGINE.md).
ENGINES = ("auto", "kernel", "learned")


def decompose(
    image,
    guidance=None,
    *,
    device: str = "auto",
    engine: str = "auto",
    paths=None,
    kernel_bound: int = 51,
    strength: float | str = "auto",
    space: str = "auto",
    weights: str | os.PathLike | None = None,
    model=None,
    predictor_weights: str | os.PathLike | None = None,
    seed: int = 0,
    tile: int | None = None,
    overlap: int = _engine.DEFAULT_OVERLAP,
    precision: str = "auto",
    progress: bool | Callable[[_engine.Progress], None] = False,
    cancel: Callable[[], bool] | None = None,
):
    """Decompose a motion-blurred image into the sharp frames of its exposure.

    Parameters
    ----------
    image : (H, W, 3) RGB array, uint8 or float in [0, 1]
        Also (H, W) grey, (H, W, 4) RGBA (alpha is carried into every frame) and uint16.
    guidance : (H, W) integer label map, 0-4 (see :mod:`napari_afb.guidance`)
        Motion direction per pixel; it fixes which way time runs, and (kernel engine) label 0
        marks what did not move: those pixels keep the input. ``None``: the learned engine uses
        the most plausible of the guidance predictor's samples for ``seed``
        (:func:`predict_guidance`); the kernel engine deblurs the whole image and takes time's
        direction from the drawn path, or leaves it unknown (the reversed frames are as
        plausible).
    engine : "auto", "kernel" or "learned" (see :data:`ENGINES`).
    paths : kernel engine: blur paths, start to end in time, in image pixels: a
        :class:`~napari_afb.kernel.BlurPath`, a (K, 2) array of (x, y) points, a string
        "x0,y0,x1,y1,...", a JSON file, or a list of these. Each applies to the guidance region
        it is drawn on, or (no guidance) to the pixels nearest it. None: estimated blindly.
    kernel_bound : kernel engine: the longest blur, in px, that estimation looks for (1.5-2x the
        blur you see works best) and that a drawn path may span.
    strength : kernel engine: the deconvolution's data weight (higher is sharper and noisier;
        about 2000 for a clean photo, 300-600 for a noisy one), or "auto" from the noise level.
    space : kernel engine: how the blur mixed the colours: "gamma" (the stored pixel values
        were averaged), "linear" (the light was, as a sensor integrates it), or "auto" (per
        path, the one whose deconvolution explains the image better). The deconvolution's prior
        is on the pixel values either way (in linear light it left dark blotches).
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
    if choose_engine(engine, weights, model) == "kernel":
        from .kernel.decompose import decompose_iter

        gen = decompose_iter(
            image,
            guidance,
            paths,
            kernel_bound=kernel_bound,
            strength=strength,
            space=space,
            cancel=cancel,
        )
        result = _engine.drive(gen, progress, desc="decompose", unit="step")
        for note in result.notes:
            warnings.warn(note, UserWarning, stacklevel=2)
        return result.frames
    if paths is not None:
        raise ValueError("blur paths are for the kernel engine: use engine='kernel' (or 'auto')")
    dev = _engine.select_device(device)
    model, _ = model_on(model, weights, dev)
    if guidance is None:
        from .predict import predict_guidance

        guidance = predict_guidance(
            image, 1, seed=seed, device=str(dev), weights=predictor_weights
        )[0]
    gen = _engine.decompose_iter(
        image,
        guidance,
        model=model,
        device=dev,
        tile=tile,
        overlap=overlap,
        precision=precision,
        cancel=cancel,
    )
    return _engine.drive(gen, progress, desc="decompose", unit="tile")


def choose_engine(engine: str, weights=None, model=None) -> str:
    """Resolve "auto": the learned engine when weights or a model are given, else the kernel
    engine."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "auto":
        return "learned" if (weights is not None or model is not None) else "kernel"
    if engine == "kernel" and (weights is not None or model is not None):
        raise ValueError("weights and model are for the learned engine, not engine='kernel'")
    return engine


def estimate_blur_paths(
    image,
    guidance=None,
    *,
    kernel_bound: int = 51,
    space: str = "auto",
    progress: bool | Callable[[_engine.Progress], None] = False,
    cancel: Callable[[], bool] | None = None,
) -> list:
    """Estimate the blur paths of a blurry image blindly, as :func:`decompose` would: one per
    large moving region of the guidance (or one for the whole image), each estimated on the
    pixel values and, unless ``space="gamma"``, on the light, time-ordered by the guidance where
    it has moving labels. Returns a list of :class:`~napari_afb.kernel.BlurPath` (empty when no
    blur was found, with a warning saying why); pass them to :func:`decompose` as ``paths``."""
    from .guidance import check_guidance
    from .images import to_rgb_float
    from .kernel.decompose import estimate_blur_paths_iter

    rgb, _, _ = to_rgb_float(image)
    labels = None if guidance is None else check_guidance(guidance, shape=rgb.shape[:2])
    gen = estimate_blur_paths_iter(
        rgb, labels, kernel_bound=kernel_bound, space=space, cancel=cancel
    )
    paths, notes = _engine.drive(gen, progress, desc="estimate", unit="region")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return paths
