"""Whole-video animation: every blurry frame of a video decomposed into N sharp frames, with
guidance from its neighbouring frames (or from the guidance predictor), written as a video with N
times as many frames: in slow motion at the source's frame rate (the default) or in real time at
N times that rate. MP4 is H.264 (yuv420p) where PyAV is installed, else MPEG-4 Part 2.

With predicted guidance each frame alone cannot say which way time ran, and picking each
frame's most plausible sample independently would let the order flip from frame to frame. So
the first frame takes its most plausible sample, and every later frame the one of its
``PREDICT_SAMPLES`` samples that agrees best with the previous frame's guidance on the pixels
both call moving (motion is continuous from one exposure to the next).

Streamed: three source frames are in memory at a time, and output frames go straight to the
encoder, so memory does not grow with the video's length. The output is written to a temporary
file beside the destination and renamed into place only when complete; a failed or cancelled
run leaves nothing. OpenCV writes video only: audio is not carried over (after decomposition
the exposures no longer line up with the original sound's timing anyway), and the container's
metadata is not copied.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path

import cv2
import numpy as np

from . import engine
from . import engine as engine_mod  # (animate_video's own ``engine`` is the engine's name)
from .engine import Progress
from .export import Mp4Writer, _rgb_even, check_folder
from .flow import guidance_from_neighbors
from .predict import predict_guidance
from .video import VideoArray

__all__ = [
    "GUIDANCE_SOURCES",
    "SPEEDS",
    "animate_frames",
    "animate_iter",
    "animate_video",
    "frame_range",
]

GUIDANCE_SOURCES = ("neighbors", "predict")
#: Playback of the output: "slow" (slow motion, the source's frame rate, N times as long) or
#: "real" (real time, N times the source's frame rate).
SPEEDS = ("slow", "real")
#: File types that are still images, which animate refuses (OpenCV would read one as a
#: one-frame video)
STILL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: Samples per frame among which predicted guidance picks the one continuing the last frame's.
PREDICT_SAMPLES = 5


def _continuing(samples: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """The sample (most plausible first) that best agrees with ``previous`` where both move."""
    if previous is None:
        return samples[0]
    agree = [
        np.count_nonzero((s == previous) & (s > 0) & (previous > 0))
        - np.count_nonzero((s != previous) & (s > 0) & (previous > 0))
        for s in samples
    ]
    return samples[int(np.argmax(agree))]  # argmax keeps the first (most plausible) on ties


def _check_guidance(guidance: str, predictor) -> None:
    if guidance not in GUIDANCE_SOURCES:
        raise ValueError(f"guidance must be one of {GUIDANCE_SOURCES}, not {guidance!r}")
    if guidance == "predict" and predictor is None:
        raise ValueError("guidance='predict' needs the predictor module")


def frame_range(n: int, start: int | None = None, stop: int | None = None) -> range:
    """The video frames ``start`` (default 0) up to ``stop`` (exclusive, default the end) of a
    video of ``n`` frames, checked: ValueError names the problem."""
    begin = 0 if start is None else int(start)
    end = n if stop is None else int(stop)
    if not 0 <= begin < n:
        raise ValueError(f"start frame {begin} is outside the video's frames 0..{n - 1}")
    if not begin < end <= n:
        raise ValueError(
            f"stop frame {end} must be after the start frame ({begin}) and at most {n} "
            f"(the video's length; the stop frame itself is not animated)"
        )
    return range(begin, end)


def animate_frames(
    video,
    frames: range,
    emit: Callable[[np.ndarray], None],
    *,
    model,
    device,
    tile: int | None = None,
    cancel: Callable[[], bool] | None = None,
    guidance: str = "neighbors",
    predictor=None,
    kernel: dict | None = None,
) -> Generator[Progress, None, None]:
    """Decompose the video frames ``frames`` of ``video`` (a sequence of (H, W[, C]) frames:
    a :class:`~napari_afb.video.VideoArray`, an array) in order; ``emit`` receives each one's
    N frames. Guidance comes from the true neighbouring frames, also outside ``frames``.
    Yields :class:`~napari_afb.engine.Progress` per video frame (``done`` counts frames of the
    range); ``cancel`` is polled between tiles and frames.

    ``kernel``: run the blur-kernel engine instead of ``model``, with these options of
    :func:`napari_afb.kernel.decompose.decompose_iter` plus ``shutter`` (the exposure's share of
    the frame interval); each frame's blur paths come from the flow to its neighbours."""
    _check_guidance(guidance, predictor)
    if kernel is not None and guidance != "neighbors":
        raise ValueError("the kernel engine takes each frame's blur paths from its neighbours")
    n_video, total = len(video), len(frames)
    stop = cancel or (lambda: False)
    first = frames[0]
    prev = video[first - 1] if first > 0 else None
    cur, last_labels = video[first], None
    for k, t in enumerate(frames):
        nxt = video[t + 1] if t + 1 < n_video else None
        if kernel is not None:
            gen = _kernel_frames(prev, cur, nxt, kernel, stop)
        elif guidance == "predict":
            samples = predict_guidance(
                cur, PREDICT_SAMPLES, seed=0, model=predictor, device=str(device)
            )
            labels = last_labels = _continuing(samples, last_labels)
        elif prev is None and nxt is None:
            labels = np.zeros(cur.shape[:2], np.uint8)  # a one-frame video: no motion to measure
        else:
            labels = guidance_from_neighbors(prev, cur, nxt)
        if stop():
            raise engine.Cancelled(f"cancelled at video frame {t} ({k} of {total} done)")
        if kernel is None:
            gen = engine.decompose_iter(
                cur, labels, model=model, device=device, tile=tile, cancel=stop
            )
        out = yield from _frames_of(gen, k, total)
        emit(out)
        yield Progress(k + 1, total, f"video frame {t} done ({k + 1} of {total})")
        prev, cur = cur, nxt


