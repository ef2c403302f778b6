"""Regenerate docs/plate_demo.gif and docs/plate_demo.png, the README's picture of a real
blurry photo: the input, its guidance and the decomposed frames (animated), side by side.

    .venv/bin/python docs/make_readme_gif.py [--weights D.safetensors] [--direction right-up]
        [--scale 0.5]

The photo is the licence-plate picture of OpenCV's motion-deblur tutorial (../shared/data,
Apache-2.0 AND BSD-3-Clause). Its streaks run along the "/" diagonal; a single blurry photo does
not say which way along it time ran, so the guidance is one uniform direction (``--direction``).
``--scale`` decomposes a downscaled copy: the streaks of this photo (about 20-40 px) are longer
than what the CPU-trained weights saw in training (at most 18 px over the exposure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PLATE = ROOT.parent / "shared" / "data" / "opencv_doc_debian" / "licenseplate_motion.jpg"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None)
    p.add_argument("--direction", default="right-up")
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "plate_demo")
    args = p.parse_args(argv)

    from napari_afb import api, io
    from napari_afb.guidance import label_from_name

    photo = io.read_image(PLATE)
    h, w = photo.shape[:2]
    small = cv2.resize(
        photo, (round(w * args.scale), round(h * args.scale)), interpolation=cv2.INTER_AREA
    )
    guidance = np.full(small.shape[:2], label_from_name(args.direction), np.uint8)
    frames = api.decompose(small, guidance, weights=args.weights, device="cpu")
    guide_rgb = io.guidance_rgb(guidance)
    n = len(frames)
    label_h = 22

    def panel(img, text):
        out = np.full((img.shape[0] + label_h, img.shape[1], 3), 255, np.uint8)
        out[label_h:] = img[..., :3]
        cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        return out

    seq = []
    for t in range(n):
        row = [
            panel(small, "blurry input"),
            panel(guide_rgb, f"guidance: {args.direction}"),
            panel(frames[t], f"frame {t + 1} of {n}"),
        ]
        seq.append(np.concatenate(row, axis=1))
    io.write_gif(args.out.with_suffix(".gif"), np.stack(seq), fps=6, bounce=True)
    still = [panel(small, "blurry input")] + [
        panel(frames[t], f"frame {t + 1} of {n}") for t in (0, n // 2, n - 1)
    ]
    io.write_png(args.out.with_suffix(".png"), np.concatenate(still, axis=1))
    print(f"wrote {args.out.with_suffix('.gif')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
