"""The ``napari-afb`` command line.

    napari-afb decompose INPUT [--guidance MAP | --direction NAME] [--path x0,y0,x1,y1,...]
                         --out DIR [--engine auto|kernel|learned] [options]
    napari-afb demo --out DIR
    napari-afb info WEIGHTS
    napari-afb convert WEIGHTS --out OUT [--dtype float16]
    napari-afb animate VIDEO --out OUT.mp4 [--guidance neighbors|predict]
    napari-afb predict INPUT --out DIR [--samples 5 --seed 0]
    napari-afb batch INPUT [INPUT ...] --out DIR [--scheduler ADDRESS] [options]
    napari-afb train decomposer|predictor --config FILE [--resume]
    napari-afb evaluate --weights W --data CLIP [CLIP ...] [--guidance sources --predictor P]
    napari-afb inspect-data CLIP [CLIP ...] [--preview PNG]

Exit status: 0 done, 2 bad input (unreadable file, mismatched guidance, bad weights, existing
output), 1 a failure while running, 130 interrupted. Outputs appear only when complete.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from . import __version__
from .guidance import NAMES

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="napari-afb",
        description="Animation from blur: the sharp frames hidden in a motion-blurred image.",
    )
    p.add_argument("--version", action="version", version=f"napari-afb {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "decompose",
        help="decompose one blurry image into frames",
        description="Decompose one blurry image into N sharp frames, written as "
        "PNG files and an animated GIF.",
    )
    d.add_argument("input", type=Path, help="blurry image (png, jpg, tif, bmp, webp)")
    g = d.add_mutually_exclusive_group()
    g.add_argument(
        "--guidance",
        type=Path,
        metavar="MAP",
        help="label map, .npy or single-channel PNG/TIFF, values 0-4, same size "
        "(default: the guidance predictor's most plausible sample)",
    )
    g.add_argument(
        "--direction",
        choices=NAMES,
        metavar="NAME",
        help=f"one motion direction for the whole image: {', '.join(NAMES)}",
    )
    d.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    _add_engine_options(d)
    _add_run_options(d)
    _add_predictor_options(d)
    d.add_argument("--fps", type=_positive, default=10.0, help="GIF frame rate (default 10)")
    d.add_argument("--overwrite", action="store_true", help="replace an existing output folder")

    m = sub.add_parser(
        "demo",
        help="run on the bundled synthetic sample and report numbers",
        description="Blur a scikit-image still along known paths, decompose it "
        "with its true guidance, write the frames and GIFs, print PSNR figures.",
    )
    m.add_argument("--out", type=Path, default=Path("demo_out"), metavar="DIR")
    _add_run_options(m)
    m.add_argument("--overwrite", action="store_true", help="replace an existing output folder")

    a = sub.add_parser(
        "animate",
        help="turn a blurry video into a sharp one, N times faster",
        description="Decompose every frame of a video, with guidance from its "
        "neighbouring frames, into a video with N times the frame rate (.mp4). "
        "Audio is not carried over.",
    )
    a.add_argument("input", type=Path, help="blurry video (mp4, avi, mov, mkv)")
    a.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="output video: .mp4 (H.264 where PyAV is installed, else MPEG-4 Part 2) or .avi "
        "(Motion JPEG)",
    )
    a.add_argument(
        "--speed",
        choices=["slow", "real"],
        default="slow",
        help="slow: slow motion at the source's frame rate, N times as long (default); real: "
        "real time at N times the source's frame rate",
    )
    a.add_argument(
        "--start",
        type=int,
        default=None,
        metavar="N",
        help="first video frame to animate (0-based; default 0)",
    )
    a.add_argument(
        "--stop",
        type=int,
        default=None,
        metavar="M",
        help="animate up to frame M, not including it (default: the end); e.g. --start 100 "
        "--stop 110 animates 10 frames. The progress bar shows the time left.",
    )
    a.add_argument(
        "--guidance",
        choices=["neighbors", "predict"],
        default="neighbors",
        help="where each frame's guidance comes from: its neighbouring frames (default) or "
        "the guidance predictor",
    )
    _add_engine_options(a, video=True)
    _add_run_options(a)
    _add_predictor_options(a)
    a.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    q = sub.add_parser(
        "predict",
        help="sample guidance maps for a blurry image",
        description="Sample distinct plausible guidance maps with the guidance predictor, in "
        "order of plausibility (a map and its time-reversal tie), as palette PNGs "
        "(sample_1.png, ...) that show the directions in colour and that decompose --guidance "
        "reads back as labels.",
    )
    q.add_argument("input", type=Path, help="blurry image (png, jpg, tif, bmp, webp)")
    q.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    q.add_argument("--samples", type=int, default=5, help="how many maps (default 5)")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    _add_predictor_options(q)
    q.add_argument("--overwrite", action="store_true", help="replace an existing output folder")

    i = sub.add_parser(
        "info",
        help="show what a weights file says about itself (no file: the default weights)",
    )
    i.add_argument("weights", type=Path, nargs="?", default=None)

    c = sub.add_parser(
        "convert",
        help="rewrite a weights file in another precision (fp16 for shipping)",
        description="Check and load a weights file, then write its tensors in another "
        "floating-point precision with the same metadata (a new checksum).",
    )
    c.add_argument("weights", type=Path)
    c.add_argument("--out", type=Path, required=True, metavar="FILE")
    c.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    c.add_argument("--overwrite", action="store_true", help="replace an existing file")

    t = sub.add_parser(
        "train",
        help="train a model on your own sharp videos",
        description="Train a model from a config file (TOML, YAML or JSON); "
        "run under torchrun for several GPUs or processes.",
    )
    t.add_argument("what", choices=["decomposer", "predictor"], help="which model to train")
    t.add_argument("--config", type=Path, required=True, metavar="FILE")
    t.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    t.add_argument(
        "--continue-default",
        action="store_true",
        help="start from the weights that ship with the package (their architecture wins over "
        "the config's) and replace them, as fp16, only if the run's best validation score "
        "beats theirs on the same windows",
    )
    t.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="WEIGHTS",
        help="start from this weights file (its architecture wins over the config's); the run "
        "validates it first and exports best.safetensors only for a step that beats it",
    )
    t.add_argument("--out", type=str, default=None, metavar="DIR", help="override out_dir")
    t.add_argument("--steps", type=int, default=None, help="override optim.steps")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument(
        "--minutes",
        type=_positive,
        default=None,
        help="stop (with a checkpoint, resumable) after this much wall time",
    )

    e = sub.add_parser(
        "evaluate",
        help="score weights on synthesized windows of clips",
        description="Synthesize a fixed, seeded set of windows from the clips, "
        "decompose them, and report PSNR/SSIM (strict and order-agnostic) "
        "beside the blurry baseline. With --guidance sources: every guidance source "
        "(true, predicted best of 1/3/5, neighbouring frames) with guidance accuracy "
        "and sample diversity.",
    )
    e.add_argument("--weights", type=Path, required=True, help="decomposer weights")
    e.add_argument(
        "--predictor",
        type=Path,
        help="predictor weights for --guidance sources (default: packaged or "
        "$NAPARI_AFB_PREDICTOR_WEIGHTS; none: no predicted rows)",
    )
    e.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="CLIP",
        help="video files, frame folders or globs",
    )
    e.add_argument("--windows", type=int, default=20, help="how many windows (default 20)")
    e.add_argument(
        "--width",
        type=int,
        default=320,
        help="resize frames to this width (default 320; 0 = 128-px crops)",
    )
    e.add_argument(
        "--guidance",
        choices=["true", "reversed", "sources"],
        default="true",
        help="true or time-reversed guidance, or all guidance sources compared",
    )
    e.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    e.add_argument("--json", type=Path, help="write the full report as JSON here")
    e.add_argument("--device", default="auto")
    e.add_argument("--seed", type=int, default=1234)

    d = sub.add_parser(
        "inspect-data",
        help="show what blur synthesis makes of your clips",
        description="Open clips, estimate their downscale, synthesize windows "
        "and report kept and rejected windows per clip, with a preview image.",
    )
    d.add_argument("data", nargs="+", metavar="CLIP", help="video files, frame folders or globs")
    d.add_argument("--windows", type=int, default=20, help="windows to try per clip")
    d.add_argument("--crop", type=int, default=128)
    d.add_argument("--max-step-motion", type=float, default=3.0)
    d.add_argument("--preview", type=Path, help="write a preview PNG here")
    d.add_argument("--seed", type=int, default=0)
    b = sub.add_parser(
        "batch",
        help="decompose every photo and animate every video of folders, on Dask",
        description="Run decompose on every photo and animate on every video found (files, "
        "folders searched recursively, globs) into OUT (a photo a/b.jpg gives the folder "
        "OUT/a/b/, a video a/c.mp4 the file OUT/a/c.mp4), on a local Dask cluster or on "
        "--scheduler. A rerun skips the outputs that are finished (checked against their "
        "manifests); a file that fails is reported in the summary. Exit status 1 when a file "
        "failed.",
    )
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="photos, videos, folders or globs")
    b.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    b.add_argument(
        "--guidance",
        choices=["auto", "predict", "neighbors", "none"],
        default="auto",
        help="auto (default): a photo's NAME.guidance.png/.npy beside it, else none for the "
        "blur-kernel engine and the predictor for the learned one; a video's neighbouring "
        "frames. none: the engine decides",
    )
    b.add_argument("--direction", choices=NAMES, metavar="NAME", help="one direction for photos")
    _add_run_options(b)
    _add_predictor_options(b)
    b.add_argument("--engine", default=None, help="decomposition engine (passed to decompose)")
    b.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any further keyword argument of decompose (VALUE read as JSON, else as text); "
        "repeatable",
    )
    b.add_argument("--fps", type=_positive, default=10.0, help="GIF frame rate (default 10)")
    b.add_argument("--video-format", choices=["mp4", "avi"], default="mp4")
    b.add_argument(
        "--speed",
        choices=["slow", "real"],
        default="slow",
        help="videos in slow motion at the source's frame rate (default) or in real time",
    )
    b.add_argument("--start", type=int, default=None, metavar="N", help="first video frame")
    b.add_argument("--stop", type=int, default=None, metavar="M", help="stop before this frame")
    b.add_argument(
        "--chunk", type=int, default=8, metavar="K", help="video frames per task (default 8)"
    )
    b.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a running Dask scheduler (default $DASK_SCHEDULER_ADDRESS, else a local cluster)",
    )
    b.add_argument("--workers", type=int, default=None, help="local worker processes")
    b.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    b.add_argument("--overwrite", action="store_true", help="redo finished outputs too")
    return p


def _shutter(text: str):
    if text == "auto":
        return text
    value = _positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"a fraction of the frame interval, at most 1: {text}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_engine_options(p: argparse.ArgumentParser, video: bool = False) -> None:
    p.add_argument(
        "--engine",
        choices=["auto", "kernel", "learned"],
        default="auto",
        help="kernel: blur paths + deconvolution; learned: the decomposer network; auto "
        "(default): learned when --weights is given, else kernel",
    )
    if video:
        p.add_argument(
            "--shutter",
            type=_shutter,
            default="auto",
            metavar="FRACTION",
            help="kernel engine: the share of the frame interval the shutter was open, in (0, "
            "1], or auto (default: the longest that does not ring); each frame's blur path is "
            "this times its motion per frame",
        )
    else:
        _add_path_options(p)
    _add_kernel_options(p)


def _add_path_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="x0,y0,x1,y1,...",
        help="kernel engine: a blur path in image pixels, from where the motion started to "
        "where it ended (repeatable: one per moving region); default: estimated",
    )
    p.add_argument(
        "--paths", type=Path, metavar="FILE", help="kernel engine: blur paths from a JSON file"
    )


def _add_kernel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernel-bound",
        type=int,
        default=51,
        metavar="PX",
        help="kernel engine: the longest blur estimated or drawn, in px (default 51; 1.5-2x the "
        "blur you see works best)",
    )
    p.add_argument(
        "--strength",
        default="auto",
        help="kernel engine: deconvolution weight (higher = sharper and noisier; ~2000 for a "
        "clean photo, 300-600 for a noisy one) or auto (default, from the noise level)",
    )
    p.add_argument(
        "--space",
        choices=["auto", "gamma", "linear"],
        default="auto",
        help="kernel engine: how the blur mixed the colours: the stored pixel values (gamma), "
        "the light, as a sensor integrates it (linear), or auto (default: per path, the one "
        "that explains the photo better)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", type=Path, help="decomposer weights (default: packaged or $NAPARI_AFB_WEIGHTS)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile side in px (default: by device; 0 = whole image)",
    )
    p.add_argument("--overlap", type=int, default=None, help="tile overlap in px (default 128)")


def _add_predictor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--predictor",
        type=Path,
        metavar="WEIGHTS",
        help="guidance predictor weights (default: packaged or $NAPARI_AFB_PREDICTOR_WEIGHTS)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed of predicted guidance")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .engine import Cancelled, DeviceError
    from .io import InputError
    from .training.commands import COMMANDS
    from .weights import WeightsError

    handlers = {
        "decompose": _decompose,
        "demo": _demo,
        "info": _info,
        "animate": _animate,
        "predict": _predict,
        "convert": _convert,
        "batch": _batch,
        **COMMANDS,
    }
    try:
        return handlers[args.command](args)
    except (
        InputError,
        WeightsError,
        DeviceError,
        FileExistsError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        print(f"napari-afb: error: {_said(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (KeyboardInterrupt, Cancelled):
        print("napari-afb: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError as exc:
        advice = "" if hasattr(exc, "cli_message") else "; try a smaller --tile"
        print(f"napari-afb: out of memory: {_said(exc)}{advice}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # e.g. a full disk while writing; nothing half-written remains
        print(f"napari-afb: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _said(exc: BaseException) -> str:
    """An error's message for the command line: its ``cli_message`` (options spelled as flags,
    ``--device cpu``) where it has one, else its text (which may say ``device='cpu'``)."""
    return str(getattr(exc, "cli_message", None) or exc)


def _run_kwargs(args) -> dict:
    kw = {"device": args.device, "tile": args.tile, "progress": True}
    if args.overlap is not None:
        kw["overlap"] = args.overlap
    return kw


def _decompose(args) -> int:
    import numpy as np

    from . import api, io
    from .guidance import label_from_name

    image = io.read_image(args.input)
    h, w = image.shape[:2]
    io.check_destination(args.out, args.overwrite)  # fail before the long part
    t0 = time.perf_counter()
    guidance = None
    if args.guidance is not None:
        guidance = io.read_guidance(args.guidance, shape=(h, w))
    elif args.direction is not None:
        guidance = np.full((h, w), label_from_name(args.direction), dtype=np.uint8)
    if api.choose_engine(args.engine, args.weights) == "kernel":
        return _decompose_kernel(args, image, guidance, t0)
    if args.path or args.paths:
        raise ValueError("--path and --paths are for the kernel engine: use --engine kernel")
    if guidance is None:
        from .predict import predict_guidance

        guidance = predict_guidance(
            image, 1, seed=args.seed, device=args.device, weights=args.predictor
        )[0]
        print("guidance: the predictor's most plausible sample (see guidance.png)")
    frames = api.decompose(image, guidance, weights=args.weights, **_run_kwargs(args))
    seconds = time.perf_counter() - t0
    with io.staged_directory(args.out, args.overwrite) as tmp:
        _write_frames(tmp, frames, args.fps)
        io.write_png(tmp / "guidance.png", io.guidance_rgb(guidance))
    print(
        f"wrote {len(frames)} frames ({w}x{h}) and animation.gif to {args.out} in {seconds:.1f} s"
    )
    return EXIT_OK


def _kernel_paths(args) -> list:
    from .kernel.paths import load_paths, parse_path

    paths = [parse_path(text) for text in args.path]
    if args.paths is not None:
        paths += load_paths(args.paths)
    return paths


_BLUR_WORDS = {"gamma": "blur of the pixel values", "linear": "blur of the light (linear)"}


def _kernel_strength(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--strength takes a positive number or auto, not {text!r}") from None


def _decompose_kernel(args, image, guidance, t0: float) -> int:
    """The kernel engine's run: frames, the sharp image, the paths (JSON and a picture)."""
    from . import io
    from .jobs import drive
    from .kernel.decompose import decompose_iter

    gen = decompose_iter(
        image,
        guidance,
        _kernel_paths(args) or None,
        kernel_bound=args.kernel_bound,
        strength=_kernel_strength(args.strength),
        space=args.space,
    )
    result = drive(gen, True, desc="decompose", unit="step")
    seconds = time.perf_counter() - t0
    with io.staged_directory(args.out, args.overwrite) as tmp:
        _write_kernel_result(tmp, image, result, args.fps)
        if guidance is not None:
            io.write_png(tmp / "guidance.png", io.guidance_rgb(guidance))
    h, w = image.shape[:2]
    for note in result.notes:
        print(f"note: {note}")
    for i, p in enumerate(result.paths):
        (x0, y0), (x1, y1) = p.points[0], p.points[-1]
        used = (
            f"strength {result.strengths[i]:.0f}, {_BLUR_WORDS[result.blurs[i]]}"
            if result.applied[i]
            else "not applied (see the note)"
        )
        print(
            f"path {i + 1} ({p.source}): {p.extent():.1f} px, from ({x0:.0f}, {y0:.0f}) to "
            f"({x1:.0f}, {y1:.0f}); {used}"
        )
    if result.reblur_psnr is not None:
        print(f"the frames' mean matches the input at {result.reblur_psnr:.1f} dB (re-blur check)")
    print(
        f"wrote {len(result.frames)} frames ({w}x{h}), sharp.png, paths.json and animation.gif "
        f"to {args.out} in {seconds:.1f} s"
    )
    return EXIT_OK


