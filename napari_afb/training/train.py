"""The training loop for both models, on one device or under ``torchrun``
(DistributedDataParallel: NCCL on GPUs, Gloo on CPUs). The architecture's role in the registry
says which model a config trains.

Per step: a batch of windows, the loss and, for the decomposer, the loss of the blurry baseline on
the same batch (their ratio is the plateau indicator: 1.0 means the model still copies its
input); for the predictor, the axis and sign losses and accuracies. AdamW with a warm-up then
cosine schedule, gradient clipping, bf16 autocast on CUDA, optionally an exponential moving
average of the weights (``optim.ema``), which is then what is validated and exported. Rank 0
logs JSON lines, validates, plots the curves, writes checkpoints atomically and exports the best
weights in the package's weights format. A killed run resumes exactly where its last checkpoint
stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .. import models
from ..engine import autocast_dtype, select_device
from ..models.deconv import warped_frames
from ..weights import save_weights, state_digest
from .config import TrainConfig
from .datasets import CachedWindows, VideoWindows, WindowSpec, open_clips, validation_windows
from .device_data import DeviceBatches
from .losses import (
    baseline_loss,
    decomposer_loss,
    motion_loss,
    predictor_loss,
    warped_psnr_loss,
)
from .synthesis import SynthesisConfig

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainResult:
    """What a run produced: paths, the last step, the best validation metrics, and a digest of
    the final parameters (equal on every rank of a distributed run)."""

    out_dir: Path
    step: int
    best_weights: Path | None = None
    last_weights: Path | None = None
    best_metrics: dict = field(default_factory=dict)
    param_digest: str = ""
    initial_metrics: dict = field(default_factory=dict)
    cancelled: bool = False
    timed_out: bool = False


class EpochSampler(torch.utils.data.Sampler):
    """Endless (epoch, index) keys: per epoch a permutation seeded by (seed, epoch), this rank's
    share of it, cut to whole batches so no batch straddles two epochs. Starting at batch
    ``start`` (a step count) resumes exactly where a run stopped."""

    def __init__(self, n: int, seed: int, rank: int, world: int, batch: int, start: int = 0):
        self.n, self.seed, self.rank, self.world, self.batch = n, seed, rank, world, batch
        self.batches_per_epoch = (n // world) // batch
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"data.items_per_epoch ({n}) must hold at least one batch of {batch} per process "
                f"({world} processes)"
            )
        self.start = start

    def __iter__(self):
        epoch, skip = divmod(self.start, self.batches_per_epoch)
        while True:
            perm = np.random.default_rng([self.seed, epoch, 7]).permutation(self.n)
            mine = perm[self.rank :: self.world][: self.batches_per_epoch * self.batch]
            for index in mine[skip * self.batch :]:
                yield (epoch, int(index))
            epoch, skip = epoch + 1, 0


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return rank, world, int(os.environ.get("LOCAL_RANK", "0"))


def _worker_init(_):
    # Workers start from a fresh interpreter (forkserver/spawn, see _loader): setting thread
    # counts in a *forked* child of a process that has used OpenCV's or OpenMP's thread pools
    # can deadlock (seen here: a worker hung in cv2.setNumThreads).
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _loader(dataset, cfg: TrainConfig, sampler, pin: bool):
    workers = cfg.data.workers
    context = None
    if workers:
        import multiprocessing as mp

        methods = mp.get_all_start_methods()
        context = "forkserver" if "forkserver" in methods else "spawn"
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        worker_init_fn=_worker_init if workers else None,
        multiprocessing_context=context,
        persistent_workers=bool(workers),
        pin_memory=pin,
    )


def build_data(cfg: TrainConfig, rank: int = 0):
    """The training dataset and (on rank 0) the fixed validation windows."""
    d = cfg.data
    spec = WindowSpec(
        n_frames=d.n_frames,
        crop=d.crop,
        max_step_motion=d.max_step_motion,
        synthesis=SynthesisConfig(
            substeps=d.substeps, noise_std=d.noise_std, jpeg_prob=d.jpeg_prob
        ),
    )
    # A clip's short side must hold a crop and its margin (WindowSpec.margin) at its scale.
    min_side = max(160, d.crop + 2 * spec.margin)
    clips = open_clips(d.videos, d.max_step_motion, min_side) if d.videos else []
    stills = None
    if d.stills:
        from .stills import StillsSource

        stills = StillsSource(
            n_frames=d.n_frames,
            size=(d.crop, d.crop),
            substeps=d.substeps,
            max_shift=d.max_step_motion * (d.n_frames - 1),
            folders=d.stills_dirs,
        )
    if d.synthesis == "device":
        from .device_data import build_clip_flows

        root = Path(d.flow_cache_dir) if d.flow_cache_dir else Path(cfg.out_dir) / "flow_cache"
        flows = build_clip_flows(clips, root, workers=max(d.workers, 1)) if rank == 0 else None
        if dist.is_initialized():
            dist.barrier()
        train = DeviceBatches(
            flows or build_clip_flows(clips, root, progress=False),  # the others open them
            spec,
            d.batch_size,
            seed=cfg.seed,
            stills=stills,
            stills_fraction=d.stills_fraction,
            stills_only_steps=d.stills_only_steps,
            camera_motion=d.camera_motion,
            camera_speed=d.camera_speed,
        )
        return train, _validation(cfg, stills, rank)
    train = VideoWindows(
        clips,
        spec,
        d.items_per_epoch,
        seed=cfg.seed,
        stills=stills,
        stills_fraction=d.stills_fraction if clips else 1.0,
    )
    if stills is not None and d.stills_only_steps:
        # Curriculum (TRAINING_NOTES.md): exact, simple motion first, for whole epochs (each
        # item's key carries its epoch, so persistent workers switch with the sampler).
        world = dist.get_world_size() if dist.is_initialized() else 1
        per_epoch = max(1, d.items_per_epoch // (d.batch_size * world))
        train.stills_only_epochs = math.ceil(d.stills_only_steps / per_epoch)
    if d.cache_windows:
        key = {k: v for k, v in dataclasses.asdict(d).items() if not k.startswith("val")}
        for unrelated in ("workers", "cache_dir", "synthesis", "flow_cache_dir"):
            key.pop(unrelated)
        folder = Path(d.cache_dir) if d.cache_dir else Path(cfg.out_dir) / "window_cache"
        # stills_dirs came later: caches that do not name it were made from no photo folders
        train = CachedWindows(train, d.cache_windows, folder, key, implied={"stills_dirs": []})
        if rank == 0:
            train.fill(workers=max(d.workers, 1))
        if dist.is_initialized():
            dist.barrier()
    return train, _validation(cfg, stills, rank)


def _validation(cfg: TrainConfig, stills, rank: int) -> list:
    """The fixed validation windows (on rank 0; none elsewhere)."""
    d = cfg.data
    val = []
    if rank == 0 and d.val_windows:
        if d.val_videos:
            val_spec = WindowSpec(
                n_frames=d.n_frames, crop=d.crop, synthesis=SynthesisConfig(substeps=d.substeps)
            )
            val_clips = open_clips(d.val_videos, d.max_step_motion)
            val, _ = validation_windows(
                val_clips, d.val_windows, val_spec, seed=cfg.seed + 1, width=d.val_width or None
            )
        elif stills is not None:  # no held-out clips: a fixed set of stills windows
            rng = np.random.default_rng([cfg.seed, 99])
            val = [stills.sample(rng) for _ in range(d.val_windows)]
    return val


#: The validation metric that picks the best weights, per role (higher is better).
BEST_METRIC = {"decomposer": "psnr", "predictor": "acc_moving_best5"}


def validate(model, windows, device, role: str = "decomposer") -> dict:
    """Mean validation scores: for the decomposer, the model's and the blurry baseline's; for
    the predictor, guidance accuracies (see :func:`~.evaluate_guidance.predictor_scores`)."""
    if role == "predictor":
        from .evaluate_guidance import predictor_scores

        return predictor_scores(model, windows, device=str(device))
    from .evaluate import evaluate

    report = evaluate(model, windows, device=str(device))
    out = {k: float(v) for k, v in report.model.items()}
    out.update({f"baseline_{k}": float(v) for k, v in report.baseline.items()})
    out["reblur_psnr"] = float(report.reblur)
    if getattr(model, "supervision", "frames") == "motion":
        out["motion_epe"] = motion_epe(model, windows, device)
    return out


def _onehot(labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) guidance labels -> (B, 5, H, W) float one-hot, the decomposers' input."""
    return torch.nn.functional.one_hot(labels, 5).permute(0, 3, 1, 2).float()


