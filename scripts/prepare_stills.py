"""Prepare extra training stills: real photographs from Debian wallpaper packages.

Downloads a pinned list of Debian packages with ``apt-get download`` (no root needed), unpacks
them with ``dpkg-deb -x``, checks each chosen photo against its pinned sha256, downscales it to
at most 1024 px on the long side (``cv2.INTER_AREA``), writes it as a quality-92 JPEG into
``.afbstills/`` and describes every file in ``.afbstills/MANIFEST.json`` (package, version,
source path, author, licence, sha256 of the source and of the JPEG). The package's copyright
file (and, for KDE wallpapers, the ``metadata.json`` that states the licence) are copied into
``.afbstills/licences/``. :func:`napari_afb.training.stills.load_still_folder` reads the folder
and checks every JPEG against the manifest; nothing is downloaded at training time.

The photos were picked by eye: photographs only (landscapes, animals, plants, cities,
photographed textures), no renders or illustrations, nothing already motion-blurred, nothing
almost featureless (a foggy lake, a night sky, blowing sand). Licences: CC0-1.0, CC-BY-4.0,
CC-BY-SA-3.0/4.0, GPL-2.0-or-later and LGPL-3.0, as each package's ``debian/copyright`` (or the
wallpaper's own ``metadata.json``) states them. ``--write-sources`` writes the table of them.

Apt runs in a private configuration under the work folder (its own lists and cache), with the
Debian mirror that this machine's apt already uses and the suites that the pins name (bookworm
and trixie), so the system's apt state is left alone. Usage::

    .venv/bin/python scripts/prepare_stills.py                  # or: make stills
    .venv/bin/python scripts/prepare_stills.py --check          # verify only, no downloads
    .venv/bin/python scripts/prepare_stills.py --write-sources docs/STILLS_SOURCES.md

A rerun with the folder present and matching the pins only verifies the checksums (well under a
second) and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / ".afbstills"
MANIFEST = "MANIFEST.json"
FORMAT = 1
MAX_SIDE = 1024
JPEG_QUALITY = 92
MAX_TOTAL_MIB = 40.0  # the folder travels to a GPU machine with other data under 64 MiB
RERUN = "rerun `python scripts/prepare_stills.py`"


class PrepareError(RuntimeError):
    """A step of the preparation failed (download, unpacking, a checksum, the size cap)."""


@dataclass(frozen=True)
class Photo:
    """One chosen file of a package.

    name : output file stem (the still's name in training windows)
    path : path inside the package (as unpacked, without the leading ``/``)
    sha256 : pinned sha256 of that file
    author : who the licence statement names
    licence : SPDX-like licence string
    licence_file : the file in the package that states the licence (None: the package's
        ``usr/share/doc/<package>/copyright``)
    note : anything else about the licence statement
    """

    name: str
    path: str
    sha256: str
    author: str
    licence: str
    licence_file: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Package:
    """A pinned Debian package and the photos chosen from it."""

    name: str
    version: str
    suite: str  # the Debian suite that holds this version (for the private apt sources)
    photos: tuple[Photo, ...] = field(default_factory=tuple)

    @property
    def copyright_file(self) -> str:
        return f"usr/share/doc/{self.name}/copyright"


def _kde(folder: str, title: str, author: str, sha256: str) -> Photo:
    base = f"usr/share/wallpapers/{folder}"
    return Photo(
        name=f"kde-{folder.lower()}",
        path=f"{base}/contents/images/2560x1600.jpg",
        sha256=sha256,
        author=author,
        licence="LGPL-3.0",
        licence_file=f"{base}/metadata.json",
        note=f"'{title}'; metadata.json says LGPLv3, debian/copyright says GPL-2+ for all files",
    )


def _mate(stem: str, author: str, sha256: str) -> Photo:
    return Photo(
        name=f"mate-{stem.lower()}",
        path=f"usr/share/backgrounds/mate/nature/{stem}.jpg",
        sha256=sha256,
        author=author,
        licence="GPL-2.0-or-later",
    )


def _lomiri(stem: str, author: str, licence: str, sha256: str) -> Photo:
    return Photo(
        name="lomiri-" + stem.split("_by_")[0].lower().replace("_", "-"),
        path=f"usr/share/backgrounds/{stem}.jpg",
        sha256=sha256,
        author=author,
        licence=licence,
    )


def _budgie(stem: str, sha256: str) -> Photo:
    return Photo(
        name=f"budgie-{stem}",
        path=f"usr/share/backgrounds/budgie/{stem}.jpg",
        sha256=sha256,
        author="Budgie Desktop Developers",
        licence="CC0-1.0",
    )


_BARBIN = "Charles Barbin"
_RISTO = "Risto Saukonpää"
_AITZOL = "Aitzol Berasategi"

# The pinned packages and photos, looked at one by one (see the module docstring). Left out on
# purpose: renders and illustrations, mate's Storm (the road is motion-blurred), KDE's
# DarkestHour and summer_1am, lomiri's free, budgie's extreme-desert-hike and saturnian-profile
# (almost featureless).
# fmt: off
PACKAGES: tuple[Package, ...] = (
    Package("plasma-workspace-wallpapers", "4:5.27.5-2", "bookworm", (
        _kde("Grey", "Grey", "Sigi Sagi",
             "88c31d8944b7e6935d1b9a296654c692f0772cb512491713eb30a972a604c0ed"),
        _kde("BytheWater", "By the water", "Maciej Wiklo",
             "c272434ef39f2abf1ed48a15a8910088020f3165329a5092f3940ec9464bc05f"),
        _kde("ColdRipple", "Cold Ripple", _RISTO,
             "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f"),
        _kde("ColorfulCups", "Colorful Cups", "Dmitri Popov",
             "6e0f3a72feb5a4a9fec191b77e34874c3c69e2d93040deb3f07773e73385023d"),
        _kde("EveningGlow", "Evening Glow", "Ian Hex",
             "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a"),
        _kde("FallenLeaf", "Fallen Leaf", "Martin Klapetek",
             "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de"),
        _kde("OneStandsOut", "One Stands Out", _RISTO,
             "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd"),
        _kde("Path", "Path", _RISTO,
             "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8"),
    )),
    Package("mate-backgrounds", "1.26.0-1", "bookworm", (
        _mate("Aqua", _BARBIN,
              "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce"),
        _mate("Blinds", "Lennart Poettering, Andrea Cimitan",
              "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600"),
        _mate("Dune", "Marco Cogoni, Hylke Bons",
              "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91"),
        _mate("FreshFlower", "Jens Ansorg",
              "972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e"),
        _mate("Garden", _BARBIN,
              "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78"),
        _mate("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei",
              "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832"),
        _mate("LadyBird", _BARBIN,
              "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d"),
        _mate("RainDrops", '"blackcombwhistler07"',
              "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16"),
        _mate("TwoWings", "Charles Barbin, Hylke Bons",
              "665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb"),
        _mate("Wood", "Jean-François Fortin Tam",
              "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07"),
        _mate("YellowFlower", _BARBIN,
              "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306"),
    )),
    Package("lomiri-wallpapers-16.04", "20.04.0-2", "bookworm", (
        _lomiri("Bridge_by_Sander_Klootwijk", "Sander Klootwijk", "CC-BY-SA-4.0",
                "bd86b081f9975e2b83527f71e49b9271a8ab40885428395969d9f7d834d7f050"),
        _lomiri("Dragonfly_by_Bolly", '"Bolly"', "CC-BY-SA-4.0",
                "af5af17841009732def24b09bb1e669a1b09d2b4bdeee7812c371101c30d2bb3"),
        _lomiri("Picture_0B_by_freespace", 'Trevor "Freespace"', "CC-BY-4.0",
                "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad"),
        _lomiri("Picture_1A_by_freespace", 'Trevor "Freespace"', "CC-BY-4.0",
                "89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b"),
        _lomiri("Wine_by_Jakkub_Mede", "Jakub Mede", "CC-BY-4.0",
                "d2e96e6d4da40dd804b3d0ce295e94de04a2d7d9b6785d42cd9d92ba58bced74"),
        _lomiri("aitzgorri_by_Aitzol_Berasategi", _AITZOL, "CC-BY-4.0",
                "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36"),
        _lomiri("friends_by_Aitzol_Berasategi", _AITZOL, "CC-BY-4.0",
                "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d"),
        _lomiri("greentock_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0",
                "e7b20e2db9dcd6e2b278ca55873c2110b35d89cd38b04d0b18728726888e6889"),
        _lomiri("life_by_Aitzol_Berasategi", _AITZOL, "CC-BY-4.0",
                "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05"),
        _lomiri("picosdeeuropa_by_Aitzol_Berasategi", _AITZOL, "CC-BY-4.0",
                "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a"),
        _lomiri("seeding_by_Clements_Engelhardt", "Clemens Engelhardt", "CC0-1.0",
                "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f"),
        _lomiri("sunset_by_Aitzol_Berasategi", _AITZOL, "CC-BY-4.0",
                "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18"),
        _lomiri("analogpattern_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0",
                "15372488a192b2be2eafc67bd3ed31cbfca19abe3929e925607fcbc9cb4d4202"),
    )),
    Package("lomiri-wallpapers-20.04", "20.04.0-2", "bookworm", (
        _lomiri("Kleiber_by_Lukas_Baubkus", "Lukas Baubkus", "CC-BY-SA-3.0",
                "6572410c09f4492c74ccadde133565a14c0161617d5917d4c820c66d65a44ba7"),
    )),
    Package("budgie-backgrounds", "3.0-1", "trixie", (
        _budgie("abstract-spiral",
                "10070d1f52c14561a87995b13fb55a0143a8d04b27e31885e65d9e230a0a0dc6"),
        _budgie("beacon-street-sunset",
                "d77a97bfbb28fa6b2b4c93ad2857894afd38c13f450655942be077118bb9e3f1"),
        _budgie("blue-periwinkle",
                "0b35d0e6e14766ec21d1d9446dcd34909e0e4e16a80972bb6b2ef26cc0bb4ed0"),
        _budgie("canyon-wren",
                "1576ed3332c11b81ea90bd54acb60cc1e614642094bd972e5f2cde1661374b1f"),
        _budgie("casa-mila",
                "5c7b24e463e3ca90cfead8c7fb4a0e0362980e7ff43aa5e877d6a186338977bf"),
        _budgie("high-trestle-trail",
                "3fa56b607d41e658acc589b0e8306f96ec4ea33cbd8d5d8d4d8a688585fb1fe2"),
        _budgie("lake-sherburne",
                "85881b53de866a521bd806b481d444b7c3a45eee773eefdffaad46e7fb968470"),
        _budgie("oakland-zoo-otters",
                "b7540dd5c076b5b30c37bb9b7c991789d2cd30a9fc6a3205c8896bb5f8b75dbc"),
        _budgie("perched-osprey",
                "d57e8d13c898c8abdf99a6429868e02935c4bb23993dfbb1a190136ee396a179"),
        _budgie("piazza-gae-aulenti",
                "f5a33cc32e1e3c453cfbeb0778f989fb2af704b5a7de2d0dc04f8bb3bb3e588c"),
        _budgie("roman-colosseum",
                "3a085abab563afcdcfc3009fa126bbceb426921dd5bcdbb6f08fb0a601568030"),
        _budgie("singaporean-cityscape",
                "f636392cae58e2cfd478838a8e4d3a3aa0b7c1ecf7be77932c394d649f783363"),
        _budgie("tea-gardens",
                "1d7377e9903b29a3e983f1184a3112e50a6b45e65382c491f5c02e20e2861e20"),
    )),
)
# fmt: on


# ---------------------------------------------------------------------------------------------
# Small helpers


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)


def _need(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise PrepareError(f"{program} not found: this script needs a Debian-like system with apt")
    return found


def _pins(packages: Sequence[Package]) -> dict[str, tuple[str, str, str, str]]:
    """name -> (package, version, source path, source sha256): what a manifest must match."""
    out = {}
    for pkg in packages:
        for photo in pkg.photos:
            if photo.name + ".jpg" in out:
                raise PrepareError(f"two pinned photos are named {photo.name!r}")
            out[photo.name + ".jpg"] = (pkg.name, pkg.version, "/" + photo.path, photo.sha256)
    return out


# ---------------------------------------------------------------------------------------------
# Download (apt in a private configuration)


class AptFetcher:
    """Downloads pinned ``.deb`` files with ``apt-get download`` in a private apt configuration.

    The configuration lives in ``work/apt`` (sources, lists, cache, an empty dpkg status) and
    names the Debian mirror that this machine's apt already uses (or ``mirror``), for the suites
    that the packages name; ``apt-get update`` on it needs no root.
    """

    def __init__(self, work: Path, suites: Sequence[str], mirror: str | None = None):
        self.dir = Path(work) / "apt"
        self.suites = sorted(set(suites))
        self.mirror = mirror
        self._ready = False

    def _options(self) -> list[str]:
        d = self.dir
        opts = {
            "Dir::Etc::SourceList": d / "sources.list",
            "Dir::Etc::SourceParts": d / "sources.list.d",
            "Dir::Etc::Preferences": d / "preferences",
            "Dir::Etc::PreferencesParts": d / "preferences.d",
            "Dir::State": d / "state",
            "Dir::State::Lists": d / "state" / "lists",
            "Dir::State::status": d / "status",
            "Dir::Cache": d / "cache",
        }
        out = [f"-o{k}={v}" for k, v in opts.items()]
        out.append("-oAcquire::Languages=none")
        if os.geteuid() == 0:  # root: apt would hand the download to _apt, who cannot write here
            out.append("-oAPT::Sandbox::User=root")
        return out

    @staticmethod
    def system_mirror() -> str:
        """The Debian archive that this machine's apt is set up with (its ``main`` component)."""
        res = _run([_need("apt-get"), "indextargets", "--format", "$(SITE)|$(ORIGIN)|$(LABEL)"])
        for line in res.stdout.splitlines():
            site, origin, label = (line.split("|") + ["", ""])[:3]
            if origin == "Debian" and label == "Debian" and site.startswith(("http", "file")):
                return site.rstrip("/")
        raise PrepareError(
            "no Debian archive found in this machine's apt sources (apt-get indextargets; "
            "run apt-get update first?); pass --mirror URI"
        )

    def _setup(self) -> None:
        if self._ready:
            return
        apt_get = _need("apt-get")
        keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
        if not keyring.is_file():
            raise PrepareError(f"{keyring} is missing (apt-get install debian-archive-keyring)")
        mirror = self.mirror or self.system_mirror()
        for sub in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "status").touch()
        lines = [f"deb [signed-by={keyring}] {mirror} {suite} main" for suite in self.suites]
        (self.dir / "sources.list").write_text("\n".join(lines) + "\n")
        print(f"apt: updating a private package list for {', '.join(self.suites)}", flush=True)
        res = _run([apt_get, *self._options(), "-q", "update"])
        if res.returncode != 0:
            raise PrepareError(f"apt-get update failed:\n{res.stdout}{res.stderr}")
        self._ready = True

    def available(self, name: str) -> list[str]:
        """The versions of ``name`` that the private configuration offers."""
        res = _run([_need("apt-cache"), *self._options(), "madison", name])
        return [line.split("|")[1].strip() for line in res.stdout.splitlines() if "|" in line]

    def __call__(self, pkg: Package, dest: Path) -> Path:
        self._setup()
        before = set(dest.glob("*.deb"))
        res = _run(
            [_need("apt-get"), *self._options(), "-q", "download", f"{pkg.name}={pkg.version}"],
            cwd=dest,
        )
        if res.returncode != 0:
            versions = self.available(pkg.name)
            said = (res.stderr.strip().splitlines() or ["?"])[-1]
            raise PrepareError(
                f"apt-get download {pkg.name}={pkg.version} failed ({said}): the pinned version "
                f"is not available from {', '.join(self.suites)}. Available: "
                f"{', '.join(versions) or 'none'}. Check the photos in an available version, "
                f"pin it and their sha256 in {Path(__file__).name} and rerun."
            )
        new = sorted(set(dest.glob("*.deb")) - before) or sorted(dest.glob(f"{pkg.name}_*.deb"))
        if not new:
            raise PrepareError(f"apt-get download {pkg.name} wrote no .deb into {dest}")
        return new[-1]