def _write_kernel_result(folder: Path, image, result, fps: float) -> None:
    import numpy as np

    from . import io
    from .kernel import figures, save_paths

    _write_frames(folder, result.frames, fps)
    io.write_png(folder / "sharp.png", np.rint(result.latent * 255).astype(np.uint8))
    if result.paths:
        save_paths(result.paths, folder / "paths.json")
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        drawn = np.ascontiguousarray(_as_uint8(rgb[..., :3]))
        for p in result.paths:
            drawn = figures.draw_path(drawn, p)
        io.write_png(folder / "paths.png", drawn)
        io.write_png(folder / "kernel.png", figures.kernel_picture(result.paths[0]))


def _as_uint8(img):
    import numpy as np

    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img // 257).astype(np.uint8)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _write_frames(folder: Path, frames, fps: float) -> None:
    from . import io

    for t, frame in enumerate(frames):
        io.write_png(folder / f"frame_{t:02d}.png", frame)
    io.write_gif(folder / "animation.gif", frames, fps=fps, bounce=True)


def _demo(args) -> int:
    import numpy as np
    import torch
    from skimage.metrics import peak_signal_noise_ratio as psnr

    from . import api, io, models, samples
    from .engine import select_device
    from .weights import WeightsError, cached_model

    io.check_destination(args.out, args.overwrite)  # before the work
    plate = _demo_plate()
    sample = samples.synthetic_blur()
    print(f"\nlearned engine (provisional CPU weights), sample: {sample.description}")
    device = select_device(args.device)
    try:
        model, info = cached_model(args.weights, device)
        print(f"weights: {info.summary()}")
    except WeightsError as exc:
        if args.weights is not None:
            raise
        print(
            f"NOTE: {exc}.\nNOTE: the demo uses an UNTRAINED MotionUNet (seed 0) instead. "
            "An untrained network returns copies of its input, so the frames below show "
            "the pipeline, not the method's quality."
        )
        torch.manual_seed(0)
        model = models.build("motion_unet")
    frames = api.decompose(sample.blurry, sample.guidance, model=model, **_run_kwargs(args))

    truth = sample.frames
    baseline = np.repeat(sample.blurry[None], len(truth), axis=0)
    reblur = samples.linear_mean(frames / 255.0)
    scores = {
        "frames vs truth, PSNR dB": np.mean([psnr(a, b) for a, b in zip(truth, frames)]),
        "blurry baseline vs truth, PSNR dB": np.mean([psnr(a, b) for a, b in zip(truth, baseline)]),
        "re-blur consistency, PSNR dB": psnr(sample.blurry / 255.0, reblur, data_range=1.0),
    }
    with io.staged_directory(args.out, args.overwrite) as tmp:
        (tmp / "plate").mkdir()
        for name, (image, result, crop) in plate.items():
            sub = tmp / "plate" / name
            sub.mkdir()
            _write_kernel_result(sub, image, result, fps=10)
            from .kernel.figures import strip

            io.write_png(sub / "strip.png", strip(image, result.frames, (0, 3, 6), crop))
        io.write_png(tmp / "blurry.png", sample.blurry)
        io.write_png(tmp / "guidance.png", io.guidance_rgb(sample.guidance))
        _write_frames(tmp, frames, fps=10)
        io.write_gif(tmp / "truth.gif", truth, fps=10, bounce=True)
        (tmp / "scores.json").write_text(
            json.dumps({k: float(v) for k, v in scores.items()}, indent=2)
        )
    for name, value in scores.items():
        print(f"  {name:36s} {value:7.2f}")
    print(
        f"wrote blurry.png, guidance.png, {len(frames)} frames, animation.gif and truth.gif "
        f"to {args.out}; the plate's frames to {args.out / 'plate'} (strip.png: input | frame "
        f"1 | 4 | 7 at the plate)"
    )
    return EXIT_OK