def animate_iter(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model,
    device,
    tile: int | None = None,
    overwrite: bool = False,
    cancel: Callable[[], bool] | None = None,
    guidance: str = "neighbors",
    predictor=None,
    start: int | None = None,
    stop: int | None = None,
    speed: str = "slow",
    kernel: dict | None = None,
) -> Generator[Progress, None, dict]:
    """Decompose the frames ``start`` to ``stop`` (exclusive; default: all) of the video
    ``source`` and write ``out`` (.mp4: H.264 where PyAV is installed, else mp4v; .avi: MJPG)
    in slow motion (``speed="slow"``: the source's frame rate) or real time (``"real"``: N
    times it).

    ``guidance`` is "neighbors" or "predict" (then ``predictor`` is the predictor module).
    ``kernel``: options of the blur-kernel engine, which then runs instead of ``model`` (see
    :func:`animate_frames`).

    Yields :class:`~napari_afb.engine.Progress` per video frame; returns a summary dict (frames
    in and out, frame rates, size). ``cancel`` is polled between tiles and frames.
    """
    out = Path(out)
    _check_guidance(guidance, predictor)  # here too: before the output is opened
    if out.suffix.lower() not in (".mp4", ".avi"):
        raise ValueError(f"{out}: write the animation as .mp4 (or .avi)")
    if speed not in SPEEDS:
        raise ValueError(f"speed must be one of {SPEEDS}, not {speed!r}")
    if Path(source).suffix.lower() in STILL_SUFFIXES:
        raise ValueError(
            f"{source} is a still image, not a video: decompose it with `napari-afb decompose`"
        )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another name or pass --overwrite")
    check_folder(out)
    video = VideoArray(source)
    n_video, h, w = video.shape[:3]
    frames = frame_range(n_video, start, stop)
    fps_in = video.fps or 25.0
    n = int(model.n_frames) if kernel is None else int(kernel.get("n_frames", 7))
    fps_out = fps_in * n if speed == "real" else fps_in
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial{out.suffix}")
    size = (w + w % 2, h + h % 2)
    try:
        writer = (Mp4Writer if out.suffix.lower() == ".mp4" else _AviWriter)(tmp, fps_out, size)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    def write(decomposed: np.ndarray) -> None:
        for frame in _rgb_even(decomposed):
            writer.write(frame)

    try:
        yield from animate_frames(
            video,
            frames,
            write,
            model=model,
            device=device,
            tile=tile,
            cancel=cancel,
            guidance=guidance,
            predictor=predictor,
            kernel=kernel,
        )
        writer.close()
        os.replace(tmp, out)
    finally:  # also on cancel, an error, Ctrl-C and (from the CLI) SIGTERM
        writer.close()
        tmp.unlink(missing_ok=True)
    return {
        "engine": "learned" if kernel is None else "kernel",
        "guidance": guidance,
        "frames_in": len(frames),
        "first": frames[0],
        "stop": frames[-1] + 1,
        "frames_out": len(frames) * n,
        "fps_in": fps_in,
        "fps_out": fps_out,
        "speed": "slow motion" if speed == "slow" else "real time",
        "codec": writer.codec,
        "size": f"{w}x{h}",
        "audio": "not carried over",
    }