# ---------------------------------------------------------------------------------------------
# Preparation


def _check_deb(deb: Path, pkg: Package) -> None:
    res = _run([_need("dpkg-deb"), "--field", str(deb), "Package", "Version"])
    if res.returncode != 0:
        raise PrepareError(f"{deb} is not a readable .deb: {res.stderr.strip()}")
    fields = dict(
        (k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in res.stdout.splitlines())
    )
    got = (fields.get("Package"), fields.get("Version"))
    if got != (pkg.name, pkg.version):
        raise PrepareError(
            f"{deb} holds {got[0]} {got[1]}, not the pinned {pkg.name} {pkg.version}"
        )


def _extract(deb: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    res = _run([_need("dpkg-deb"), "-x", str(deb), str(into)])
    if res.returncode != 0:
        raise PrepareError(f"dpkg-deb -x {deb} failed: {res.stderr.strip()}")


def downscale_to_jpeg(
    source: Path, dest: Path, *, max_side: int = MAX_SIDE, quality: int = JPEG_QUALITY
) -> tuple[int, int]:
    """Read ``source`` (any format OpenCV reads; EXIF orientation applied), shrink it to at most
    ``max_side`` px on the long side with ``cv2.INTER_AREA`` (never enlarge) and write an sRGB
    JPEG; returns the (width, height) written."""
    import cv2

    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if image is None:
        raise PrepareError(f"OpenCV cannot read {source}")
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(dest), image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise PrepareError(f"OpenCV could not write {dest}")
    return image.shape[1], image.shape[0]


def _licence_copy_name(pkg: Package, path: str) -> str:
    rel = path.removeprefix(f"usr/share/doc/{pkg.name}/").removeprefix("usr/share/")
    return f"licences/{pkg.name}/{rel.replace('/', '__')}"


def prepare(
    out: str | os.PathLike,
    packages: Sequence[Package] = PACKAGES,
    *,
    fetch: Callable[[Package, Path], Path] | None = None,
    work: str | os.PathLike | None = None,
    max_side: int = MAX_SIDE,
    quality: int = JPEG_QUALITY,
    max_total_mib: float = MAX_TOTAL_MIB,
    mirror: str | None = None,
) -> dict:
    """Build the stills folder ``out`` from ``packages``; returns the manifest.

    Parameters
    ----------
    out : the folder to write (replaced as a whole once everything succeeded)
    packages : the pinned packages and their photos
    fetch : ``fetch(package, dest_dir) -> path of the .deb``; None for :class:`AptFetcher`
    work : where to download and unpack (None: a temporary folder, removed afterwards)
    max_side, quality : the downscaling and the JPEG quality
    max_total_mib : refuse to write a folder larger than this
    mirror : the Debian archive for :class:`AptFetcher` (None: the one apt already uses)
    """
    out = Path(out)
    _pins(packages)  # refuses duplicate names
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise PrepareError(
            f"{out} exists and is not a stills folder (no {MANIFEST}); not touching it"
        )
    with tempfile.TemporaryDirectory(prefix="afbstills-") as tmp:
        work_dir = Path(work) if work is not None else Path(tmp)
        debs, unpacked = work_dir / "debs", work_dir / "unpacked"
        debs.mkdir(parents=True, exist_ok=True)
        if fetch is None:
            fetch = AptFetcher(work_dir, [p.suite for p in packages], mirror)
        staging = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent.resolve()))
        try:
            manifest = _build(staging, packages, fetch, debs, unpacked, max_side, quality)
            total = sum(f["bytes"] for f in manifest["files"])
            if total > max_total_mib * 2**20:
                raise PrepareError(
                    f"the stills would take {total / 2**20:.1f} MiB, over the cap of "
                    f"{max_total_mib:g} MiB: pin fewer photos or lower --max-side"
                )
            manifest["total_bytes"] = total
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return manifest