def _demo_plate() -> dict:
    """The blur-kernel engine on the bundled licence-plate photo (OpenCV's motion-deblur
    sample): once with the path a user draws along the streaks (23 px up-right), once with the
    path estimated blindly. The plate should read 127-RFS in every frame of both."""
    from . import samples
    from .jobs import run
    from .kernel.decompose import decompose_iter

    image = samples.licence_plate()
    crop = (180, 310, 190, 410)  # the plate and the badge above it
    print(
        "blur-kernel engine (the default), sample: a real motion-blurred photo of a car "
        "(OpenCV's licence-plate sample)"
    )
    out = {}
    for name, paths in (("drawn", "292,248,308,232"), ("estimated", None)):
        t0 = time.perf_counter()
        result = run(decompose_iter(image, None, paths))
        p = result.paths[0] if result.paths else None
        what = (
            f"{p.source} path {p.extent():.1f} px, direction ({p.direction()[0]:+.0f}, "
            f"{p.direction()[1]:+.0f}), {_BLUR_WORDS[result.blurs[0]]}"
            if p is not None
            else "no path: " + "; ".join(result.notes)
        )
        print(f"  kernel engine, {name:9s} {what}, {time.perf_counter() - t0:5.2f} s")
        out[name] = (image, result, crop)
    return out


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


