"""Continue a trained motion_deconv decomposer with the blur-length cues as extra inputs.

Writes a weights file that computes what the input file computes (the new inputs' weights are
zero) but sees :func:`napari_afb.models.deconv.blur_cues`; train it on with ``--init``::

    .venv/bin/python scripts/add_blur_cues.py docs/training/motion_deconv_cpu.safetensors \
        runs/cues_init.safetensors
    napari-afb train decomposer --config configs/decomposer_cues_cpu.toml \
        --init runs/cues_init.safetensors
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source")
    p.add_argument("dest")
    args = p.parse_args(argv)

    from napari_afb.models.deconv import with_blur_cues
    from napari_afb.weights import load_weights, save_weights

    model, info = load_weights(args.source)
    if info.architecture != "motion_deconv":
        raise SystemExit(f"{args.source} is {info.architecture!r}, not motion_deconv")
    grown = with_blur_cues(model.float(), **info.arch_args)
    arch_args = {**info.arch_args, "blur_cues": True}
    save_weights(
        grown,
        args.dest,
        architecture=info.architecture,
        arch_args=arch_args,
        recipe=info.recipe,
        data=info.data,
        metrics={**info.metrics, "grown_from": info.sha256, "status": "blur cues added, untrained"},
    )
    print(f"wrote {args.dest}: {info.architecture} {arch_args}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
