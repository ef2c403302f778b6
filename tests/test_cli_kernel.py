"""`napari-afb decompose` with the blur-kernel engine, and the demo's plate, on real files."""

from __future__ import annotations

import json

import numpy as np

from napari_afb import cli, io, samples


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_decompose_a_photo_along_a_drawn_path(tmp_path, capsys):
    photo = tmp_path / "plate.png"
    io.write_png(photo, samples.licence_plate())
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "decompose", photo, "--path", "292,248,308,232", "--out", out)
    assert code == 0, stdout
    names = {p.name for p in out.iterdir()}
    assert {"sharp.png", "paths.json", "paths.png", "kernel.png", "animation.gif"} <= names
    assert {f"frame_{t:02d}.png" for t in range(7)} <= names
    assert "path 1 (drawn): 22.6 px, from (292, 248) to (308, 232)" in stdout
    saved = json.loads((out / "paths.json").read_text())["paths"][0]["points"]
    assert np.allclose(saved, [[292, 248], [308, 232]])
    first, last = io.read_image(out / "frame_00.png"), io.read_image(out / "frame_06.png")
    assert first.shape == (482, 600, 3) and np.abs(first.astype(int) - last).mean() > 3


def test_bad_paths_exit_2_and_write_nothing(tmp_path, capsys):
    photo = tmp_path / "plate.png"
    io.write_png(photo, samples.licence_plate())
    for path, says in (
        ("5000,10,5010,10", "outside"),
        ("1,2,3", "even number"),
        ("300,240,300,240", "zero length"),
        ("100,240,500,240", "kernel bound"),
    ):
        code, _, err = run(capsys, "decompose", photo, "--path", path, "--out", tmp_path / "o")
        assert code == 2 and says in err, err
        assert not (tmp_path / "o").exists()
    code, _, err = run(
        capsys,
        "decompose",
        photo,
        "--engine",
        "learned",
        "--path",
        "1,1,9,9",
        "--out",
        tmp_path / "o",
    )
    assert code == 2 and "--engine kernel" in err


def test_a_sharp_photo_keeps_the_input_and_says_why(tmp_path, capsys):
    from skimage import data

    photo = tmp_path / "coffee.png"
    io.write_png(photo, data.coffee())
    code, stdout, _ = run(capsys, "decompose", photo, "--out", tmp_path / "o")
    assert code == 0
    assert "note: no blur found" in stdout
    assert np.array_equal(io.read_image(tmp_path / "o" / "frame_03.png"), data.coffee())