class _StopOnSignal:
    """SIGTERM and Ctrl-C ask a batch to stop at its next check (it polls twice a second): the
    finished outputs stay, the unfinished ones are removed. A second signal stops at once.

    Raising from the handler the first time, as ``_terminated`` does, is not safe here: the
    batch loop drops Dask futures, whose finalisers run Python code, and an exception raised
    by a signal handler while a finaliser runs is printed and ignored, so the batch went on.
    """

    def __init__(self):
        self._asked = False
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame):
        if self._asked:
            raise SystemExit(128 + signum)
        self._asked = True
        print(
            "napari-afb: stopping after the outputs being written; signal again to stop at once",
            file=sys.stderr,
        )

    def asked(self) -> bool:
        return self._asked

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def _animate(args) -> int:
    from .animate import animate_video

    if not args.input.is_file():
        raise FileNotFoundError(f"no such video: {args.input}")
    # SIGTERM (a scheduler's kill) unwinds like Ctrl-C, so the unfinished output is removed
    signal.signal(signal.SIGTERM, _terminated)
    summary = animate_video(
        args.input,
        args.out,
        device=args.device,
        weights=args.weights,
        tile=args.tile,
        overwrite=args.overwrite,
        progress=True,
        guidance=args.guidance,
        predictor_weights=args.predictor,
        start=args.start,
        stop=args.stop,
        speed=args.speed,
        engine=args.engine,
        shutter=args.shutter,
        kernel_bound=args.kernel_bound,
        strength=_kernel_strength(args.strength),
        space=args.space,
    )
    print(
        f"wrote {args.out} ({summary['engine']} engine, guidance: {summary['guidance']}): "
        f"{summary['frames_in']} frames "
        f"({summary['first']} to {summary['stop'] - 1}) at {summary['fps_in']:g} fps -> "
        f"{summary['frames_out']} frames at {summary['fps_out']:g} fps ({summary['speed']}), "
        f"{summary['size']}, codec {summary['codec']} (audio {summary['audio']})"
    )
    return EXIT_OK


