"""The blur-kernel engine in napari: blur paths drawn in a Shapes layer, *Estimate blur path*,
a quick preview of the region on screen, and the job the Decompose dock runs for this engine.

Blur paths are drawn in a Shapes layer of lines or paths, from where the motion began to where
it ended. napari draws lines without arrowheads, so a second, display-only Shapes layer beside
it (``<paths> direction``) marks each path's start with a green disc and its end with a red
arrowhead, the colours of the kernel inset (:func:`napari_afb.kernel.figures.kernel_picture`):
a filled arrowhead reads at a glance at any zoom, which a Points layer's unrotated symbols
cannot show. napari's Shapes data are (row, col) = (y, x); :class:`BlurPath` takes (x, y).

Like :mod:`._widget`, the jobs here (:func:`kernel_job`, :func:`estimate_job`) run in a worker
thread and touch neither Qt nor napari; the panel turns their results into layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ._dock import settings  # noqa: F401 (the shared settings, once defined here)
from ._layout import METADATA_KEY
from ._qt_guidance import LayerCombo, image_spatial_shape, spatial_transform

if TYPE_CHECKING:
    import napari

    from .kernel.paths import BlurPath

__all__ = [
    "KernelPanel",
    "estimate_job",
    "kernel_job",
    "paths_from_shapes",
    "preview_latent",
    "visible_region",
]

PATH_COLOUR = "#ffc400"  # amber: visible on dark and light photos
START_COLOUR = "#00dc00"  # green, as in the kernel inset
END_COLOUR = "#ff2828"  # red
#: Combo entry: no paths layer, estimate the paths in the run.
ESTIMATE = "estimate"
#: Largest preview, in pixels (about 0.1 s per 0.5 MP with the Wiener prior on 2 cores).
PREVIEW_PIXELS = 500_000
DEFAULT_BOUND = 51


def is_paths_layer(layer) -> bool:
    """Whether ``layer`` is a blur-paths Shapes layer made by the plugin."""
    meta = getattr(layer, "metadata", None) or {}
    return bool((meta.get(METADATA_KEY) or {}).get("blur_paths"))


# ---------------------------------------------------------------------------------------------
# Shapes <-> blur paths


def _to_image_coords(points_rc: np.ndarray, shapes, image) -> np.ndarray:
    """(K, D) shape vertices (data coordinates of ``shapes``) -> (K, 2) (row, col) pixel
    coordinates of ``image`` (through world coordinates: translate and scale)."""
    rc = np.asarray(points_rc, dtype=np.float64)[:, -2:]
    world = rc * np.asarray(shapes.scale[-2:]) + np.asarray(shapes.translate[-2:])
    return (world - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])


def _from_image_coords(rc: np.ndarray, shapes, image) -> np.ndarray:
    world = np.asarray(rc) * np.asarray(image.scale[-2:]) + np.asarray(image.translate[-2:])
    return (world - np.asarray(shapes.translate[-2:])) / np.asarray(shapes.scale[-2:])


def _estimated(shapes) -> list:
    return list(((shapes.metadata or {}).get(METADATA_KEY) or {}).get("estimated") or [])


def _readable_paths(shapes, image) -> list[BlurPath] | None:
    """The layer's paths as :func:`paths_from_shapes` reads them, with no length limit; None
    when it cannot read them (its message is for Run to give)."""
    try:
        return paths_from_shapes(shapes, image, kernel_bound=10**6)
    except ValueError:
        return None


def paths_from_shapes(shapes, image, *, kernel_bound: int) -> list[BlurPath]:
    """The blur paths drawn in a Shapes layer, in ``image``'s pixel coordinates (x, y).

    Raises ValueError with a sentence for the user: a layer with no shapes, shapes that are not
    lines or paths, a path of zero length, outside the image or longer than the kernel bound.
    An estimated path left as it was keeps its estimated kernel; an edited one is rebuilt from
    its points (and loses it).
    """
    from .kernel.paths import BlurPath

    name = shapes.name
    if shapes.nshapes == 0:
        raise ValueError(
            f"'{name}' holds no blur path: draw one along a streak in the photo, from where the "
            f"motion began to where it ended, or click 'Estimate blur path'."
        )
    wrong = [(i, t) for i, t in enumerate(shapes.shape_type) if t not in ("line", "path")]
    if wrong:
        i, kind = wrong[0]
        raise ValueError(
            f"'{name}' holds {kind}s (shape {i + 1}): blur paths are lines or paths drawn along "
            f"a streak, start to end. Click 'Draw blur path' and draw lines there, or "
            f"pick another layer."
        )
    h, w = image_spatial_shape(image)
    known = _estimated(shapes)
    out = []
    for i, vertices in enumerate(shapes.data):
        rc = _to_image_coords(vertices, shapes, image)
        xy = rc[:, ::-1]
        where = f"Blur path {i + 1} in '{name}'"
        path = None
        for est in known:
            if est.points.shape == xy.shape and np.allclose(est.points, xy, atol=1e-3):
                path = est
            elif est.points.shape == xy.shape and np.allclose(est.points[::-1], xy, atol=1e-3):
                path = est.reversed()  # reversed in the layer: the same kernel, time flipped
        if path is None:
            try:
                path = BlurPath(xy, source="drawn")
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        lo, hi = xy.min(0), xy.max(0)
        if hi[0] < -0.5 or hi[1] < -0.5 or lo[0] > w - 0.5 or lo[1] > h - 0.5:
            raise ValueError(
                f"{where} ({lo[0]:.0f},{lo[1]:.0f} to {hi[0]:.0f},{hi[1]:.0f}) lies outside "
                f"the {w} x {h} image: draw it on the streak it describes."
            )
        if path.extent() > kernel_bound:
            raise ValueError(
                f"{where} spans {path.extent():.0f} px, more than the kernel bound of "
                f"{kernel_bound} px: raise 'Kernel bound', or check the path."
            )
        out.append(path)
    return out


def _arrow_shapes(paths_rc: list[np.ndarray], width: float) -> tuple[list, list]:
    """For paths given as (K, 2) (row, col) vertices: (arrowhead triangles, start discs), as
    napari polygon and ellipse data."""
    heads, discs = [], []
    for rc in paths_rc:
        rc = np.asarray(rc, dtype=np.float64)[:, -2:]
        seg = np.hypot(*np.diff(rc, axis=0).T)
        length = float(seg.sum())
        if length <= 0:
            continue
        size = min(max(4.0 * width, 0.4 * length), 9.0 * width)
        # the direction at the end: from the point one head-length back along the path
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        back = np.array([np.interp(length - size, cum, rc[:, k]) for k in (0, 1)])
        tip = rc[-1]
        d = tip - back
        d = d / max(np.hypot(*d), 1e-9)
        normal = np.array([-d[1], d[0]])
        base = tip - size * d
        heads.append(np.array([tip, base + 0.55 * size * normal, base - 0.55 * size * normal]))
        r = 1.6 * width
        discs.append(np.array([rc[0], [r, r]]))
    return heads, discs


class PathArrows:
    """Keeps ``<paths> direction``, a display-only Shapes layer with a green disc at the start
    and a red arrowhead at the end of every path of ``paths``, in step with its edits."""

    def __init__(self, viewer, paths):
        self.viewer, self.paths = viewer, paths
        self.layer = None
        paths.events.data.connect(self.update)
        paths.events.set_data.connect(self.update)
        viewer.layers.events.removed.connect(self._on_removed)
        self.update()

    def _on_removed(self, event) -> None:
        if (
            event.value is self.paths
            and self.layer is not None
            and self.layer in self.viewer.layers
        ):
            self.viewer.layers.remove(self.layer)
        if event.value is self.layer or event.value is self.paths:
            self.layer = None

    def update(self, event=None) -> None:
        if self.paths not in self.viewer.layers:
            return
        width = float(np.max(self.paths.edge_width)) if self.paths.nshapes else 1.5
        width = max(width, float(self.paths.current_edge_width))
        heads, discs = _arrow_shapes(list(self.paths.data), width)
        layer = self.layer
        if layer is None or layer not in self.viewer.layers:
            index = self.viewer.layers.index(self.paths) + 1
            layer = self.viewer.add_shapes(
                name=f"{self.paths.name} direction",
                ndim=2,
                translate=tuple(self.paths.translate[-2:]),
                scale=tuple(self.paths.scale[-2:]),
                metadata={METADATA_KEY: {"decoration": True}},
            )
            self.viewer.layers.move(self.viewer.layers.index(layer), index)
            self.viewer.layers.selection.active = self.paths  # keep drawing where the user was
            self.layer = layer
        if layer.nshapes:
            layer.data = []
        if heads:
            layer.add_polygons(heads, edge_width=0, face_color=END_COLOUR, edge_color=END_COLOUR)
            layer.add_ellipses(discs, edge_width=0, face_color=START_COLOUR)
        layer.editable = False


# ---------------------------------------------------------------------------------------------
# Jobs (worker thread: no Qt, no napari)


def estimate_job(
    image: np.ndarray,
    guidance,
    *,
    kernel_bound: int,
    cancel: Callable[[], bool],
    space: str = "auto",
) -> Generator[Any, None, dict]:
    """Estimate the blur paths of ``image`` as a run would (``space``: how the blur mixed
    the colours, see :func:`~.kernel.decompose.decompose_iter`); returns {"paths", "notes",
    "seconds"}, or {"error": message}, or {"cancelled": True}."""
    from .guidance import check_guidance
    from .images import to_rgb_float
    from .jobs import Cancelled, Progress
    from .kernel.decompose import estimate_blur_paths_iter

    start = time.perf_counter()
    try:
        rgb, _, _ = to_rgb_float(image)
        if callable(guidance):
            yield Progress(0, 0, "estimating guidance...")
            guidance = guidance()
        labels = None if guidance is None else check_guidance(guidance, shape=rgb.shape[:2])
        paths, notes = yield from estimate_blur_paths_iter(
            rgb, labels, kernel_bound=kernel_bound, space=space, cancel=cancel
        )
    except Cancelled:
        return {"cancelled": True}
    except (ValueError, TypeError, MemoryError) as exc:
        return {"error": str(exc)}
    if cancel():
        return {"cancelled": True}
    if paths and (labels is None or not (labels > 0).any()):
        notes.append(
            "The time order is unknown without guidance: the arrow shows one of the two "
            "plausible orders ('Reverse' flips it, or paint the guidance)."
        )
    return {"paths": paths, "notes": notes, "seconds": time.perf_counter() - start}


def kernel_job(
    image: np.ndarray,
    guidance,
    paths,
    *,
    kernel_bound: int,
    strength: float | str,
    cancel: Callable[[], bool],
    estimating: str = "estimating guidance...",
    space: str = "auto",
) -> Generator[Any, None, Any]:
    """Decompose with the blur-kernel engine; yields Progress, returns a
    :class:`napari_afb._widget.Outcome` (an error or cancellation as a message, not raised)."""
    from ._widget import Outcome
    from .jobs import Cancelled, Progress
    from .kernel.decompose import decompose_iter

    start = time.perf_counter()
    estimated = None
    try:
        if callable(guidance):
            yield Progress(0, 0, estimating)
            out = guidance()
            if isinstance(out, tuple):  # a video frame: its labels, and paths from its neighbours
                out, measured = out
                if not paths:
                    paths = measured  # a measured path is this frame's truth: no bound on it
                    kernel_bound = max([kernel_bound, *(int(p.extent()) + 3 for p in paths)])
            guidance = estimated = out
        yield Progress(0, 0, "deblurring along the blur path..." if paths else "estimating...")
        estimating = paths is None
        result = yield from decompose_iter(
            image,
            guidance,
            paths,
            kernel_bound=kernel_bound,
            strength=strength,
            space=space,
            cancel=cancel,
        )
    except Cancelled:
        return Outcome(cancelled=True)
    except (ValueError, TypeError, MemoryError) as exc:
        return Outcome(error=str(exc))
    extra = {
        "engine": "kernel",
        "paths": [p.points.round(2).tolist() for p in result.paths],
        "path_source": [p.source for p in result.paths],
        "kernel_bound": kernel_bound,
        "strength": round(float(result.strength), 1),
        "applied": list(result.applied),
        "blur": list(result.blurs),  # per path: of the pixel values ("gamma") or light
        "reblur_psnr": None if result.reblur_psnr is None else round(result.reblur_psnr, 1),
        "notes": list(result.notes),
    }
    return Outcome(
        frames=result.frames,
        weights="none (blur-kernel engine)",
        device="cpu",
        seconds=time.perf_counter() - start,
        extra=extra,
        guidance=estimated,
        paths=[p for p, a in zip(result.paths, result.applied) if a] if estimating else [],
    )


# ---------------------------------------------------------------------------------------------
# Preview


def visible_region(viewer, image) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1): the part of ``image`` (pixel coordinates) the canvas shows, cut about
    its centre to at most :data:`PREVIEW_PIXELS`; None when none of it is on screen."""
    h, w = image_spatial_shape(image)
    size = np.asarray(viewer.canvas.size, dtype=np.float64)[-2:]  # (height, width) px
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari 0.9
    zoom = float(camera.zoom)
    centre = np.asarray(camera.center, dtype=np.float64)[-2:]
    half = size / (2 * zoom)
    lo = (centre - half - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])
    hi = (centre + half - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])
    y0, x0 = max(0, int(np.floor(lo[0] + 0.5))), max(0, int(np.floor(lo[1] + 0.5)))
    y1, x1 = min(h, int(np.ceil(hi[0] + 0.5))), min(w, int(np.ceil(hi[1] + 0.5)))
    if y1 - y0 < 8 or x1 - x0 < 8:
        return None
    area = (y1 - y0) * (x1 - x0)
    if area > PREVIEW_PIXELS:
        f = np.sqrt(PREVIEW_PIXELS / area)
        ch, cw = int((y1 - y0) * f), int((x1 - x0) * f)
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        y0, x0 = max(0, cy - ch // 2), max(0, cx - cw // 2)
        y1, x1 = y0 + ch, x0 + cw
    return y0, y1, x0, x1


def preview_latent(
    image: np.ndarray, path: BlurPath, region, *, strength: float | str
) -> np.ndarray:
    """The sharp image of ``region`` = (y0, y1, x0, x1) of ``image`` deconvolved along
    ``path`` with the Wiener prior (a margin of a kernel's size around it for context), as
    uint8 RGB (or the input's grey)."""
    from .images import to_rgb_float
    from .kernel.decompose import auto_strength
    from .kernel.deconv import deconvolve

    k = path.render()
    y0, y1, x0, x1 = region
    m = k.shape[0]
    h, w = image.shape[:2]
    ya, yb, xa, xb = max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)
    rgb, _, _ = to_rgb_float(np.asarray(image[ya:yb, xa:xb]))
    weight = auto_strength(rgb) if strength == "auto" else float(strength)
    planes = [deconvolve(rgb[..., c], k, weight=weight, prior="wiener") for c in range(3)]
    out = np.stack(planes, axis=-1)[y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def _nearest_path(paths: list[BlurPath], region) -> BlurPath:
    y0, y1, x0, x1 = region
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    dist = [np.hypot(*(p.points - centre).T).min() for p in paths]
    return paths[int(np.argmin(dist))]


def _pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    qimage = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


def kernel_inset(path: BlurPath, side: int = 120) -> np.ndarray:
    """The kernel picture (start green, end red), cut to the kernel's support plus a margin
    (an estimated kernel sits small in the middle of its bound)."""
    from .kernel.figures import kernel_picture
    from .kernel.paths import BlurPath as _BlurPath

    k = path.render()
    ys, xs = np.nonzero(k > 0.02 * k.max())
    r = k.shape[0] // 2
    reach = int(max(np.abs(ys - r).max(), np.abs(xs - r).max())) + 3
    if reach < r:
        k = k[r - reach : r + reach + 1, r - reach : r + reach + 1]
        path = _BlurPath(path.points, path.times, kernel=k, origin=path.origin, source=path.source)
    return kernel_picture(path, side)


# ---------------------------------------------------------------------------------------------
# The panel in the Decompose dock


class KernelPanel(QGroupBox):
    """The blur-kernel engine's part of the Decompose dock: the paths layer, the kernel bound
    and strength, *Draw blur path*, *Estimate blur path*, *Reverse*, *Preview*, and the
    kernel inset. ``host`` is the :class:`~napari_afb._widget.DecomposeWidget` (its image and
    guidance choice, progress bar, status line and worker)."""

    def __init__(self, host, napari_viewer: napari.viewer.Viewer):
        super().__init__("Blur kernel")
        from napari.layers import Shapes

        self.host = host
        self.viewer = napari_viewer
        self._arrows: dict[int, PathArrows] = {}
        self.paths_combo = LayerCombo(
            napari_viewer,
            (Shapes,),
            extras=[("estimate in the run (no layer)", ESTIMATE)],
            prefer=is_paths_layer,
            fallback=ESTIMATE,
        )
        self.paths_combo.setToolTip(
            "A Shapes layer of blur paths (lines or paths, start to end = the direction of "
            "time), or none: the run estimates the path itself"
        )
        self.bound_spin = QSpinBox()
        self.bound_spin.setRange(5, 401)
        self.bound_spin.setSingleStep(10)
        self.bound_spin.setSuffix(" px")
        self.bound_spin.setToolTip(
            "The longest blur estimation looks for, and a drawn path may span: 1.5-2x the "
            "blur you see works best"
        )
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0, 100_000)
        self.strength_spin.setDecimals(0)
        self.strength_spin.setSingleStep(250)
        self.strength_spin.setSpecialValueText("auto")
        self.strength_spin.setToolTip(
            "The deconvolution's data weight: higher is sharper and noisier (about 2000 for a "
            "clean photo, 300-600 for a noisy one). auto: from the noise level"
        )
        self.space_combo = QComboBox()
        for text, value in (
            ("auto", "auto"),
            ("pixel values (gamma)", "gamma"),
            ("light (linear)", "linear"),
        ):
            self.space_combo.addItem(text, value)
        self.space_combo.setToolTip(
            "What the blur averaged: the stored pixel values, or the light, as a camera's "
            "sensor does. auto: per path, whichever explains the photo better"
        )
        self.bound_spin.setValue(DEFAULT_BOUND)  # kept between sessions by the host's Persist
        self.new_button = QPushButton("Draw blur path")
        self.new_button.setToolTip(
            "Add (or select) '<image> blur paths' and draw a line along a streak, from where "
            "the motion began to where it ended"
        )
        self.estimate_button = QPushButton("Estimate blur path")
        self.estimate_button.setToolTip(
            "Find the blur path blindly (one per moving region of the guidance) and draw it on "
            "the photo, to accept, edit or redraw"
        )
        self.reverse_button = QPushButton("Reverse")
        self.reverse_button.setToolTip("Flip the direction of time of the selected paths (all)")
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip(
            "Deblur the part of the image on screen (at most 0.5 MP) with the quick Wiener "
            "prior, as a temporary layer"
        )
        self.inset = QLabel()
        self.inset.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.inset.setVisible(False)
        self.inset_caption = QLabel()
        self.inset_caption.setWordWrap(True)
        self.inset_caption.setVisible(False)

        form = QFormLayout()
        form.addRow("Blur paths", self.paths_combo)
        form.addRow("Kernel bound", self.bound_spin)
        form.addRow("Strength", self.strength_spin)
        form.addRow("Blur of", self.space_combo)
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        row1.addWidget(self.new_button)
        row1.addWidget(self.reverse_button)
        row2.addWidget(self.estimate_button)
        row2.addWidget(self.preview_button)
        inset = QHBoxLayout()
        inset.addWidget(self.inset)
        inset.addWidget(self.inset_caption, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addLayout(inset)
        self.inputs = [self.paths_combo, self.bound_spin, self.strength_spin, self.space_combo]
        self.buttons = [self.new_button, self.reverse_button, self.preview_button]

        self.new_button.clicked.connect(self.new_paths_layer)
        self.estimate_button.clicked.connect(self._on_estimate_clicked)
        self.reverse_button.clicked.connect(self.reverse_paths)
        self.preview_button.clicked.connect(self.preview)
        for layer in napari_viewer.layers:
            if is_paths_layer(layer):
                self._follow(layer)

    # -- settings ----------------------------------------------------------------------------

    @property
    def kernel_bound(self) -> int:
        return int(self.bound_spin.value())

    @property
    def strength(self) -> float | str:
        value = float(self.strength_spin.value())
        return "auto" if value <= 0 else value

    @property
    def space(self) -> str:
        return self.space_combo.currentData()

    # -- the paths layer ------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.host.status.setText(text)

    def _follow(self, layer) -> None:
        if id(layer) not in self._arrows:
            self._arrows[id(layer)] = PathArrows(self.viewer, layer)

    def new_paths_layer(self):
        """Create (or select) '<image> blur paths', aligned with the image, in line mode."""
        from napari.layers import Shapes

        image = self.host.image_combo.current()
        if image is None:
            self.host._fail("Open or select an image layer first.")
            return None
        layer = self._paths_layer_for(image)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_line"
        self.paths_combo.select_layer(layer)
        assert isinstance(layer, Shapes)
        self._say(
            f"Drag along a streak in '{layer.name}', from where the motion began to where it "
            f"ended (the arrow shows time's direction; the path tool draws curves). Then Run."
        )
        return layer

    def _existing_paths_layer(self, image):
        """'<image> blur paths' when it is a paths layer, else None."""
        name = f"{image.name} blur paths"
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        return existing if existing is not None and is_paths_layer(existing) else None

    def _paths_layer_for(self, image):
        existing = self._existing_paths_layer(image)
        if existing is not None:
            return existing
        name = f"{image.name} blur paths"
        taken = name in self.viewer.layers  # by a layer of another kind: left as it is
        h, w = image_spatial_shape(image)
        width = max(1.5, min(h, w) / 300)
        layer = self.viewer.add_shapes(
            name=f"{name} (new)" if taken else name,
            ndim=2,
            shape_type="path",
            edge_color=PATH_COLOUR,
            face_color=[0, 0, 0, 0],
            edge_width=width,
            metadata={METADATA_KEY: {"blur_paths": True, "estimated": []}},
            **spatial_transform(image),
        )
        layer.current_edge_color = PATH_COLOUR
        layer.current_face_color = [0, 0, 0, 0]
        layer.current_edge_width = width
        self._follow(layer)
        return layer

    def paths(self, image) -> list[BlurPath] | None:
        """The chosen layer's paths in ``image``'s coordinates, or None to estimate them in the
        run. Raises ValueError with a sentence for the user."""
        layer = self.paths_combo.current()
        if layer is None or layer == ESTIMATE:
            return None
        return paths_from_shapes(layer, image, kernel_bound=self.kernel_bound)

    def reverse_paths(self) -> int:
        """Reverse the selected paths of the chosen layer (all of them when none is selected)."""
        layer = self.paths_combo.current()
        if layer is None or layer == ESTIMATE or layer.nshapes == 0:
            self._say("Pick a blur paths layer with a path in it first.")
            return 0
        chosen = sorted(layer.selected_data) or list(range(layer.nshapes))
        data = list(layer.data)
        for i in chosen:
            data[i] = np.asarray(data[i])[::-1].copy()
        types = list(layer.shape_type)
        colours, widths = layer.edge_color.copy(), layer.edge_width.copy()
        layer.data = [(d, t) for d, t in zip(data, types)]
        layer.edge_color, layer.edge_width = colours, widths
        layer.face_color = [0, 0, 0, 0]
        image = self.host.image_combo.current()
        if self.inset.isVisibleTo(self) and image is not None:  # the inset's start and end too
            readable = _readable_paths(layer, image)
            if readable:  # else Run says why
                self.show_kernel(readable[0])
        self._say(f"Reversed {len(chosen)} path(s) in '{layer.name}': time now runs the other way.")
        return len(chosen)

    # -- Estimate -------------------------------------------------------------------------------

    def _on_estimate_clicked(self) -> None:
        if self.host.running:
            self.host.cancel()
        else:
            self.estimate()

    def estimate(self):
        """Start estimating the blur path in a worker; returns it (None if not started)."""
        from napari.qt.threading import thread_worker

        if self.host.running:
            return None
        try:
            job = self.host._collect(kernel=True)
        except ValueError as exc:
            self.host._fail(str(exc))
            return None
        worker = thread_worker(estimate_job, start_thread=False)(
            job.image,
            job.guidance,
            kernel_bound=self.kernel_bound,
            cancel=self.host._new_cancel(),
            space=self.space,
        )
        worker.returned.connect(lambda result: self._on_estimated(result, job))
        return self.host._start(worker, self.estimate_button, "Estimating the blur path...")

    def _on_estimated(self, result: dict, job) -> None:
        from napari.utils.notifications import show_info, show_warning

        if result.get("cancelled") or self.host.cancelled:
            self._say("Cancelled: nothing was added.")
            return
        if result.get("error"):
            self.host._fail(result["error"])
            return
        paths, notes = result["paths"], result["notes"]
        if not paths:
            message = " ".join(notes) or "No blur path was found."
            self.host._fail(f"No blur path found: {message}")
            return
        if job.layer not in self.viewer.layers:
            self._say(f"'{job.image_name}' was deleted: the estimate was dropped.")
            return
        layer = self._paths_layer_for(job.layer)
        self._replace_estimated(layer, job.layer, paths)
        self.paths_combo.select_layer(layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "direct"  # drag the path's points to edit it
        self.show_kernel(paths[0])
        lengths = ", ".join(f"{p.extent():.0f} px" for p in paths)
        self._say(
            f"Estimated {len(paths)} blur path(s) ({lengths}) in {result['seconds']:.1f} s: "
            f"shown in '{layer.name}' and the inset. Run to use them, drag their points to edit "
            f"them (an edited path is deblurred as drawn), or redraw."
            + (" " + " ".join(notes) if notes else "")
        )
        for note in notes:
            (show_warning if "unknown" not in note else show_info)(note)

    def show_run_paths(self, job, paths):
        """After a Run that estimated its paths for a photo: show them as *Estimate blur path*
        does (the path on screen is the one the frames follow, and 'Reverse' then Run flips
        time at once). A paths layer that holds drawn or edited paths is left alone. Returns
        the layer, or None when nothing was shown."""
        if job.frame is not None or job.layer not in self.viewer.layers:
            return None
        existing = self._existing_paths_layer(job.layer)
        if existing is not None and existing.nshapes:
            known = _readable_paths(existing, job.layer)  # None: shapes of the user's
            if known is None or any(p.source != "estimated" for p in known):
                return None
        layer = self._paths_layer_for(job.layer)
        self._replace_estimated(layer, job.layer, paths)
        self.paths_combo.select_layer(layer)
        self.show_kernel(paths[0])
        return layer

    def _replace_estimated(self, layer, image, paths) -> None:
        """Put ``paths`` in ``layer`` as path shapes, in place of earlier estimates left as
        they were (drawn and edited paths stay)."""
        old = _estimated(layer)
        stale = []
        for i, vertices in enumerate(layer.data):
            xy = _to_image_coords(vertices, layer, image)[:, ::-1]
            for est in old:
                if est.points.shape == xy.shape and (
                    np.allclose(est.points, xy, atol=1e-3)
                    or np.allclose(est.points[::-1], xy, atol=1e-3)
                ):
                    stale.append(i)
        if stale:
            layer.selected_data = set(stale)
            layer.remove_selected()
        meta = dict(layer.metadata)
        meta[METADATA_KEY] = {**(meta.get(METADATA_KEY) or {}), "estimated": list(paths)}
        layer.metadata = meta
        shapes = [_from_image_coords(p.points[:, ::-1], layer, image) for p in paths]
        layer.add_paths(shapes, edge_color=PATH_COLOUR, edge_width=layer.current_edge_width)

    def show_kernel(self, path) -> None:
        """Show the path's kernel in the dock, magnified, start green and end red."""
        side = 112
        self.inset.setPixmap(_pixmap(kernel_inset(path, side)))
        self.inset.setFixedSize(side, side)
        self.inset.setVisible(True)
        d = path.direction()
        angle = float(np.degrees(np.arctan2(-d[1], d[0])))
        self.inset_caption.setText(
            f"Kernel found: {path.extent():.0f} px at {angle:.0f}\u00b0 "
            f"(green = start, red = end of the exposure)."
        )
        self.inset_caption.setVisible(True)

    # -- Preview --------------------------------------------------------------------------------

    def preview(self):
        """Deblur the region on screen with the Wiener prior into '<image> preview'."""
        image = self.host.image_combo.current()
        if image is None:
            self.host._fail("Open or select an image layer first.")
            return None
        try:
            paths = self.paths(image)
        except ValueError as exc:
            self.host._fail(str(exc))
            return None
        if not paths:
            self.host._fail(
                "Preview needs a blur path: draw one ('Draw blur path') or click "
                "'Estimate blur path' first."
            )
            return None
        region = visible_region(self.viewer, image)
        if region is None:
            self.host._fail(f"'{image.name}' is not on screen: nothing to preview.")
            return None
        from ._qt_guidance import current_image

        start = time.perf_counter()
        data, _ = current_image(self.viewer, image)
        try:
            out = preview_latent(data, _nearest_path(paths, region), region, strength=self.strength)
        except (ValueError, MemoryError) as exc:
            self.host._fail(str(exc))
            return None
        seconds = time.perf_counter() - start
        y0, y1, x0, x1 = region
        name = f"{image.name} preview"
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        if old is not None and (old.metadata.get(METADATA_KEY) or {}).get("preview"):
            self.viewer.layers.remove(old)
            old = None
        scale = np.asarray(image.scale[-2:], dtype=np.float64)
        layer = self.viewer.add_image(
            out,
            name=name if old is None else f"{name} (napari-afb)",
            rgb=out.ndim == 3,
            scale=tuple(scale),
            translate=tuple(np.asarray(image.translate[-2:]) + scale * (y0, x0)),
            metadata={METADATA_KEY: {"preview": True, "region": [y0, y1, x0, x1]}},
        )
        paths_layer = self.paths_combo.current()
        if paths_layer in self.viewer.layers:  # keep the paths and their arrows on top
            self.viewer.layers.move(
                self.viewer.layers.index(layer), self.viewer.layers.index(paths_layer)
            )
            self.viewer.layers.selection.active = paths_layer
        self._say(
            f"Preview of {y1 - y0} x {x1 - x0} px on screen in {seconds:.2f} s (quick Wiener "
            f"prior; Run gives the sharper frames and removes it)."
        )
        return layer

    def remove_preview(self, image_name: str) -> None:
        name = f"{image_name} preview"
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if layer is not None and (layer.metadata.get(METADATA_KEY) or {}).get("preview"):
            self.viewer.layers.remove(layer)
