"""The blur-kernel engine: blur paths (drawn, estimated, from a video), non-blind
deconvolution, and frames moved along the path. numpy, scipy and OpenCV; no torch, no napari.

    from napari_afb.kernel import BlurPath
    path = BlurPath([[292, 248], [308, 232]])     # (x, y) points, start to end in time
    frames = napari_afb.decompose(image, paths=path)
"""

from .paths import BlurPath, load_paths, parse_path, save_paths

__all__ = ["BlurPath", "load_paths", "parse_path", "save_paths"]
