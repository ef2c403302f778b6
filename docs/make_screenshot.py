"""Regenerate docs/screenshot.png (the README picture of the plugin in use).

Needs a real X display with OpenGL; under Xvfb use the xcb platform (offscreen renders the
canvas black), e.g.:

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1080x24" \
        .venv/bin/python docs/make_screenshot.py WEIGHTS.safetensors docs/screenshot.png
"""

import sys
import time

import napari
from qtpy.QtWidgets import QApplication

weights, out = sys.argv[1], sys.argv[2]
viewer = napari.Viewer(show=True)
viewer.window._qt_window.resize(1600, 950)
viewer.open_sample("napari-afb", "synthetic")
viewer.layers["synthetic true frames"].visible = False
_, guid = viewer.window.add_plugin_dock_widget("napari-afb", "Paint motion guidance")
_, dec = viewer.window.add_plugin_dock_widget("napari-afb", "Decompose blur into frames")
app = QApplication.instance()


def pump(seconds):
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


pump(1)
dec.image_combo.setCurrentText("synthetic blur")
dec.guidance_combo.setCurrentText("synthetic blur guidance")
dec.weights_edit.value = weights
dec.run()
t0 = time.time()
while dec.running and time.time() - t0 < 120:
    pump(0.1)
print("status:", dec.status.text())
print("layers:", [(l.name, l.data.shape) for l in viewer.layers])
frames = viewer.layers["synthetic blur frames"]
viewer.layers.selection.active = viewer.layers["synthetic blur guidance"]
viewer.layers["synthetic blur guidance"].opacity = 0.8
viewer.grid.enabled = True
viewer.grid.shape = (1, 3)
viewer.dims.set_current_step(0, 5)
pump(0.5)
viewer.reset_view()
pump(1)
viewer.screenshot(out, canvas_only=False)
print("saved", out)
viewer.close()
