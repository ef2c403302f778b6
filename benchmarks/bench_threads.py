"""Threads on a busy machine: ``decompose`` in the main thread with and without other processes
loading every core, for the thread settings that matter (issue 23, item 5).

Run from the repository root::

    .venv/bin/python benchmarks/bench_threads.py [--repeats 3] [--load N] [--json PATH]

Every setting runs in a fresh interpreter (OpenMP reads its environment once, when torch loads
it) that decomposes a 640 x 272 RGB photo (scikit-image 'astronaut', one uniform direction) with
the default weights, once to warm up and then ``--repeats`` times; the median is printed. Each
setting is timed on an idle machine and with ``--load`` busy processes (default: one per core)
spinning beside it (``--load-kind``: torch matrix products, i.e. another torch job, or a Python
loop). The settings:

- ``before``: what the API and the command line did before the fix (``OMP_WAIT_POLICY`` unset,
  torch's default threads; ``NAPARI_AFB_KEEP_OMP=1`` turns napari-afb's setting off);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` set by hand;
- ``threads1``: ``torch.set_num_threads(1)``;
- ``worker``: the call in a plain ``threading.Thread`` (how the napari widgets run it);
- ``after``: napari-afb as it is now (``import napari_afb`` before torch, as the CLI does).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

SETTINGS = ("before", "passive", "threads1", "worker", "after")


def _child(setting: str, repeats: int) -> dict:
    if setting == "before":
        os.environ["NAPARI_AFB_KEEP_OMP"] = "1"
    import importlib

    # first: the fix (unless turned off) runs in napari_afb/__init__.py, before torch loads
    napari_afb = importlib.import_module("napari_afb")
    import cv2
    import numpy as np
    import torch
    from skimage import data

    if setting == "threads1":
        torch.set_num_threads(1)
    image = cv2.resize(data.astronaut(), (640, 272), interpolation=cv2.INTER_AREA)
    guidance = np.full(image.shape[:2], 2, np.uint8)

    def once() -> float:
        t0 = time.perf_counter()
        napari_afb.decompose(image, guidance, engine="learned", device="cpu")
        return time.perf_counter() - t0

    def run() -> list[float]:
        once()  # load the weights, warm the caches
        return [once() for _ in range(repeats)]

    if setting == "worker":
        import threading

        out: list[list[float]] = []
        t = threading.Thread(target=lambda: out.append(run()))
        t.start()
        t.join()
        times = out[0]
    else:
        times = run()
    return {
        "setting": setting,
        "times_s": [round(x, 3) for x in times],
        "median_s": round(statistics.median(times), 3),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "torch_threads": torch.get_num_threads(),
    }


def _spin(stop, kind: str = "python") -> None:
    """Keep one core busy: a Python loop, or torch matrix products on torch's default threads
    (another torch job, with OpenMP threads of its own)."""
    if kind == "torch":
        import torch

        a = torch.randn(256, 256)
        while not stop.is_set():
            for _ in range(20):
                a = torch.tanh(a @ a)
        return
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _measure(setting: str, repeats: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if setting == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        env["NAPARI_AFB_KEEP_OMP"] = "1"
    res = subprocess.run(
        [sys.executable, __file__, "--child", setting, "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds over all settings, interleaved so that other users' load hits them alike",
    )
    p.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes")
    p.add_argument(
        "--load-kind",
        choices=["python", "torch"],
        default="torch",
        help="what the busy processes run: torch matrix products (another torch job, default) "
        "or a pure Python loop",
    )
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--json", help="write the figures here as JSON")
    p.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.repeats)))
        return

    runs: dict[str, dict[str, list[dict]]] = {s: {"idle": [], "busy": []} for s in args.settings}
    for r in range(args.rounds):
        for setting in args.settings:
            runs[setting]["idle"].append(_measure(setting, args.repeats))
            stop = mp.Event()
            spinners = [
                mp.Process(target=_spin, args=(stop, args.load_kind), daemon=True)
                for _ in range(args.load)
            ]
            for s in spinners:
                s.start()
            try:
                runs[setting]["busy"].append(_measure(setting, args.repeats))
            finally:
                stop.set()
                for s in spinners:
                    s.join(timeout=5)
            print(f"round {r + 1}/{args.rounds} {setting}: idle "
                  f"{runs[setting]['idle'][-1]['median_s']:.2f} s, busy "
                  f"{runs[setting]['busy'][-1]['median_s']:.2f} s", file=sys.stderr)

    print(
        f"{os.cpu_count()} cores; decompose 640 x 272 in the main thread; median over "
        f"{args.rounds} rounds of the median of {args.repeats} calls"
    )
    busy_label = f"busy s ({args.load} x {args.load_kind})"
    print(f"{'setting':10s} {'idle s':>8s} {busy_label:>22s}  ratio")
    rows = []
    for setting in args.settings:
        idle = statistics.median(x["median_s"] for x in runs[setting]["idle"])
        busy = statistics.median(x["median_s"] for x in runs[setting]["busy"])
        print(f"{setting:10s} {idle:8.2f} {busy:22.2f}  {busy / idle:5.1f}x")
        rows.append(
            {"setting": setting, "idle_s": idle, "busy_s": busy, "runs": runs[setting],
             "load": [args.load, args.load_kind]}
        )  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
