"""npe2 writer: save an image layer of frames as .gif, .mp4 or .tif/.tiff (File > Save Layer).

A single-layer writer (npe2 ``SingleWriterFunction``: ``(path, data, attributes) -> [paths]``),
since the manifest constrains it to exactly one image layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layout import squeeze_leading
from .export import export_frames


def write_frames(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one image layer's frames (time on the first axis) to ``path``.

    The frame rate is the layer's ``metadata["fps"]`` when it has one (layers made by
    napari-afb's reader and widgets carry it), else 10.
    """
    if isinstance(data, list):  # a multiscale layer: its first level is full resolution
        data = data[0]
    frames = np.asarray(data)
    rgb = bool(attributes.get("rgb", frames.ndim == 4))
    frames = squeeze_leading(frames, rgb)  # the plugin's results sit on axes of their own
    if frames.ndim < (4 if rgb else 3):
        raise ValueError(
            f"{attributes.get('name', 'this layer')!r} is a single image (shape {frames.shape}); "
            f"napari-afb saves stacks of frames, time first: (N, H, W) or (N, H, W, 3)"
        )
    fps = (attributes.get("metadata") or {}).get("fps", 10.0)
    # overwrite=True: napari asks before this is called. Its "Save Layer" dialog is Qt's
    # QFileDialog.getSaveFileName without DontConfirmOverwrite, which asks the user to confirm
    # replacing an existing file; napari's LayerList.save / npe2's write themselves never check.
    # A script calling viewer.layers.save(path) has chosen the path explicitly, as with napari's
    # own writers, which also replace existing files. The file is still replaced atomically.
    return [str(export_frames(frames, path, fps=fps, overwrite=True))]