@torch.no_grad()
def motion_epe(model, windows, device) -> float:
    """Mean end-point error (px) of a motion-predicting decomposer's per-frame offsets against
    the windows' true motion, over the windows that know it (nan when none does)."""
    errors = []
    for w in windows:
        if w.motion is None:
            continue
        h, wd = w.guidance.shape
        sh, sw = h - h % model.stride, wd - wd % model.stride
        image = torch.from_numpy(w.blurry[:sh, :sw].transpose(2, 0, 1))[None].to(device)
        labels = torch.from_numpy(w.guidance[:sh, :sw].astype(np.int64))[None].to(device)
        pred = model(image, _onehot(labels), output="motion")[0].cpu()
        true = torch.from_numpy(w.motion[:, :sh, :sw].transpose(0, 3, 1, 2))
        errors.append(float((pred - true).norm(dim=1).mean()))
    return float(np.mean(errors)) if errors else float("nan")


def _step_loss(role, net, batch, dev, amp, cfg: TrainConfig, supervision: str = "frames"):
    """The loss of one batch and the figures to log beside it (detached scalars).
    ``supervision`` is the model's: "frames" (the frame loss) or "motion" (the per-frame
    offsets, :func:`~.losses.motion_loss`; the batch must carry the true motion)."""
    blurry, guidance = batch["blurry"].to(dev), batch["guidance"].to(dev)
    with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        if role == "predictor":
            logits = net(blurry)
        else:
            onehot = _onehot(guidance)
            if supervision == "motion":
                k = max(1, round(len(blurry) * cfg.loss.frames_fraction))
                motion, pred = net(blurry, onehot, output="train", frames_of=k)
            else:
                pred = net(blurry, onehot)
    if role == "predictor":
        return predictor_loss(logits, guidance, cfg.loss)
    frames = batch["frames"].to(dev)
    if supervision == "motion":
        if "motion" not in batch:
            raise ValueError("this architecture trains on the true motion, which the data lacks")
        loss, parts = motion_loss(motion, batch["motion"].to(dev), frames, cfg.loss)
        if cfg.loss.frames:
            k = len(pred)
            frame_loss = decomposer_loss(pred.float(), frames[:k], guidance[:k], cfg.loss)
            with torch.no_grad():
                base = baseline_loss(blurry[:k], frames[:k], guidance[:k], cfg.loss)
            loss = loss + cfg.loss.frames * frame_loss
            parts["frames"] = frame_loss.detach()
            parts["frames_ratio"] = frame_loss.detach() / base
            parts["baseline"] = parts["baseline"] + cfg.loss.frames * base
        if cfg.loss.warped:
            warped = warped_frames(blurry.float(), motion.float())
            if cfg.loss.warped_form == "psnr":  # its baseline (the identity) is 0
                warped_loss = warped_psnr_loss(warped, blurry, frames)
                parts["warped_gain_db"] = -10 * warped_loss.detach()
            else:
                warped_loss = decomposer_loss(warped, frames, guidance, cfg.loss)
                with torch.no_grad():
                    base = baseline_loss(blurry, frames, guidance, cfg.loss)
                parts["warped_ratio"] = warped_loss.detach() / base
                parts["baseline"] = parts["baseline"] + cfg.loss.warped * base
            loss = loss + cfg.loss.warped * warped_loss
            parts["warped"] = warped_loss.detach()
        return loss, parts
    loss = decomposer_loss(pred.float(), frames, guidance, cfg.loss)
    with torch.no_grad():
        base = baseline_loss(blurry, frames, guidance, cfg.loss)
    return loss, {"baseline": base}


