"""A video file as a lazy, frame-accurate, numpy-like array of RGB frames.

:class:`VideoArray` opens instantly whatever the length of the video and decodes a frame only
when it is indexed, so napari (or any code that indexes arrays) can scrub a long video without
loading it. It imports no napari and no Qt: the core can use it too.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from .io import InputError

# FFmpeg's own log is silenced in .io (imported above), before any capture or writer opens.

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm"}

# Container frame counts can be a frame or two too high (box.mp4 claims 456, 455 decode); the
# count is checked by decoding this many frames before the claimed end.
_TAIL = 4
# A forward jump of at most this many frames is served by decoding through (each frame costs one
# decode); a longer one seeks (which costs the decode of up to a keyframe interval).
_MAX_SKIP = 16
_CACHE_BYTES = 256 * 2**20


class VideoArray:
    """The frames of a video file as a read-only ``(T, H, W, 3)`` uint8 RGB array.

    Indexing decodes on demand: ``video[k]`` is frame ``k`` (H, W, 3); ``video[a:b]``,
    ``video[[i, j]]`` and tuples with spatial indices (``video[k, y0:y1, x0:x1]``) give numpy
    arrays as numpy would. Opening decodes only the last few frames (to check the container's
    frame count), however long the video.

    Frame accuracy: one capture stays open with the index of the frame it returns next; reading
    that frame (sequential playback) or one a few frames ahead just decodes forward, anything else
    seeks by frame number, which OpenCV's FFmpeg backend resolves to the exact frame. Recent
    frames are kept in a small LRU cache. A lock serialises decoding, so napari's slicing
    threads may index concurrently.

    ``np.asarray(video)`` decodes *every* frame into memory (T x H x W x 3 bytes: about 3.7 GB
    for a minute of 1080p at 30 fps); index what you need instead.

    Attributes: ``path``, ``fps`` (None when the file does not say), ``shape``, ``dtype``,
    ``n_claimed`` (the container's frame count, which ``len`` may undercut), and the counters
    ``frames_decoded`` (frames handed over by the decoder, not counting those decoded inside a
    seek) and ``seeks``.

    Raises :class:`~napari_afb.io.InputError` for a file that is not a decodable video.
    """

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, path: str | os.PathLike, cache_frames: int = 16):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"no such file: {self.path}")
        self._init_state()
        cap = self._capture()
        self.fps = _positive(cap.get(cv2.CAP_PROP_FPS))
        self.n_claimed = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
        n, last = self._count_frames()
        if n == 0:
            self.close()
            raise InputError(f"cannot read {self.path}: no frame of the video could be decoded")
        self.shape = (n, *last.shape)
        frame_bytes = max(last.nbytes, 1)
        self._cache_frames = max(2, min(cache_frames, _CACHE_BYTES // frame_bytes))
        self._remember(n - 1, last)

    # -- the numpy-like surface -------------------------------------------------------------

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size  # one byte per value

    def __getitem__(self, key) -> np.ndarray:
        key = _expand_ellipsis(key if isinstance(key, tuple) else (key,), self.ndim)
        t, rest = (key[0], key[1:]) if key else (slice(None), ())
        n = len(self)
        if not isinstance(t, slice) and np.ndim(t) == 0:
            k = operator.index(t)
            if not -n <= k < n:
                raise IndexError(f"frame {k} is out of range for a video of {n} frames")
            return np.array(self._frame(k % n)[rest])  # a copy: the cache stays intact
        if isinstance(t, slice):
            indices = range(*t.indices(n))
        else:
            indices = _fancy_indices(t, n)
            if any(np.ndim(r) > 0 for r in rest):
                raise IndexError("VideoArray takes an index array on the time axis only")
        frames = [self._frame(k)[rest] for k in indices]
        if not frames:
            return np.empty((0, *np.empty(self.shape[1:], self.dtype)[rest].shape), self.dtype)
        return np.stack(frames)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every frame, decoded into memory (see the class docstring: this can be huge)."""
        if copy is False:
            raise ValueError("a VideoArray cannot be viewed as an array without decoding a copy")
        frames = self[:]
        return frames if dtype is None else frames.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"VideoArray({str(self.path)!r}, shape={self.shape}, fps={self.fps})"

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the decoder and the cache; indexing again reopens the file."""
        with self._lock:
            if self._cap is not None:
                self._cap.release()
            self._cap, self._next = None, None
            self._cache.clear()

    def __enter__(self) -> VideoArray:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # Decoder, lock and cache stay behind: a copy (or an unpickled one) opens its own.
        keep = ("path", "fps", "n_claimed", "shape", "_cache_frames")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_state()

    # -- decoding -----------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cap: cv2.VideoCapture | None = None
        self._next: int | None = None  # index of the frame the capture decodes next; None: unknown
        self.frames_decoded = 0
        self.seeks = 0

    def _capture(self) -> cv2.VideoCapture:
        if self._cap is None:
            # FFmpeg first: its seeking by frame number is what was checked to be exact. OpenCV
            # warns ("backend is generally available but can't be used to capture by name")
            # for a file no backend opens; the InputError below says it plainly instead.
            with _opencv_quiet():
                cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
                if not cap.isOpened():
                    cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                raise InputError(
                    f"cannot read {self.path}: not a video OpenCV can decode, or corrupt"
                )
            self._cap, self._next = cap, 0
        return self._cap

    def _decode_next(self) -> np.ndarray | None:
        """The capture's next frame as RGB, or None at the end (or on a decoding error)."""
        cap = self._capture()
        ok, bgr = cap.read()
        if not ok or bgr is None:
            self._next = None
            return None
        self.frames_decoded += 1
        self._next = None if self._next is None else self._next + 1
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _skip(self, count: int) -> bool:
        """Decode ``count`` frames without converting them (to walk forward to a frame)."""
        cap = self._capture()
        for _ in range(count):
            if not cap.grab():
                self._next = None
                return False
            self.frames_decoded += 1
            self._next = None if self._next is None else self._next + 1
        return True

    def _seek(self, k: int) -> None:
        cap = self._capture()
        self.seeks += 1
        cap.set(cv2.CAP_PROP_POS_FRAMES, k)
        self._next = k

    def _count_frames(self) -> tuple[int, np.ndarray | None]:
        """(number of frames that decode, the last of them): decode the last few frames the
        container claims; if none of them decodes (a truncated file), bisect for the end."""
        claimed = self.n_claimed
        if claimed <= 0:  # a stream that does not say: count by decoding (slow, but rare)
            n, last = 0, None
            while (frame := self._decode_next()) is not None:
                n, last = n + 1, frame
            self._next = None
            return n, last
        start = max(claimed - _TAIL, 0)
        n, last = self._decode_run(start, claimed - start)
        if n > start or start == 0:
            return n, last
        lo_frame = self._decode_at(0)
        if lo_frame is None:
            return 0, None
        lo, hi = 0, start  # frame lo decodes, frame hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            frame = self._decode_at(mid)
            lo, hi, lo_frame = (mid, hi, frame) if frame is not None else (lo, mid, lo_frame)
        return lo + 1, lo_frame

    def _decode_run(self, start: int, count: int) -> tuple[int, np.ndarray | None]:
        """Seek to ``start`` and decode up to ``count`` frames: (index after the last frame that
        decoded, that frame)."""
        self._seek(start)
        n, last = start, None
        for _ in range(count):
            frame = self._decode_next()
            if frame is None:
                break
            n, last = n + 1, frame
        self._next = None  # a seek that ran off the end leaves the capture in no known place
        return n, last

    def _decode_at(self, k: int) -> np.ndarray | None:
        n, frame = self._decode_run(k, 1)
        return frame if n == k + 1 else None

    def _frame(self, k: int) -> np.ndarray:
        """Frame ``k`` (0 <= k < len), from the cache or decoded; the cached array itself."""
        with self._lock:
            frame = self._cache.get(k)
            if frame is not None:
                self._cache.move_to_end(k)
                return frame
            frame = self._read(k)
            if frame is None:  # the decoder may have lost its way: reopen and seek once more
                self.close()
                frame = self._read(k)
            if frame is None:
                raise InputError(f"frame {k} of {self.path} could not be decoded")
            if frame.shape != self.shape[1:]:  # the stream changed size midway
                frame = cv2.resize(frame, (self.shape[2], self.shape[1]))
            self._remember(k, frame)
            return frame

    def _read(self, k: int) -> np.ndarray | None:
        ahead = None if self._next is None else k - self._next
        if ahead is None or not 0 <= ahead <= _MAX_SKIP or not self._skip(ahead):
            self._seek(k)
        return self._decode_next()

    def _remember(self, k: int, frame: np.ndarray) -> None:
        frame.setflags(write=False)
        self._cache[k] = frame
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: int | None = None


@contextlib.contextmanager
def _opencv_quiet():
    """OpenCV's own log (its ``[ WARN:...]`` lines) at errors only, for the duration; the level
    the process had comes back afterwards, also when captures open in several threads at once."""
    global _quiet_depth, _quiet_saved
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:  # an OpenCV without the logging API
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = logging.getLogLevel()
            logging.setLogLevel(min(_quiet_saved, logging.LOG_LEVEL_ERROR))
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logging.setLogLevel(_quiet_saved)


def _positive(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


def _expand_ellipsis(key: tuple, ndim: int) -> tuple:
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(k is not None and k is not Ellipsis for k in key)
    if used > ndim:
        raise IndexError(f"too many indices for an array of {ndim} dimensions")
    if n_ellipsis:
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - used) + key[at + 1 :]
    return key


def _fancy_indices(t, n: int) -> np.ndarray:
    idx = np.asarray(t)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"a boolean index on the time axis needs {n} values")
        return np.flatnonzero(idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise IndexError("the time axis takes an int, a slice, or a 1-D array of ints or bools")
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"frame index out of range for a video of {n} frames")
    return np.where(idx < 0, idx + n, idx)