class _AviWriter:
    """Motion JPEG in AVI (OpenCV), with :class:`~napari_afb.export.Mp4Writer`'s methods."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self._cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
        if not self._cv.isOpened():
            raise OSError(f"OpenCV cannot write {path.suffix} video here")
        self.codec = "Motion JPEG"

    def write(self, rgb: np.ndarray) -> None:
        self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._cv.release()


def _kernel_frames(prev, cur, nxt, options: dict, stop):
    """The kernel engine's job for one video frame, paths from its neighbours (a one-frame
    video has none: its frames are copies)."""
    from .kernel.decompose import decompose_iter
    from .kernel.video import DEFAULT_SHUTTER, blur_paths_from_neighbors

    opts = dict(options)
    shutter = opts.pop("shutter", DEFAULT_SHUTTER)
    if prev is None and nxt is None:
        paths, labels = [], np.zeros(cur.shape[:2], np.uint8)
    else:
        paths, labels = blur_paths_from_neighbors(prev, cur, nxt, shutter=shutter)
    # a measured path is the truth of this frame, not a guess to bound
    bound = max([opts.pop("kernel_bound", 51), *(int(p.extent()) + 3 for p in paths)])
    return decompose_iter(cur, labels, paths, kernel_bound=bound, cancel=stop, **opts)


def _frames_of(gen, t, n_in):
    """Run one video frame's job, its progress messages folded into frame t; the frames."""
    try:
        while True:
            p = next(gen)
            if p.message and not p.total:
                yield Progress(t, n_in, p.message)
    except StopIteration as done:
        result = done.value
    return getattr(result, "frames", result)  # the kernel engine returns a KernelResult


def animate_video(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    model=None,
    tile: int | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[Progress], None] = False,
    cancel: Callable[[], bool] | None = None,
    guidance: str = "neighbors",
    predictor_weights: str | os.PathLike | None = None,
    start: int | None = None,
    stop: int | None = None,
    speed: str = "slow",
    engine: str = "auto",
    shutter: float | str = "auto",
    kernel_bound: int = 51,
    strength: float | str = "auto",
    space: str = "auto",
) -> dict:
    """Turn a blurry video into a sharp one with N times the frame rate (see module docstring).

    Guidance for each frame comes from its neighbouring frames
    (:func:`napari_afb.guidance_from_neighbors`) with ``guidance="neighbors"``, or from the
    guidance predictor with ``guidance="predict"`` (``predictor_weights``: default
    ``$NAPARI_AFB_PREDICTOR_WEIGHTS``, then the packaged file). ``start`` and ``stop``
    (exclusive) pick a range of video frames (default: all). ``speed``: "slow" (slow motion at
    the source's frame rate, the default) or "real" (real time, N times the rate). Returns a
    summary dict (its ``codec`` says which codec wrote the video).

    ``engine``: "kernel" (each frame deblurred along the paths its neighbours' flow gives, the
    exposure taking ``shutter`` of the frame interval, or "auto": the longest share whose
    deconvolution does not ring), "learned", or "auto" (learned when
    ``weights`` or ``model`` is given, else kernel); ``kernel_bound``, ``strength`` and
    ``space`` as in :func:`napari_afb.decompose`.
    """
    from .api import choose_engine
    from .weights import cached_model, model_on

    dev = predictor = kernel = None
    if choose_engine(engine, weights, model) == "kernel":
        kernel = {"shutter": shutter, "kernel_bound": kernel_bound, "strength": strength}
        kernel["space"] = space
        guidance = "neighbors"  # the kernel engine's paths come from the neighbouring frames
    else:
        dev = engine_mod.select_device(device)
        model, _ = model_on(model, weights, dev)
        if guidance == "predict":
            predictor, _ = cached_model(predictor_weights, dev, role="predictor")
    gen = animate_iter(
        source,
        out,
        model=model if kernel is None else None,
        device=dev,
        tile=tile,
        overwrite=overwrite,
        cancel=cancel,
        guidance=guidance,
        predictor=predictor,
        start=start,
        stop=stop,
        speed=speed,
        kernel=kernel,
    )
    return engine_mod.drive(gen, progress, desc="animate", unit="frame")
