"""Batch decomposition of folders of photos and videos on Dask distributed (no napari, no Qt).

``napari_afb.batch(inputs, out)`` and ``napari-afb batch INPUTS... --out DIR`` run what the
single-file commands run (``decompose`` per photo, ``animate`` per video) on every file found:

- every photo ``a/b.jpg`` gives the folder ``OUT/a/b/`` (frame PNGs, ``animation.gif``,
  ``guidance.png``), as ``napari-afb decompose`` writes it;
- every video ``a/c.mp4`` gives ``OUT/a/c.mp4`` (or ``.avi``), as ``napari-afb animate``.

Work goes to a Dask cluster: by default a local one with worker processes sized to the cores
(each worker's torch threads set so that the workers do not fight over them); ``scheduler=`` (or
``$DASK_SCHEDULER_ADDRESS``) sends it to an existing cluster, whose workers must see the same
files. One task per photo and one per chunk of ``chunk`` video frames, so one long video uses
many workers; the client writes each video's chunks in order. Models load once per worker
process (:func:`napari_afb.weights.cached_model` keeps them).

Safe to stop and restart: every output is staged beside its destination and renamed into place
when complete, after a manifest under ``OUT/.napari-afb-batch/`` has recorded its files' sizes
and SHA-256 digests, the input's size and time stamp and the options. A rerun skips an output
only when the manifest and the files on disk agree (a truncated output is redone). A file that
cannot be read fails alone and is reported in the summary; a worker that dies has its tasks
rerun elsewhere by the scheduler (``distributed.scheduler.allowed-failures`` times).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
import types
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from distributed import WorkerPlugin

from .io import IMAGE_EXTENSIONS
from .jobs import run

__all__ = ["BatchOptions", "BatchProgress", "Result", "Summary", "batch", "batch_iter"]

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm"}
#: Files beside an input that hold its guidance map or its blur paths: ``b.guidance.png``
GUIDANCE_SUFFIXES = (".guidance.png", ".guidance.npy", ".guidance.tif", ".guidance.tiff")
PATHS_SUFFIXES = (".paths.json", ".paths.txt", ".paths.npy", ".paths.csv")
STATE_DIR = ".napari-afb-batch"
DEFAULT_CHUNK = 8
GUIDANCE_MODES = ("auto", "predict", "neighbors", "none")


@dataclass(frozen=True)
class BatchOptions:
    """What every file is decomposed with (the single-file commands' options).

    ``guidance``: "auto" (a photo's ``.guidance.*`` file beside it, else none for the blur-kernel
    engine and the predictor for the learned one; a video's neighbouring frames), "predict",
    "neighbors" (videos; photos as "auto") or "none" (``decompose`` gets no guidance and its
    engine decides). ``direction``: one motion direction
    for every photo instead. ``decompose_kwargs``: further keyword arguments for
    :func:`napari_afb.decompose` (e.g. ``{"engine": "kernel"}``), passed through as they are.
    """

    guidance: str = "auto"
    direction: str | None = None
    weights: str | None = None
    predictor_weights: str | None = None
    seed: int = 0
    device: str = "auto"
    tile: int | None = None
    overlap: int | None = None
    fps: float = 10.0
    video_format: str = "mp4"
    start: int | None = None
    stop: int | None = None
    speed: str = "slow"
    chunk: int = DEFAULT_CHUNK
    decompose_kwargs: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {GUIDANCE_MODES}, not {self.guidance!r}")
        if self.video_format not in ("mp4", "avi"):
            raise ValueError(f"video_format must be 'mp4' or 'avi', not {self.video_format!r}")
        if self.speed not in ("slow", "real"):
            raise ValueError(f"speed must be 'slow' or 'real', not {self.speed!r}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be at least 1 frame, got {self.chunk}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")

    def decompose_args(self) -> dict:
        """Keyword arguments of :func:`napari_afb.decompose` on a worker."""
        kw = {"device": self.device, "weights": self.weights, "tile": self.tile}
        if self.overlap is not None:
            kw["overlap"] = self.overlap
        return {**kw, **self.decompose_kwargs}

    def fingerprint(self) -> str:
        """A digest of everything that changes the outputs (not the device), with the
        weights files' sizes and time stamps."""
        state = {k: v for k, v in self.__dict__.items() if k != "device"}
        for key in ("weights", "predictor_weights"):
            if state[key]:
                st = Path(state[key]).stat()
                state[key] = [str(Path(state[key]).resolve()), st.st_size, st.st_mtime_ns]
        text = json.dumps(state, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    """One input file and where its output goes."""

    source: Path
    name: str  # the input relative to what was asked for, for messages and the manifest
    kind: str  # "photo" or "video"
    out: Path  # a folder for a photo, a file for a video


@dataclass
class Result:
    """One row of the summary."""

    name: str
    kind: str
    status: str  # "done", "skipped", "failed" or "cancelled"
    output: Path | None = None
    frames: int = 0  # input frames decomposed (a photo counts 1)
    seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class BatchProgress:
    """Progress of a batch: files and input frames done of their totals; ``result`` is set
    when a file is finished (done, skipped or failed)."""

    files_done: int
    files_total: int
    frames_done: int
    frames_total: int
    message: str = ""
    result: Result | None = None


@dataclass
class Summary:
    """What a batch did: one :class:`Result` per input, in input order."""

    results: list[Result]
    seconds: float = 0.0
    dashboard: str | None = None
    cancelled: bool = False

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        return not self.cancelled and all(r.status in ("done", "skipped") for r in self.results)

    def table(self) -> str:
        """The summary as a plain-text table, with a totals line."""
        rows = [("status", "file", "frames", "seconds", "output / reason")]
        for r in self.results:
            detail = r.reason if r.status in ("failed", "cancelled") else str(r.output or "")
            secs = f"{r.seconds:.1f}" if r.status == "done" else ""
            rows.append((r.status, r.name, str(r.frames or ""), secs, detail))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4] for row in rows]
        done = [r for r in self.results if r.status == "done"]
        frames = sum(r.frames for r in done)
        lines.append(
            f"{len(done)} done, {self.count('skipped')} skipped (already finished), "
            f"{self.count('failed')} failed, {self.count('cancelled')} not done; "
            f"{frames} frames in {self.seconds:.1f} s"
        )
        return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------------------------------------
# Finding the inputs and naming the outputs


def _is_sidecar(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(GUIDANCE_SUFFIXES + PATHS_SUFFIXES)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if _is_sidecar(path.name) or path.name.startswith("."):
        return None
    if suffix in IMAGE_EXTENSIONS:
        return "photo"
    return "video" if suffix in VIDEO_EXTENSIONS else None


def find_inputs(inputs: Iterable[str | os.PathLike], out: Path) -> list[tuple[Path, str]]:
    """The photos and videos named by ``inputs`` (files, folders searched recursively, globs),
    as (path, name relative to the folder or glob it came from), without duplicates, sidecar
    files, hidden files or anything under ``out``. A name that matches nothing raises."""
    found: dict[Path, str] = {}
    out = out.resolve()
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            pairs = [(p, p.relative_to(path).as_posix()) for p in sorted(path.rglob("*"))]
        elif path.is_file():
            pairs = [(path, path.name)]
        else:
            matches = sorted(glob.glob(str(path), recursive=True))
            if not matches:
                raise FileNotFoundError(f"no such file, folder or match: {given}")
            pairs = [(Path(m), Path(m).name) for m in matches]
        for p, name in pairs:
            if not p.is_file() or _kind(p) is None or p.resolve().is_relative_to(out):
                continue
            if any(part.startswith(".") for part in Path(name).parts):
                continue
            found.setdefault(p.resolve(), name)
    return [(p, name) for p, name in found.items()]


def plan_jobs(found: Sequence[tuple[Path, str]], out: Path, options: BatchOptions) -> list[Job]:
    """A :class:`Job` per input; two inputs that would share an output (``a.jpg``, ``a.png``)
    keep their extension in the name (``a_png``)."""
    jobs, taken = [], set()
    for source, name in found:
        kind = _kind(source)
        rel = Path(name)
        target = (
            rel.with_suffix("") if kind == "photo" else rel.with_suffix(f".{options.video_format}")
        )
        if target in taken:
            stem = f"{rel.stem}_{rel.suffix[1:]}"
            target = rel.with_name(stem if kind == "photo" else f"{stem}.{options.video_format}")
        taken.add(target)
        jobs.append(Job(source, name, kind, out / target))
    return jobs


def _sidecar(source: Path, suffixes: tuple[str, ...]) -> str | None:
    for suffix in suffixes:
        candidate = source.with_name(source.stem + suffix)
        if candidate.is_file():
            return str(candidate)
    return None


# ---------------------------------------------------------------------------------------------
# Manifests: what a finished output is, checked on a rerun


def _manifest_path(out: Path, job: Job) -> Path:
    return out / STATE_DIR / (job.out.relative_to(out).as_posix() + ".json")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _files_of(output: Path) -> dict[str, list]:
    """{relative name: [size, sha256]} of the files in an output folder, or {"": [...]} for an
    output file (whatever its name: it is staged under another)."""
    if output.is_file():
        return {"": [output.stat().st_size, _digest(output)]}
    files = sorted(p for p in output.rglob("*") if p.is_file())
    return {p.relative_to(output).as_posix(): [p.stat().st_size, _digest(p)] for p in files}


def _input_stamp(source: Path) -> list:
    st = source.stat()
    return [st.st_size, st.st_mtime_ns]


def _write_manifest(out: Path, job: Job, staged: Path, fingerprint: str, frames: int) -> None:
    """Record what ``staged`` (the output before its rename into place) holds."""
    path = _manifest_path(out, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "input": str(job.source),
        "input_stamp": _input_stamp(job.source),
        "options": fingerprint,
        "frames": frames,
        "files": _files_of(staged),
    }
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def finished(out: Path, job: Job, fingerprint: str) -> int | None:
    """The number of frames of ``job``'s output when it is complete and current (its manifest
    agrees with the files on disk, the input and the options), else None."""
    try:
        record = json.loads(_manifest_path(out, job).read_text())
        if record["options"] != fingerprint or record["input_stamp"] != _input_stamp(job.source):
            return None
        if not job.out.exists() or _files_of(job.out) != record["files"]:
            return None
        return int(record["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# Tasks: these run on the workers


class TaskError(RuntimeError):
    """A task's failure, carried to the client as plain text (some of the package's exceptions
    take extra constructor arguments and would not unpickle there)."""


class TorchThreads(WorkerPlugin):
    """A Dask worker plugin that sets each worker's torch threads: ``threads``, or the worker's
    share of its machine's cores (``per_host``: how many workers share each host)."""

    name = "napari-afb-torch-threads"

    def __init__(self, threads: int | None = None, per_host: dict[str, int] | None = None):
        self.threads, self.per_host = threads, per_host or {}

    def setup(self, worker) -> None:
        import torch

        threads = self.threads
        if threads is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            cores = cores or os.cpu_count() or 1
            peers = self.per_host.get(_host(worker.address), 1)
            threads = max(1, cores // (peers * max(int(getattr(worker, "nthreads", 1)), 1)))
        torch.set_num_threads(threads)


def _host(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


def _guidance_for_photo(image, source: str, options: BatchOptions):
    from .guidance import label_from_name
    from .io import read_guidance

    if options.direction is not None:
        return np.full(image.shape[:2], label_from_name(options.direction), dtype=np.uint8)
    if options.guidance == "none":
        return None
    sidecar = _sidecar(Path(source), GUIDANCE_SUFFIXES)
    if sidecar is not None and options.guidance != "predict":
        return read_guidance(sidecar, shape=image.shape[:2])
    if options.guidance == "auto" and _kernel_engine(options):
        return None  # as `napari-afb decompose` does: the path (drawn or estimated) is enough
    from .predict import predict_guidance

    return predict_guidance(
        image, 1, seed=options.seed, device=options.device, weights=options.predictor_weights
    )[0]


def _kernel_engine(options: BatchOptions) -> bool:
    from .api import choose_engine

    kw = options.decompose_args()
    return choose_engine(kw.get("engine", "auto"), kw.get("weights"), kw.get("model")) == "kernel"


def _decompose_kwargs(source: str, options: BatchOptions) -> dict:
    kw = options.decompose_args()
    paths = _sidecar(Path(source), PATHS_SUFFIXES)
    if paths is not None and "paths" not in kw:
        kw["paths"] = paths  # a blur-path file beside the input, for the blur-kernel engine
    return kw


def photo_task(source: str, options: BatchOptions) -> tuple[np.ndarray, np.ndarray | None]:
    """Decompose one photo as ``napari-afb decompose`` does: (frames, guidance or None)."""
    from . import api
    from .io import read_image

    try:
        image = read_image(source)
        guidance = _guidance_for_photo(image, source, options)
        frames = api.decompose(image, guidance, **_decompose_kwargs(source, options))
    except Exception as exc:
        raise TaskError(_reason(exc)) from None
    return frames, guidance


def video_chunk_task(source: str, first: int, stop: int, options: BatchOptions) -> np.ndarray:
    """Decompose video frames ``first`` to ``stop`` (exclusive) as ``napari-afb animate``
    does, guidance from their true neighbouring frames (also outside the chunk): their N
    frames each, as even-sized RGB uint8 frames ready for the encoder, (M * N, H', W', 3)."""
    from . import api
    from .animate import PREDICT_SAMPLES, _continuing, _kernel_frames
    from .export import _rgb_even
    from .flow import guidance_from_neighbors
    from .video import VideoArray

    try:
        video = VideoArray(source)
        n = len(video)
        kw = _decompose_kwargs(source, options)
        # the kernel engine takes each frame's blur paths from its neighbours, as animate does
        kernel = _kernel_engine(options) and options.guidance in ("auto", "neighbors")
        kernel_opts = {k: kw[k] for k in ("kernel_bound", "strength", "n_frames") if k in kw}
        prev = video[first - 1] if first > 0 else None
        cur, last, out = video[first], None, []
        for t in range(first, stop):
            nxt = video[t + 1] if t + 1 < n else None
            if kernel:
                out.extend(_rgb_even(run(_kernel_frames(prev, cur, nxt, kernel_opts, None)).frames))
                prev, cur = cur, nxt
                continue
            if options.guidance == "predict":
                from .predict import predict_guidance

                samples = predict_guidance(
                    cur,
                    PREDICT_SAMPLES,
                    seed=0,
                    device=options.device,
                    weights=options.predictor_weights,
                )
                labels = last = _continuing(samples, last)
            elif options.guidance == "none":
                labels = None
            elif prev is None and nxt is None:
                labels = np.zeros(cur.shape[:2], np.uint8)
            else:
                labels = guidance_from_neighbors(prev, cur, nxt)
            out.extend(_rgb_even(api.decompose(cur, labels, **kw)))
            prev, cur = cur, nxt
        video.close()
    except Exception as exc:
        raise TaskError(_reason(exc)) from None
    return np.stack(out)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "cli_message", None) or exc) or type(exc).__name__
    if isinstance(exc, ValueError | OSError | TaskError):
        return text
    return f"{type(exc).__name__}: {text}"


# ---------------------------------------------------------------------------------------------
# The client: connecting, submitting, gathering and writing


def local_layout(workers: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads each) for a local cluster: by default half as many
    workers as cores (at least one), the cores shared out among them as torch threads. On 2
    busy cores neither layout won clearly (benchmarks/results/batch_cpu.txt): 2 x 1 was faster
    on 128-px inputs, 1 x 2 on 320-px ones; one worker also holds one torch and one model."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    workers = workers or max(1, cores // 2)
    return workers, threads or max(1, cores // workers)


def connect(scheduler=None, workers: int | None = None, threads: int | None = None):
    """(client, cluster or None, whether we own the client). ``scheduler`` is a
    ``distributed.Client`` (used as it is), an address, or None: ``$DASK_SCHEDULER_ADDRESS``,
    else a new local cluster of ``workers`` processes with ``threads`` torch threads each."""
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler, None, False
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        client = Client(address, timeout="30s")
        hosts: dict[str, int] = {}
        for addr in client.scheduler_info().get("workers", {}):
            hosts[_host(addr)] = hosts.get(_host(addr), 0) + 1
        client.register_plugin(TorchThreads(threads, hosts), name=TorchThreads.name)
        return client, None, True
    n, per_worker = local_layout(workers, threads)
    try:
        import bokeh  # noqa: F401 (the dashboard needs it)

        dashboard = ":0"
    except ImportError:
        dashboard = None
    cluster = start_local_cluster(n, dashboard)
    client = Client(cluster)
    client.register_plugin(TorchThreads(per_worker), name=TorchThreads.name)
    return client, cluster, True


def start_local_cluster(n_workers: int, dashboard: str | None = None):
    """A LocalCluster of ``n_workers`` one-thread worker processes, this process's environment
    left as it was. Dask's nannies set OMP_NUM_THREADS=1 (and MKL's, OpenBLAS's and malloc's
    settings) for their workers in *this* process's environment and leave them there, so every
    process the session starts afterwards (a training run, a video export) would run on one
    thread; the workers have them, this process gets its own back."""
    from distributed import LocalCluster

    saved = dict(os.environ)
    try:
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=dashboard,
            silence_logs=logging.CRITICAL,  # failures are in the summary
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _VideoOutput:
    """A video being written from its chunks, in order, to a temporary file beside ``out``."""

    def __init__(self, job: Job, fps_in: float, speed: str, chunks: list):
        self.job, self.fps_in, self.speed = job, fps_in, speed
        self.chunks = chunks  # [(first video frame, stop, future)]
        self.next = 0  # the next chunk to write
        self.writer = None
        self.frames = 0
        suffix = job.out.suffix
        self.tmp = job.out.with_name(f".{job.out.name}.{secrets.token_hex(4)}.partial{suffix}")

    def write(self, rgb: np.ndarray, first: int, stop: int) -> None:
        if self.writer is None:
            n = len(rgb) // (stop - first)
            fps = self.fps_in * n if self.speed == "real" else self.fps_in
            self.job.out.parent.mkdir(parents=True, exist_ok=True)
            self.writer = _video_writer(self.tmp, fps, (rgb.shape[2], rgb.shape[1]))
        for frame in rgb:
            self.writer.write(frame)
        self.frames += stop - first

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def discard(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)


def _video_writer(path: Path, fps: float, size: tuple[int, int]):
    """The writer ``animate`` uses for ``path``'s suffix (RGB frames in, ``write``/``close``):
    :class:`napari_afb.export.Mp4Writer` for .mp4, Motion JPEG for .avi; plain OpenCV where
    this version has no such writer."""
    from . import animate, export

    if path.suffix == ".mp4" and hasattr(export, "Mp4Writer"):
        return export.Mp4Writer(path, fps, size)
    if path.suffix == ".avi" and hasattr(animate, "_AviWriter"):
        return animate._AviWriter(path, fps, size)
    return _OpenCVWriter(path, fps, size)


class _OpenCVWriter:
    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        import cv2

        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
        self._cv = cv2.VideoWriter(str(path), fourcc, fps, size)
        if not self._cv.isOpened():
            raise OSError(f"OpenCV cannot write {path.suffix} video here")

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._cv.release()


def _write_photo(job: Job, out: Path, frames, guidance, options: BatchOptions, fp: str) -> None:
    from . import io
    from .cli import _write_frames

    with io.staged_directory(job.out, overwrite=True) as tmp:
        _write_frames(tmp, frames, options.fps)
        if guidance is not None:
            io.write_png(tmp / "guidance.png", io.guidance_rgb(guidance))
        _write_manifest(out, job, tmp, fp, 1)  # before the rename: a rerun checks the files


def batch_iter(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    options: BatchOptions | None = None,
    *,
    scheduler=None,
    workers: int | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    cancel: Callable[[], bool] | None = None,
) -> Generator[BatchProgress, None, Summary]:
    """The batch as a generator: yields :class:`BatchProgress` (at least twice a second, and
    with ``result`` set as each file finishes), returns the :class:`Summary`.

    ``overwrite`` redoes outputs that the manifests say are finished. ``cancel`` is polled;
    when it returns True the running tasks are dropped, the unfinished outputs removed, and the
    summary (``cancelled=True``) returned. Closing the generator (Ctrl-C, SIGTERM in the CLI)
    cleans up the same way. The first yield carries the dashboard link, if there is one.
    """
    from distributed import as_completed

    options = options or BatchOptions()
    options.check()
    out = Path(out).expanduser()
    stop_asked = cancel or (lambda: False)
    t0 = time.perf_counter()
    jobs = plan_jobs(find_inputs(inputs, out), out, options)
    fp = options.fingerprint()
    results = [Result(j.name, j.kind, "cancelled", j.out, reason="not run") for j in jobs]
    todo: list[int] = []
    for i, job in enumerate(jobs):
        frames = None if overwrite else finished(out, job, fp)
        if frames is not None:
            results[i] = Result(job.name, job.kind, "skipped", job.out, frames)
        elif job.out.exists() and not overwrite and not _manifest_path(out, job).exists():
            reason = f"{job.out} exists and is not a batch output; pass --overwrite"
            results[i] = Result(job.name, job.kind, "failed", reason=reason)
        else:
            todo.append(i)
    # Videos are opened here to cut them into chunks; an unreadable one fails now.
    spans: dict[int, tuple[range, float]] = {}
    for i in [i for i in todo if jobs[i].kind == "video"]:
        try:
            spans[i] = _video_span(jobs[i].source, options)
        except (ValueError, OSError) as exc:
            results[i] = Result(jobs[i].name, "video", "failed", reason=_reason(exc))
    todo = [i for i in todo if jobs[i].kind == "photo" or i in spans]
    frames_total = sum(1 if jobs[i].kind == "photo" else len(spans[i][0]) for i in todo)
    files_done, frames_done = len(jobs) - len(todo), 0
    if not todo:
        yield BatchProgress(files_done, len(jobs), 0, 0, "nothing to do")
        return Summary(results, time.perf_counter() - t0)

    out.mkdir(parents=True, exist_ok=True)
    client, cluster, own = connect(scheduler, workers, threads)
    dashboard = _dashboard(client)
    owner: dict = {}  # future -> (job index, chunk number or None)
    videos: dict[int, _VideoOutput] = {}
    started: dict[int, float] = {}
    pending = set()
    try:
        yield BatchProgress(
            files_done, len(jobs), 0, frames_total, f"dashboard: {dashboard}" if dashboard else ""
        )
        for i in todo:
            job, started[i] = jobs[i], time.perf_counter()
            if job.kind == "photo":
                fut = client.submit(photo_task, str(job.source), options, pure=False)
                owner[fut] = (i, None)
                continue
            frames, fps = spans[i]
            step = len(frames) if options.guidance == "predict" else options.chunk
            chunks = []
            for k, first in enumerate(range(frames.start, frames.stop, step)):
                last = min(first + step, frames.stop)
                fut = client.submit(
                    video_chunk_task, str(job.source), first, last, options, pure=False
                )
                owner[fut] = (i, k)
                chunks.append((first, last, fut))
            videos[i] = _VideoOutput(job, fps, options.speed, chunks)
        pending = set(owner)
        ready = as_completed(list(owner))
        beat = time.monotonic()
        while pending:
            if stop_asked():
                for i in {owner[f][0] for f in pending}:
                    results[i].reason = "cancelled"
                return Summary(results, time.perf_counter() - t0, dashboard, cancelled=True)
            batch_ = ready.next_batch(block=False)
            if not batch_:
                time.sleep(0.05)
                if time.monotonic() - beat > 0.5:
                    beat = time.monotonic()
                    yield BatchProgress(files_done, len(jobs), frames_done, frames_total)
                continue
            for fut in batch_:
                if fut not in pending:
                    continue
                pending.discard(fut)
                i, k = owner[fut]
                job = jobs[i]
                row, new_frames = None, 0
                try:
                    if fut.status != "finished":
                        raise TaskError(_future_reason(fut))
                    if k is None:
                        frames, guidance = fut.result()
                        del owner[fut]  # the last reference but the loop's: the worker frees it
                        _write_photo(job, out, frames, guidance, options, fp)
                        seconds = time.perf_counter() - started[i]
                        row, new_frames = Result(job.name, "photo", "done", job.out, 1, seconds), 1
                    elif i in videos:
                        vid = videos[i]
                        while vid.next < len(vid.chunks) and vid.chunks[vid.next][2].done():
                            first, last, f = vid.chunks[vid.next]
                            if f.status != "finished":
                                raise TaskError(_future_reason(f))
                            vid.write(f.result(), first, last)
                            new_frames += last - first
                            vid.chunks[vid.next] = (first, last, None)  # frees the worker's copy
                            del owner[f]
                            pending.discard(f)
                            vid.next += 1
                        if vid.next == len(vid.chunks):
                            _finish_video(videos.pop(i), out, fp)
                            seconds = time.perf_counter() - started[i]
                            row = Result(job.name, "video", "done", job.out, vid.frames, seconds)
                except (TaskError, OSError, ValueError) as exc:
                    row = Result(job.name, job.kind, "failed", reason=_reason(exc))
                    if job.kind == "photo":
                        frames_total -= 1
                    else:  # the video's other chunks are of no use now
                        for f in [f for f in pending if owner[f][0] == i]:
                            pending.discard(f)
                            f.cancel()
                        vid = videos.pop(i)
                        vid.discard()
                        frames_total -= len(spans[i][0]) - vid.frames
                frames_done += new_frames
                if row is not None:
                    results[i] = row
                    files_done += 1
                yield BatchProgress(
                    files_done,
                    len(jobs),
                    frames_done,
                    frames_total,
                    f"{row.status}: {job.name}" if row else "",
                    row,
                )
        return Summary(results, time.perf_counter() - t0, dashboard)
    finally:
        for fut in pending:
            fut.cancel()
        for vid in videos.values():
            vid.discard()
        if own:
            client.close()
        if cluster is not None:
            cluster.close()


def _dashboard(client) -> str | None:
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        return client.dashboard_link
    except Exception:  # a scheduler without the dashboard
        return None


def _video_span(source: Path, options: BatchOptions) -> tuple[range, float]:
    from .animate import frame_range
    from .video import VideoArray

    with VideoArray(source) as video:
        return frame_range(len(video), options.start, options.stop), video.fps or 25.0


def _finish_video(vid: _VideoOutput, out: Path, fp: str) -> None:
    vid.close()
    try:
        _write_manifest(out, vid.job, vid.tmp, fp, vid.frames)
        if vid.job.out.is_dir():
            shutil.rmtree(vid.job.out)
        os.replace(vid.tmp, vid.job.out)
    finally:
        vid.tmp.unlink(missing_ok=True)


def _future_reason(fut) -> str:
    from distributed import KilledWorker

    if fut.status == "cancelled":
        return "its task was cancelled (the cluster lost it)"
    exc = fut.exception()
    if isinstance(exc, KilledWorker):
        return "its workers died each time it ran (out of memory?)"
    if isinstance(exc, TaskError):
        return str(exc)
    return _reason(exc)


def batch(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    options: BatchOptions | None = None,
    *,
    scheduler=None,
    workers: int | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[BatchProgress], None] = False,
    cancel: Callable[[], bool] | None = None,
    **option_kwargs,
) -> Summary:
    """Decompose every photo and animate every video of ``inputs`` into ``out`` on Dask (see the
    module docstring); returns the :class:`Summary`.

    ``options`` (a :class:`BatchOptions`) or its fields as keywords (``guidance="neighbors"``,
    ``weights=...``, ``decompose_kwargs={"engine": "kernel"}``). ``scheduler``: a Dask address
    or client (default ``$DASK_SCHEDULER_ADDRESS``, else a local cluster of ``workers``
    processes with ``threads`` torch threads each). ``progress``: True for a bar on stderr, or
    a callable that receives each :class:`BatchProgress`.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    if options is None:
        options = BatchOptions(**option_kwargs)
    elif option_kwargs:
        raise TypeError("pass options= or option keywords, not both")
    gen = batch_iter(
        inputs,
        out,
        options,
        scheduler=scheduler,
        workers=workers,
        threads=threads,
        overwrite=overwrite,
        cancel=cancel,
    )
    if progress is True:
        return _with_bar(gen)
    return run(gen, progress or None)


def _with_bar(gen) -> Summary:
    from tqdm.auto import tqdm

    bar = None

    def update(p: BatchProgress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.frames_total, unit="frame", desc="batch")
        if p.message.startswith("dashboard") or (p.result and p.result.status == "failed"):
            bar.write(p.message + (f" ({p.result.reason})" if p.result else ""))
        bar.total = p.frames_total
        bar.n = p.frames_done
        bar.set_postfix_str(f"{p.files_done}/{p.files_total} files", refresh=False)
        bar.refresh()

    try:
        return run(gen, update)
    finally:
        if bar is not None:
            bar.close()


class _CallableModule(types.ModuleType):
    """``napari_afb.batch`` names both this module and its function; importing the module (as
    the CLI does) makes the package's attribute the module, so the module calls :func:`batch`."""

    def __call__(self, *args, **kwargs) -> Summary:
        return batch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