def _build(
    staging: Path,
    packages: Sequence[Package],
    fetch: Callable[[Package, Path], Path],
    debs: Path,
    unpacked: Path,
    max_side: int,
    quality: int,
) -> dict:
    files = []
    for pkg in packages:
        print(f"{pkg.name} {pkg.version} ({pkg.suite}): {len(pkg.photos)} photos", flush=True)
        deb = Path(fetch(pkg, debs))
        _check_deb(deb, pkg)
        root = unpacked / pkg.name
        if root.exists():
            shutil.rmtree(root)
        _extract(deb, root)
        # The licence statements travel with the photos.
        for src in {pkg.copyright_file, *(p.licence_file for p in pkg.photos if p.licence_file)}:
            if (root / src).is_file():
                dest = staging / _licence_copy_name(pkg, src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / src, dest)
            elif src == pkg.copyright_file:
                raise PrepareError(f"{pkg.name} {pkg.version} has no /{src}")
        for photo in pkg.photos:
            src = root / photo.path
            if not src.is_file():
                raise PrepareError(f"{pkg.name} {pkg.version} has no /{photo.path}")
            digest = sha256_file(src)
            if digest != photo.sha256:
                raise PrepareError(
                    f"/{photo.path} of {pkg.name} {pkg.version} has sha256 {digest}, not the "
                    f"pinned {photo.sha256}"
                )
            name = photo.name + ".jpg"
            width, height = downscale_to_jpeg(
                src, staging / name, max_side=max_side, quality=quality
            )
            files.append(
                {
                    "name": name,
                    "package": pkg.name,
                    "version": pkg.version,
                    "suite": pkg.suite,
                    "source_path": "/" + photo.path,
                    "author": photo.author,
                    "licence": photo.licence,
                    "licence_file": _licence_copy_name(
                        pkg, photo.licence_file or pkg.copyright_file
                    ),
                    "licence_note": photo.note,
                    "source_sha256": photo.sha256,
                    "sha256": sha256_file(staging / name),
                    "width": width,
                    "height": height,
                    "bytes": (staging / name).stat().st_size,
                }
            )
    return {
        "format": FORMAT,
        "made_by": "scripts/prepare_stills.py",
        "max_side": max_side,
        "jpeg_quality": quality,
        "files": files,
    }


