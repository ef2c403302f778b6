"""Datasets of training windows, made on the fly from videos, frame folders and stills.

Nothing is pre-extracted: each item decodes N consecutive frames at a random place of a random
clip, downscaled so the clip's fast motion stays within ``max_step_motion`` px per frame,
synthesizes the blur, crops and augments. Every item is a pure function of (seed, epoch,
index), so runs are reproducible, resumable and identical across DataLoader worker counts.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..flow import dis_flow
from ..guidance import Augmentation
from ..io import IMAGE_EXTENSIONS, InputError
from ..video import VIDEO_EXTENSIONS, VideoArray
from .synthesis import Rejected, RejectionStats, SynthesisConfig, synthesize
from .window import Window


def expand_sources(patterns: list[str]) -> list[Path]:
    """Video files and frame folders named by paths or glob patterns. A folder that holds videos
    (at any depth) stands for those videos; one that holds none but two or more images is one
    clip, its frames in name order."""
    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern))) or [pattern]
        for m in map(Path, matches):
            if m.is_file() and m.suffix.lower() in VIDEO_EXTENSIONS:
                out.append(m)
            elif m.is_dir():
                videos = sorted(p for p in m.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
                images = [p for p in m.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
                out += videos if videos else ([m] if len(images) >= 2 else [])
            else:
                raise FileNotFoundError(f"no video file or frame folder at {pattern!r}")
    if not out:
        raise FileNotFoundError(f"no videos found in {patterns}")
    return out


class Clip:
    """A video file or a folder of frames, read a window at a time (RGB uint8).

    Videos are read through :class:`napari_afb.video.VideoArray` (frame-accurate seeking, frame
    counts checked against what decodes, one open decoder, a small cache)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.files = self._video = None
        if self.path.is_dir():
            self.files = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
            )
            first = cv2.imread(str(self.files[0]), cv2.IMREAD_COLOR)
            if first is None:
                raise ValueError(f"cannot read frame {self.files[0]}")
            self.length, (self.height, self.width) = len(self.files), first.shape[:2]
        else:
            try:
                self._video = VideoArray(self.path)
            except InputError as exc:
                raise ValueError(str(exc)) from None
            self.length, self.height, self.width = self._video.shape[:3]
        self.scale = 1.0

    def read(self, start: int, count: int, scale: float | None = None) -> np.ndarray:
        """Frames [start, start + count) as (count, H', W', 3) uint8 RGB, resized by ``scale``."""
        scale = self.scale if scale is None else scale
        unreadable = Rejected("unreadable", f"{self.path.name} frames {start}-{start + count - 1}")
        if start < 0 or start + count > self.length:
            raise unreadable
        if self.files is not None:
            raw = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in self.files[start : start + count]]
            if any(f is None for f in raw):
                raise unreadable
            raw = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in raw]
        else:
            try:
                raw = list(self._video[start : start + count])
            except InputError:
                raise unreadable from None
        if scale == 1.0:
            return np.stack(raw)
        out = []
        for f in raw:
            size = (max(1, round(f.shape[1] * scale)), max(1, round(f.shape[0] * scale)))
            out.append(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
        return np.stack(out)

    def estimate_scale(self, max_step_motion: float, pairs: int = 6) -> float:
        """The downscale (<= 1) that brings the clip's 95th-percentile motion per frame step to
        ``max_step_motion`` px, measured on ``pairs`` evenly spaced frame pairs."""
        analysis = min(1.0, 320 / max(self.width, self.height))
        motions = []
        for start in np.linspace(0, max(self.length - 2, 0), pairs).astype(int):
            a, b = self.read(int(start), 2, analysis)
            g = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b)]
            motions.append(np.percentile(np.linalg.norm(dis_flow(*g), axis=-1), 95) / analysis)
        p95 = float(np.median(motions))
        return float(min(1.0, max_step_motion / max(p95, 1e-6)))


