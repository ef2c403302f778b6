"""Training batches made on the training device, from optical flow computed once per clip.

Optical flow is the only CPU-bound part of blur synthesis (about 4 windows per second per core
when every window computes its own). Here the DIS flows of every clip are computed once, both
directions, for every pair of consecutive frames at the clip's training scale, in parallel
processes, and stored beside the decoded frames in a folder keyed by the clip's content, its
scale and the flow settings (:class:`ClipFlows`). A run then decodes no video: each step draws
its windows (clip, start, place, augmentation) from a generator seeded by (seed, step, rank),
gathers their frames and flows, and makes them in one call of
:func:`~.synthesis.synthesize_batch` on the training device (CUDA or CPU); rejected windows are
replaced by new draws and counted (:class:`DeviceBatches`). Steps are a pure function of their
number, so a resumed run continues exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..guidance import TRAINING_THRESHOLD, Augmentation
from .datasets import Clip, WindowSpec
from .synthesis import RejectionStats, grey_frames, labels_from_flow, pair_flows, synthesize_batch

#: What the cached flows depend on besides the clip and its scale; a change makes new folders.
FLOW_SETTINGS = {"flow": "OpenCV DIS, preset medium", "grey": "RGB2GRAY uint8", "version": 1}


def clip_digest(path: str | os.PathLike) -> str:
    """sha256 of a video file's bytes, or of a frame folder's files in name order."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() if len(files) > 1 else b"")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _flow_pair(job):
    _, a, b = job
    (fwd,), (bwd,) = pair_flows([a, b])
    return job[0], fwd.astype(np.float16), bwd.astype(np.float16)


def _flow_worker_init():
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class ClipFlows:
    """A clip's frames (T, H, W, 3) uint8 and the DIS flows between consecutive frames,
    ``fwd[i]`` from frame i to i + 1 and ``bwd[i]`` back, (T - 1, H, W, 2) float16, at one
    scale, memory-mapped from their cache folder (or moved to a device by :meth:`to`)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.name = self.meta["clip"]
        # copy-on-write maps: torch wants writable arrays; nothing is ever written back
        self.frames, self.fwd, self.bwd = (
            torch.from_numpy(np.load(self.folder / f"{k}.npy", mmap_mode="c"))
            for k in ("frames", "fwd", "bwd")
        )
        self.length, self.height, self.width = self.frames.shape[:3]

    @staticmethod
    def key(clip: Clip) -> dict:
        return {
            "clip": clip.path.name,
            "sha256": clip_digest(clip.path),
            "scale": round(float(clip.scale), 6),
            **FLOW_SETTINGS,
        }

    @classmethod
    def build(
        cls, clip: Clip, root: str | os.PathLike, workers: int = 2, progress: bool = True
    ) -> ClipFlows:
        """The clip's cached flows, computed first (``workers`` processes) if not there yet."""
        key = cls.key(clip)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        folder = Path(root) / f"{clip.path.stem}-{digest}"
        meta = folder / "meta.json"
        if meta.is_file():
            stored = json.loads(meta.read_text())
            if {k: stored.get(k) for k in key} == key:
                return cls(folder)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        frames = cls._decode(clip, partial)
        grey = grey_frames(frames)
        t, h, w = frames.shape[:3]
        shape = (max(t - 1, 0), h, w, 2)
        fwd = np.lib.format.open_memmap(partial / "fwd.npy", "w+", np.float16, shape)
        bwd = np.lib.format.open_memmap(partial / "bwd.npy", "w+", np.float16, shape)
        jobs = ((i, grey[i], grey[i + 1]) for i in range(t - 1))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=t - 1, unit="pair", desc=f"flows of {clip.path.name}")
        if workers > 1:
            import multiprocessing as mp

            methods = mp.get_all_start_methods()
            ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
            with ctx.Pool(workers, initializer=_flow_worker_init) as pool:
                for i, f, b in pool.imap_unordered(_flow_pair, jobs, chunksize=4):
                    fwd[i], bwd[i] = f, b
                    if bar is not None:
                        bar.update(1)
        else:
            for job in jobs:
                i, f, b = _flow_pair(job)
                fwd[i], bwd[i] = f, b
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        fwd.flush()
        bwd.flush()
        del fwd, bwd
        (partial / "meta.json").write_text(json.dumps({**key, "frames": t, "size": [w, h]}))
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)  # complete or absent: an interrupted build starts again
        return cls(folder)

    @staticmethod
    def _decode(clip: Clip, folder: Path, chunk: int = 32) -> np.ndarray:
        """Decode the whole clip once, at its scale, into folder/frames.npy."""
        first = clip.read(0, 1)
        out = np.lib.format.open_memmap(
            folder / "frames.npy", "w+", np.uint8, (clip.length, *first.shape[1:])
        )
        for start in range(0, clip.length, chunk):
            count = min(chunk, clip.length - start)
            out[start : start + count] = clip.read(start, count)
        out.flush()
        return out

    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() for a in (self.frames, self.fwd, self.bwd))

    def to(self, device: torch.device) -> ClipFlows:
        self.frames, self.fwd, self.bwd = (a.to(device) for a in (self.frames, self.fwd, self.bwd))
        return self


