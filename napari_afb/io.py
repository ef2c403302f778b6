"""Reading images and guidance maps, writing frames and animations, safely.

Outputs are written into a temporary folder beside the destination and renamed into place only
when complete, so a failed or cancelled run leaves no half-written files, and an existing
destination is never replaced unless the caller asks for it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import struct
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from .guidance import COLORS, check_guidance

# FFmpeg (inside OpenCV) prints its own messages to the process's stderr from C, past Python:
# a truncated or fake video makes it print "[mov,mp4,...] moov atom not found" beside our own
# error, and seeking H.264 makes it warn about slices it skips on its way to the frame (the
# frames are right: checked frame by frame against sequential decoding on the clips in
# ../shared/data). OpenCV reads this level once, when its FFmpeg backend first opens a file or
# a writer (not at import), so it is set here, in the module that everything in this package
# reading or writing video imports first. A level the user set is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

#: The image files read_image is meant for (the reader and the training data use this list).
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
_PILLOW_FIRST = {".jpg", ".jpeg", ".webp", ".gif"}


class InputError(ValueError):
    """A file could not be read as what it should be."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W), (H, W, 3) or (H, W, 4) uint8/uint16 in RGB order.

    JPEG orientation tags are applied; 16-bit PNG and TIFF keep their depth. A missing,
    truncated or corrupt file raises :class:`InputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    if path.suffix.lower() in _PILLOW_FIRST:
        try:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode not in ("L", "RGB", "RGBA"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                return np.asarray(im).copy()
        except Exception as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
    buf = np.fromfile(path, dtype=np.uint8)  # (works with non-ASCII paths, unlike cv2.imread)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except cv2.error as exc:  # e.g. a header that claims more pixels than OpenCV decodes
        raise InputError(f"cannot read {path}: {_claimed_size(path)}{_cv_reason(exc)}") from None
    if img is None:
        raise InputError(f"cannot read {path}: not an image OpenCV can decode, or truncated")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: unsupported pixel type {img.dtype} (use 8- or 16-bit)")
    return img


def _claimed_size(path: Path) -> str:
    """'its header claims W x H px; ' when Pillow can read the header, else ''."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read here: no decompression bomb
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:
        return ""
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return f"its header claims {w} x {h} px ({w * h / 1e6:,.0f} MP); "


def _cv_reason(exc: Exception) -> str:
    text = str(exc)
    if "CV_IO_MAX_IMAGE_PIXELS" in text or "validateInputImageSize" in text:
        return "larger than OpenCV decodes (at most 2^30 px, about 1,074 MP)"
    return "OpenCV could not decode it"


def read_guidance(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a guidance label map from a .npy file or a single-channel PNG/TIFF (values 0-4)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such guidance file: {path}")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"cannot read {path} as a .npy array: {exc}") from None
    else:
        try:
            with Image.open(path) as im:
                if im.mode in ("RGB", "RGBA"):
                    raise InputError(
                        f"{path} is a colour image; a guidance map must be a single-channel "
                        f"label image with values 0-4 (palette PNGs are read by index)"
                    )
                arr = np.asarray(im).copy()
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot read guidance {path}: {exc}") from None
    try:
        return check_guidance(arr, shape)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: {exc}") from None


def write_guidance_png(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write a label map as a palette PNG: its pixel values are the labels (so
    :func:`read_guidance` and ``--guidance`` read it back exactly) and viewers show it in the
    UI's colours (static is black)."""
    labels = check_guidance(labels)
    image = Image.fromarray(labels, mode="P")
    image.putpalette(guidance_rgb(np.arange(5, dtype=np.uint8)[None]).reshape(-1).tolist())
    path = Path(path)
    image.save(path, format="PNG")
    return path


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames in any supported dtype -> uint8, for display formats."""
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype == np.uint16:
        return (frames >> 8).astype(np.uint8)
    return np.rint(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def guidance_rgb(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8 picture in the UI's colours (static is black)."""
    lut = np.array([[c * 255 for c in COLORS[i][:3]] for i in range(5)], dtype=np.uint8)
    lut[0] = 0
    return lut[check_guidance(labels)]


def write_png(path: Path, image: np.ndarray) -> None:
    """Write uint8 or uint16 grey/RGB/RGBA as PNG (float is converted to uint8)."""
    if image.dtype not in (np.uint8, np.uint16):
        image = to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    buf.tofile(path)


def write_gif(path: Path, frames: np.ndarray, fps: float = 10.0, bounce: bool = False) -> None:
    """Write (N, H, W[, C]) frames as a looping animated GIF. ``bounce`` plays forward then back.

    Every frame is kept and shown for 1/fps s (GIF counts in 10 ms, at least 20 ms), also when
    consecutive frames are identical. Pillow's animated-GIF writer merges identical neighbours
    into one longer frame (7 equal frames at 10 fps became one 700-ms still), so Pillow encodes
    each frame on its own, with its own palette as in Pillow's animations, and the frames are
    put together here.
    """
    if not fps > 0:
        raise ValueError(f"the frame rate must be positive, got {fps}")
    frames = to_uint8(frames)
    order = list(range(len(frames))) + (list(range(len(frames) - 2, 0, -1)) if bounce else [])
    encoded = [_gif_frame(Image.fromarray(f[..., :3] if f.ndim == 3 else f)) for f in frames]
    delay = max(int(round(100 / fps)), 2)  # hundredths of a second
    h, w = frames.shape[1:3]
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", w, h, 0x70, 0, 0)  # no global colour table: each frame has one
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for k in order:
        descriptor, transparency = encoded[k]
        flags = 0x04 | (1 if transparency is not None else 0)  # disposal 1: leave in place
        out += b"\x21\xf9\x04" + struct.pack("<BHBB", flags, delay, transparency or 0, 0)
        out += descriptor
    out += b"\x3b"
    Path(path).write_bytes(bytes(out))


def _gif_frame(image: Image.Image) -> tuple[bytes, int | None]:
    """One image as Pillow encodes it in a GIF: (its image descriptor with a local colour table
    and the compressed data, its transparent index or None)."""
    buf = BytesIO()
    image.save(buf, format="GIF")
    data = buf.getvalue()
    screen_flags, pos = data[10], 13
    table = b""
    if screen_flags & 0x80:  # Pillow's global colour table becomes the frame's local one
        size = 3 << ((screen_flags & 7) + 1)
        table, pos = data[pos : pos + size], pos + size
    transparency = None
    while data[pos] == 0x21:  # extensions: keep the transparent index, drop the rest
        if data[pos + 1] == 0xF9 and data[pos + 3] & 1:
            transparency = data[pos + 6]
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    if data[pos] != 0x2C:
        raise RuntimeError(f"unexpected GIF block {data[pos]:#x} from Pillow")
    descriptor = bytearray(data[pos : pos + 10])
    end = pos + 10
    if descriptor[9] & 0x80:  # a local table already: it follows the descriptor
        end += 3 << ((descriptor[9] & 7) + 1)
        table = b""
    elif table:
        descriptor[9] = (descriptor[9] & 0x40) | 0x80 | (screen_flags & 7)  # keep interlacing
    end += 1  # LZW minimum code size, then data sub-blocks up to an empty one
    while data[end]:
        end += data[end] + 1
    end += 1
    return bytes(descriptor) + table + data[pos + 10 : end], transparency


@contextlib.contextmanager
def staged_directory(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; on success it becomes ``dest``.

    An existing non-empty ``dest`` is refused unless ``overwrite``; then it is replaced only after
    the new content is complete. On any error the temporary folder is removed.
    """
    dest = Path(dest)
    check_destination(dest, overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its folder is mode 0700, and this folder becomes the user's output,
    # which should get the usual permissions from the umask.
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.partial"
    tmp.mkdir()
    try:
        yield tmp
        check_destination(dest, overwrite)
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        if dest.exists():  # overwrite: move the old content aside, put the new in, drop the old
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_destination(dest: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file or non-empty folder unless ``overwrite``."""
    if dest.exists() and not overwrite:
        if dest.is_file() or any(dest.iterdir()):
            raise FileExistsError(
                f"{dest} already exists; choose another --out or pass --overwrite"
            )
