"""The provisional default weights that ship in the package (issue 23, item 1) and the package
metadata that carries them (item 12): the best CPU-trained decomposer and predictor, fp16, at most
30 MB, found without any argument, described as provisional by `napari-afb info`, inside the wheel
and the sdist, and built without setuptools' licence deprecation banner."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from safetensors import safe_open

from napari_afb import cli, weights

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "docs" / "training"
SHIPPED = {role: weights.PACKAGE_WEIGHTS_DIR / name for role, name in weights.DEFAULT_FILES.items()}
SOURCES = {  # the best CPU-trained file of each role (docs/MODEL_CARD.md)
    "decomposer": TRAINING / "motion_deconv_warped_cpu.safetensors",
    "predictor": TRAINING / "guidance_net_cpu.safetensors",
}


def test_the_shipped_files_are_the_best_cpu_runs_in_fp16_within_30_mb():
    total = 0
    for role, path in SHIPPED.items():
        assert path.is_file(), f"no default {role} weights in the package"
        info = weights.read_info(path)
        assert info.role == role
        if SOURCES[role].is_file():  # same tensors as the committed CPU run
            assert info.sha256 == weights.read_info(SOURCES[role]).sha256
        with safe_open(str(path), framework="pt") as f:
            dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118
        assert dtypes <= {"F16", "I64"}, dtypes
        assert "F16" in dtypes
        total += path.stat().st_size
    assert total <= 30e6


@pytest.mark.parametrize("role, gain", [("decomposer", "+0.92 dB"), ("predictor", "+0.07 dB")])
def test_the_metadata_says_provisional_and_the_measured_gain(role, gain):
    info = weights.read_info(SHIPPED[role])
    assert info.metrics["provisional"] is True
    assert "provisional, CPU-trained" in info.metrics["status"]
    assert gain in info.metrics["status"]


def test_no_argument_and_no_environment_finds_the_shipped_files(monkeypatch):
    for var in weights.ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    for role, path in SHIPPED.items():
        assert weights.resolve_weights(None, role) == path
    import torch

    model, info = weights.cached_model(None, torch.device("cpu"), role="predictor")
    assert info.path == str(SHIPPED["predictor"].resolve())
    assert weights.placeholder("decomposer") == "default decomposer weights"


def test_info_says_provisional_cpu_trained_and_the_gain(capsys, monkeypatch):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for role in ("decomposer", "predictor"):
        assert f"default {role} weights (provisional, CPU-trained): {SHIPPED[role]}" in out
    assert "+0.92 dB over the blurry baseline" in out
    assert "no default" not in out


def test_the_model_card_names_the_shipped_weights_and_their_gain():
    card = (ROOT / "docs" / "MODEL_CARD.md").read_text()
    head = card[:2000]
    assert "provisional, CPU-trained" in head and "+0.92 dB" in head
    assert "napari_afb/weights/decomposer.safetensors" in head


def test_pyproject_uses_an_spdx_licence_and_packages_the_weights():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "BSD-3-Clause"
    assert "weights/*.safetensors" in meta["tool"]["setuptools"]["package-data"]["napari_afb"]


@pytest.mark.slow
def test_wheel_and_sdist_hold_the_weights_and_build_without_the_licence_banner(tmp_path):
    pytest.importorskip("build")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(
        ROOT / "napari_afb", src / "napari_afb", ignore=shutil.ignore_patterns("__pycache__")
    )
    res = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"),
         str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    log = res.stdout + res.stderr
    assert "project.license" not in log and "SetuptoolsDeprecationWarning" not in log
    import tarfile
    import zipfile

    (wheel,) = (tmp_path / "dist").glob("*.whl")
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as tar:
        snames = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for path in SHIPPED.values():
        rel = f"napari_afb/weights/{path.name}"
        assert rel in names and rel in snames
        assert zipfile.ZipFile(wheel).getinfo(rel).file_size == path.stat().st_size
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))
    ).decode()
    assert "License-Expression: BSD-3-Clause" in metadata
