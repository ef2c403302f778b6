"""Core benchmark of napari-afb: network size and compute, CPU speed, peak memory, GPU speed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_core.py [--quick] [--json PATH] [--weights W] [--device auto]

Prints a table and writes the figures as JSON (default ``benchmarks/results/core_<name>.json``,
``<name>`` being the GPU's name when section 4 ran on one, else the host name).

1. Parameters and MACs per pixel of the decomposer (FlopCounterMode on a 256x256 input), beside
   the reference method's figures (quoted, not measured here) and the project's budget.
2. CPU seconds per megapixel of ``napari_afb.decompose`` on a 1024x1024 uint8 RGB image:
   whole image (tile=0) and the default tiling (tile=None).
3. Peak RSS, wall time and s/MP for a 4K and an 8K RGB image on the CPU, default tiling, each in a
   fresh subprocess so that peaks do not mix.
4. The same on CUDA when it is available (bf16/fp16 autocast, precision="auto").

Without ``--weights`` the packaged default weights are used (when the package ships them), else
the default architecture untrained. The inputs are random images with random guidance.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

# Quoted, not measured here: the reference method (Zhong et al., "Animation from Blur:
# Multi-modal Blur Decomposition with Motion Guidance", ECCV 2022), as stated in the issue.
REFERENCE = {
    "source": "Zhong et al., ECCV 2022 (Animation from Blur), figures quoted in the issue",
    "mmac_per_px": 10.0,
    "params_m": 129.0,
}
BUDGET = {"mmac_per_px": 0.5, "params_m": 15.0, "rss_8k_gb": 8.0}

FLOP_SIDE = 256
CPU_SIDE = 1024
RSS_SIZES = {"4K": (3840, 2160), "8K": (7680, 4320)}  # (width, height)
GPU_SIZES = {  # name: (width, height)
    "1024x1024": (1024, 1024),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "4K": (3840, 2160),
    "8K": (7680, 4320),
}
FLOP_NOTE = (
    "FlopCounterMode counts convolutions (and matmuls) only: grid_sample, normalisation, GELU, "
    "the sRGB<->linear projection and other elementwise ops are not counted"
)
LOAD_NOTE = (
    "other load = CPU time used by other processes during the runs, as a share of all CPUs; "
    "above ~10% the timings are inflated"
)
UNTRAINED_NOTE = (
    "default (untrained) initialisation: the work per pixel does not depend on the weights' "
    "values, so an untrained network costs the same time and memory as a trained one"
)


# ---------------------------------------------------------------------------------------------
# Helpers


def _mp(width: int, height: int) -> float:
    return width * height / 1e6


def make_inputs(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random uint8 RGB image (H, W, 3) and a random guidance map (H, W) with labels 0-4."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    guidance = rng.integers(0, 5, size=(height, width), dtype=np.uint8)
    return image, guidance


def build_model(weights: str | None):
    """(model, description): the decomposer from ``weights``, else the packaged default
    weights, else the default architecture untrained."""
    from napari_afb import models
    from napari_afb.weights import WeightsError, packaged_weights

    if not weights:
        try:
            weights = str(packaged_weights("decomposer"))
        except WeightsError:
            pass  # none ship: the untrained default architecture below
    if weights:
        from napari_afb.weights import load_weights

        model, info = load_weights(weights, "cpu")
        desc = {
            "source": "weights",
            "weights": info.summary(),
            "architecture": info.architecture,
            "arch_args": info.arch_args,
        }
    else:
        model = models.build("motion_unet")
        desc = {
            "source": "default init (untrained)",
            "weights": None,
            "architecture": "motion_unet",
            "arch_args": {},
            "note": UNTRAINED_NOTE,
        }
    desc["n_frames"] = int(model.n_frames)
    return model.eval(), desc


def tiling(width: int, height: int, tile: int, overlap: int, stride: int) -> dict:
    """Number of tiles and pixels the network sees, as the engine would tile the image."""
    from napari_afb import engine

    if tile <= 0:
        tile = max(width, height)
    tile = max(-(-tile // stride) * stride, stride)
    overlap = -(-overlap // stride) * stride
    ys = engine.tile_starts(height, tile, overlap)
    xs = engine.tile_starts(width, tile, overlap)
    seen = sum(min(tile, height - y) for y in ys) * sum(min(tile, width - x) for x in xs)
    return {
        "tile": tile,
        "tiles": len(ys) * len(xs),
        "pixels_processed_mp": seen / 1e6,
        "overhead": seen / (width * height),
    }


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float | None:
    """The process's peak resident set size so far, in MiB: VmHWM on Linux, else ru_maxrss.

    On Linux ``ru_maxrss`` is not usable in a subprocess: it starts at the *parent's* RSS at
    the time of the fork (the old address space's high-water mark is kept across exec), so a
    small child of a big parent reports the parent's size. VmHWM belongs to the new address
    space only.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float | None:
    """getrusage(RUSAGE_SELF).ru_maxrss in MiB (peak_wset on Windows); see peak_rss_mb."""
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        peak = getattr(psutil.Process().memory_info(), "peak_wset", None)
        return None if peak is None else peak / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 2**20 if sys.platform == "darwin" else kb / 2**10  # bytes on macOS, KiB else


class RssSampler:
    """Samples RSS with psutil in a thread: a cross-check of the peak (may miss short spikes)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


class LoadMonitor:
    """CPU time used by *other* processes while a block runs, as a share of the machine.

    Timings on a shared machine are only as good as it was quiet: this makes contention visible.
    ``foreign_share`` = (busy CPU seconds of the whole machine - this process's and its waited-for
    children's CPU seconds) / (wall seconds x logical CPUs).
    """

    def __enter__(self):
        import psutil

        self._proc = psutil.Process()
        self._t0 = time.perf_counter()
        self._sys0 = self._busy(psutil.cpu_times())
        self._own0 = self._own()
        return self

    @staticmethod
    def _busy(t) -> float:
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

    def _own(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def __exit__(self, *exc):
        import psutil

        wall = time.perf_counter() - self._t0
        foreign = self._busy(psutil.cpu_times()) - self._sys0 - (self._own() - self._own0)
        capacity = wall * (psutil.cpu_count() or 1)
        self.foreign_share = max(foreign, 0.0) / capacity if capacity > 0 else 0.0
        self.result = {"wall_s": wall, "foreign_share": self.foreign_share}


def machine_info(torch) -> dict:
    import psutil

    import napari_afb

    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "ram_gb": psutil.virtual_memory().total / 2**30,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "napari_afb": napari_afb.__version__,
        "git_commit": _git_commit(),
        "cuda_available": torch.cuda.is_available(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


# ---------------------------------------------------------------------------------------------
# 1. Size and compute


def bench_compute(model, torch) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    g = int(getattr(model, "guidance_classes", 5))
    x = torch.rand(1, 3, FLOP_SIDE, FLOP_SIDE)
    guide = torch.zeros(1, g, FLOP_SIDE, FLOP_SIDE)
    guide[:, 0] = 1
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x, guide)
    flops = counter.get_total_flops()
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    macs_px = flops / 2 / (FLOP_SIDE * FLOP_SIDE)
    return {
        "params": params,
        "params_m": params / 1e6,
        "input": f"{FLOP_SIDE}x{FLOP_SIDE}",
        "flops": int(flops),
        "flops_by_op": by_op,
        "mmac_per_px": macs_px / 1e6,
        "note": FLOP_NOTE,
        "reference_quoted": REFERENCE,
        "budget": {k: BUDGET[k] for k in ("mmac_per_px", "params_m")},
        "within_budget": {
            "params": params / 1e6 <= BUDGET["params_m"],
            "mmac_per_px": macs_px / 1e6 <= BUDGET["mmac_per_px"],
        },
    }


# ---------------------------------------------------------------------------------------------
# 2. CPU time per megapixel


def time_decompose(model, image, guidance, *, device, tile, precision="auto", warmup, repeats):
    """Wall and CPU-process seconds of each of ``repeats`` runs after ``warmup`` runs."""
    import napari_afb

    def once():
        return napari_afb.decompose(
            image, guidance, model=model, device=device, tile=tile, precision=precision
        )

    for _ in range(warmup):
        once()
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = once()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        del out
    return walls, cpus


def bench_cpu_time(model, *, quick: bool) -> list[dict]:
    from napari_afb import engine

    warmup, repeats = (1, 2) if quick else (1, 5)
    image, guidance = make_inputs(CPU_SIDE, CPU_SIDE)
    mp = _mp(CPU_SIDE, CPU_SIDE)
    stride = int(getattr(model, "stride", 1))
    rows = []
    configs = [
        ("whole image (tile=0)", 0),
        (f"default tiling (tile=None -> {engine.DEFAULT_TILE['cpu']})", None),
    ]
    if not quick:  # smaller tiles: a hint for the CPU default (cache effects vs. overlap)
        configs.append(("extra: tile=512", 512))
    for label, tile in configs:
        with LoadMonitor() as load:
            walls, cpus = time_decompose(
                model, image, guidance, device="cpu", tile=tile, warmup=warmup, repeats=repeats
            )
        med = statistics.median(walls)
        t = engine.DEFAULT_TILE["cpu"] if tile is None else tile
        rows.append(
            {
                "config": label,
                "tile_arg": tile,
                "size": f"{CPU_SIDE}x{CPU_SIDE}",
                "warmup": warmup,
                "repeats": repeats,
                "wall_s": walls,
                "process_cpu_s": cpus,
                "median_s": med,
                "min_s": min(walls),
                "s_per_mp": med / mp,
                "other_load": load.foreign_share,
                **tiling(CPU_SIDE, CPU_SIDE, t, engine.DEFAULT_OVERLAP, stride),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# 3. Peak RSS on the CPU, one fresh subprocess per size


def child_rss(args) -> dict:
    """Runs in the subprocess: baseline, then one decomposition of a (W, H) image on the CPU."""
    import torch

    import napari_afb
    from napari_afb import engine

    width, height = (int(v) for v in args.child_size.lower().split("x"))
    model, _ = build_model(args.weights)
    stride = int(getattr(model, "stride", 1))
    baseline = {"rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
    image, guidance = make_inputs(width, height)
    after_input = rss_mb()
    with RssSampler() as sampler, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        frames = napari_afb.decompose(image, guidance, model=model, device="cpu", tile=None)
        wall = time.perf_counter() - t0
    peak = peak_rss_mb()
    ru_peak = ru_maxrss_mb()
    return {
        "size": f"{width}x{height}",
        "mp": _mp(width, height),
        "torch_threads": torch.get_num_threads(),
        "baseline_rss_mb": baseline["rss_mb"],
        "baseline_peak_rss_mb": baseline["peak_rss_mb"],
        "after_input_rss_mb": after_input,
        "peak_rss_mb": peak,
        "sampled_peak_rss_mb": sampler.peak,
        "ru_maxrss_mb": ru_peak,  # may include the parent's RSS at fork time on Linux
        "increment_mb": None if peak is None else peak - baseline["rss_mb"],
        "input_mb": (image.nbytes + guidance.nbytes) / 2**20,
        "output_mb": frames.nbytes / 2**20,
        "output_shape": list(frames.shape),
        "warnings": [str(w.message) for w in caught],  # e.g. an out-of-memory tile retry
        "wall_s": wall,
        "s_per_mp": wall / _mp(width, height),
        **tiling(width, height, engine.DEFAULT_TILE["cpu"], engine.DEFAULT_OVERLAP, stride),
    }


def bench_rss(args) -> list[dict]:
    rows = []
    for name, (w, h) in RSS_SIZES.items():
        if args.quick and name == "8K":
            rows.append({"name": name, "size": f"{w}x{h}", "skipped": "--quick"})
            continue
        print(f"  [3] {name} ({w}x{h}) in a fresh subprocess ...", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child-size", f"{w}x{h}"]
        if args.weights:
            cmd += ["--weights", str(args.weights)]
        with LoadMonitor() as load:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        total = load.result["wall_s"]
        result = None
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
        if proc.returncode != 0 or result is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            rows.append(
                {
                    "name": name,
                    "size": f"{w}x{h}",
                    "error": f"subprocess exit {proc.returncode}",
                    "stderr_tail": tail,
                    "subprocess_s": total,
                    "other_load": load.foreign_share,
                }
            )
            continue
        result.update(name=name, subprocess_s=total, other_load=load.foreign_share)
        if name == "8K" and result.get("peak_rss_mb") is not None:
            result["target_gb"] = BUDGET["rss_8k_gb"]
            result["within_target"] = result["peak_rss_mb"] / 1024 <= BUDGET["rss_8k_gb"]
        rows.append(result)
    return rows


# ---------------------------------------------------------------------------------------------
# 4. CUDA


def gpu_device(requested: str, torch):
    """(device or None, reason it is None)."""
    from napari_afb import engine

    if str(requested).lower() == "cpu":
        return None, "--device cpu asked for"
    try:
        dev = engine.select_device(requested)
    except engine.DeviceError as exc:
        return None, str(exc)
    if dev.type != "cuda":
        why = (
            f"torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda})"
        )
        if dev.type == "mps":
            why += "; MPS is available but this section measures CUDA only"
        return None, why
    return dev, ""


def _sync(dev, torch) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev, torch) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_mb(dev, torch) -> float | None:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return None


def network_only_s(model, dev, width, height, precision, torch, repeats) -> float:
    """Median seconds of the bare network on a device-resident input (no host work)."""
    from napari_afb import engine

    stride = int(getattr(model, "stride", 1))
    h, w = -(-height // stride) * stride, -(-width // stride) * stride
    g = int(getattr(model, "guidance_classes", 5))
    x = torch.rand(1, 3, h, w, device=dev)
    guide = torch.zeros(1, g, h, w, device=dev)
    guide[:, 0] = 1
    amp = engine.autocast_dtype(dev, precision)
    times = []
    with (
        torch.inference_mode(),
        torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None),
    ):
        model(x, guide)
        for _ in range(repeats):
            _sync(dev, torch)
            t0 = time.perf_counter()
            model(x, guide)
            _sync(dev, torch)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_gpu(model, dev, torch, *, quick: bool) -> list[dict]:
    from napari_afb import engine

    model = model.to(dev)
    stride = int(getattr(model, "stride", 1))
    rows = []
    plan = [
        ("1024x1024", "auto", 10),
        ("1024x1024", "float32", 5),
        ("720p", "auto", 20),
        ("1080p", "auto", 10),
        ("4K", "auto", 3),
        ("8K", "auto", 1),
    ]
    if quick:
        plan = [(n, p, max(1, r // 3)) for n, p, r in plan if n != "8K"]
    for name, precision, repeats in plan:
        w, h = GPU_SIZES[name]
        image, guidance = make_inputs(w, h)
        _reset_peak(dev, torch)
        with LoadMonitor() as load:
            walls, _ = time_decompose(
                model,
                image,
                guidance,
                device=str(dev),
                tile=None,
                precision=precision,
                warmup=1,
                repeats=repeats,
            )
        _sync(dev, torch)
        peak = _peak_mb(dev, torch)
        med = statistics.median(walls)
        net = network_only_s(model, dev, min(w, 2048), min(h, 2048), precision, torch, 3)
        amp = engine.autocast_dtype(dev, precision)
        rows.append(
            {
                "name": name,
                "size": f"{w}x{h}",
                "precision": precision,
                "autocast_dtype": str(amp).replace("torch.", "") if amp else "float32",
                "repeats": repeats,
                "wall_s": walls,
                "median_s": med,
                "s_per_mp": med / _mp(w, h),
                "per_second": 1.0 / med,
                "max_memory_allocated_mb": peak,
                "other_load": load.foreign_share,
                "network_only_s_per_mp": net / _mp(min(w, 2048), min(h, 2048)),
                **tiling(w, h, engine.DEFAULT_TILE["cuda"], engine.DEFAULT_OVERLAP, stride),
            }
        )
    model.to("cpu")
    return rows


# ---------------------------------------------------------------------------------------------
# Report


def _fmt(v, spec=".2f", none="-"):
    return none if v is None else format(v, spec)


def print_header(info: dict, model_desc: dict, gpu_desc: str) -> None:
    print("=" * 100)
    print(f"napari-afb core benchmark   {info['date']}   napari-afb {info['napari_afb']}", end="")
    print(f"   commit {info['git_commit'] or '?'}")
    print(
        f"machine: {info['hostname']}  {info['platform']}  {info['processor']}\n"
        f"         CPUs {info['cpu_count_logical']} logical / "
        f"{info['cpu_count_physical']} physical, RAM {info['ram_gb']:.1f} GiB, "
        f"Python {info['python']}, numpy {info['numpy']}, load average at start "
        f"{' '.join(f'{v:.2f}' for v in info['loadavg_at_start'] or [])}\n"
        f"         torch {info['torch']} (CUDA build: {info['torch_cuda']}), "
        f"torch threads {info['torch_threads']}; CPU sections on device=cpu, "
        f"GPU section: {gpu_desc}"
    )
    arch = model_desc["architecture"]
    args = model_desc["arch_args"] or "defaults"
    print(f"model:   {arch} {args}, n_frames={model_desc['n_frames']}, {model_desc['source']}")
    if model_desc.get("weights"):
        print(f"         weights {model_desc['weights']}")
    else:
        print(f"         note: {UNTRAINED_NOTE}")
    print("=" * 100)


def print_compute(c: dict) -> None:
    print(f"\n1. Size and compute (MACs from FlopCounterMode on a {c['input']} input)")
    print(f"   {'':26}{'this model':>14}{'reference*':>14}{'budget':>10}{'within':>9}")
    ok = c["within_budget"]
    print(
        f"   {'parameters (M)':26}{c['params_m']:>14.3f}{REFERENCE['params_m']:>14.0f}"
        f"{BUDGET['params_m']:>10.1f}{'yes' if ok['params'] else 'NO':>9}"
    )
    print(
        f"   {'MMAC per output pixel':26}{c['mmac_per_px']:>14.4f}"
        f"{'~' + format(REFERENCE['mmac_per_px'], '.0f'):>14}"
        f"{BUDGET['mmac_per_px']:>10.1f}{'yes' if ok['mmac_per_px'] else 'NO':>9}"
    )
    print(
        "   (per output pixel position, all frames together = FLOPs / 2 / pixels; "
        f"total {c['flops'] / 1e9:.2f} GFLOP)"
    )
    print(f"   * reference: quoted, not measured here: {REFERENCE['source']}")
    print(f"   note: {FLOP_NOTE}")


def print_cpu_time(rows: list[dict]) -> None:
    r0 = rows[0]
    print(
        f"\n2. CPU time, napari_afb.decompose on a {r0['size']} uint8 RGB image, random guidance, "
        f"device=cpu (median of {r0['repeats']} after {r0['warmup']} warm-up)"
    )
    print(
        f"   {'configuration':40}{'tiles':>6}{'px seen':>9}{'median s':>10}{'min s':>8}"
        f"{'s/MP':>8}{'CPU s/run':>11}{'other load':>12}"
    )
    for r in rows:
        cpu = statistics.median(r["process_cpu_s"])
        print(
            f"   {r['config']:40}{r['tiles']:>6}{r['overhead']:>8.2f}x{r['median_s']:>10.2f}"
            f"{r['min_s']:>8.2f}{r['s_per_mp']:>8.2f}{cpu:>11.2f}{r['other_load']:>11.0%}"
        )
    print(
        "   (s/MP = median wall seconds / image megapixels; 'px seen' = pixels the network "
        "processed / image pixels; CPU s/run = process CPU time, all threads;\n"
        f"    {LOAD_NOTE})"
    )
    if len(rows) > 1 and rows[0]["tiles"] == rows[1]["tiles"] == 1:
        print(
            f"   note: at {r0['size']} the default CPU tile covers the whole image, so the first "
            "two rows do the same work (see section 3 for tiled runs)"
        )


def print_rss(rows: list[dict]) -> None:
    print(
        "\n3. Peak memory on the CPU, default tiling, one fresh subprocess per size "
        "(RSS in MiB; peak = VmHWM on Linux, else ru_maxrss)"
    )
    print(
        f"   {'input':18}{'tiles':>6}{'baseline':>10}{'+input':>9}{'peak':>9}{'sampled':>9}"
        f"{'increment':>11}{'out MiB':>9}{'wall s':>9}{'s/MP':>7}{'other':>7}"
    )
    for r in rows:
        label = f"{r['name']} {r['size']}"
        if "skipped" in r:
            print(f"   {label:18}skipped ({r['skipped']})")
            continue
        if "error" in r:
            print(f"   {label:18}FAILED: {r['error']}")
            for line in r["stderr_tail"]:
                print(f"      | {line}")
            continue
        print(
            f"   {label:18}{r['tiles']:>6}{r['baseline_rss_mb']:>10.0f}"
            f"{r['after_input_rss_mb']:>9.0f}{_fmt(r['peak_rss_mb'], '.0f'):>9}"
            f"{r['sampled_peak_rss_mb']:>9.0f}{_fmt(r['increment_mb'], '.0f'):>11}"
            f"{r['output_mb']:>9.0f}{r['wall_s']:>9.1f}{r['s_per_mp']:>7.2f}"
            f"{r['other_load']:>7.0%}"
        )
        for msg in r.get("warnings", []):
            print(f"      warning from the run: {msg}")
    print(
        "   (baseline = RSS after importing torch and building the model; +input = after "
        "building the image and guidance;\n    sampled = psutil every 20 ms, a cross-check; "
        "increment = peak - baseline; out = the returned frames; one cold run each;\n"
        "    other = other processes' CPU load during the run, as in section 2)"
    )
    eight = next((r for r in rows if r.get("name") == "8K"), None)
    if eight and eight.get("peak_rss_mb") is not None:
        verdict = "met" if eight["within_target"] else "NOT met"
        print(
            f"   target (issue): 8K within {BUDGET['rss_8k_gb']:.0f} GB peak RSS -> "
            f"{eight['peak_rss_mb'] / 1024:.2f} GiB: {verdict}"
        )
    elif eight:
        print(f"   target (issue): 8K within {BUDGET['rss_8k_gb']:.0f} GB peak RSS -> not measured")


def print_gpu(gpu: dict) -> None:
    print("\n4. CUDA")
    if gpu.get("skipped"):
        print(f"   skipped: {gpu['skipped']}")
        return
    print(f"   {gpu['device_name']}; napari_afb.decompose end to end (uint8 in, uint8 out)")
    print(
        f"   {'input':20}{'precision':>17}{'tiles':>6}{'median s':>10}{'s/MP':>8}{'per s':>8}"
        f"{'max alloc MiB':>15}{'net-only s/MP':>15}{'other':>7}"
    )
    for r in gpu["rows"]:
        prec = f"{r['precision']}->{r['autocast_dtype']}"
        print(
            f"   {r['name'] + ' ' + r['size']:20}{prec:>17}{r['tiles']:>6}"
            f"{r['median_s']:>10.3f}{r['s_per_mp']:>8.3f}{r['per_second']:>8.2f}"
            f"{_fmt(r['max_memory_allocated_mb'], '.0f'):>15}{r['network_only_s_per_mp']:>15.4f}"
            f"{r['other_load']:>7.0%}"
        )
    print(
        "   (per s = decompositions per second; max alloc = torch.cuda.max_memory_allocated; "
        "net-only = the bare network on a\n    device-resident input of at most 2048x2048, "
        "no host-side conversion or blending)"
    )


# ---------------------------------------------------------------------------------------------


def default_json_path(info: dict, gpu: dict, quick: bool) -> Path:
    name = gpu.get("device_name") or info["hostname"] or "unknown"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower() or "unknown"
    return ROOT / "benchmarks" / "results" / f"core_{name}{'_quick' if quick else ''}.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, skip the 8K runs")
    p.add_argument("--json", type=Path, help="where to write the JSON results")
    p.add_argument("--weights", help="decomposer weights file (default: untrained default init)")
    p.add_argument(
        "--device",
        default="auto",
        help="device for section 4: auto (CUDA if available), cuda, cuda:N or cpu (skips it)",
    )
    p.add_argument("--child-size", help=argparse.SUPPRESS)  # internal: section 3's subprocess
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_size:
        print("RESULT " + json.dumps(child_rss(args)), flush=True)
        return 0

    import torch

    info = machine_info(torch)
    model, model_desc = build_model(args.weights)
    dev, why = gpu_device(args.device, torch)
    gpu_desc = f"{dev} ({torch.cuda.get_device_name(dev)})" if dev is not None else "skipped"
    print_header(info, model_desc, gpu_desc)
    results = {"machine": info, "model": model_desc, "quick": args.quick}
    t_start = time.perf_counter()

    results["compute"] = compute = bench_compute(model, torch)
    print_compute(compute)

    print("\n  [2] timing on the CPU ...", flush=True)
    results["cpu_time"] = cpu_rows = bench_cpu_time(model, quick=args.quick)
    print_cpu_time(cpu_rows)

    print(flush=True)
    results["rss"] = rss_rows = bench_rss(args)
    print_rss(rss_rows)

    if dev is None:
        gpu = {"skipped": why}
    else:
        gpu = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev)}
        gpu["rows"] = bench_gpu(model, dev, torch, quick=args.quick)
    results["gpu"] = gpu
    print_gpu(gpu)

    results["total_s"] = time.perf_counter() - t_start
    loads = [
        (f"{sec} {r.get('config') or r.get('name')}", r["other_load"])
        for sec, rows in (("2", cpu_rows), ("3", rss_rows), ("4", gpu.get("rows", [])))
        for r in rows
        if "other_load" in r
    ]
    busy = [f"{k} ({v:.0%})" for k, v in loads if v > 0.10]
    results["contended"] = busy
    if busy:
        print(
            "\nWARNING: other processes used over 10% of the CPUs during: "
            + ", ".join(busy)
            + "; those timings are inflated (rerun on a quiet machine)"
        )
    path = args.json or default_json_path(info, gpu, args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\ntotal {results['total_s']:.0f} s; JSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
