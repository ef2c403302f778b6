"""Pictures of the blur-kernel engine in the Decompose dock, at napari's default window size:
the licence-plate photo deblurred along a drawn path, and along the estimated one.

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python \
        docs/make_kernel_screenshots.py docs/images

writes kernel_drawn.png and kernel_estimated.png there (frame 4 of 7 on screen, zoomed to the
car's back). Needs a real X display with OpenGL (offscreen renders the canvas black).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:] or ["docs/images"])[0])
    out.mkdir(parents=True, exist_ok=True)
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_afb._widget import DecomposeWidget
    from napari_afb.samples import licence_plate

    app = QApplication.instance() or QApplication([])

    def pump(seconds=0.3):
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents()
            time.sleep(0.01)

    def wait(widget):
        while widget.running:
            pump(0.05)
        pump(0.5)

    for which in ("drawn", "estimated"):
        viewer = napari.Viewer(show=True)
        image = viewer.add_image(licence_plate(), name="plate")
        widget = DecomposeWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Decompose blur into frames")
        pump(1.0)
        if which == "drawn":
            paths = widget.kernel.new_paths_layer()
            paths.add_lines(np.array([[248.0, 292.0], [232.0, 308.0]]))
            paths.mode = "pan_zoom"
        else:
            widget.kernel.estimate_button.click()
            wait(widget)
            paths = viewer.layers["plate blur paths"]
            paths.mode = "pan_zoom"
        widget.run_button.click()
        wait(widget)
        frames = viewer.layers["plate frames"]
        viewer.dims.set_current_step(0, 3)
        # the paths and their arrows above the frames, to see what made them
        layers = viewer.layers
        for layer in (paths, layers[f"{paths.name} direction"]):
            layers.move(layers.index(layer), len(layers))
        layers.selection.active = frames
        image.visible = False
        viewer.camera.center = (250, 300)
        viewer.camera.zoom = 1.8 * viewer.camera.zoom
        pump(1.0)
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()  # the notes are in the status line too; the toast hides the canvas
        pump(0.5)
        path = out / f"kernel_{which}.png"
        viewer.screenshot(str(path), canvas_only=False)
        print(path, widget.status.text())
        viewer.close()
        pump(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