class DeviceBatches:
    """Endless training batches synthesized on ``device`` from cached clip flows (and, for a
    fraction of the items, from a :class:`~.stills.StillsSource`).

    Batch ``step`` is made from a generator seeded by (seed, step, rank): every item picks
    stills or a clip (clips weighted by length), a start frame, a region of
    ``spec.crop + 2 * spec.margin`` px (the margin is context for the flow-based sub-frames; the
    centre ``spec.crop`` is kept) and a flip / rot90 / time reversal. The frames, flows and
    motion of the augmented windows are exact transforms of the synthesized ones and the
    guidance is recomputed from the transformed flow, as :meth:`.Window.augmented` does.

    ``camera_motion``: the fraction of video windows cut along a random camera path instead of
    at one place: frame t's crop is shifted by a whole-pixel offset o_t (a velocity, an
    acceleration and a little shake, up to about ``camera_speed`` px per frame on each axis), so
    static-camera footage also moves the way hand-held footage does. The flows stay exact: the
    forward flow of frame t is read at the crop of frame t and gains o_t - o_(t+1), the backward
    flow is read at the crop of frame t + 1 and gains o_(t+1) - o_t; the synthesis then chains
    them into the window's motion as for any other window.
    """

    def __init__(
        self,
        clips: list[ClipFlows],
        spec: WindowSpec,
        batch_size: int,
        seed: int = 0,
        *,
        stills=None,
        stills_fraction: float = 0.0,
        stills_only_steps: int = 0,
        augment: bool = True,
        attempts: int = 20,
        camera_motion: float = 0.0,
        camera_speed: float = 3.0,
    ):
        if not clips and stills is None:
            raise ValueError("no clips and no stills source: nothing to train on")
        region = spec.crop + 2 * spec.margin
        small = [c.name for c in clips if min(c.height, c.width) < region]
        if small:
            raise ValueError(
                f"{', '.join(small)}: smaller than the {region}-px region of a {spec.crop}-px crop "
                "and its margin at the training scale; lower data.crop or max_step_motion"
            )
        too_short = [c.name for c in clips if c.length < spec.n_frames]
        if too_short:
            raise ValueError(f"{', '.join(too_short)}: fewer frames than data.n_frames")
        self.clips, self.spec, self.batch_size, self.seed = clips, spec, batch_size, seed
        self.stills, self.stills_fraction = stills, stills_fraction
        self.stills_only_steps, self.augment, self.attempts = stills_only_steps, augment, attempts
        self.camera_motion, self.camera_speed = camera_motion, camera_speed
        self.stats = RejectionStats()
        self._stats_lock = threading.Lock()  # the prefetch thread counts while training reads
        self.device = torch.device("cpu")
        lengths = np.array([c.length - spec.n_frames + 1 for c in clips], float)
        self._p = lengths / lengths.sum() if clips else None

    def to(self, device: str | torch.device) -> DeviceBatches:
        """Make the batches on ``device``. The clips move there too when they fit in half of
        its free memory (else they stay memory-mapped and each batch is copied over)."""
        self.device = torch.device(device)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if sum(c.nbytes() for c in self.clips) < free / 2:
                for c in self.clips:
                    c.to(self.device)
        return self

    def _uses_stills(self, rng: np.random.Generator, step: int) -> np.ndarray:
        if self.stills is None:
            return np.zeros(self.batch_size, bool)
        if not self.clips or step < self.stills_only_steps:
            return np.ones(self.batch_size, bool)
        return rng.random(self.batch_size) < self.stills_fraction

    def _video(self, rng: np.random.Generator, count: int) -> list[torch.Tensor]:
        """``count`` synthesized video windows (channel-first tensors on the device)."""
        spec, n, c = self.spec, self.spec.n_frames, self.spec.crop + 2 * self.spec.margin
        parts: list[list[torch.Tensor]] = [[], [], [], []]
        have = 0
        for _ in range(self.attempts):
            want = count - have
            if want <= 0:
                break
            frames, fwd, bwd = [], [], []
            for k in rng.choice(len(self.clips), size=want, p=self._p):
                clip = self.clips[k]
                t = int(rng.integers(0, clip.length - n + 1))
                if self.camera_motion > 0 and rng.random() < self.camera_motion:
                    f, a, b = self._along_path(rng, clip, t)
                    frames.append(f)
                    fwd.append(a)
                    bwd.append(b)
                    continue
                y = int(rng.integers(0, clip.height - c + 1))
                x = int(rng.integers(0, clip.width - c + 1))
                frames.append(clip.frames[t : t + n, y : y + c, x : x + c])
                fwd.append(clip.fwd[t : t + n - 1, y : y + c, x : x + c].float())
                bwd.append(clip.bwd[t : t + n - 1, y : y + c, x : x + c].float())
            made = synthesize_batch(
                self._channels_first(frames),
                self._channels_first(fwd),
                self._channels_first(bwd),
                spec.synthesis,
                rng,
                crop=spec.crop,
            )
            with self._stats_lock:
                for r in made.reasons:
                    self.stats[r[0] if r else "kept"] += 1
            for part, value in zip(parts, (made.blurry, made.frames, made.flow, made.motion)):
                part.append(value)
            have += len(made.kept)
        if have < count:
            raise RuntimeError(
                f"no usable window in {self.attempts} attempts ({self.stats.summary()}); the "
                "clips may be too static, too short or full of cuts"
            )
        return [torch.cat(p)[:count] for p in parts]

    def camera_path(self, rng: np.random.Generator, span: tuple[int, int]) -> np.ndarray:
        """Whole-pixel crop offsets (n, 2) as (y, x), each axis's spread within ``span`` px."""
        n, s = self.spec.n_frames, self.camera_speed
        t = np.arange(n) - (n - 1) / 2
        path = np.empty((n, 2))
        for axis in range(2):
            velocity, accel = rng.uniform(-s, s), rng.uniform(-s, s) / 3
            shake = np.cumsum(rng.normal(0.0, 0.25 * s, n))
            path[:, axis] = velocity * t + accel * t**2 / 2 + shake - shake[n // 2]
            spread = np.ptp(path[:, axis])
            if spread > span[axis]:
                path[:, axis] *= span[axis] / spread
        offsets = np.round(path).astype(int)
        return offsets - offsets.min(axis=0)

    def _along_path(self, rng: np.random.Generator, clip: ClipFlows, t: int):
        """Frames (n, c, c, 3), forward and backward flows (n - 1, c, c, 2) float32 of a window
        whose crop follows :meth:`camera_path` from frame ``t`` on."""
        n, c = self.spec.n_frames, self.spec.crop + 2 * self.spec.margin
        o = self.camera_path(rng, (clip.height - c, clip.width - c))
        y = int(rng.integers(0, clip.height - c - o[:, 0].max() + 1))
        x = int(rng.integers(0, clip.width - c - o[:, 1].max() + 1))
        at = [(y + oy, x + ox) for oy, ox in o]
        frames = torch.stack(
            [clip.frames[t + i, r : r + c, q : q + c] for i, (r, q) in enumerate(at)]
        )
        fwd, bwd = [], []
        for i in range(n - 1):
            (r0, q0), (r1, q1) = at[i], at[i + 1]
            step = torch.tensor([q0 - q1, r0 - r1], dtype=torch.float32, device=clip.fwd.device)
            fwd.append(clip.fwd[t + i, r0 : r0 + c, q0 : q0 + c].float() + step)
            bwd.append(clip.bwd[t + i, r1 : r1 + c, q1 : q1 + c].float() - step)
        return frames, torch.stack(fwd), torch.stack(bwd)

    def _channels_first(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Crops (T, h, w, C) stacked on the device as (B, T, C, h, w)."""
        return torch.stack(items).to(self.device, non_blocking=True).permute(0, 1, 4, 2, 3)

    def stats_snapshot(self) -> dict[str, int]:
        """The video windows kept and rejected so far, by reason."""
        with self._stats_lock:
            return dict(self.stats)

    def _stills(self, rng: np.random.Generator, count: int) -> list[torch.Tensor]:
        made = self.stills.sample_batch(rng, count, self.device)
        return [made[k] for k in ("blurry", "frames", "flow", "motion")]

    def batch(self, step: int, rank: int = 0) -> dict[str, torch.Tensor]:
        """Batch number ``step`` of process ``rank``: blurry (B, 3, h, w), frames
        (B, N, 3, h, w), guidance (B, h, w) int64 and motion (B, N, 2, h, w), on the device."""
        rng = np.random.default_rng([self.seed, step, rank, 5])
        stills = self._uses_stills(rng, step)
        groups = []
        if (~stills).any():
            groups.append(self._video(rng, int((~stills).sum())))
        if stills.any():
            groups.append(self._stills(rng, int(stills.sum())))
        blurry, frames, flow, motion = (torch.cat(g) for g in zip(*groups))
        if self.augment:
            blurry, frames, flow, motion = self._augmented(rng, blurry, frames, flow, motion)
        return {
            "blurry": blurry,
            "frames": frames,
            "guidance": labels_from_flow(flow, TRAINING_THRESHOLD),
            "motion": motion,
        }

    def _augmented(self, rng, blurry, frames, flow, motion):
        """A random flip / rot90 / time reversal per item, applied group-wise (items that drew
        the same one are transformed together) in channel-last views."""
        augs = [Augmentation.random(rng) for _ in range(len(blurry))]
        out = [torch.empty_like(a) for a in (blurry, frames, flow, motion)]
        for aug in set(augs):
            idx = torch.tensor([i for i, a in enumerate(augs) if a == aug], device=blurry.device)
            b = aug.apply_image(blurry[idx].permute(0, 2, 3, 1), batched=True)
            f = aug.apply_frames(frames[idx].permute(0, 1, 3, 4, 2), batched=True)
            fl = aug.apply_flow(flow[idx].permute(0, 2, 3, 1))
            m = aug.apply_motion(motion[idx].permute(0, 1, 3, 4, 2))
            out[0][idx] = b.permute(0, 3, 1, 2)
            out[1][idx] = f.permute(0, 1, 4, 2, 3)
            out[2][idx] = fl.permute(0, 3, 1, 2)
            out[3][idx] = m.permute(0, 1, 4, 2, 3)
        return out

    def batches(
        self, start: int = 0, rank: int = 0, prefetch: int = 2
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches ``start``, ``start + 1``, ... without end. With ``prefetch`` > 0 a thread
        makes up to that many batches ahead while the caller trains (torch releases the GIL in
        its kernels, so on a CPU synthesis and training overlap as DataLoader workers did);
        each batch is still a function of its step alone."""
        if prefetch <= 0:
            step = start
            while True:
                yield self.batch(step, rank)
                step += 1
        import queue

        ready: queue.Queue = queue.Queue(maxsize=prefetch)
        stop = threading.Event()

        def make() -> None:
            step = start
            while not stop.is_set():
                try:
                    item = (self.batch(step, rank), None)
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                    item = (None, exc)
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if item[1] is not None:
                    return
                step += 1

        worker = threading.Thread(target=make, name="afb-device-batches", daemon=True)
        worker.start()
        try:
            while True:
                batch, error = ready.get()
                if error is not None:
                    raise error
                yield batch
        finally:  # the consumer stopped (or failed): end the thread before returning
            stop.set()
            worker.join()


def build_clip_flows(
    clips: list[Clip], root: str | os.PathLike, workers: int = 2, progress: bool = True
) -> list[ClipFlows]:
    """The cached flows of every clip (computed where missing)."""
    return [ClipFlows.build(c, root, workers, progress) for c in clips]
