"""The weights format: safetensors + JSON metadata, checked on load, never unpickled."""

from __future__ import annotations

import json
import os
import pickle
import re

import numpy as np
import pytest
import torch
from conftest import SMALL_ARGS, perturbed_model
from safetensors import safe_open
from safetensors.torch import save_file

from napari_afb import weights as W
from napari_afb.weights import WeightsError, load_weights, save_weights

RECIPE = {"steps": 1200, "lr": 3e-4, "loss": "l1+perceptual"}
METRICS = {"psnr_db": 27.5, "ssim": 0.81}


def _save(model, path, **kw):
    return save_weights(model, path, architecture="motion_unet", arch_args=SMALL_ARGS, **kw)


def _inputs(seed=0, h=48, w=64):
    """A real photo crop (scikit-image 'coffee') and a random one-hot guidance, as tensors."""
    from skimage import data

    img = data.coffee()[100 : 100 + h, 200 : 200 + w].astype(np.float32) / 255
    x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
    labels = torch.from_numpy(np.random.default_rng(seed).integers(0, 5, (h, w)))
    g = torch.nn.functional.one_hot(labels, 5).permute(2, 0, 1)[None].float()
    return x, g


def _forward(model, x, g):
    with torch.inference_mode():
        return model(x, g)


def _read_raw(path):
    """(tensors, metadata dict) of a saved file, read with safetensors directly."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[W.METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    return tensors, meta


def _write_raw(path, tensors, meta):
    save_file(tensors, str(path), metadata={W.METADATA_KEY: json.dumps(meta)})
    return path


@pytest.fixture
def saved(tmp_path, small_model):
    return _save(small_model, tmp_path / "w.safetensors", recipe=RECIPE, metrics=METRICS)


# ------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_keeps_tensors_and_metadata(saved, small_model):
    model, info = load_weights(saved)
    original = small_model.state_dict()
    loaded = model.state_dict()
    assert loaded.keys() == original.keys()
    for name in original:
        assert torch.equal(loaded[name], original[name]), name
    assert info.architecture == "motion_unet"
    assert info.arch_args == SMALL_ARGS
    assert info.role == "decomposer"
    assert info.n_frames == 7
    assert info.recipe == RECIPE
    assert info.metrics == METRICS
    assert info.path == str(saved)
    assert info.sha256 == W.state_digest(original)
    assert not model.training
    x, g = _inputs()
    assert torch.equal(_forward(model, x, g), _forward(small_model, x, g))


def test_fp16_file_loads_as_float32_with_close_outputs(tmp_path, small_model):
    full = _save(small_model, tmp_path / "full.safetensors")
    half = _save(small_model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    raw, _ = _read_raw(half)
    assert all(t.dtype == torch.float16 for t in raw.values() if t.is_floating_point())

    model, _ = load_weights(half)
    assert all(p.dtype == torch.float32 for p in model.state_dict().values())
    x, g = _inputs()
    ref, out = _forward(small_model, x, g), _forward(model, x, g)
    assert out.dtype == torch.float32
    assert not torch.equal(out, ref)  # it really went through float16
    assert (out - ref).abs().max().item() < 2e-2
    assert (out - ref).abs().mean().item() < 2e-3


def test_loading_never_unpickles(saved, small_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("weights loading must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model, info = load_weights(saved)
    assert info.architecture == "motion_unet"
    assert torch.equal(model.head.bias, small_model.head.bias)


# ------------------------------------------------------------------------------------------
# Refusals


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match="not found") as exc:
        load_weights(path)
    assert str(path) in str(exc.value)


def test_random_bytes_are_not_safetensors(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsError, match="not a readable safetensors file") as exc:
        load_weights(path)
    assert str(path) in str(exc.value)


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"(?i)truncated|corrupt|incomplete|not a readable"):
        load_weights(saved)


def test_tampered_tensor_bytes_fail_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    assert len(data) - header_end > 64  # the bytes flipped below are tensor data
    for i in range(len(data) - 16, len(data)):
        data[i] ^= 0xFF
    saved.write_bytes(bytes(data))
    _read_raw(saved)  # the header is still valid: safetensors itself reads it
    with pytest.raises(WeightsError, match="checksum"):
        load_weights(saved)


def test_file_without_napari_afb_metadata(tmp_path, small_model):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in small_model.state_dict().items()}, str(path))
    with pytest.raises(WeightsError, match="no 'napari_afb' metadata"):
        load_weights(path)


def test_other_format_version(saved, tmp_path):
    tensors, meta = _read_raw(saved)
    meta["format_version"] = 2
    path = _write_raw(tmp_path / "v2.safetensors", tensors, meta)
    with pytest.raises(WeightsError, match="format version 2"):
        load_weights(path)


def test_unknown_architecture(saved, tmp_path):
    tensors, meta = _read_raw(saved)
    meta["architecture"] = "transformer_9000"
    path = _write_raw(tmp_path / "alien.safetensors", tensors, meta)
    with pytest.raises(WeightsError, match="transformer_9000") as exc:
        load_weights(path)
    assert "motion_unet" in str(exc.value)  # says what it does know


def test_malformed_metadata(saved, tmp_path):
    tensors, meta = _read_raw(saved)
    del meta["sha256"]
    path = _write_raw(tmp_path / "nosha.safetensors", tensors, meta)
    with pytest.raises(WeightsError, match="malformed metadata"):
        load_weights(path)


def test_tensors_that_do_not_fit_the_architecture(tmp_path):
    # Tensors of a wider network, labelled with the small network's arch_args; the checksum is
    # right, so only the shape check can catch it.
    wide = perturbed_model(1, widths=[8, 16, 48])
    tensors = {k: v.contiguous() for k, v in wide.state_dict().items()}
    meta = {
        "format_version": 1,
        "architecture": "motion_unet",
        "arch_args": SMALL_ARGS,
        "role": "decomposer",
        "n_frames": 7,
        "sha256": W.state_digest(tensors),
    }
    path = _write_raw(tmp_path / "mismatch.safetensors", tensors, meta)
    with pytest.raises(WeightsError, match="does not match architecture") as exc:
        load_weights(path)
    # names a tensor, the shape found and the shape the architecture needs
    found = r"[\w.]+\.weight has shape \(48, \d+, \d, \d\)"
    assert re.search(found + r", the architecture needs \(32, ", str(exc.value))


def test_missing_tensors_are_named(saved, tmp_path):
    tensors, meta = _read_raw(saved)
    del tensors["head.bias"]
    meta["sha256"] = W.state_digest(tensors)
    path = _write_raw(tmp_path / "nohead.safetensors", tensors, meta)
    with pytest.raises(WeightsError, match=r"missing tensors head\.bias"):
        load_weights(path)


# ------------------------------------------------------------------------------------------
# Finding and caching the default weights


def test_resolve_weights_order(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    packaged = pkg / "decomposer.safetensors"
    packaged.write_bytes(b"x")
    monkeypatch.setattr(W, "PACKAGE_WEIGHTS_DIR", pkg)
    monkeypatch.setenv("NAPARI_AFB_WEIGHTS", str(tmp_path / "env.safetensors"))
    arg = tmp_path / "arg.safetensors"

    assert W.resolve_weights(arg) == arg
    assert W.resolve_weights(str(arg)) == arg
    assert W.resolve_weights() == tmp_path / "env.safetensors"
    monkeypatch.delenv("NAPARI_AFB_WEIGHTS")
    assert W.resolve_weights() == packaged


def test_resolve_weights_with_nothing_available(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(W, "PACKAGE_WEIGHTS_DIR", empty)
    monkeypatch.delenv("NAPARI_AFB_WEIGHTS", raising=False)
    with pytest.raises(WeightsError) as exc:
        W.resolve_weights()
    msg = str(exc.value)
    assert "no trained default decomposer weights ship" in msg
    assert "NAPARI_AFB_WEIGHTS" in msg
    with pytest.raises(WeightsError, match="NAPARI_AFB_WEIGHTS"):
        W.cached_model(None, torch.device("cpu"))


def test_cached_model_reuses_and_reloads(tmp_path, small_model, monkeypatch):
    path = _save(small_model, tmp_path / "w.safetensors")
    cpu = torch.device("cpu")
    first, info = W.cached_model(path, cpu)
    again, _ = W.cached_model(str(path), cpu)
    assert again is first
    assert torch.equal(first.head.bias, small_model.head.bias)

    # From the environment variable, it is the same file: the same model.
    monkeypatch.setenv("NAPARI_AFB_WEIGHTS", str(path))
    assert W.cached_model(None, cpu)[0] is first

    # Rewritten (same size, new tensors, new mtime): a new model with the new tensors.
    other = perturbed_model(5)
    _save(other, path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    reloaded, info2 = W.cached_model(path, cpu)
    assert reloaded is not first
    assert info2.sha256 != info.sha256
    assert torch.equal(reloaded.head.bias, other.head.bias)
    assert W.cached_model(path, cpu)[0] is reloaded


def test_cached_model_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        W.cached_model(tmp_path / "gone.safetensors", torch.device("cpu"))


def test_save_refuses_unknown_architecture(tmp_path, small_model):
    with pytest.raises(WeightsError, match="unknown architecture"):
        save_weights(small_model, tmp_path / "w.safetensors", architecture="nope", arch_args={})
    assert list(tmp_path.iterdir()) == []


def test_weights_files_get_the_usual_permissions(tmp_path, small_model):
    """Not the 0600 safetensors writes: the umask decides, as for every other output."""
    import os
    import stat

    from conftest import SMALL_ARGS

    from napari_afb.weights import load_weights, save_weights

    old = os.umask(0o022)
    try:
        path = save_weights(
            small_model,
            tmp_path / "w.safetensors",
            architecture="motion_unet",
            arch_args=SMALL_ARGS,
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    load_weights(path)  # and it is a good file


def test_the_no_default_message_names_the_right_flag_for_each_role(monkeypatch, tmp_path):
    from napari_afb import weights

    monkeypatch.setattr(weights, "PACKAGE_WEIGHTS_DIR", tmp_path)  # nothing ships there
    for role, flag in (("decomposer", "--weights"), ("predictor", "--predictor")):
        monkeypatch.delenv(weights.ENV_VARS[role], raising=False)
        with pytest.raises(weights.WeightsError) as err:
            weights.resolve_weights(None, role)
        assert f"{flag} on the command line" in str(err.value)
        assert weights.ENV_VARS[role] in str(err.value)
