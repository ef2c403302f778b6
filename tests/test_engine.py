"""The inference engine: devices, inputs, tiling, progress, cancel and out-of-memory retry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import perturbed_model
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_afb import engine
from napari_afb.engine import Cancelled, DeviceError, Progress

CPU = torch.device("cpu")
HAS_CUDA = torch.cuda.is_available()


def _run(image, guidance, model, **kw):
    return engine.run(engine.decompose_iter(image, guidance, model=model, device=CPU, **kw))


# ------------------------------------------------------------------------------------- devices


def test_auto_device_prefers_cuda_then_mps_then_cpu():
    dev = engine.select_device("auto")
    if HAS_CUDA:
        assert dev.type == "cuda"
    elif engine._mps_available():
        assert dev.type == "mps"
    else:
        assert dev == CPU
    assert engine.select_device("CPU") == CPU
    assert engine.available_devices()[:2] == ["auto", "cpu"]


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on machines without CUDA")
def test_unavailable_cuda_is_refused_with_the_reason():
    with pytest.raises(DeviceError, match="without CUDA|no CUDA GPU"):
        engine.select_device("cuda")
    with pytest.raises(DeviceError):
        engine.select_device("cuda:1")


def test_unknown_device_names_the_choices():
    with pytest.raises(DeviceError, match="'auto', 'cpu', 'cuda'"):
        engine.select_device("tpu")
    if not engine._mps_available():
        with pytest.raises(DeviceError, match="MPS"):
            engine.select_device("mps")


def test_precision_choices():
    assert engine.autocast_dtype(CPU, "auto") is None
    assert engine.autocast_dtype(CPU, "bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="float16 is not supported on the CPU"):
        engine.autocast_dtype(CPU, "float16")
    with pytest.raises(ValueError, match="precision must be"):
        engine.autocast_dtype(CPU, "double")


# ------------------------------------------------------------------------------------- tiling


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 3000), tile=st.integers(3, 40), overlap=st.integers(0, 10))
def test_tiles_cover_the_axis_and_blend_weights_sum_to_one(size, tile, overlap):
    tile, overlap = tile * 8, overlap * 8
    if tile < 2 * overlap + 8:
        return
    starts = engine.tile_starts(size, tile, overlap)
    assert starts[0] == 0 and min(starts[-1] + tile, size) == size
    assert all(s % (tile - overlap) == 0 for s in starts)
    total = np.zeros(size)
    for i, s in enumerate(starts):
        w = engine._axis_weights(starts, size, tile, i)
        assert len(w) == min(s + tile, size) - s
        total[s : s + len(w)] += w
    assert np.allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize(("tile", "overlap"), [(96, 32), (80, 32), (120, 40), (200, 64)])
def test_tiled_and_untiled_results_agree(rgb_image, random_guidance, tile, overlap):
    """Issue criterion: max abs difference under 1/255 on a uint8 image (compared as floats
    in [0, 1]; the uint8 outputs then differ by at most one level)."""
    model = perturbed_model(0)
    guidance = random_guidance(rgb_image.shape[:2])
    image = rgb_image.astype(np.float32) / 255
    whole = _run(image, guidance, model, tile=0)
    tiled = _run(image, guidance, model, tile=tile, overlap=overlap)
    assert np.abs(whole - image[None]).mean() > 0.05  # the network does change the image
    assert np.abs(whole - tiled).max() < 1 / 255
    whole8 = _run(rgb_image, guidance, model, tile=0).astype(int)
    tiled8 = _run(rgb_image, guidance, model, tile=tile, overlap=overlap).astype(int)
    assert np.abs(whole8 - tiled8).max() <= 1


def test_overlap_too_large_for_the_tile_is_refused(rgb_image, random_guidance, small_model):
    with pytest.raises(ValueError, match="twice the overlap"):
        _run(rgb_image, random_guidance(rgb_image.shape[:2]), small_model, tile=64, overlap=32)


# ------------------------------------------------------------------------------ inputs, outputs


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 2), (13, 17), (5, 300)])
def test_odd_sizes(shape, small_model, random_guidance):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = _run(image, random_guidance(shape), small_model, tile=64, overlap=16)
    assert out.shape == (7, *shape, 3) and out.dtype == np.uint8


def test_dtypes_and_channel_layouts(rgb_image, random_guidance, small_model):
    g = random_guidance(rgb_image.shape[:2])
    ref = _run(rgb_image.astype(np.float32) / 255, g, small_model)
    out8 = _run(rgb_image, g, small_model)
    assert out8.dtype == np.uint8 and out8.shape == (7, *rgb_image.shape)
    assert np.abs(out8 / 255 - ref).max() <= 0.5 / 255 + 1e-6
    out16 = _run(rgb_image.astype(np.uint16) * 257, g, small_model)
    assert out16.dtype == np.uint16
    assert np.abs(out16 / 65535 - ref).max() < 1e-3
    out64 = _run(rgb_image / 255.0, g, small_model)
    assert out64.dtype == np.float64 and np.allclose(out64, ref, atol=1e-6)

    grey = rgb_image[..., 1]
    out_grey = _run(grey, g, small_model)
    rgb_of_grey = _run(
        np.repeat(grey[..., None], 3, axis=2).astype(np.float32) / 255, g, small_model
    )
    assert out_grey.shape == (7, *grey.shape) and out_grey.dtype == np.uint8
    assert np.abs(out_grey / 255 - rgb_of_grey.mean(-1)).max() <= 0.5 / 255 + 1e-6
    assert _run(grey[..., None], g, small_model).shape == (7, *grey.shape, 1)

    alpha = np.random.default_rng(1).integers(0, 256, grey.shape, dtype=np.uint8)
    rgba = np.dstack([rgb_image, alpha])
    out_rgba = _run(rgba, g, small_model)
    assert out_rgba.shape == (7, *grey.shape, 4)
    assert np.array_equal(out_rgba[..., :3], out8)
    assert all(np.array_equal(frame[..., 3], alpha) for frame in out_rgba)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.full((8, 8, 3), 2.0, np.float32), r"values in \[0, 1\]"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((8, 8, 3), np.int32), "unsupported image dtype int32"),
        (np.zeros((3, 8, 8), np.uint8), "channels first"),
        (np.zeros((2, 8, 8, 3), np.uint8), "video or stack"),
        (np.zeros((8, 8, 2), np.uint8), r"expected an \(H, W\)"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
    ],
)
def test_bad_images_are_refused_clearly(image, message, small_model):
    with pytest.raises(ValueError, match=message):
        _run(image, np.zeros(image.shape[:2] if image.ndim < 4 else (8, 8)), small_model)


def test_mismatched_guidance_names_both_sizes(rgb_image, small_model):
    with pytest.raises(ValueError, match=r"guidance shape 10x10 .* 197x223"):
        _run(rgb_image, np.zeros((10, 10)), small_model)


# --------------------------------------------------------------------- progress and cancelling


def test_progress_counts_every_tile(rgb_image, random_guidance, small_model):
    seen: list[Progress] = []
    gen = engine.decompose_iter(
        rgb_image,
        random_guidance(rgb_image.shape[:2]),
        model=small_model,
        device=CPU,
        tile=96,
        overlap=32,
    )
    out = engine.run(gen, seen.append)
    n = len(engine.tile_starts(197, 96, 32)) * len(engine.tile_starts(223, 96, 32))
    assert [p.done for p in seen] == list(range(1, n + 1))
    assert {p.total for p in seen} == {n} and out.shape == (7, 197, 223, 3)


def test_cancel_stops_between_tiles(rgb_image, random_guidance, small_model):
    calls = []

    class Counting(torch.nn.Module):
        n_frames, stride = 7, 4

        def forward(self, x, g):
            calls.append(x.shape)
            return small_model(x, g)

    done = []
    gen = engine.decompose_iter(
        rgb_image,
        random_guidance(rgb_image.shape[:2]),
        model=Counting(),
        device=CPU,
        tile=96,
        overlap=32,
        cancel=lambda: len(done) >= 2,
    )
    with pytest.raises(Cancelled, match="after 2 of"):
        engine.run(gen, done.append)
    assert len(calls) == 2


def test_out_of_memory_retries_with_smaller_tiles(rgb_image, random_guidance, small_model):
    """A device that runs out of memory on tiles larger than 128 px: the engine halves the tile,
    warns, says so in a progress message, and the result equals a run at that tile size."""

    class Limited(torch.nn.Module):
        n_frames, stride = 7, 4

        def forward(self, x, g):
            if max(x.shape[-2:]) > 128:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return small_model(x, g)

    g = random_guidance(rgb_image.shape[:2])
    seen: list[Progress] = []
    with pytest.warns(RuntimeWarning, match="retrying with 128-px tiles"):
        out = engine.run(
            engine.decompose_iter(rgb_image, g, model=Limited(), device=CPU, tile=256, overlap=32),
            seen.append,
        )
    assert any("retrying" in p.message for p in seen)
    assert np.array_equal(out, _run(rgb_image, g, small_model, tile=128, overlap=32))

    class Never(Limited):
        def forward(self, x, g):
            raise torch.OutOfMemoryError("CUDA out of memory.")

    with pytest.raises(MemoryError, match="even with"), pytest.warns(RuntimeWarning):
        _run(rgb_image, g, Never(), tile=256, overlap=32)


def test_other_runtime_errors_are_not_swallowed(rgb_image, random_guidance):
    class Broken(torch.nn.Module):
        n_frames, stride = 7, 4

        def forward(self, x, g):
            raise RuntimeError("shape mismatch in layer 3")

    with pytest.raises(RuntimeError, match="layer 3"):
        _run(rgb_image, random_guidance(rgb_image.shape[:2]), Broken())


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_bf16_agrees_with_cpu(rgb_image, random_guidance):
    model = perturbed_model(0)
    g = random_guidance(rgb_image.shape[:2])
    cpu = _run(rgb_image, g, model)
    gpu = engine.run(
        engine.decompose_iter(
            rgb_image, g, model=perturbed_model(0).cuda(), device=torch.device("cuda")
        )
    )
    assert np.abs(cpu.astype(int) - gpu.astype(int)).mean() < 3


# ------------------------------------------------------------ messages and the progress bar


def _bar_rates(text: str) -> list[float]:
    """Steps per second in each reading of a tqdm bar ("12.5tile/s" or "1.06s/tile")."""
    import re

    rates = []
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(s/tile|tile/s)", text):
        rates.append(float(number) if unit == "tile/s" else 1 / float(number))
    return rates


def test_progress_bar_first_rate_is_a_measured_one(capsys):
    """A generator reports a step once its work is done; the bar, made at that first report,
    showed 1 tile in no time (some 100000 tiles/s). Its first rate is now the real one."""
    import time

    def work():
        yield Progress(0, 0, "loading the model")  # time before this is not the tiles' time
        for done in range(1, 4):
            time.sleep(0.2)
            yield Progress(done, 3, f"tile {done} of 3")
        return "result"

    time.sleep(0.3)  # the run starts late: this wait is not part of any tile either
    assert engine.run_with_bar(work(), desc="decompose", unit="tile") == "result"
    err = capsys.readouterr().err
    rates = _bar_rates(err)
    assert rates, err
    assert max(rates) < 1 / 0.15, err  # 0.2 s a tile: 5 tiles/s, never thousands


def test_progress_bar_restarts_its_clock_when_a_retry_retiles(capsys):
    import time

    def work():
        time.sleep(0.2)
        yield Progress(1, 4, "tile 1 of 4")
        yield Progress(0, 0, "out of memory with 256-px tiles; retrying with 128-px tiles")
        for done in range(1, 3):
            time.sleep(0.2)
            yield Progress(done, 9, f"tile {done} of 9")

    engine.run_with_bar(work(), desc="decompose", unit="tile")
    out, err = capsys.readouterr()
    assert "retrying" in out and "2/9 [" in err
    assert max(_bar_rates(err)) < 1 / 0.15, err


def test_a_tile_too_small_names_the_value_given(rgb_image, random_guidance, small_model):
    g = random_guidance(rgb_image.shape[:2])
    with pytest.raises(ValueError) as exc:
        _run(rgb_image, g, small_model, tile=7, overlap=32)
    api = str(exc.value)
    # the value given (not the 8 it was rounded up to), the rule and the smallest tile allowed
    # (small_model's stride is 4: twice 32 plus 4)
    assert "tile=7 " in api and "(8 px)" not in api
    assert "at least 68 px" in api and "multiple of 4" in api and "tile=0" in api
    assert "--tile 7 " in exc.value.cli_message and "--tile 68 or more" in exc.value.cli_message
    with pytest.raises(ValueError, match="overlap of 30 px, 32 px once rounded up"):
        _run(rgb_image, g, small_model, tile=7, overlap=30)
    assert _run(rgb_image, g, small_model, tile=68, overlap=32).shape[0] == 7  # the least works


def test_device_errors_say_device_for_the_api_and_the_flag_for_the_cli(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only build, also on a GPU machine
    with pytest.raises(DeviceError) as exc:
        engine.select_device("cuda")
    assert "device='cpu'" in str(exc.value) and "--device" not in str(exc.value)
    assert "--device cuda asked for" in exc.value.cli_message
    assert "--device cpu" in exc.value.cli_message and "device='cpu'" not in exc.value.cli_message
    with pytest.raises(DeviceError) as exc:
        engine.select_device("tpu")
    assert "--device auto, cpu, cuda" in exc.value.cli_message


def test_a_disabled_progress_bar_still_runs_the_work(monkeypatch, capsys):
    """TQDM_DISABLE=1 makes tqdm bars that keep no clock: setting it back must not fail."""
    import tqdm.auto

    class Disabled(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})

    monkeypatch.setattr(tqdm.auto, "tqdm", Disabled)

    def work():
        yield Progress(1, 2, "tile 1 of 2")
        yield Progress(0, 0, "retrying with smaller tiles")
        yield Progress(1, 5, "tile 1 of 5")
        return "result"

    assert engine.run_with_bar(work(), desc="decompose", unit="tile") == "result"
    assert "retrying" in capsys.readouterr().out
