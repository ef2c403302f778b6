"""Inference engine: device choice, input checks, padding, tiling, progress and cancel.

The work is a generator (:func:`decompose_iter`) that yields :class:`Progress` after each tile
and returns the frames; :func:`run` drives it for scripts, a napari ``thread_worker`` drives it
for the UI. Memory stays bounded for any image size: tiles overlap and are blended with weights
that sum to one, and the blend is accumulated one row of tiles at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator

import numpy as np
import torch
import torch.nn.functional as F

from .guidance import N_CLASSES, check_guidance
from .images import alloc_output, store_rows, to_rgb_float
from .jobs import Cancelled, Progress, drive, run, run_with_bar  # noqa: F401 (re-exported)

# Measured on a 2-core CPU (1024x1024 input): 512-px tiles 4.4 s/MP, 768 px 5.4, 1024 px 6.6:
# smaller tiles stay in cache even though the overlap makes them process 1.56x the pixels.
DEFAULT_TILE = {"cpu": 512, "cuda": 2048, "mps": 1024}
DEFAULT_OVERLAP = 128
MIN_TILE = 128


class DeviceError(RuntimeError):
    """The requested compute device is not available.

    ``str(error)`` names the way out as the Python API spells it (``device='cpu'``);
    ``error.cli_message`` says the same with the command line's flag (``--device cpu``).
    """

    def __init__(self, message: str, cli_message: str | None = None):
        super().__init__(message)
        self.cli_message = cli_message or message


def _with_cli_message(exc: BaseException, cli_message: str) -> BaseException:
    """``exc`` (worded for the Python API) with the command line's wording attached: the CLI
    prints ``exc.cli_message`` where there is one."""
    exc.cli_message = cli_message
    return exc


# ---------------------------------------------------------------------------------------------
# Devices


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps".

    Raises :class:`DeviceError` with the reason when the choice is not available here.
    """
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if torch.version.cuda is None:
            raise _unavailable(
                name,
                f"this PyTorch ({torch.__version__}) was built without CUDA",
                "install a CUDA build of torch or use",
            )
        if not torch.cuda.is_available():
            raise _unavailable(name, "no CUDA GPU is visible", "use")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _unavailable(name, f"only {torch.cuda.device_count()} CUDA device(s) exist")
        return dev
    if name == "mps":
        if not _mps_available():
            raise _unavailable(name, "Apple's MPS backend is not available", "use")
        return torch.device("mps")
    raise DeviceError(
        f"unknown device {str(device)!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'",
        f"unknown device {str(device)!r}: use --device auto, cpu, cuda, cuda:N or mps",
    )


def _unavailable(name: str, why: str, way_out: str = "") -> DeviceError:
    """'device X asked for, but <why>[; <way_out> the CPU]', in the API's words and the CLI's."""
    api, cli = f"device {name!r} asked for, but {why}", f"--device {name} asked for, but {why}"
    if way_out:
        api, cli = f"{api}; {way_out} device='cpu'", f"{cli}; {way_out} --device cpu"
    return DeviceError(api, cli)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def available_devices() -> list[str]:
    """Device names usable here, for a UI dropdown ("auto" first)."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a precision choice, or None for plain float32."""
    if precision not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"precision must be auto, float32, bfloat16 or float16, not {precision!r}")
    if precision == "float32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and precision == "float16":
        raise ValueError("float16 is not supported on the CPU; use float32 or bfloat16")
    return getattr(torch, precision)


# ---------------------------------------------------------------------------------------------
# Images in and out


