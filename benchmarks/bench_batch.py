"""Batch scaling on Dask: files per minute and frames per second for 20 photos and 2 videos.

Run from the repository root::

    .venv/bin/python benchmarks/bench_batch.py [--size 320] [--video-frames 12] [--engine learned]

Inputs are made here: 20 photos cut from scikit-image stills (public domain) at ``--size`` px
wide, and 2 clips of ``--video-frames`` frames cut from ../shared/data/opencv_doc_debian
(box.mp4 and cup.mp4, resized; synthetic clips where those are missing). Each configuration runs
the same batch into a fresh folder with the default weights:

- ``local 1x2``: a local cluster of 1 worker process with 2 torch threads;
- ``local 2x1``: 2 worker processes with 1 torch thread each;
- ``tcp 2x1``: a separately started ``dask scheduler`` and ``dask worker --nworkers 2
  --nthreads 1`` on localhost, reached over TCP (as a cluster is used).

``total s`` includes starting (or connecting to) the cluster; the rates count from the first
progress report (workers up, tasks submitted) to the end. A frame is an input frame (a photo
counts 1); each gives N = 7 output frames.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT.parent / "shared" / "data" / "opencv_doc_debian"


def make_inputs(folder: Path, width: int, video_frames: int) -> int:
    """20 photos and 2 videos in ``folder``; returns the number of input frames."""
    from skimage import data

    from napari_afb import io

    stills = [
        data.astronaut(),
        data.coffee(),
        data.chelsea(),
        data.rocket(),
        data.immunohistochemistry(),
    ]
    height = width * 3 // 4
    for k in range(20):
        still = stills[k % len(stills)]
        h, w = still.shape[:2]
        y, x = (k * 17) % (h // 3), (k * 29) % (w // 3)
        crop = still[y : y + 2 * h // 3, x : x + 2 * w // 3]
        io.write_png(folder / f"photo_{k:02d}.png", cv2.resize(crop, (width, height)))
    for name in ("box.mp4", "cup.mp4"):
        writer = cv2.VideoWriter(
            str(folder / f"{Path(name).stem}.avi"),
            cv2.VideoWriter_fourcc(*"MJPG"),
            25,
            (width, height),
        )
        cap = cv2.VideoCapture(str(CLIPS / name))
        for t in range(video_frames):
            ok, frame = cap.read()
            if not ok:  # no clip here: a still panned sideways
                frame = np.roll(cv2.resize(data.astronaut(), (width, height)), 3 * t, axis=1)[
                    ..., ::-1
                ]
            writer.write(cv2.resize(frame, (width, height)))
        writer.release()
        cap.release()
    return 20 + 2 * video_frames


def run(label: str, src: Path, out: Path, options, **kw) -> dict:
    from napari_afb.batch import batch

    shutil.rmtree(out, ignore_errors=True)
    first = []

    def seen(p) -> None:
        if not first:
            first.append(time.perf_counter())

    t0 = time.perf_counter()
    summary = batch([src], out, options, progress=seen, **kw)
    t1 = time.perf_counter()
    if not summary.ok:
        print(summary.table(), file=sys.stderr)
    done = [r for r in summary.results if r.status == "done"]
    work = t1 - first[0]
    frames = sum(r.frames for r in done)
    return {
        "config": label,
        "files": len(done),
        "frames": frames,
        "total_s": t1 - t0,
        "work_s": work,
        "files_per_min": 60 * len(done) / work,
        "frames_per_s": frames / work,
    }


def start_tcp_cluster(port: int, workers: int, threads: int) -> list[subprocess.Popen]:
    dask = Path(sys.executable).with_name("dask")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
    )
    time.sleep(2)
    worker = subprocess.Popen(
        [dask, "worker", address, "--nworkers", str(workers), "--nthreads", str(threads)]
        + ["--no-dashboard"],
        **quiet,
    )
    return [worker, scheduler]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=320, help="photo and video width in px")
    p.add_argument("--video-frames", type=int, default=12)
    p.add_argument("--engine", default="learned")
    p.add_argument("--chunk", type=int, default=4)
    p.add_argument("--port", type=int, default=8797)
    args = p.parse_args()

    from distributed import Client

    from napari_afb.batch import BatchOptions

    options = BatchOptions(
        direction="right-down", device="cpu", chunk=args.chunk,
        decompose_kwargs={"engine": args.engine},
    )  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        n = make_inputs(src, args.size, args.video_frames)
        print(f"20 photos and 2 videos of {args.video_frames} frames, {args.size} px wide: {n} "
              f"input frames; engine {args.engine}; {os.cpu_count()} cores")  # fmt: skip
        rows.append(run("local 1x2", src, out, options, workers=1, threads=2))
        rows.append(run("local 2x1", src, out, options, workers=2, threads=1))
        procs = start_tcp_cluster(args.port, 2, 1)
        try:
            client = Client(f"tcp://127.0.0.1:{args.port}", timeout="60s")
            client.wait_for_workers(2, timeout=120)
            client.close()
            address = f"tcp://127.0.0.1:{args.port}"
            rows.append(run("tcp 2x1", src, out, options, scheduler=address, threads=1))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    print(f"{'config':<10} {'files':>5} {'frames':>6} {'total s':>8} {'work s':>7} "
          f"{'files/min':>9} {'frames/s':>8}")  # fmt: skip
    for r in rows:
        rates = f"{r['files_per_min']:>9.1f} {r['frames_per_s']:>8.2f}"
        print(f"{r['config']:<10} {r['files']:>5} {r['frames']:>6} {r['total_s']:>8.1f} "
              f"{r['work_s']:>7.1f} {rates}")  # fmt: skip


if __name__ == "__main__":
    main()
