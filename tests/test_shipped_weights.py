"""The default weights that ship in the package: they load, say what they are, and deblur a
small fixed synthetic case better than the blurry baseline."""

from __future__ import annotations

import numpy as np
import pytest

from napari_afb import weights

SHIPPED = {role: weights.PACKAGE_WEIGHTS_DIR / name for role, name in weights.DEFAULT_FILES.items()}
needs_decomposer = pytest.mark.skipif(
    not SHIPPED["decomposer"].is_file(), reason="no default decomposer weights ship in this tree"
)


def _psnr(a, b) -> float:
    a, b = np.asarray(a, np.float64) / 255, np.asarray(b, np.float64) / 255
    return float(-10 * np.log10(np.mean((a - b) ** 2)))


@needs_decomposer
def test_the_default_decomposer_loads_and_states_it_is_provisional():
    model, info = weights.load_weights(SHIPPED["decomposer"])
    assert info.role == "decomposer" and info.n_frames == 7
    assert "provisional, CPU-trained" in info.metrics["status"]
    assert (
        SHIPPED["decomposer"].stat().st_size
        + sum(p.stat().st_size for p in SHIPPED.values() if p.is_file())
        < 2 * 30e6
    )


@needs_decomposer
def test_the_default_decomposer_beats_the_blurry_baseline_on_a_fixed_synthetic_case():
    """A CC0 photo (scikit-image 'coffee') panning 12 x 6 px over the exposure, blurred in
    linear light with 49 sub-positions; decomposed with its true guidance by the shipped
    weights, the frames are nearer the true frames than the blurry input is, and they move."""
    from napari_afb import decompose
    from napari_afb.samples import synthetic_blur

    sample = synthetic_blur(
        background_motion=(12.0, 6.0), foreground_motion=(-9.0, -9.0), size=(128, 160)
    )
    frames = decompose(sample.blurry, sample.guidance, device="cpu")
    assert frames.shape == sample.frames.shape
    base = np.mean([_psnr(sample.blurry, t) for t in sample.frames])
    ours = np.mean([_psnr(f, t) for f, t in zip(frames, sample.frames)])
    assert ours > base + 1.0, (ours, base)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 2