def verify(
    out: str | os.PathLike,
    packages: Sequence[Package] = PACKAGES,
    *,
    max_side: int = MAX_SIDE,
    quality: int = JPEG_QUALITY,
) -> list[str]:
    """What is wrong with the folder ``out`` against the pins and the settings (an empty list:
    nothing): missing or changed JPEGs, other photos or versions, other settings."""
    out = Path(out)
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except FileNotFoundError:
        return [f"{out / MANIFEST} is missing"]
    except (OSError, ValueError) as exc:
        return [f"{out / MANIFEST} is unreadable: {exc}"]
    problems = []
    pins = _pins(packages)
    have = {}
    for entry in manifest.get("files", []):
        name = entry.get("name", "?")
        keys = ("package", "version", "source_path", "source_sha256")
        have[name] = tuple(entry.get(k) for k in keys)
        path = out / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(f"{path} does not match its sha256 in {MANIFEST}")
    if manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST} has format {manifest.get('format')}, not {FORMAT}")
    settings = (manifest.get("max_side"), manifest.get("jpeg_quality"))
    if settings != (max_side, quality):
        problems.append(f"{MANIFEST} was made with max_side, quality = {settings}")
    if have != pins:
        stale = sorted(set(have.items()) ^ set(pins.items()))
        problems.append(f"{MANIFEST} does not match the pinned photos ({len(stale)} differ)")
    return problems


