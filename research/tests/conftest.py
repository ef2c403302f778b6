"""Tests of the research code in research/code (not part of ``make test``: pyproject's testpaths
is ``tests``). Run them on their own::

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q research/tests

They reuse the product tests' helpers (tests/conftest.py, tests/test_deconv.py), so both folders
go on sys.path, and this conftest re-exports tests/conftest.py's names and fixtures: a test
module's ``from conftest import ...`` then finds them whichever conftest pytest imported last.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT / "tests", ROOT / "research" / "code"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

_spec = importlib.util.spec_from_file_location(
    "_napari_afb_tests_conftest", ROOT / "tests" / "conftest.py"
)
_product = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _product
_spec.loader.exec_module(_product)
globals().update({k: v for k, v in vars(_product).items() if not k.startswith("__")})