# ---------------------------------------------------------------------------------------------
# Tiling


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px along an axis of ``size`` px, ``overlap`` apart.

    Starts are multiples of ``tile - overlap``; the last tile ends at the image edge and may be
    shorter, but always longer than the overlap.
    """
    step = tile - overlap
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(starts[-1] + step)
    return starts


def blend_ramp(length: int) -> np.ndarray:
    """Rising blend weights across an overlap of ``length`` px; ``1 - ramp`` is the falling side.

    The first and last quarters are 0 and 1: a tile never contributes the pixels nearest its
    edge, where its network saw truncated context. A smoothstep joins them.
    """
    pos = (np.arange(length, dtype=np.float64) + 0.5) / length
    t = np.clip((pos - 0.25) / 0.5, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _axis_weights(starts: list[int], size: int, tile: int, i: int) -> np.ndarray:
    s, e = starts[i], min(starts[i] + tile, size)
    w = np.ones(e - s, dtype=np.float32)
    if i > 0:  # overlap with the previous tile: rows [s, prev_end)
        n = min(starts[i - 1] + tile, size) - s
        w[:n] = blend_ramp(n)
    if i + 1 < len(starts):  # overlap with the next tile: rows [next_start, e)
        n = e - starts[i + 1]
        w[e - s - n :] *= 1.0 - blend_ramp(n)
    return w


def _pad_to(x: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


# ---------------------------------------------------------------------------------------------
# The decomposition


class _OutOfMemory(Exception):
    pass


def _is_oom(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or an allocator failure on another device (CPU: "can't allocate
    memory"); both are RuntimeErrors."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    text = str(exc).lower()
    return isinstance(exc, oom_type) or "out of memory" in text or "can't allocate" in text


def decompose_iter(
    image,
    guidance,
    *,
    model: torch.nn.Module,
    device: torch.device,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    precision: str = "auto",
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Decompose one image into the model's N frames, tile by tile.

    Yields :class:`Progress` after each tile; returns an (N, H, W[, C]) array in the image's own
    dtype and channel layout. ``cancel`` is polled between tiles; when it returns True the run
    stops with :class:`Cancelled`. ``tile`` is the tile side in pixels (None: a default for the
    device; 0: the whole image at once). When the device runs out of memory the tile is halved
    and the run restarts, with a warning and a progress message saying so.
    """
    rgb, alpha, layout = to_rgb_float(image)
    h, w = rgb.shape[:2]
    labels = check_guidance(guidance, shape=(h, w))
    stride = int(getattr(model, "stride", 1))
    n_frames = int(model.n_frames)
    if tile is None:
        tile = DEFAULT_TILE.get(device.type, 1024)
    asked_tile, asked_overlap = tile, overlap
    if tile <= 0:
        tile = _round_up(max(h, w), stride)
    tile = max(_round_up(tile, stride), stride)
    overlap = _round_up(max(overlap, 0), stride)
    if tile < max(h, w) and tile < 2 * overlap + stride:
        raise _tile_too_small(asked_tile, asked_overlap, overlap, stride)
    amp = autocast_dtype(device, precision)
    model = model.eval()

    while True:
        try:
            frames = yield from _decompose_tiles(
                rgb, labels, alpha, layout, model, device, n_frames, tile, overlap, amp, cancel
            )
            return frames
        except _OutOfMemory:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            smaller = max(_round_up(tile // 2, stride), stride)
            if tile <= MIN_TILE or smaller < 2 * overlap + stride:  # no smaller tiling is valid
                why = f"out of memory on {device} even with {tile}-px tiles; free GPU memory"
                raise _with_cli_message(
                    MemoryError(f"{why}, use a smaller overlap, or use device='cpu'"),
                    f"{why}, use a smaller --overlap, or use --device cpu",
                ) from None
            msg = (
                f"out of memory on {device} with {tile}-px tiles; retrying with {smaller}-px tiles"
            )
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            yield Progress(0, 0, msg)
            tile = smaller


def _decompose_tiles(
    rgb, labels, alpha, layout, model, device, n_frames, tile, overlap, amp, cancel
):
    h, w = rgb.shape[:2]
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    total = len(ys) * len(xs)
    out = alloc_output(n_frames, h, w, layout)
    carry = None  # blended rows shared with the next row of tiles
    done = 0
    for iy, y0 in enumerate(ys):
        y1 = min(y0 + tile, h)
        band = np.zeros((n_frames, y1 - y0, w, 3), dtype=np.float32)
        if carry is not None:
            band[:, : carry.shape[1]] += carry
        wy = _axis_weights(ys, h, tile, iy)
        for ix, x0 in enumerate(xs):
            if cancel is not None and cancel():
                raise Cancelled(f"cancelled after {done} of {total} tiles")
            x1 = min(x0 + tile, w)
            frames = _run_tile(rgb[y0:y1, x0:x1], labels[y0:y1, x0:x1], model, device, amp)
            weight = wy[:, None] * _axis_weights(xs, w, tile, ix)[None, :]
            band[:, :, x0:x1] += frames * weight[None, :, :, None]
            done += 1
            yield Progress(done, total, f"tile {done} of {total}")
        final = ys[iy + 1] - y0 if iy + 1 < len(ys) else y1 - y0
        store_rows(out, y0, band[:, :final], layout, alpha)
        carry = band[:, final:].copy() if final < band.shape[1] else None
    return out


def model_inputs(rgb, labels, model, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w, 3) float image and (h, w) labels -> the (1, 3, H, W) image and (1, G, H, W)
    one-hot guidance a decomposer takes, on ``device``, padded to the model's stride (crop
    its outputs back to h x w)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), np.float32))[None]
    lab = torch.from_numpy(np.ascontiguousarray(labels)).to(device=device, dtype=torch.long)
    g = F.one_hot(lab, N_CLASSES).permute(2, 0, 1)[None].to(torch.float32)
    stride = int(getattr(model, "stride", 1))
    return _pad_to(x.to(device), stride), _pad_to(g, stride)


def _run_tile(rgb, labels, model, device, amp) -> np.ndarray:
    """(h, w, 3) float, (h, w) labels -> (N, h, w, 3) float32 frames."""
    h, w = labels.shape
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None),
        ):
            y = model(*model_inputs(rgb, labels, model, device))
        y = y[0, :, :, :h, :w].float().permute(0, 2, 3, 1).cpu().numpy()
    except RuntimeError as exc:
        if _is_oom(exc):
            raise _OutOfMemory() from exc
        raise
    return y


def _round_up(v: int, m: int) -> int:
    return -(-int(v) // m) * m


def _tile_too_small(asked_tile: int, asked_overlap: int, overlap: int, stride: int) -> ValueError:
    """The error for a tile that cannot hold two overlaps: it names the values as given and the
    smallest tile that works with that overlap (in the API's words and the CLI's)."""
    least = 2 * overlap + stride
    rounded = f", {overlap} px once rounded up" if overlap != asked_overlap else ""
    why = (
        f"is too small for an overlap of {asked_overlap} px{rounded}: a tile must be at least "
        f"{least} px (twice the overlap plus the network's stride of {stride} px; tile sides "
        f"are rounded up to a multiple of {stride})"
    )
    return _with_cli_message(
        ValueError(
            f"tile={asked_tile} {why}; use tile={least} or more, tile=0 for the whole image at "
            f"once, or a smaller overlap"
        ),
        f"--tile {asked_tile} {why}; use --tile {least} or more, --tile 0 for the whole image "
        f"at once, or a smaller --overlap",
    )
