"""Whole-video animation: every blurry frame of a video decomposed into N sharp frames, with
guidance from its neighbouring frames, written as a video at N times the frame rate.

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
from .engine import Progress
from .export import _rgb_even
from .flow import guidance_from_neighbors
from .video import VideoArray

__all__ = ["animate_iter", "animate_video"]


def animate_iter(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model,
    device,
    tile: int | None = None,
    overwrite: bool = False,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, dict]:
    """Decompose every frame of the video ``source`` and write ``out`` (.mp4, mp4v codec).

    Yields :class:`~napari_afb.engine.Progress` per video frame; returns a summary dict (frames
    in and out, frame rates, size). ``cancel`` is polled between tiles and frames.
    """
    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".avi"):
        raise ValueError(f"{out}: write the animation as .mp4 (or .avi)")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another name or pass --overwrite")
    video = VideoArray(source)
    n_in, h, w = video.shape[:3]
    fps_in = video.fps or 25.0
    n = int(model.n_frames)
    fps_out = fps_in * n
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial{out.suffix}")
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if out.suffix.lower() == ".mp4" else "MJPG"))
    size = (w + w % 2, h + h % 2)
    writer = cv2.VideoWriter(str(tmp), fourcc, fps_out, size)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {out.suffix} video here")
    stop = cancel or (lambda: False)
    try:
        prev, cur = None, video[0]
        for t in range(n_in):
            nxt = video[t + 1] if t + 1 < n_in else None
            if prev is None and nxt is None:
                labels = np.zeros((h, w), np.uint8)  # a one-frame video: no motion to measure
            else:
                labels = guidance_from_neighbors(prev, cur, nxt)
            if stop():
                raise engine.Cancelled(f"cancelled at video frame {t} of {n_in}")
            frames = yield from _frames_of(cur, labels, model, device, tile, stop, t, n_in)
            for frame in _rgb_even(frames):
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            yield Progress(t + 1, n_in, f"video frame {t + 1} of {n_in}")
            prev, cur = cur, nxt
        writer.release()
        os.replace(tmp, out)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    return {
        "frames_in": n_in,
        "frames_out": n_in * n,
        "fps_in": fps_in,
        "fps_out": fps_out,
        "size": f"{w}x{h}",
        "audio": "not carried over",
    }


def _frames_of(image, labels, model, device, tile, stop, t, n_in):
    """The engine's generator for one video frame, its tile progress folded into frame t."""
    gen = engine.decompose_iter(image, labels, model=model, device=device, tile=tile, cancel=stop)
    try:
        while True:
            p = next(gen)
            if p.message and not p.total:
                yield Progress(t, n_in, p.message)
    except StopIteration as done:
        return done.value


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
) -> dict:
    """Turn a blurry video into a sharp one with N times the frame rate (see module docstring).

    Guidance for each frame comes from its neighbouring frames
    (:func:`napari_afb.guidance_from_neighbors`). Returns a summary dict.
    """
    from .weights import model_on

    dev = engine.select_device(device)
    model, _ = model_on(model, weights, dev)
    gen = animate_iter(
        source, out, model=model, device=dev, tile=tile, overwrite=overwrite, cancel=cancel
    )
    if progress is True:
        return engine.run_with_bar(gen, desc="animate", unit="frame")
    return engine.run(gen, progress or None)
