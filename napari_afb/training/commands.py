"""The training-side subcommands of ``napari-afb``: train, evaluate, inspect-data."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading

import numpy as np
import torch


@contextlib.contextmanager
def _stop_on_sigterm():
    """While training, SIGTERM (what job schedulers and ``kill`` send) sets an event that the
    loop polls every step: it then stops as ``--minutes`` does, with a resumable checkpoint, and
    shuts its data-loading workers down instead of leaving them behind."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def train_command(args) -> int:
    from .config import load_config
    from .train import train

    overrides = {}
    if args.out:
        overrides["out_dir"] = args.out
    if args.steps:
        overrides["optim.steps"] = args.steps
    cfg = load_config(args.config, overrides)
    from .. import models

    role = models.role_of(cfg.model.architecture)
    if role != args.what:
        raise ValueError(
            f"{args.config} trains {cfg.model.architecture!r}, a {role}: run "
            f"'napari-afb train {role} --config {args.config}'"
        )
    init = getattr(args, "init", None)
    promote_to = None
    if getattr(args, "continue_default", False):
        from ..weights import packaged_weights

        if init is not None:
            raise ValueError("--init and --continue-default both name the starting weights")
        init = promote_to = packaged_weights(role)
    with _stop_on_sigterm() as stop:
        result = train(
            cfg,
            resume=args.resume,
            device=args.device,
            max_minutes=args.minutes,
            init_weights=init,
            should_stop=stop.is_set,
        )
    if result.cancelled:
        print(
            f"stopped by SIGTERM at step {result.step} with a checkpoint; continue with --resume",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    if result.timed_out and result.last_weights is not None:
        print(
            f"stopped at step {result.step} of {cfg.optim.steps} after {args.minutes:g} min; "
            f"continue with --resume"
        )
    if result.last_weights is not None:  # rank 0
        print(f"trained {result.step} steps; weights: {result.last_weights}")
        if result.best_weights:
            print(f"best validation: {json.dumps(result.best_metrics)} -> {result.best_weights}")
        if promote_to is not None:
            print(promote(result, promote_to, role))
        elif init is not None and result.best_weights is None:
            print(f"no validation of the run beat the starting weights {init}")
    return 0


def promote(result, default, role: str) -> str:
    """Replace the packaged ``default`` weights with the run's best (fp16) when the best beat
    the default's own validation score, measured on the same windows at step 0 of the run;
    log the decision in the run's log.jsonl and return it as a sentence."""
    from ..weights import load_weights, save_weights
    from .train import BEST_METRIC

    key = BEST_METRIC[role]
    start = result.initial_metrics.get(key)
    best = result.best_metrics
    if start is None:
        message = f"kept {default}: the run did not validate the default (no validation windows)"
        improved = False
    else:
        improved = result.best_weights is not None and best.get("step", 0) > 0
        gain = best.get(key, start) - start
        if improved:
            model, info = load_weights(result.best_weights)
            save_weights(
                model,
                default,
                architecture=info.architecture,
                arch_args=info.arch_args,
                dtype=torch.float16,
                recipe=info.recipe,
                data=info.data,
                metrics={**info.metrics, "replaced": {key: start}},
            )
            message = (
                f"replaced {default} with step {best['step']}: validation {key} "
                f"{start:.4f} -> {best[key]:.4f} ({gain:+.4f})"
            )
        else:
            message = f"kept {default}: no validation of the run beat its {key} of {start:.4f}"
    with open(result.out_dir / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": result.step, "event": message, "promoted": improved}) + "\n")
    return message


def evaluate_command(args) -> int:
    from ..engine import select_device
    from ..weights import load_weights
    from .datasets import WindowSpec, open_clips, validation_windows
    from .evaluate import evaluate

    device = select_device(args.device)
    model, info = load_weights(args.weights, device)
    if info.role != "decomposer":
        raise ValueError(f"--weights {args.weights} holds {info.role} weights; pass a decomposer")
    clips = open_clips(args.data, 3.0)
    spec = WindowSpec(n_frames=model.n_frames)
    sources = args.guidance == "sources"
    # neighbour windows are whole frames: --width 0 (crops) means the default width there
    width = args.width or (320 if sources else None)
    windows, stats = validation_windows(
        clips, args.windows, spec, seed=args.seed, width=width, neighbors=sources
    )
    if not windows:
        raise ValueError(f"no usable windows in {args.data} ({stats.summary()})")
    print(f"weights: {info.summary()}; windows: {stats.summary()}")
    if sources:
        return _evaluate_sources(args, model, windows, device)
    report = evaluate(
        model,
        windows,
        device=str(device),
        guidance=args.guidance,
        sheet_path=args.sheet,
        progress=True,
    )
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0


def _evaluate_sources(args, model, windows, device) -> int:
    from ..weights import WeightsError, cached_model
    from .evaluate_guidance import evaluate_guidance

    try:
        predictor, pinfo = cached_model(args.predictor, device, role="predictor")
        print(f"predictor: {pinfo.summary()}")
    except WeightsError as exc:
        if args.predictor is not None:
            raise
        predictor = None
        print(f"predictor: none ({exc}); no predicted rows")
    report = evaluate_guidance(
        model, windows, predictor=predictor, device=str(device), progress=True
    )
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0


def inspect_command(args) -> int:
    from .. import io
    from .datasets import WindowSpec, open_clips, random_window
    from .synthesis import Rejected, RejectionStats

    clips = open_clips(args.data, args.max_step_motion, min_side=args.crop + 32)
    spec = WindowSpec(crop=args.crop, max_step_motion=args.max_step_motion)
    rng = np.random.default_rng(args.seed)
    rows, total = [], RejectionStats()
    print(f"{'clip':28s} {'frames':>6s} {'size':>9s} {'scale':>5s}  windows")
    for clip in clips:
        stats = RejectionStats()
        for _ in range(args.windows):
            try:
                window = random_window(clip, spec, rng)
            except Rejected as exc:
                stats[exc.reason] += 1
                continue
            stats["kept"] += 1
            if sum(1 for r in rows if r[0] == clip.path.name) < 2:
                rows.append((clip.path.name, window))
        total.update(stats)
        size = f"{clip.width}x{clip.height}"
        print(
            f"{clip.path.name[:28]:28s} {clip.length:6d} {size:>9s} {clip.scale:5.2f}  "
            f"{stats.summary()}"
        )
    print(f"{'all':28s} {'':6s} {'':9s} {'':5s}  {total.summary()}")
    if args.preview and rows:
        tiles = []
        for _, w in rows:
            n = len(w.frames)
            parts = [
                w.blurry,
                io.guidance_rgb(w.guidance) / 255.0,
                w.frames[0],
                w.frames[n // 2],
                w.frames[-1],
            ]
            tiles.append(np.concatenate(parts, axis=1))
        io.write_png(args.preview, io.to_uint8(np.concatenate(tiles, axis=0)))
        print(f"preview (blurry, guidance, first/middle/last frame per row): {args.preview}")
    return 0


COMMANDS = {"train": train_command, "evaluate": evaluate_command, "inspect-data": inspect_command}