def _predict(args) -> int:
    from . import io
    from .predict import describe_order, plausibility_ranks, predict_guidance

    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    image = io.read_image(args.input)
    io.check_destination(args.out, args.overwrite)
    labels, log_prob = predict_guidance(
        image,
        args.samples,
        seed=args.seed,
        device=args.device,
        weights=args.predictor,
        return_log_prob=True,
        unique=True,
    )
    order = describe_order(log_prob, args.samples)
    with io.staged_directory(args.out, args.overwrite) as tmp:
        for k, sample in enumerate(labels, start=1):
            io.write_guidance_png(tmp / f"sample_{k}.png", sample)
        summary = {
            "input": str(args.input),
            "seed": args.seed,
            "order": order,
            "samples": [
                {"file": f"sample_{k}.png", "log_prob": float(lp), "rank": int(r)}
                for k, (lp, r) in enumerate(zip(log_prob, plausibility_ranks(log_prob)), start=1)
            ],
        }
        (tmp / "samples.json").write_text(json.dumps(summary, indent=2))
    print(
        f"wrote {order} to {args.out}; use one with: napari-afb decompose {args.input} "
        f"--guidance {args.out / 'sample_1.png'} --out ..."
    )
    return EXIT_OK


def _convert(args) -> int:
    import torch

    from .weights import load_weights, save_weights

    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists; choose another name or --overwrite")
    if args.out.resolve() == args.weights.resolve():
        raise ValueError("--out must be another file than the input")
    model, info = load_weights(args.weights)
    path = save_weights(
        model,
        args.out,
        architecture=info.architecture,
        arch_args=info.arch_args,
        dtype=getattr(torch, args.dtype),
        recipe=info.recipe,
        data=info.data,
        metrics={**info.metrics, "converted_from": info.sha256, "dtype": args.dtype},
    )
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({args.dtype}, {size:.1f} MiB) from {args.weights}")
    return EXIT_OK


