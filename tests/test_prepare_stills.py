"""The stills preparation (scripts/prepare_stills.py) on a tiny real .deb, and the loading of its
folder (napari_afb.training.stills.load_still_folder). No network: the .deb is built here with
``dpkg-deb --build`` and handed to the script instead of ``apt-get download``."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_afb.training.stills import (
    STILLS,
    StillsFolderError,
    StillsSource,
    load_still_folder,
)

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None,
    reason="dpkg-deb (Debian's dpkg) is not installed: the preparation unpacks .deb files with it",
)

PKG_NAME, PKG_VERSION = "afb-test-photos", "1.0-1"


def _load_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "prepare_stills.py"
    spec = importlib.util.spec_from_file_location("prepare_stills", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["prepare_stills"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ps = _load_script()


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> tuple[Path, ps.Package]:
    """A real .deb holding two small photos (a JPEG and a PNG) and a copyright file, and the
    pinned package spec that describes it."""
    from skimage import data

    root = tmp_path_factory.mktemp("debroot") / "pkg"
    photos = root / "usr/share/backgrounds/test"
    photos.mkdir(parents=True)
    coffee = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)  # 400 x 600
    chelsea = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)[:, :400]  # 300 x 400
    cv2.imwrite(str(photos / "coffee.jpg"), coffee, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(photos / "chelsea.png"), chelsea)
    doc = root / f"usr/share/doc/{PKG_NAME}"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nCopyright: test photographers\nLicense: CC0-1.0\n")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        f"Package: {PKG_NAME}\nVersion: {PKG_VERSION}\nArchitecture: all\n"
        "Maintainer: napari-afb tests <tests@example.invalid>\n"
        "Description: two photos for the stills preparation tests\n"
    )
    out = root.parent / f"{PKG_NAME}_{PKG_VERSION}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    spec = ps.Package(
        PKG_NAME,
        PKG_VERSION,
        "bookworm",
        (
            ps.Photo(
                "test-coffee",
                "usr/share/backgrounds/test/coffee.jpg",
                ps.sha256_file(photos / "coffee.jpg"),
                "Rachel Michetti",
                "CC0-1.0",
            ),
            ps.Photo(
                "test-chelsea",
                "usr/share/backgrounds/test/chelsea.png",
                ps.sha256_file(photos / "chelsea.png"),
                "Stefan van der Walt",
                "CC0-1.0",
                note="a crop",
            ),
        ),
    )
    return out, spec


class _Fetch:
    """Stands in for ``apt-get download``: copies the test .deb, counting the calls."""

    def __init__(self, deb_path: Path):
        self.deb_path, self.calls = deb_path, 0

    def __call__(self, pkg, dest: Path) -> Path:
        self.calls += 1
        return Path(shutil.copy(self.deb_path, dest))


@pytest.fixture
def folder(tmp_path, deb) -> Path:
    deb_path, spec = deb
    out = tmp_path / "stills"
    ps.prepare(out, [spec], fetch=_Fetch(deb_path), max_side=256)
    return out


def test_prepare_writes_checked_downscaled_jpegs_and_a_manifest(folder, deb):
    _, spec = deb
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["max_side"] == 256 and manifest["jpeg_quality"] == 92
    files = {f["name"]: f for f in manifest["files"]}
    assert set(files) == {"test-coffee.jpg", "test-chelsea.jpg"}
    for photo in spec.photos:
        entry = files[photo.name + ".jpg"]
        assert entry["package"] == PKG_NAME and entry["version"] == PKG_VERSION
        assert entry["source_path"] == "/" + photo.path
        assert entry["source_sha256"] == photo.sha256
        assert (entry["author"], entry["licence"]) == (photo.author, "CC0-1.0")
        path = folder / entry["name"]
        assert ps.sha256_file(path) == entry["sha256"]
        assert entry["bytes"] == path.stat().st_size
        image = cv2.imread(str(path))
        assert image.shape[:2] == (entry["height"], entry["width"])
        assert max(image.shape[:2]) == 256  # both sources are larger: shrunk to the cap
    # The aspect ratio is kept (coffee is 400 x 600).
    assert (files["test-coffee.jpg"]["width"], files["test-coffee.jpg"]["height"]) == (256, 171)
    assert files["test-chelsea.jpg"]["licence_note"] == "a crop"
    copyright_file = folder / files["test-coffee.jpg"]["licence_file"]
    assert copyright_file.read_text().startswith("Files: *")
    assert manifest["total_bytes"] == sum(f["bytes"] for f in manifest["files"])
    assert ps.verify(folder, [spec], max_side=256) == []
    assert ps.verify(folder, [spec]) != []  # made with another max_side
    table = ps.sources_markdown(manifest)
    assert "| `test-coffee.jpg` | afb-test-photos (1.0-1, bookworm) |" in table
    assert "2 photos" in table and "CC0-1.0 (2)" in table


def test_main_is_idempotent_and_check_finds_tampering(tmp_path, deb, capsys):
    deb_path, spec = deb
    fetch = _Fetch(deb_path)
    out = tmp_path / "stills"
    argv = ["--out", str(out), "--max-side", "256"]
    sources = tmp_path / "SOURCES.md"
    assert ps.main(argv + ["--write-sources", str(sources)], packages=[spec], fetch=fetch) == 0
    assert fetch.calls == 1 and "test-chelsea.jpg" in sources.read_text()
    before = (out / "MANIFEST.json").read_text()
    assert ps.main(argv, packages=[spec], fetch=fetch) == 0  # verifies, fetches nothing
    assert fetch.calls == 1 and (out / "MANIFEST.json").read_text() == before
    assert ps.main(argv + ["--check"], packages=[spec], fetch=fetch) == 0
    (out / "test-coffee.jpg").write_bytes(b"not a jpeg")
    assert ps.main(argv + ["--check"], packages=[spec], fetch=fetch) == 1
    assert "test-coffee.jpg does not match" in capsys.readouterr().err
    assert ps.main(argv, packages=[spec], fetch=fetch) == 0  # rebuilt
    assert fetch.calls == 2 and ps.verify(out, [spec], max_side=256) == []


def test_pinned_checksum_version_and_size_cap_are_enforced(tmp_path, deb):
    deb_path, spec = deb
    out = tmp_path / "stills"
    bad_sha = replace(spec, photos=(replace(spec.photos[0], sha256="0" * 64),))
    with pytest.raises(ps.PrepareError, match="coffee.jpg .* not the pinned 0000"):
        ps.prepare(out, [bad_sha], fetch=_Fetch(deb_path))
    bad_version = replace(spec, version="2.0-1")
    with pytest.raises(ps.PrepareError, match="not the pinned afb-test-photos 2.0-1"):
        ps.prepare(out, [bad_version], fetch=_Fetch(deb_path))
    with pytest.raises(ps.PrepareError, match="over the cap"):
        ps.prepare(out, [spec], fetch=_Fetch(deb_path), max_total_mib=0.01)
    assert not out.exists()  # nothing half-written
    assert not list(tmp_path.glob("stills.tmp-*"))
    # A folder that is not a stills folder is left alone.
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ps.PrepareError, match="not a stills folder"):
        ps.prepare(out, [spec], fetch=_Fetch(deb_path))
    assert (out / "keep.txt").read_text() == "mine"


def test_load_still_folder_detects_tampering_and_missing_files(folder):
    stills = load_still_folder(folder)
    assert [s.name for s in stills] == ["test-coffee", "test-chelsea"]
    assert stills[0].licence == "CC0-1.0 (Rachel Michetti, afb-test-photos, 1.0-1)"
    assert stills[0].weight == 1.0 and stills[0].levels[0].shape == (171, 256, 3)
    assert stills[0].levels[0].dtype == np.float32
    # The loaded colours are RGB (coffee's cup and background are brighter in red than blue).
    assert stills[0].levels[0][..., 0].mean() > stills[0].levels[0][..., 2].mean()
    path = folder / "test-chelsea.jpg"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StillsFolderError, match=r"test-chelsea\.jpg does not match .*prepare_s"):
        load_still_folder(folder)
    with pytest.raises(StillsFolderError, match="test-chelsea.jpg does not match"):
        StillsSource(folders=[folder])  # checked when the source is made
    path.unlink()
    with pytest.raises(StillsFolderError, match=r"test-chelsea\.jpg is missing.*prepare_stills"):
        load_still_folder(folder)
    with pytest.raises(StillsFolderError, match="MANIFEST.json not found"):
        load_still_folder(folder.parent / "nowhere")


def test_stills_source_samples_the_folder_photos(folder):
    src = StillsSource(size=(48, 48), substeps=2, max_shift=8, folders=[folder])
    names = [s.name for s in src.stills]
    assert names == list(STILLS) + ["test-coffee", "test-chelsea"]
    assert {s.weight for s in src.stills[-2:]} == {1.0}
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(40):
        w = src.sample(rng)
        seen.setdefault(w.source["image"], w)
    assert {"test-coffee", "test-chelsea"} & set(seen)
    for name in {"test-coffee", "test-chelsea"} & set(seen):
        w = seen[name]
        assert w.blurry.shape == (48, 48, 3) and w.frames.shape == (7, 48, 48, 3)
        assert w.source["licence"].startswith("CC0-1.0 (")
    # Without folders, nothing changes; with user images, the folder's photos come on top.
    assert [s.name for s in StillsSource().stills] == list(STILLS)
    grey = np.full((64, 64), 128, np.uint8)
    both = StillsSource(size=(32, 32), images={"grey": grey}, folders=[folder])
    assert [s.name for s in both.stills] == ["grey", "test-coffee", "test-chelsea"]
    clash = StillsSource(size=(32, 32), images={"test-coffee": grey}, folders=[folder])
    with pytest.raises(ValueError, match="same name"):
        _ = clash.stills
