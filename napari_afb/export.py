"""Saving a stack of frames as an animated GIF, an MP4 video or a TIFF stack (no napari here).

Every format is written to a temporary file beside the destination and renamed into place only
when complete, so an error leaves neither a half-written file nor a damaged older one, and an
existing file is replaced only when the caller says ``overwrite=True``.
"""

from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
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
    - ``.mp4``: H.264 video (yuv420p, what browsers and phones play) at ``fps`` where PyAV
      with its libx264 encoder is installed (``pip install av``), else MPEG-4 Part 2 (OpenCV,
      fourcc ``mp4v``); :func:`write_frames` says which codec was used. 8-bit, RGB (grey is
      repeated into three channels, alpha dropped). Most codecs need an even width and height,
      so an odd-sized frame is padded by one row and/or column that repeats the edge pixels.
    - ``.tif`` / ``.tiff``: the stack exactly as given (shape, dtype, values), with axes
      ``TYX`` or ``TYXS`` and ``fps`` in the metadata. uint8 RGB and 8/16/32-bit grey stacks
      are written in ImageJ's hyperstack format (Fiji opens them as time series at ``fps``);
      other kinds (uint16 colour, RGBA, float64, ...) as a plain multi-page TIFF that tifffile
      reads back with the same shape.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false,
    ``FileNotFoundError`` when its folder does not exist (no folder is created),
    ``PermissionError`` (naming ``path``) when the folder or file cannot be written, and
    ``ValueError`` for an unknown extension, a frame rate that is not positive or frames of
    the wrong shape. ``bounce`` is only allowed for GIF. Nothing is left behind on an error.
    """
    return write_frames(frames, path, fps=fps, overwrite=overwrite, bounce=bounce).path


@dataclass
class Exported:
    """What :func:`write_frames` wrote: the file, its format, the codec (for MP4: "H.264" or
    "MPEG-4 Part 2"; the format's name otherwise), the frame count and the frame rate."""

    path: Path
    format: str
    codec: str
    frames: int
    fps: float


def write_frames(
    frames: np.ndarray,
    path: str | os.PathLike,
    *,
    fps: float = 10.0,
    overwrite: bool = False,
    bounce: bool = False,
) -> Exported:
    """:func:`export_frames`, returning what was written (:class:`Exported`): the path and,
    for MP4, which codec the installed libraries could write."""
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
    check_folder(path)
    # The temporary name keeps the extension: OpenCV and Pillow choose the container by it.
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.partial{suffix}")
    codec = FORMATS[suffix]
    try:
        if suffix == ".gif":
            grey = frames[..., 0] if frames.ndim == 4 and frames.shape[-1] == 1 else frames
            io.write_gif(tmp, _to_uint8(grey), fps=fps, bounce=bounce)
        elif suffix == ".mp4":
            codec = _write_mp4(tmp, frames, fps)
        else:
            _write_tiff(tmp, frames, fps)
        if path.exists() and not overwrite:  # appeared while we were writing
            raise FileExistsError(f"{path} already exists; choose another name")
        os.replace(tmp, path)
    except PermissionError as exc:  # name the user's file, not the temporary one
        raise PermissionError(
            exc.errno, f"cannot write {path}: permission denied ({exc.strerror or exc})"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    n = len(frames) * 2 - 2 if bounce and len(frames) > 2 else len(frames)
    return Exported(path, FORMATS[suffix], codec, n, fps)


def check_folder(path: str | os.PathLike) -> None:
    """Refuse (``FileNotFoundError``, ``NotADirectoryError``, ``PermissionError``, each naming
    ``path``) a destination whose folder is missing, is not a folder or cannot be written:
    exports never create folders."""
    path = Path(path)
    parent = path.parent
    if not parent.exists():
        raise FileNotFoundError(
            f"cannot save {path}: the folder {parent} does not exist; create it first or "
            f"choose another folder"
        )
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot save {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES, f"cannot save {path}: the folder {parent} is not writable"
        )


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


#: What the MP4 writer calls its codecs (``Mp4Writer.codec``).
H264, MPEG4_PART2 = "H.264", "MPEG-4 Part 2"


def h264_available() -> bool:
    """Whether H.264 can be written here: PyAV with an H.264 encoder (libx264 in its wheels)."""
    try:
        import av
    except ImportError:
        return False
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # an FFmpeg build without libx264
        return False
    return True


class Mp4Writer:
    """Streamed MP4 writing, frame by frame: H.264 (yuv420p) through PyAV where it is
    installed, else OpenCV's MPEG-4 Part 2 ('mp4v', in every opencv-python wheel). ``codec``
    says which. Frames are (H, W, 3) uint8 RGB of the ``size`` (W, H) given, both even."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self._av = self._cv = None
        if h264_available():
            import av

            self.path.touch()  # FFmpeg opens the file only with the first packet
            self._av = av.open(str(self.path), mode="w", format="mp4")
            rate = Fraction(float(fps)).limit_denominator(1001)
            stream = self._av.add_stream("libx264", rate=rate)
            stream.width, stream.height = self.size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "preset": "medium"}
            self._stream = stream
            self.codec = H264
        else:
            import cv2

            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self._cv.isOpened():
                raise OSError(
                    f"cannot write {self.path.name}: this OpenCV build cannot write MP4 video "
                    "and PyAV is not installed (pip install av); export as GIF or TIFF instead"
                )
            self.codec = MPEG4_PART2

    def write(self, rgb: np.ndarray) -> None:
        if self._av is not None:
            import av

            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in self._stream.encode(frame):
                self._av.mux(packet)
        else:
            import cv2

            self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._av is not None:
            container, self._av = self._av, None
            try:
                for packet in self._stream.encode(None):
                    container.mux(packet)
            finally:
                container.close()
        if self._cv is not None:
            self._cv.release()
            self._cv = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> str:
    """Write an MP4 (see :class:`Mp4Writer`); returns the codec used."""
    rgb = _rgb_even(frames)
    n, h, w, _ = rgb.shape
    with Mp4Writer(path, fps, (w, h)) as writer:
        for frame in rgb:
            writer.write(frame)
    if not (path.is_file() and path.stat().st_size > 0):
        raise OSError(f"the {writer.codec} encoder wrote nothing")
    return writer.codec


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
