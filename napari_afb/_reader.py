"""napari reader (npe2 ``readers`` contribution): blurry photos and videos.

Images (png, jpg, tif, bmp, webp; grey, RGB, RGBA, 8 or 16 bits) are read whole by
:func:`napari_afb.io.read_image`; videos (mp4, avi, mov, mkv, m4v, webm) open as a lazy
:class:`~napari_afb.video.VideoArray` that decodes only the frames napari shows.

napari is imported only to tell the user that a file could not be read.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .io import IMAGE_EXTENSIONS, read_image
from .video import VIDEO_EXTENSIONS, VideoArray


def get_reader(path: str | list[str]) -> Callable[[str], list[tuple]] | None:
    """The reader for ``path`` if it is one existing image or video file we can open, else None.

    Only looks at the name and that the file exists: the reading (and any error) happens when
    napari calls the returned function. A list of paths is accepted when it holds one path.
    """
    path = _single(path)
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS or not p.is_file():
        return None
    return read_file


def read_file(path: str | os.PathLike) -> list[tuple]:
    """Layer data for one image or video file; never raises.

    A file that cannot be read is reported to the user in a napari notification, and the
    result is ``[(None,)]``, napari's sentinel for "handled, no layers". Why not ``[]`` or None:
    npe2 (io_utils._read) treats any falsy result as a failed read and raises ValueError("...
    returned no data"), which napari wraps in a ReaderPluginError: a second, vaguer error (with
    a traceback, or a "choose another reader" dialog) on top of ours. With the sentinel, napari
    adds no layer and says nothing more, so the user sees only our message, which names the
    reason.
    """
    p = Path(_single(path) or "")
    try:
        if p.suffix.lower() in VIDEO_EXTENSIONS:
            return [_video_layer(p)]
        return [_image_layer(p)]
    except Exception as exc:  # whatever the cause, the user gets a message, napari no traceback
        _notify_error(f"napari-afb could not read {p.name}: {_reason(exc, p)}")
        return [(None,)]


def _single(path) -> str | os.PathLike | None:
    """The one path in ``path`` (a path, or a list of one, as napari passes with stack=True)."""
    if isinstance(path, list | tuple):
        path = path[0] if len(path) == 1 else None
    return path if isinstance(path, str | os.PathLike) else None


def _image_layer(path: Path) -> tuple:
    image = read_image(path)
    rgb = image.ndim == 3 and image.shape[2] in (3, 4)
    meta = {"name": path.stem, "rgb": rgb, "metadata": {"source_path": str(path)}}
    if image.dtype == np.uint16:
        # Full range, as a photo viewer shows it; but data that fits in 12 bits is most likely
        # from a 10- or 12-bit camera, and would look nearly black: show it on its own range.
        meta["contrast_limits"] = (0, 4095 if image.max() <= 4095 else 65535)
    return (image, meta, "image")


def _video_layer(path: Path) -> tuple:
    video = VideoArray(path)
    if video.n_claimed - len(video) > 4:  # more than the usual off-by-one: a damaged file
        _notify_warning(
            f"napari-afb: only the first {len(video)} of the {video.n_claimed} frames of "
            f"{path.name} could be decoded (the file may be truncated)"
        )
    meta = {
        "name": path.stem,
        "rgb": True,
        "multiscale": False,
        # Fixed limits, so napari never scans the video to find them (uint8 needs none anyway).
        "contrast_limits": (0, 255),
        "axis_labels": ("t", "y", "x"),
        "metadata": {"source_path": str(path), "fps": video.fps, "n_frames": len(video)},
    }
    return (video, meta, "image")


def _reason(exc: Exception, path: Path) -> str:
    """The error's message without the "cannot read <path>:" that the notification repeats."""
    message = str(exc)
    for prefix in (f"cannot read {path}:", f"cannot read {path}", f"{path}:"):
        if message.startswith(prefix):
            message = message[len(prefix) :]
            break
    message = message.replace(str(path), path.name).strip()
    return message or type(exc).__name__


def _notify_error(message: str) -> None:
    _notify(message, "show_error")


def _notify_warning(message: str) -> None:
    _notify(message, "show_warning")


def _notify(message: str, kind: str) -> None:
    try:
        from napari.utils import notifications
    except ImportError:  # called outside napari: a Python warning is the closest thing
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return
    getattr(notifications, kind)(message)