# ---------------------------------------------------------------------------------------------
# The licence table


def sources_markdown(manifest: dict) -> str:
    """A Markdown table of the photos, their packages, authors and licences."""
    files = manifest["files"]
    total = sum(f["bytes"] for f in files)
    licences: dict[str, int] = {}
    for f in files:
        licences[f["licence"]] = licences.get(f["licence"], 0) + 1
    intro = (
        "Generated by `scripts/prepare_stills.py --write-sources` from `.afbstills/MANIFEST.json` "
        "(do not edit by hand). The photos are not part of the repository or of the package: "
        "`make stills` takes them from the pinned Debian packages below (each file checked "
        f"against its sha256), shrinks them to at most {manifest['max_side']} px on the long "
        f"side and writes them as JPEG (quality {manifest['jpeg_quality']}) into `.afbstills/`, "
        "with each package's copyright file (and KDE's `metadata.json`) in "
        "`.afbstills/licences/`. They are only training input for the synthetic motion blur "
        "(`napari_afb.training.stills.load_still_folder`)."
    )
    lines = [
        "# Extra training stills: sources and licences",
        "",
        textwrap.fill(intro, width=96, break_long_words=False, break_on_hyphens=False),
        "",
        f"{len(files)} photos, {total / 2**20:.1f} MiB; licences: "
        + ", ".join(f"{k} ({v})" for k, v in sorted(licences.items()))
        + ".",
        "",
        "| file | package (version, suite) | source file | author | licence |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in files:
        licence = f["licence"] + (f" ({f['licence_note']})" if f.get("licence_note") else "")
        lines.append(
            f"| `{f['name']}` | {f['package']} ({f['version']}, {f['suite']}) | "
            f"`{f['source_path']}` | {f['author']} | {licence} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    packages: Sequence[Package] = PACKAGES,
    fetch: Callable[[Package, Path], Path] | None = None,
) -> int:
    """The command line; ``packages`` and ``fetch`` replace the pins and apt (for tests)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="the stills folder (default .afbstills)")
    p.add_argument("--check", action="store_true", help="only verify the folder, download nothing")
    p.add_argument("--force", action="store_true", help="rebuild even if the folder verifies")
    p.add_argument("--work", help="keep downloads and unpacked packages here (default: temporary)")
    p.add_argument("--mirror", help="Debian archive URI (default: the one this machine's apt uses)")
    p.add_argument("--max-side", type=int, default=MAX_SIDE)
    p.add_argument("--write-sources", metavar="MD", help="write the licence table (Markdown) here")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    out = Path(args.out)
    problems = verify(out, packages, max_side=args.max_side)
    if args.check:
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"{out} needs rebuilding: {RERUN}", file=sys.stderr)
            return 1
    elif problems or args.force:
        if (out / MANIFEST).exists() and problems:
            print(f"rebuilding {out}: " + "; ".join(problems[:3]), flush=True)
        try:
            prepare(
                out,
                packages,
                fetch=fetch,
                work=args.work,
                max_side=args.max_side,
                mirror=args.mirror,
            )
        except PrepareError as exc:
            print(f"prepare_stills: {exc}", file=sys.stderr)
            return 1
    manifest = json.loads((out / MANIFEST).read_text())
    total = sum(f["bytes"] for f in manifest["files"])
    print(
        f"{out}: {len(manifest['files'])} photos, {total / 2**20:.1f} MiB, verified "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    if args.write_sources:
        Path(args.write_sources).write_text(sources_markdown(manifest))
        print(f"wrote {args.write_sources}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
