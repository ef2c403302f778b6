"""Training throughput: windows per second of the old data path against synthesis on the device,
and training steps per second of both models under the precision and layout options.

Run from the repository root::

    .venv/bin/python benchmarks/bench_data.py [--config configs/decomposer_cpu.toml]
        [--device auto] [--batches 6] [--json PATH]

Prints a table and writes the figures as JSON (default
``benchmarks/results/data_<device name>.json``).

1. **Data only**, windows per second, the config's own mix of clips and stills (its crop and
   batch size), after the first batch (worker start-up, flow cache reading):
   - ``workers``: ``VideoWindows`` in a DataLoader with ``data.workers`` processes, every window
     decoding its frames and computing its own DIS flows (the path configs used until now);
   - ``device``: ``DeviceBatches`` on ``--device``, from flows computed once per clip
     (``runs/flow_cache``; building them is timed separately, once).
2. **Training**, windows per second of whole training steps (data, forward, backward, AdamW)
   with either source, the config's model, measured by ``train()`` itself (its
   ``samples_per_s``, the first logged interval left out).
3. **Model steps per second** of the decomposer and the predictor on fixed batches (no data
   cost): float32, bf16 autocast, bf16 + channels-last, bf16 + ``torch.compile`` (CUDA only for
   the bf16 rows; a CPU has no fast bf16 here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from napari_afb.engine import select_device  # noqa: E402
from napari_afb.training.config import load_config  # noqa: E402

FLOW_CACHE = ROOT / "runs" / "flow_cache"


def _measured(cfg, synthesis: str) -> None:
    """The config as both measurements use it: the chosen data path, no window cache, no
    validation, the config's mix of clips and stills from the first batch."""
    cfg.data.synthesis = synthesis
    cfg.data.cache_windows = 0
    cfg.data.val_windows = 0
    cfg.data.stills_only_steps = 0
    cfg.data.flow_cache_dir = str(FLOW_CACHE)


def data_rate(cfg, synthesis: str, device: torch.device, batches: int) -> dict:
    """Windows per second of one data path (first batch left out), and its start-up time."""
    from napari_afb.training import train as T

    _measured(cfg, synthesis)
    t0 = time.perf_counter()
    data, _ = T.build_data(cfg)
    if synthesis == "device":
        source = data.to(device).batches(0)
    else:
        sampler = T.EpochSampler(len(data), cfg.seed, 0, 1, cfg.data.batch_size)
        source = iter(T._loader(data, cfg, sampler, pin=device.type == "cuda"))
    next(source)
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(source)
        batch["blurry"].to(device)
    _sync(device)
    elapsed = time.perf_counter() - start
    del source
    return {
        "windows_per_s": batches * cfg.data.batch_size / elapsed,
        "startup_s": start - t0,
    }


