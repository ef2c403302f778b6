"""Continue a trained motion_deconv decomposer with a changed design, keeping what it computes.

``--blur-cues``: the network also sees :func:`napari_afb.models.deconv.blur_cues` (the new
inputs' weights start at zero, so the file computes what the input file computes).
``--downsample F``: the network sees the image box-averaged by F, its motion scaled by F and
upsampled (the same weights; what they compute changes, by design: a blur of L px looks like one
of L / F px).
``--refiner``: a ``motion_refine`` file (:mod:`napari_afb.models.refine`): the same network plus
a fresh refiner whose correction starts at zero, so it computes what the input file computes.
Train the result on with ``--init``::

    .venv/bin/python scripts/convert_decomposer.py research/weights/motion_deconv_cpu.safetensors \
        runs/cues_init.safetensors --blur-cues
    napari-afb train decomposer --config research/configs/decomposer_cues_cpu.toml \
        --init runs/cues_init.safetensors
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--blur-cues", action="store_true", help="add the blur-length cue inputs")
    p.add_argument("--downsample", type=int, help="run the network at 1/F resolution")
    p.add_argument("--refiner", action="store_true", help="add a motion refiner (motion_refine)")
    args = p.parse_args(argv)
    if not (args.blur_cues or args.refiner) and args.downsample is None:
        p.error("nothing to change: give --blur-cues, --downsample and/or --refiner")

    from napari_afb import models
    from napari_afb.models.deconv import with_blur_cues
    from napari_afb.models.refine import with_refiner
    from napari_afb.weights import load_weights, save_weights

    model, info = load_weights(args.source)
    if info.architecture != "motion_deconv":
        raise SystemExit(f"{args.source} is {info.architecture!r}, not motion_deconv")
    arch_args, changes = dict(info.arch_args), []
    model = model.float()
    if args.blur_cues:
        model = with_blur_cues(model, **arch_args)
        arch_args["blur_cues"] = True
        changes.append("blur cues added, untrained")
    if args.downsample is not None:
        arch_args["downsample"] = args.downsample
        model = models.rebuild(info.architecture, model, **arch_args)
        changes.append(f"network moved to 1/{args.downsample} resolution, untrained there")
    architecture = info.architecture
    if args.refiner:
        (model, arch_args), architecture = with_refiner(model, **arch_args), "motion_refine"
        changes.append("motion refiner added, untrained")
    save_weights(
        model,
        args.dest,
        architecture=architecture,
        arch_args=arch_args,
        recipe=info.recipe,
        data=info.data,
        metrics={**info.metrics, "grown_from": info.sha256, "status": "; ".join(changes)},
    )
    print(f"wrote {args.dest}: {architecture} {arch_args}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