def arch_args_of(cfg: TrainConfig, role: str) -> dict:
    """Constructor arguments of the configured architecture (the decomposer's N from data)."""
    if role == "decomposer":
        return {"n_frames": cfg.data.n_frames, **cfg.model.args}
    return dict(cfg.model.args)


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_minutes: float | None = None,
    init_weights: str | os.PathLike | None = None,
) -> TrainResult:
    """Train the model ``cfg`` names (decomposer or predictor); see the module docstring.

    ``callback`` receives every logged record (dicts with "step", "loss", "ratio", ... or
    "val_*" keys); ``should_stop`` is polled every step: when it returns True the run saves a
    checkpoint and returns with ``cancelled=True``. ``max_minutes``: stop the same way (with
    ``timed_out=True``) once this much wall time has passed since the start, for machines lent
    by the hour; ``resume=True`` continues exactly. Under torchrun rank 0's clock decides for
    all ranks, so they stop at the same step.

    ``init_weights``: start from this weights file instead of a fresh network; its architecture
    and arguments win over the config's. The run validates it before the first step
    (``TrainResult.initial_metrics``) and exports best.safetensors only for a step that beats it.
    """
    started = time.monotonic()
    rank, world, local_rank = _distributed()
    dev = (
        torch.device(f"cuda:{local_rank}")
        if torch.cuda.is_available() and world > 1
        else select_device(device)
    )
    out = Path(cfg.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    torch.manual_seed(cfg.seed)
    role = models.role_of(cfg.model.architecture)
    arch_args = arch_args_of(cfg, role)
    best_key = BEST_METRIC[role]
    if init_weights is not None:
        from ..weights import load_weights

        model, init_info = load_weights(init_weights)
        if init_info.role != role:
            raise ValueError(f"{init_weights} holds {init_info.role} weights, not {role} weights")
        cfg.model.architecture, cfg.model.args = init_info.architecture, dict(init_info.arch_args)
        arch_args = dict(init_info.arch_args)
        model = model.train().to(dev)
    else:
        model = models.build(cfg.model.architecture, **arch_args).to(dev)
    supervision = getattr(model, "supervision", "frames")
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=(0.9, 0.99)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.optim.warmup_steps, cfg.optim.steps)
    )
    # The weights that are validated and exported: an exponential moving average of the trained
    # ones when optim.ema > 0 (kept by rank 0 only, which alone validates and exports).
    averaged = None
    if cfg.optim.ema > 0 and rank == 0:
        averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema), use_buffers=True
        )
    exported = averaged.module if averaged is not None else model
    step, best, initial = 0, {}, {}
    ckpt_path = out / CHECKPOINT
    ema_note = None
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = state["step"]  # the sampler derives epoch and position from it
        best = json.loads(state["best"])
        initial = json.loads(state.get("initial", "{}"))
        if averaged is not None:
            if "ema" in state:
                averaged.load_state_dict(state["ema"])
            else:  # the run so far kept none: the average starts from the resumed weights
                averaged.module.load_state_dict(state["model"])
                ema_note = "optim.ema: the checkpoint holds no average; it starts here"
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    amp = autocast_dtype(dev, cfg.optim.precision)
    train_set, val_windows = build_data(cfg, rank)
    log_path = out / "log.jsonl"
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.optim.steps, initial=step, unit="step", desc="train")

    def log(record: dict) -> None:
        if rank != 0:
            return
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if callback is not None:
            callback(record)

    if ema_note is not None:
        log({"step": step, "event": ema_note})
    if init_weights is not None and rank == 0 and val_windows and not resume:
        initial = validate(model.eval(), val_windows, dev, role)
        log({"step": step, "event": f"start from {init_weights}"})
        log({"step": step, **{f"val_{k}": v for k, v in initial.items()}})
        best = {**initial, "step": step}  # a step must beat the start to be exported
    cancelled = timed_out = False
    t_last, n_last = time.perf_counter(), 0
    if isinstance(train_set, DeviceBatches):  # batches made on the device, step by step
        loader = train_set.to(dev).batches(step, rank)
        per_epoch = max(1, cfg.data.items_per_epoch // (cfg.data.batch_size * world))
    else:
        sampler = EpochSampler(len(train_set), cfg.seed, rank, world, cfg.data.batch_size, step)
        loader = _loader(train_set, cfg, sampler, pin=dev.type == "cuda")
        per_epoch = sampler.batches_per_epoch
    if step < cfg.optim.steps:
        for batch in loader:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            if max_minutes is not None and _agreed(
                time.monotonic() - started > 60 * max_minutes, world, dev
            ):
                timed_out = True
                log({"step": step, "event": f"time limit of {max_minutes:g} min reached"})
                break
            model.train()
            loss, parts = _step_loss(role, net, batch, dev, amp, cfg, supervision)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(model)
            step, n_last = step + 1, n_last + len(batch["blurry"]) * world
            if bar is not None:
                bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.optim.steps:
                names = ["loss", *parts]
                stats = torch.stack([loss.detach(), *parts.values()]).float()
                if world > 1:
                    dist.all_reduce(stats)
                    stats /= world
                figures = dict(zip(names, stats.tolist()))
                if "baseline" in figures:
                    figures["ratio"] = figures["loss"] / figures["baseline"]
                now = time.perf_counter()
                log(
                    {
                        "step": step,
                        **figures,
                        "lr": sched.get_last_lr()[0],
                        "grad_norm": float(grad_norm),
                        "samples_per_s": n_last / (now - t_last),
                        "epoch": (step - 1) // per_epoch,
                        **(
                            {"windows": train_set.stats_snapshot()}
                            if isinstance(train_set, DeviceBatches)
                            else {}
                        ),
                    }
                )
                if bar is not None:
                    shown = "ratio" if "ratio" in figures else "loss"
                    bar.set_postfix({shown: f"{figures[shown]:.3f}"})
                t_last, n_last = now, 0
            if rank == 0 and val_windows and (step % cfg.val_every == 0 or step == cfg.optim.steps):
                scores = validate(exported.eval(), val_windows, dev, role)
                log({"step": step, **{f"val_{k}": v for k, v in scores.items()}})
                if not best or scores[best_key] > best.get(best_key, -1e9):
                    best = {**scores, "step": step}
                    _export(exported, out / "best.safetensors", cfg, arch_args, best)
                _plot(log_path, out / "curves.png")
            if step % cfg.checkpoint_every == 0 or step == cfg.optim.steps:
                _checkpoint(ckpt_path, model, opt, sched, step, best, rank, initial, averaged)
            if step >= cfg.optim.steps:
                break
    if hasattr(loader, "close"):
        loader.close()  # device batches: ends the thread that makes them ahead
    del loader  # stops the persistent workers
    if cancelled or timed_out:
        _checkpoint(ckpt_path, model, opt, sched, step, best, rank, initial, averaged)
    if bar is not None:
        bar.close()
    result = TrainResult(
        out,
        step,
        best_metrics=best,
        cancelled=cancelled,
        timed_out=timed_out,
        param_digest=state_digest(model.state_dict()),
        initial_metrics=initial,
    )
    if rank == 0:
        result.last_weights = _export(
            exported, out / "last.safetensors", cfg, arch_args, {"step": step}
        )
        if (out / "best.safetensors").is_file():
            result.best_weights = out / "best.safetensors"
        _plot(log_path, out / "curves.png")
    if world > 1:
        dist.barrier()
    return result


def _agreed(flag: bool, world: int, dev: torch.device) -> bool:
    """Rank 0's ``flag``, the same on every rank (one broadcast of a scalar per call)."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)], device=dev)
    dist.broadcast(value, src=0)
    return bool(value.item())


def _checkpoint(path: Path, model, opt, sched, step, best, rank, initial=None, averaged=None):
    if rank != 0:
        return
    state = {
        **({"ema": averaged.state_dict()} if averaged is not None else {}),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "best": json.dumps(best),
        "initial": json.dumps(initial or {}),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _export(model, path: Path, cfg: TrainConfig, arch_args: dict, metrics: dict) -> Path:
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in ("out_dir",)}
    data = {"videos": cfg.data.videos, "val_videos": cfg.data.val_videos, "stills": cfg.data.stills}
    return save_weights(
        model,
        path,
        architecture=cfg.model.architecture,
        arch_args=arch_args,
        recipe=recipe,
        data=data,
        metrics=metrics,
    )


def _plot(log_path: Path, png: Path) -> None:
    from .plot import plot_training_log

    try:
        plot_training_log(log_path, png)
    except Exception as exc:  # a plot must never stop training
        print(f"(could not plot {png}: {exc})")