def _batch(args) -> int:
    from .batch import BatchOptions, batch

    extra = {}
    for item in args.option:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--option takes KEY=VALUE, got {item!r}")
        try:
            extra[key] = json.loads(text)
        except ValueError:
            extra[key] = text
    if args.engine is not None:
        extra["engine"] = args.engine
    options = BatchOptions(
        guidance=args.guidance,
        direction=args.direction,
        weights=str(args.weights) if args.weights else None,
        predictor_weights=str(args.predictor) if args.predictor else None,
        seed=args.seed,
        device=args.device,
        tile=args.tile,
        overlap=args.overlap,
        fps=args.fps,
        video_format=args.video_format,
        start=args.start,
        stop=args.stop,
        speed=args.speed,
        chunk=args.chunk,
        decompose_kwargs=extra,
    )
    stop = _StopOnSignal()
    try:
        summary = batch(
            args.inputs,
            args.out,
            options,
            scheduler=args.scheduler,
            workers=args.workers,
            threads=args.threads,
            overwrite=args.overwrite,
            progress=True,
            cancel=stop.asked,
        )
    except (KeyboardInterrupt, SystemExit):
        summary = None
    finally:
        stop.restore()
    if summary is None or summary.cancelled:
        print(
            "napari-afb: interrupted; finished outputs are kept, unfinished ones removed; "
            "run the same command again to continue",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(summary.table())
    return EXIT_OK if summary.ok else EXIT_FAILED


def _info(args) -> int:
    from .weights import WeightsError, load_weights, packaged_weights

    if args.weights is not None:
        _, info = load_weights(args.weights)
        print(json.dumps(info.__dict__, indent=2, default=str))
        return EXIT_OK
    print(
        "default engine: blur kernel (blur paths + deconvolution; needs no weights). The "
        "weights below serve --engine learned and the guidance predictor.\n"
    )
    for role in ("decomposer", "predictor"):
        try:
            path = packaged_weights(role)
        except WeightsError as exc:
            print(f"{exc}\n")
            continue
        _, info = load_weights(path)
        status = info.metrics.get("status")
        kind = " (provisional, CPU-trained)" if info.metrics.get("provisional") else ""
        print(f"default {role} weights{kind}: {path}" + (f"\n  status: {status}" if status else ""))
        print(json.dumps(info.__dict__, indent=2, default=str) + "\n")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