@dataclass
class WindowSpec:
    """What the dataset makes: crop size, frames per window, and how the blur is synthesized."""

    n_frames: int = 7
    crop: int = 128
    margin: int = 16
    max_step_motion: float = 3.0
    synthesis: SynthesisConfig = SynthesisConfig()


def to_tensors(window: Window, with_flow: bool = False) -> dict[str, torch.Tensor]:
    """A Window as channel-first tensors: blurry (3, H, W), frames (N, 3, H, W), guidance
    (H, W) long, motion (N, 2, H, W) where the window knows it, and flow (2, H, W) when
    ``with_flow``."""
    out = {
        "blurry": torch.from_numpy(np.ascontiguousarray(window.blurry.transpose(2, 0, 1))),
        "frames": torch.from_numpy(np.ascontiguousarray(window.frames.transpose(0, 3, 1, 2))),
        "guidance": torch.from_numpy(window.guidance.astype(np.int64)),
    }
    if window.motion is not None:
        out["motion"] = torch.from_numpy(np.ascontiguousarray(window.motion.transpose(0, 3, 1, 2)))
    if with_flow:
        out["flow"] = torch.from_numpy(np.ascontiguousarray(window.flow.transpose(2, 0, 1)))
    return out


class VideoWindows(torch.utils.data.Dataset):
    """Random windows from clips (and stills, a fraction ``stills_fraction`` of items).

    ``len`` is the number of items per epoch. Item ``i`` of epoch ``e`` is made from a generator
    seeded with (seed, e, i); rejected windows are retried at other places.
    """

    def __init__(
        self,
        clips: list[Clip],
        spec: WindowSpec,
        items_per_epoch: int,
        seed: int = 0,
        augment: bool = True,
        stills=None,
        stills_fraction: float = 0.0,
    ):
        if not clips and stills is None:
            raise ValueError("no clips and no stills source: nothing to train on")
        self.clips, self.spec, self.items, self.seed = clips, spec, items_per_epoch, seed
        self.augment, self.stills, self.stills_fraction = augment, stills, stills_fraction
        self.stills_only_epochs = 0  # curriculum: the first epochs use stills only
        self.keep_flow = False  # items also carry the mean flow (for CachedWindows)
        self.epoch = 0
        self.stats = RejectionStats()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        """``key`` is an index (in the epoch set by :meth:`set_epoch`) or an (epoch, index) pair,
        which is how the training sampler asks: workers then need no epoch state."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        window = self.make_window(rng, epoch)
        if self.augment:
            window = window.augmented(Augmentation.random(rng))
        return to_tensors(window, with_flow=self.keep_flow)

    def make_window(
        self, rng: np.random.Generator, epoch: int | None = None, attempts: int = 20
    ) -> Window:
        epoch = self.epoch if epoch is None else epoch
        fraction = 1.0 if epoch < self.stills_only_epochs else self.stills_fraction
        use_stills = self.stills is not None and (not self.clips or rng.random() < fraction)
        if use_stills:
            return self.stills.sample(rng)
        weights = np.array([c.length for c in self.clips], dtype=float)
        for _ in range(attempts):
            clip = self.clips[rng.choice(len(self.clips), p=weights / weights.sum())]
            try:
                window = random_window(clip, self.spec, rng)
            except Rejected as exc:
                self.stats[exc.reason] += 1
                continue
            self.stats["kept"] += 1
            return window
        raise RuntimeError(
            f"no usable window in {attempts} attempts ({self.stats.summary()}); the clips may "
            f"be too static, too short or full of cuts"
        )


def random_window(clip: Clip, spec: WindowSpec, rng: np.random.Generator) -> Window:
    """One synthesized window at a random place of ``clip`` (downscaled by clip.scale), cropped
    to spec.crop (with spec.margin of context around the crop for the flow)."""
    if clip.length < spec.n_frames:
        raise Rejected("unreadable", f"{clip.path.name} has only {clip.length} frames")
    start = int(rng.integers(0, clip.length - spec.n_frames + 1))
    frames = clip.read(start, spec.n_frames)
    h, w = frames.shape[1:3]
    c = spec.crop + 2 * spec.margin
    if h < spec.crop or w < spec.crop:
        raise ValueError(
            f"{clip.path.name} at scale {clip.scale:.2f} is {w}x{h}, smaller than "
            f"the {spec.crop}-px crop; lower the crop or max_step_motion"
        )
    ch, cw = min(c, h), min(c, w)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    window = synthesize(
        frames[:, y : y + ch, x : x + cw],
        spec.synthesis,
        rng,
        source={"clip": clip.path.name, "start": start, "scale": clip.scale},
    )
    my, mx = (ch - spec.crop) // 2, (cw - spec.crop) // 2
    return window.crop(my, mx, spec.crop, spec.crop)


def open_clips(patterns: list[str], max_step_motion: float, min_side: int = 160) -> list[Clip]:
    """Open every clip and set its downscale for ``max_step_motion``, but never so far that
    the short side drops below ``min_side`` (it must hold a crop and its margin)."""
    clips = [Clip(p) for p in expand_sources(patterns)]
    for clip in clips:
        floor = min(1.0, min_side / min(clip.width, clip.height))
        clip.scale = max(clip.estimate_scale(max_step_motion), floor)
    return clips


def _exposure(frames: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """The blurry exposure of ``frames``, synthesized as the window's own but never rejected
    (a neighbour may be static or cut: that is what a real video gives the neighbour guidance)."""
    relaxed = dataclasses.replace(
        spec.synthesis, min_motion=0.0, max_inconsistent=1.0, scene_cut=1.0
    )
    return synthesize(frames, relaxed, np.random.default_rng(0)).blurry


def validation_windows(
    clips: list[Clip],
    count: int,
    spec: WindowSpec,
    seed: int = 1234,
    width: int | None = 320,
    neighbors: bool = False,
) -> tuple[list[Window], RejectionStats]:
    """A deterministic validation set: ``count`` windows spread evenly over the clips, full
    frames resized to ``width`` (or crops of spec.crop when width is None), no degradation
    beyond the spec's, no augmentation. The same seed always gives the same windows.

    ``neighbors``: also synthesize the exposures just before and after each window (N frames
    each, as a blurry video would hold them) into ``Window.neighbors``, for evaluating guidance
    from neighbouring frames (needs ``width``)."""
    if neighbors and width is None:
        raise ValueError("neighbour windows are made from whole frames: give a width")
    rng = np.random.default_rng(seed)
    stats = RejectionStats()
    windows: list[Window] = []
    n = spec.n_frames
    lead = n if neighbors else 0
    span = 3 * n if neighbors else n
    per_clip = [count // len(clips) + (i < count % len(clips)) for i in range(len(clips))]
    for clip, want in zip(clips, per_clip):
        if clip.length < span:
            stats["unreadable"] += want
            continue
        starts = np.linspace(lead, clip.length - span + lead, max(want * 4, 1)).astype(int)
        kept = 0
        for start in starts:
            if kept == want:
                break
            try:
                if width is None:
                    window = random_window(clip, spec, rng)
                else:
                    scale = width / clip.width
                    frames = clip.read(int(start) - lead, span, scale)
                    h = frames.shape[1] - frames.shape[1] % 8
                    frames = frames[:, :h]
                    window = synthesize(
                        frames[lead : lead + n],
                        spec.synthesis,
                        rng,
                        source={"clip": clip.path.name, "start": int(start), "scale": scale},
                    )
                    if neighbors:
                        window.neighbors = (
                            _exposure(frames[:n], spec),
                            _exposure(frames[2 * n :], spec),
                        )
            except Rejected as exc:
                stats[exc.reason] += 1
                continue
            stats["kept"] += 1
            windows.append(window)
            kept += 1
    return windows, stats


#: What a cached window keeps: name -> dtype on disk (guidance is recomputed from the flow).
_CACHE_FIELDS = {
    "blurry": np.float16,
    "frames": np.float16,
    "flow": np.float16,
    "motion": np.float16,
}


class CachedWindows(torch.utils.data.Dataset):
    """A fixed set of synthesized windows, made once and then re-augmented every epoch.

    On 2 CPU cores the synthesis (optical flow, 49 sub-frames per window) is slower than the
    training step of a small network; a cache of ``count`` windows from ``source`` (a
    :class:`VideoWindows`, items made unaugmented) turns the run compute-bound. Each epoch sees
    every cached window once under a fresh flip / rot90 / time reversal (16 variants), seeded by
    (seed, epoch, index). The arrays live as .npy files in ``folder`` (float16), with a
    ``cache.json`` that names what made them: a folder made from other settings is refused.
    ``implied`` names settings added after caches were first written, with the value a cache
    that does not name them was made with (so an older cache stays usable where it matches).
    """

    def __init__(
        self,
        source: VideoWindows,
        count: int,
        folder: str | os.PathLike,
        key: dict,
        implied: dict | None = None,
    ):
        self.source, self.count, self.folder = source, count, Path(folder)
        self.seed, self.key = source.seed, {**key, "count": count, "seed": source.seed}
        self.implied = dict(implied or {})
        self.arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.count

    def ready(self) -> bool:
        meta = self.folder / "cache.json"
        if not meta.is_file():
            return False
        import json

        stored = {**self.implied, **json.loads(meta.read_text())}
        if stored != self.key:
            raise ValueError(
                f"{self.folder} holds windows made with other settings; delete it or use "
                f"another out_dir (stored {stored}, wanted {self.key})"
            )
        return True

    def fill(self, workers: int = 2, progress: bool = True) -> None:
        """Synthesize the windows (in ``workers`` processes) and write the cache, unless it is
        already there. Interrupted fills leave no cache.json, so they start again."""
        if self.ready():
            return
        import json

        self.folder.mkdir(parents=True, exist_ok=True)
        self.source.augment, self.source.keep_flow = False, True
        loader = torch.utils.data.DataLoader(
            self.source,
            batch_size=None,
            sampler=[(0, i) for i in range(self.count)],
            num_workers=workers,
            multiprocessing_context="forkserver" if workers else None,
            worker_init_fn=_cache_worker_init if workers else None,
        )
        arrays = {}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.count, unit="window", desc="synthesizing the window cache")
        for i, item in enumerate(loader):
            for name, dtype in _CACHE_FIELDS.items():
                value = item[name].numpy()
                if name not in arrays:
                    arrays[name] = np.lib.format.open_memmap(
                        self.folder / f"{name}.npy", "w+", dtype, (self.count, *value.shape)
                    )
                arrays[name][i] = value
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        for a in arrays.values():
            a.flush()
        (self.folder / "cache.json").write_text(json.dumps(self.key))

    def _open(self) -> dict[str, np.ndarray]:
        if self.arrays is None:
            if not self.ready():
                raise RuntimeError(f"the window cache in {self.folder} is not filled")
            self.arrays = {
                name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in _CACHE_FIELDS
            }
        return self.arrays

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        a = self._open()
        i = index % self.count
        window = Window.from_flow(
            a["blurry"][i].transpose(1, 2, 0).astype(np.float32),
            a["frames"][i].transpose(0, 2, 3, 1).astype(np.float32),
            a["flow"][i].transpose(1, 2, 0).astype(np.float32),
            motion=a["motion"][i].transpose(0, 2, 3, 1).astype(np.float32),
        )
        rng = np.random.default_rng([self.seed, epoch, index, 3])
        return to_tensors(window.augmented(Augmentation.random(rng)))


def _cache_worker_init(_):
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
