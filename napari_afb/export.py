"""Saving a stack of frames as an animated GIF, an MP4 video or a TIFF stack (no napari here).

Every format is written to a temporary file beside the destination and renamed into place only
when complete, so an error leaves neither a half-written file nor a damaged older one, and an
existing file is replaced only when the caller says ``overwrite=True``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from . import io

FORMATS = {".gif": "GIF", ".mp4": "MP4", ".tif": "TIFF", ".tiff": "TIFF"}
"""File extension -> format name, for the extensions :func:`export_frames` understands."""


def export_frames(
    frames: np.ndarray,
    path: str | os.PathLike,
    *,
    fps: float = 10.0,
    overwrite: bool = False,
    bounce: bool = False,
) -> Path:
    """Write ``frames`` to ``path``; the extension chooses the format. Returns the path written.

    ``frames`` is ``(N, H, W)`` grey or ``(N, H, W, C)`` with C = 1, 3 or 4, in time order,
    uint8, uint16 or float in [0, 1] (other integer types are read as 0-255 values).

    - ``.gif``: a looping animation at ``fps`` (8-bit; alpha dropped). ``bounce`` appends the
      frames in reverse (without repeating the ends), so the animation plays back and forth.
    - ``.mp4``: MPEG-4 Part 2 video (OpenCV, fourcc ``mp4v``) at ``fps``; 8-bit, RGB (grey is
      repeated into three channels, alpha dropped). Most codecs need an even width and height,
      so an odd-sized frame is padded by one row and/or column that repeats the edge pixels.
    - ``.tif`` / ``.tiff``: the stack exactly as given (shape, dtype, values), with axes
      ``TYX`` or ``TYXS`` and ``fps`` in the metadata. uint8 RGB and 8/16/32-bit grey stacks
      are written in ImageJ's hyperstack format (Fiji opens them as time series at ``fps``);
      other kinds (uint16 colour, RGBA, float64, ...) as a plain multi-page TIFF that tifffile
      reads back with the same shape.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false, and
    ``ValueError`` for an unknown extension, a frame rate that is not positive or frames of
    the wrong shape. ``bounce`` is only allowed for GIF.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot export to {path.name!r}: unknown extension {path.suffix!r} "
            f"(use {', '.join(sorted(FORMATS))})"
        )
    frames = check_frames(frames)
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"the frame rate must be a positive number, got {fps!r}") from None
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"the frame rate must be a positive number, got {fps!r}")
    if bounce and suffix != ".gif":
        raise ValueError("bounce (play forward then back) is only available for GIF")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name ending in {suffix}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another name or allow overwriting")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the extension: OpenCV and Pillow choose the container by it.
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.partial{suffix}")
    try:
        if suffix == ".gif":
            grey = frames[..., 0] if frames.ndim == 4 and frames.shape[-1] == 1 else frames
            io.write_gif(tmp, _to_uint8(grey), fps=fps, bounce=bounce)
        elif suffix == ".mp4":
            _write_mp4(tmp, frames, fps)
        else:
            _write_tiff(tmp, frames, fps)
        if path.exists() and not overwrite:  # appeared while we were writing
            raise FileExistsError(f"{path} already exists; choose another name")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_frames(frames) -> np.ndarray:
    """Return ``frames`` as an array, or raise ``ValueError`` saying what shape is expected."""
    frames = np.asarray(frames)
    ok_shape = frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] in (1, 3, 4))
    if not ok_shape or frames.shape[0] < 1 or 0 in frames.shape:
        raise ValueError(
            f"frames must be (N, H, W) or (N, H, W, C) with C = 1, 3 or 4 and N >= 1; "
            f"got shape {frames.shape}"
        )
    if not (np.issubdtype(frames.dtype, np.number) or frames.dtype == bool):
        raise ValueError(f"frames must hold numbers, got dtype {frames.dtype}")
    if np.iscomplexobj(frames):
        raise ValueError("frames must be real-valued, got complex numbers")
    return frames


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """8-bit copy for GIF and MP4: io.to_uint8's rules, plus bool and other integer types."""
    if frames.dtype == bool:
        return frames.astype(np.uint8) * 255
    if np.issubdtype(frames.dtype, np.integer) and frames.dtype not in (np.uint8, np.uint16):
        return np.clip(frames, 0, 255).astype(np.uint8)
    return io.to_uint8(frames)


def _rgb_even(frames: np.ndarray) -> np.ndarray:
    """(N, H, W[, C]) -> (N, H', W', 3) uint8 with H', W' even (edge rows/columns repeated)."""
    frames = _to_uint8(frames)
    if frames.ndim == 4:
        frames = frames[..., :3] if frames.shape[-1] >= 3 else frames[..., 0]
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """MP4 with OpenCV's 'mp4v' encoder, which every opencv-python(-headless) wheel bundles;
    when this OpenCV cannot open the writer, imageio's pyav or ffmpeg plugin if installed."""
    import cv2

    rgb = _rgb_even(frames)
    n, h, w, _ = rgb.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if writer.isOpened():
        try:
            for frame in rgb:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        if path.is_file() and path.stat().st_size > 0:
            return
    _write_mp4_imageio(path, rgb, fps)


def _write_mp4_imageio(path: Path, rgb: np.ndarray, fps: float) -> None:
    import importlib.util

    try:
        import imageio.v3 as iio
    except ImportError:
        iio = None
    if iio is not None and importlib.util.find_spec("av") is not None:
        iio.imwrite(path, rgb, plugin="pyav", codec="libx264", fps=fps)
        return
    if iio is not None and importlib.util.find_spec("imageio_ffmpeg") is not None:
        iio.imwrite(path, rgb, plugin="FFMPEG", fps=fps)
        return
    raise RuntimeError(
        "this OpenCV build cannot write MP4 video, and neither PyAV (pip install av) nor "
        "imageio-ffmpeg is installed; export as GIF or TIFF instead"
    )


def _write_tiff(path: Path, frames: np.ndarray, fps: float) -> None:
    import tifffile  # a dependency of napari; imported here so the package imports without it

    colour = frames.ndim == 4
    axes = "TYXS" if colour else "TYX"
    imagej = (not colour and frames.dtype in (np.uint8, np.uint16, np.float32)) or (
        colour and frames.dtype == np.uint8 and frames.shape[-1] == 3
    )
    metadata = {"axes": axes, "fps": fps}
    if imagej:
        metadata["finterval"] = 1.0 / fps  # ImageJ's frame interval, in seconds
    tifffile.imwrite(
        path,
        frames,
        imagej=imagej,
        photometric="rgb" if colour and frames.shape[-1] >= 3 else "minisblack",
        metadata=metadata,
    )
