"""napari-afb: animation from blur.

Turn a motion-blurred photo into the sharp frames its exposure averaged. Usable from napari
(the plugin), from Python and from the ``napari-afb`` command line::

    import napari_afb
    frames = napari_afb.decompose(image)                             # blur path estimated
    frames = napari_afb.decompose(image, paths="292,248,308,232")    # a path drawn x0,y0,x1,y1
    frames = napari_afb.decompose(image, guidance)   # time's direction from a guidance map

Importing this package is cheap: torch loads on the first call that needs it.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"


def _quiet_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), before
    torch loads its OpenMP runtime, which reads the variable once. Spinning threads fight every
    other busy process for the cores: beside two busy torch processes on a 2-core machine the
    learned engine's ``decompose`` of a 640 x 272 photo took a median 11.8 s with them and 1.2 s
    without (0.3 s on the idle machine either way; ``benchmarks/bench_threads.py``,
    ``benchmarks/results/threads_vm.json``). A value the user set wins;
    ``NAPARI_AFB_KEEP_OMP=1`` leaves the environment alone."""
    if "torch" in sys.modules or os.environ.get("NAPARI_AFB_KEEP_OMP"):
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_quiet_openmp()

_LAZY = {
    "BlurPath": "napari_afb.kernel.paths",
    "batch": "napari_afb.batch",
    "blur_paths_from_neighbors": "napari_afb.kernel.video",
    "decompose": "napari_afb.api",
    "estimate_blur_paths": "napari_afb.api",
    "guidance_from_flow": "napari_afb.guidance",
    "guidance_from_neighbors": "napari_afb.flow",
    "predict_guidance": "napari_afb.predict",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover (for type checkers and IDEs)
    from .api import decompose, estimate_blur_paths  # noqa: F401
    from .batch import batch  # noqa: F401
    from .flow import guidance_from_neighbors  # noqa: F401
    from .guidance import guidance_from_flow  # noqa: F401
    from .kernel.paths import BlurPath  # noqa: F401
    from .kernel.video import blur_paths_from_neighbors  # noqa: F401
    from .predict import predict_guidance  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_afb' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