def train_rate(cfg, synthesis: str, device: str, steps: int) -> float:
    """Windows per second of whole training steps, as train() logs them."""
    from napari_afb.training.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg.out_dir = tmp
        _measured(cfg, synthesis)
        cfg.optim.steps = steps
        cfg.log_every = max(1, steps // 3)
        cfg.checkpoint_every = 10**6
        train(cfg, device=device, progress=False)
        log = [json.loads(x) for x in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in log if "samples_per_s" in r][1:]
    return sum(rates) / len(rates)


def model_rates(device: torch.device, crop: int, batch: int, steps: int) -> list[dict]:
    """Training steps per second of both default architectures on fixed random batches."""
    from napari_afb import models
    from napari_afb.training.train import _onehot

    rows = []
    variants = [("float32", None, False, False)]
    if device.type == "cuda":
        variants += [
            ("bf16", torch.bfloat16, False, False),
            ("bf16 + channels-last", torch.bfloat16, True, False),
            ("bf16 + torch.compile", torch.bfloat16, False, True),
        ]
    else:
        variants += [("float32 + channels-last", None, True, False)]
    for arch, args in (("motion_deconv", {"blur_cues": True}), ("guidance_net", {})):
        for name, amp, channels_last, compile_ in variants:
            torch.manual_seed(0)
            net = models.build(arch, **args).to(device).train()
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            for param in net.parameters():  # the 4-d ones (convolutions); buffers stay as they are
                if param.dim() == 4:
                    param.data = param.data.contiguous(memory_format=fmt)
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
            x = torch.rand(batch, 3, crop, crop, device=device).to(memory_format=fmt)
            g = _onehot(torch.randint(0, 5, (batch, crop, crop), device=device))
            run = torch.compile(net) if compile_ else net
            inputs = (x,) if models.role_of(arch) == "predictor" else (x, g)
            try:
                for _ in range(2):  # warm-up (and compilation)
                    _train_step(run, opt, inputs, amp, device)
                _sync(device)
                t = time.perf_counter()
                for _ in range(steps):
                    _train_step(run, opt, inputs, amp, device)
                _sync(device)
                rate = steps / (time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001 - a variant that fails is reported, not fatal
                rows.append({"model": arch, "variant": name, "error": str(exc)[:200]})
                continue
            rows.append({"model": arch, "variant": name, "steps_per_s": rate, "batch": batch})
    return rows


def _train_step(net, opt, inputs, amp, device: torch.device) -> None:
    """One forward, backward and AdamW step on a fixed batch (the loss: the output's mean)."""
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=bool(amp)):
        out = net(*inputs)
    loss = out.float().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "decomposer_cpu.toml"))
    p.add_argument("--device", default="auto")
    p.add_argument("--batches", type=int, default=6, help="batches timed per data path")
    p.add_argument("--train-steps", type=int, default=12, help="steps timed per training run")
    p.add_argument("--model-steps", type=int, default=3)
    p.add_argument("--skip-old", action="store_true", help="leave out the workers path")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    os.chdir(ROOT)  # configs name the data relative to the checkout
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else socket.gethostname()
    cfg0 = load_config(args.config)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": name,
        "config": os.path.relpath(args.config, ROOT),
        "crop": cfg0.data.crop,
        "batch": cfg0.data.batch_size,
        "torch": torch.__version__,
    }
    paths = ["device"] if args.skip_old else ["workers", "device"]
    t = time.perf_counter()
    from napari_afb.training.datasets import open_clips
    from napari_afb.training.device_data import build_clip_flows

    d = cfg0.data
    clips = open_clips(d.videos, d.max_step_motion, max(160, d.crop + 32))
    build_clip_flows(clips, FLOW_CACHE, workers=max(os.cpu_count() - 1, 1), progress=False)
    result["flow_cache_s"] = time.perf_counter() - t  # 0-ish when it was there already
    result["data"] = {
        s: data_rate(load_config(args.config), s, device, args.batches) for s in paths
    }
    result["train"] = {
        s: train_rate(load_config(args.config), s, str(device), args.train_steps) for s in paths
    }
    result["models"] = model_rates(device, cfg0.data.crop, cfg0.data.batch_size, args.model_steps)

    print(
        f"{result['device']} ({result['machine']}), {result['config']}: crop {d.crop}, "
        f"batch {d.batch_size}, flow cache ready in {result['flow_cache_s']:.0f} s"
    )
    print(f"{'path':<10} {'data windows/s':>15} {'training windows/s':>19}")
    for s in paths:
        print(f"{s:<10} {result['data'][s]['windows_per_s']:>15.1f} {result['train'][s]:>19.2f}")
    if len(paths) == 2:
        for k, v in (("data", "windows_per_s"), ("train", None)):
            old = result[k]["workers"][v] if v else result[k]["workers"]
            new = result[k]["device"][v] if v else result[k]["device"]
            result[f"{k}_speedup"] = new / old
            print(f"speed-up ({k}): {new / old:.1f}x")
    print(f"{'model':<15} {'variant':<24} {'steps/s':>8}")
    for r in result["models"]:
        shown = f"{r['steps_per_s']:8.2f}" if "steps_per_s" in r else f"failed: {r['error']}"
        print(f"{r['model']:<15} {r['variant']:<24} {shown}")
    out = Path(args.json or ROOT / "benchmarks" / "results" / f"data_{name.replace(' ', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
