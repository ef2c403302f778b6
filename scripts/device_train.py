"""One call on a lent GPU machine: train both models, evaluate, convert, and leave the results
in ``$OUT`` within the device's limits (docs/GPU_RUNBOOK.md).

On the device (one ``run`` call, ``carry: [".afbdata"]``, ``timeout_s: 600``)::

    python3 scripts/device_train.py --out "$OUT"

It links the carried data where the configs look for it, trains the decomposer
(configs/decomposer_device.toml, from ``--init``) and then the predictor
(configs/predictor_device.toml, on the same cached flows), each on a time budget,
evaluates both on the validation split (benchmarks/bench_quality.py), converts both to fp16,
splits any file over ``--split-mib`` and checks what it leaves: at most 8 files of at most
16 MiB. Back here, ``python3 scripts/device_train.py --join DIR`` joins the split parts.

``--smoke`` is the CPU rehearsal of the very same flow (the test suite runs it): a few steps
of each model on tiny crops, two evaluation windows, and a small split size so that the split
and the join are exercised too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILES, MAX_MIB = 8, 16
PART = ".part"

#: The smoke rehearsal's overrides of both configs: seconds, not minutes, on a CPU
SMOKE = {
    "data.crop": 64,
    "data.batch_size": 2,
    "data.items_per_epoch": 6,
    "data.videos": ["../shared/data/pysot_demo"],  # one small clip: its flows take seconds
    "data.stills_dirs": [],  # .afbstills is made by `make stills`, not in a clean clone
    "data.workers": 1,
    "data.val_windows": 1,
    "data.val_width": 96,
    "optim.steps": 2,
    "optim.warmup_steps": 1,
    "val_every": 1,
    "log_every": 1,
}


def link_data() -> str:
    """Make ../shared/data point at the carried copy (.afbdata) when it is not there."""
    shared = ROOT.parent / "shared" / "data"
    carried = ROOT / ".afbdata"
    if shared.exists():
        return f"data: {shared}"
    if not carried.is_dir():
        raise SystemExit(f"no training data: neither {shared} nor a carried {carried}")
    shared.parent.mkdir(parents=True, exist_ok=True)
    shared.symlink_to(carried, target_is_directory=True)
    return f"data: {shared} -> {carried}"


def train_one(role: str, config: str, overrides: dict, minutes: float, device: str, init=None):
    """Train one model on a time budget; returns (out_dir, TrainResult)."""
    from napari_afb.training.config import load_config
    from napari_afb.training.train import train

    cfg = load_config(ROOT / config, overrides)
    result = train(
        cfg,
        device=device,
        max_minutes=minutes,
        init_weights=init,
        progress=sys.stderr.isatty(),
    )
    print(f"{role}: {result.step} steps, best {result.best_metrics}", flush=True)
    return Path(cfg.out_dir), result


def split(path: Path, limit_mib: float) -> list[Path]:
    """``path`` itself when small enough, else its parts ``<name>.part00``, ... (removed)."""
    size = path.stat().st_size
    chunk = int(limit_mib * 2**20)
    if size <= chunk:
        return [path]
    parts = []
    with open(path, "rb") as src:
        for k in range(0, (size + chunk - 1) // chunk):
            part = path.with_name(f"{path.name}{PART}{k:02d}")
            part.write_bytes(src.read(chunk))
            parts.append(part)
    path.unlink()
    return parts


def join(folder: Path) -> list[Path]:
    """Join every ``<name>.partNN`` series in ``folder`` back into ``<name>``."""
    joined = []
    names = sorted({p.name.rsplit(PART, 1)[0] for p in folder.glob(f"*{PART}[0-9][0-9]")})
    for name in names:
        parts = sorted(folder.glob(f"{name}{PART}[0-9][0-9]"))
        with open(folder / name, "wb") as dst:
            for part in parts:
                dst.write(part.read_bytes())
        joined.append(folder / name)
    return joined


def check_out(out: Path) -> list[Path]:
    files = sorted(p for p in out.iterdir() if p.is_file())
    big = [p.name for p in files if p.stat().st_size > MAX_MIB * 2**20]
    if len(files) > MAX_FILES or big:
        raise SystemExit(
            f"$OUT holds {len(files)} files (at most {MAX_FILES}) and these over {MAX_MIB} MiB: "
            f"{big}; they would not all come back"
        )
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="where the results go ($OUT on the device)")
    p.add_argument("--join", type=Path, metavar="DIR", help="join split files in DIR, then stop")
    p.add_argument("--smoke", action="store_true", help="CPU rehearsal: a few steps of each")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    p.add_argument("--decomposer-minutes", type=float, default=5.5)
    p.add_argument("--predictor-minutes", type=float, default=1.5)
    p.add_argument("--init", default="docs/training/motion_deconv_cues_cpu.safetensors")
    p.add_argument("--split-mib", type=float, default=15.0)
    p.add_argument("--runs", type=Path, default=Path("runs/device"))
    args = p.parse_args(argv)
    if args.join:
        for path in join(args.join):
            print(f"joined {path}")
        return 0
    if args.out is None:
        p.error("--out is required")
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    started = time.monotonic()
    device = args.device or ("cpu" if args.smoke else "cuda")
    base = {**(SMOKE if args.smoke else {})}
    runs = args.runs
    summary: dict = {"smoke": args.smoke, "device": device, "data": link_data(), "timings_s": {}}
    args.out.mkdir(parents=True, exist_ok=True)

    def lap(name: str, t0: float) -> None:
        summary["timings_s"][name] = round(time.monotonic() - t0, 1)
        print(f"[{time.monotonic() - started:6.1f} s] {name} done", flush=True)

    common = {**base, "data.flow_cache_dir": str(runs / "flow_cache")}
    for folder in common.get("data.stills_dirs", [".afbstills"]):
        if not (ROOT / folder).is_dir():
            raise SystemExit(
                f"no stills folder {folder}: make it with `make stills` and carry it "
                '(carry: [".afbdata", ".afbstills"])'
            )
    init = Path(args.init)
    if not init.is_file():
        raise SystemExit(f"no initial weights at {init}")
    t0 = time.monotonic()
    dec_dir, dec = train_one(
        "decomposer",
        "configs/decomposer_device.toml",
        {**common, "out_dir": str(runs / "decomposer")},
        args.decomposer_minutes,
        device,
        init=init,
    )
    lap("decomposer", t0)
    t0 = time.monotonic()
    pred_dir, pred = train_one(
        "predictor",
        "configs/predictor_device.toml",
        {**common, "out_dir": str(runs / "predictor")},
        args.predictor_minutes,
        device,
    )
    lap("predictor", t0)
    summary["decomposer"] = {
        "steps": dec.step,
        "best": dec.best_metrics,
        "start": dec.initial_metrics,
    }
    summary["predictor"] = {"steps": pred.step, "best": pred.best_metrics}

    dec_best = dec.best_weights or dec_dir / "last.safetensors"  # none beat the start: its last
    pred_best = pred.best_weights or pred_dir / "last.safetensors"
    t0 = time.monotonic()
    quality = args.out / "quality.json"
    windows = ["--windows", "2", "--width", "96"] if args.smoke else ["--windows", "16"]
    subprocess.run(
        [sys.executable, "benchmarks/bench_quality.py", "--weights", str(dec_best),
         "--predictor", str(pred_best), "--device", device, "--json", str(quality), *windows],
        check=True,
    )  # fmt: skip
    lap("evaluation", t0)

    outputs = []
    for src, role in ((dec_best, "decomposer"), (pred_best, "predictor")):
        dst = args.out / f"{role}_fp16.safetensors"
        convert = ["-m", "napari_afb", "convert", str(src), "--out", str(dst), "--overwrite"]
        subprocess.run([sys.executable, *convert], check=True)
        outputs += split(dst, args.split_mib)
    for folder, role in ((dec_dir, "decomposer"), (pred_dir, "predictor")):
        (args.out / f"{role}_log.jsonl").write_bytes((folder / "log.jsonl").read_bytes())
    summary["files"] = [p.name for p in outputs]
    summary["total_s"] = round(time.monotonic() - started, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    files = check_out(args.out)
    print(f"{len(files)} files in {args.out} after {summary['total_s']} s:")
    for f in files:
        print(f"  {f.name}  {f.stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
