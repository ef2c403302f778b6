"""The blur-kernel engine's core: paths, deconvolution, blind estimation, frames, checks.

Synthetic blur of scikit-image stills along known paths (numpy only, no napari), plus the
shipped licence-plate photo."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as psnr

import napari_afb
from napari_afb.jobs import Cancelled, run
from napari_afb.kernel import BlurPath, load_paths, parse_path, save_paths
from napari_afb.kernel.blind import estimate_kernel
from napari_afb.kernel.decompose import decompose_iter, estimate_paths_iter, noise_sigma
from napari_afb.kernel.deconv import deconvolve, periodic_pad
from napari_afb.kernel.paths import mass_near_path, path_from_kernel


def blur_along(sharp: np.ndarray, path: BlurPath) -> np.ndarray:
    """The exact blur of a float image by a path: the mean of the image moved to many
    positions along it (independent of the engine's kernel rendering and FFTs)."""
    import cv2

    h, w = sharp.shape[:2]
    out = np.zeros_like(sharp, dtype=np.float64)
    ts = (np.arange(64) + 0.5) / 64
    for dx, dy in path.position(ts) - np.asarray(path.origin):
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
        out += cv2.warpAffine(
            sharp, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    return (out / len(ts)).astype(np.float32)


@pytest.fixture(scope="module")
def sharp():
    return data.astronaut()[100:356, 100:356].astype(np.float32) / 255


# ---------------------------------------------------------------------------------------------
# Paths


def test_a_path_renders_a_kernel_centred_on_its_mid_time_point():
    p = BlurPath([[10, 10], [30, 10]])  # 20 px to the right
    k = p.render()
    assert k.shape[0] % 2 == 1 and abs(k.sum() - 1) < 1e-5
    r = k.shape[0] // 2
    ys, xs = np.nonzero(k > 1e-4)
    assert set(ys) <= {r, r - 1, r + 1} and xs.min() <= r - 9 and xs.max() >= r + 9
    off = p.frame_offsets(7)
    assert np.allclose(off[:, 1], 0) and np.allclose(
        off[:, 0], np.linspace(-20, 20, 15)[1::2][:7] * 0 + off[:, 0]
    )
    assert np.all(np.diff(off[:, 0]) > 0) and abs(off[3, 0]) < 1e-9  # left to right, middle at 0
    assert np.allclose(p.reversed().frame_offsets(7), off[::-1])
    assert np.allclose(p.reversed().render(), k)  # a kernel cannot say which way time ran


def test_paths_from_text_files_and_arrays(tmp_path):
    p = parse_path("292,248, 308,232")
    assert np.allclose(p.direction(), [16, -16])
    save_paths([p, BlurPath([[0, 0], [5, 0], [5, 5]])], tmp_path / "p.json")
    back = load_paths(tmp_path / "p.json")
    assert len(back) == 2 and np.allclose(back[0].points, p.points)
    (tmp_path / "p.txt").write_text("1,2,3,4\n\n5,6,7,8,9,10\n")
    assert [len(q.points) for q in load_paths(tmp_path / "p.txt")] == [2, 3]


@pytest.mark.parametrize(
    "text, message",
    [("1,2,3", "even number"), ("a,b,c,d", "x0,y0,x1,y1"), ("5,5,5,5", "zero length")],
)
def test_bad_paths_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_path(text)


def test_a_kernel_becomes_an_ordered_path_through_its_mass():
    true = BlurPath([[0, 0], [12, -6], [20, 4]])
    est = path_from_kernel(true.render(), true.origin)
    assert mass_near_path(est) > 0.9
    # the same trajectory, in one order or the other
    d = est.direction() if np.dot(est.direction(), true.direction()) > 0 else -est.direction()
    assert np.allclose(d, true.direction(), atol=2.5)
    yy, xx = np.mgrid[-10:11, -10:11]
    blob = np.exp(-(xx**2 + yy**2) / 32.0).astype(np.float32)  # a round blob, sigma 4 px
    assert mass_near_path(path_from_kernel(blob, (0, 0))) < 0.55  # a blob is no clean path


# ---------------------------------------------------------------------------------------------
# Deconvolution and estimation


def test_the_periodic_pad_has_no_seam():
    img = np.linspace(0, 1, 60 * 80, dtype=np.float32).reshape(60, 80)
    padded = periodic_pad(img, 20)
    assert padded.shape[0] >= 80 and padded.shape[1] >= 100
    assert np.array_equal(padded[:60, :80], img)
    # wrapping around, neighbouring rows and columns differ by little (the image's own step)
    assert np.abs(padded[0] - padded[-1]).max() < 0.05
    assert np.abs(padded[:, 0] - padded[:, -1]).max() < 0.05


@pytest.mark.parametrize("prior", ["hyper-laplacian", "tv", "wiener"])
def test_deconvolution_with_the_true_path_gains_over_the_blur(sharp, prior):
    path = BlurPath([[0, 0], [9, -5], [16, 2]])
    blurry = blur_along(sharp, path)
    rng = np.random.default_rng(0)
    noisy = np.clip(blurry + rng.normal(0, 0.005, blurry.shape), 0, 1).astype(np.float32)
    latent = np.stack(
        [deconvolve(noisy[..., c], path.render(), weight=2000, prior=prior) for c in range(3)], -1
    )
    inner = (slice(24, -24), slice(24, -24))
    base = psnr(sharp[inner], noisy[inner], data_range=1)
    gain = psnr(sharp[inner], np.clip(latent, 0, 1)[inner], data_range=1) - base
    assert gain > (2.0 if prior == "wiener" else 3.0), gain


@pytest.fixture(scope="module")
def light_and_value_blur(sharp):
    """The sharp crop blurred along one path twice: averaging the light (as a sensor does) and
    averaging the sRGB values, each with a little noise."""
    from napari_afb.samples import linear_to_srgb, srgb_to_linear

    path = BlurPath([[0, 0], [12, -6], [22, 3]])
    rng = np.random.default_rng(1)
    light = linear_to_srgb(blur_along(srgb_to_linear(sharp), path))
    value = blur_along(sharp, path)
    noisy = [
        np.clip(b + rng.normal(0, 0.004, b.shape), 0, 1).astype(np.float32) for b in (light, value)
    ]
    return path, noisy[0], noisy[1]


def test_light_averaged_blur_is_undone_in_linear_light_and_told_apart(sharp, light_and_value_blur):
    from napari_afb.kernel.decompose import choose_blur

    path, light, value = light_and_value_blur
    inner = (slice(32, -32), slice(32, -32))
    gains = {}
    for name, blurry in (("light", light), ("value", value)):
        for blur in ("gamma", "linear"):
            planes = [
                deconvolve(blurry[..., c], path.render(), weight=2000, blur=blur) for c in range(3)
            ]
            lat = np.clip(np.stack(planes, -1), 0, 1)
            gains[name, blur] = psnr(sharp[inner], lat[inner], data_range=1) - psnr(
                sharp[inner], blurry[inner], data_range=1
            )
    # each blur is undone best by its own model
    assert gains["light", "linear"] > gains["light", "gamma"] + 1.0, gains
    assert gains["value", "gamma"] > gains["value", "linear"] + 1.0, gains
    everywhere = np.ones(sharp.shape[:2], bool)
    assert choose_blur(light, path, 2000, everywhere)[0] == "linear"
    assert choose_blur(value, path, 2000, everywhere)[0] == "gamma"
    # the engine's default chooses per path and says which; a wrong blur name is refused
    res = run(decompose_iter(light, paths=path, kernel_bound=41))
    assert res.blurs == ["linear"] and res.applied == [True]
    with pytest.raises(ValueError, match="blur must be one of"):
        deconvolve(light[..., 0], path.render(), blur="light")


def test_a_linear_light_solve_keeps_dark_areas_and_rings_only_on_a_wrong_path():
    """The linear-light solver stays inside the sensor curves' [0, 1] between its steps: before,
    values below 0 (which the curves clip, so they never changed the modelled blur) were kept
    by the fixed point, and dark areas near bright edges fell to black (3.5 % of this crop's
    pixels black where the photo is not) and the ringing check rang at the true path."""
    from napari_afb.kernel.decompose import ringing
    from napari_afb.samples import linear_to_srgb, srgb_to_linear

    sharp = np.repeat(data.camera()[:256, 100:356, None], 3, -1).astype(np.float32) / 255
    path = BlurPath([[0, 0], [12, -6], [22, 3]])
    rng = np.random.default_rng(1)
    light = linear_to_srgb(blur_along(srgb_to_linear(sharp), path))
    light = np.clip(light + rng.normal(0, 0.004, light.shape), 0, 1).astype(np.float32)
    inner = (slice(32, -32), slice(32, -32))
    everywhere = np.ones(sharp.shape[:2], bool)

    def solve(p):
        return np.stack(
            [deconvolve(light[..., c], p.render(), weight=2000, blur="linear") for c in range(3)],
            -1,
        )

    lat = solve(path)
    assert ringing(lat, everywhere, margin=32) == ""
    lat = np.clip(lat, 0, 1)
    false_black = np.mean((lat[inner] < 0.02) & (sharp[inner] > 0.08))
    assert false_black < 0.015, false_black
    gain = psnr(sharp[inner], lat[inner], data_range=1) - psnr(
        sharp[inner], light[inner], data_range=1
    )
    assert gain > 8.0, gain
    # a path 1.5x too long still rings
    too_long = BlurPath(1.5 * np.asarray(path.points, np.float64))
    assert ringing(solve(too_long), everywhere, margin=48) != ""


def test_a_blur_of_the_light_is_estimated_on_the_light(light_and_value_blur):
    """On the stored values the estimate of a light-averaged blur fails here (its halves
    disagree); the default then estimates on the light, and its blur test says light."""
    path, light, _ = light_and_value_blur
    on_values = run(decompose_iter(light, kernel_bound=41, space="gamma"))
    assert on_values.paths == [] and "uncertain" in on_values.notes[0]
    res = run(decompose_iter(light, kernel_bound=41))
    assert len(res.paths) == 1 and res.blurs == ["linear"]
    assert abs(res.paths[0].extent() - path.extent()) < 2.0, res.paths[0].extent()
    # Estimate blur path (the API and the dock's button) shows the path the run would use
    shown = napari_afb.estimate_blur_paths(light, kernel_bound=41)
    assert len(shown) == 1 and np.allclose(shown[0].points, res.paths[0].points)
    with pytest.warns(UserWarning, match="uncertain"):
        assert napari_afb.estimate_blur_paths(light, kernel_bound=41, space="gamma") == []


def test_a_painted_region_blurred_in_light_is_estimated_on_the_light(light_and_value_blur):
    """Each painted region gets the same choice as the whole image: here the values' estimate
    of the region fails and the light's is taken (time-ordered by the painted direction)."""
    path, light, _ = light_and_value_blur
    labels = np.zeros(light.shape[:2], np.uint8)
    labels[:, 8:-8] = 4  # one region, moving right-down (the path runs mostly rightwards)
    on_values = run(decompose_iter(light, labels, kernel_bound=41, space="gamma"))
    assert on_values.paths == [] and "uncertain" in on_values.notes[0], on_values.notes
    res = run(decompose_iter(light, labels, kernel_bound=41))
    assert len(res.paths) == 1 and res.blurs == ["linear"] and res.applied == [True], res.notes
    assert abs(res.paths[0].extent() - path.extent()) < 2.0, res.paths[0].extent()
    assert res.paths[0].direction()[0] > 0  # the painted direction sets the time order


def test_blind_estimation_finds_a_straight_blur(sharp):
    path = BlurPath([[0, 0], [14, 8]])  # 16 px down-right
    blurry = blur_along(sharp, path)
    k = estimate_kernel(blurry, 31)
    # compare the mean positions in the first and last sevenths of the exposure (blind kernels
    # have faint tails that make their end points unreliable)
    est = path_from_kernel(k, (0, 0)).frame_offsets(7)
    true = path.frame_offsets(7)
    d, t = est[-1] - est[0], true[-1] - true[0]
    angle = np.degrees(np.arccos(abs(np.dot(d, t)) / np.hypot(*d) / np.hypot(*t)))
    assert angle < 10 and 0.8 < np.hypot(*d) / np.hypot(*t) < 1.25, (d, t)


def test_the_noise_estimate_follows_the_noise(sharp):
    grey = sharp.mean(-1)
    rng = np.random.default_rng(1)
    for sigma in (0.01, 0.03):
        est = noise_sigma(grey + rng.normal(0, sigma, grey.shape).astype(np.float32))
        assert 0.7 * sigma < est < 1.5 * sigma + 0.004


# ---------------------------------------------------------------------------------------------
# Frames


def test_frames_follow_the_drawn_path_and_reblur_to_the_input(sharp):
    path = BlurPath([[100, 140], [120, 128]])  # up-right, drawn on the image
    blurry = (blur_along(sharp, path) * 255).round().astype(np.uint8)
    res = run(decompose_iter(blurry, None, path, strength=2000))
    f = res.frames
    assert f.shape == (7, 256, 256, 3) and f.dtype == np.uint8
    # sharper than the input at the middle frame
    inner = (slice(24, -24), slice(24, -24))
    assert (
        psnr(sharp[inner], f[3][inner] / 255, data_range=1)
        > psnr(sharp[inner], blurry[inner] / 255, data_range=1) + 3
    )
    # the mean of the frames is the input again
    assert psnr(blurry[inner] / 255, f.mean(0)[inner] / 255, data_range=1) > 30
    # the first frame is the middle one moved back along the path (down-left), the last forward
    import cv2

    for t, sign in ((0, -1), (6, 1)):
        shifts = {}
        for dx in range(-10, 11):
            m = np.array([[1, 0, dx], [0, 1, -0.6 * dx]], np.float64)
            moved = cv2.warpAffine(f[3], m, (256, 256), borderMode=cv2.BORDER_REFLECT)
            shifts[dx] = np.abs(moved[inner].astype(int) - f[t][inner]).mean()
        best = min(shifts, key=shifts.get)
        assert np.sign(best) == sign and abs(best) >= 5, shifts


@pytest.mark.parametrize(
    "image",
    [
        np.full((40, 50), 30000, np.uint16),
        np.zeros((40, 50, 4), np.uint8),
        np.ones((40, 50, 3), np.float32) * 0.5,
        np.zeros((1, 1, 3), np.uint8),
    ],
    ids=["grey16", "rgba", "float", "1x1"],
)
def test_any_layout_comes_back_in_its_own_layout(image):
    h, w = image.shape[:2]
    path = BlurPath([[0, 0], [min(w, 3), 0]]) if w > 1 else BlurPath([[0, 0], [0.6, 0]])
    res = run(decompose_iter(image, None, path, n_frames=3))
    assert res.frames.shape == (3, *image.shape) and res.frames.dtype == image.dtype


def test_static_labels_keep_the_input_and_moving_ones_follow_the_path(sharp):
    path = BlurPath([[60, 60], [80, 60]])
    blurry = (blur_along(sharp, path) * 255).round().astype(np.uint8)
    labels = np.zeros((256, 256), np.uint8)
    labels[:, :128] = 4  # left half moving right-down; right half static
    res = run(decompose_iter(blurry, labels, path))
    far = (slice(None), slice(200, None))  # beyond the feathered edge
    assert np.all(res.frames[:, far[0], far[1]] == blurry[None, far[0], far[1]])
    assert np.abs(res.frames[0, :, :100].astype(int) - blurry[:, :100]).mean() > 2


def test_estimated_paths_take_time_from_the_guidance(sharp):
    path = BlurPath([[100, 100], [116, 100]])  # to the right
    blurry = blur_along(sharp, path)
    for label, sign in ((1, 1), (3, -1)):  # right-up: time runs right; left-down: left
        labels = np.full((256, 256), label, np.uint8)
        paths, notes = run(estimate_paths_iter(blurry, labels, kernel_bound=31))
        assert len(paths) == 1, notes
        assert np.sign(paths[0].direction()[0]) == sign


def test_an_image_without_blur_keeps_the_input(sharp):
    img = (sharp * 255).astype(np.uint8)
    with pytest.warns(UserWarning, match="no blur|not a clean|keeps the input"):
        frames = napari_afb.decompose(img, engine="kernel", kernel_bound=31)
    assert np.all(frames == img[None])


@pytest.mark.parametrize(
    "paths, message",
    [
        ("1000,1000,1010,1000", "outside"),
        ("10,10,10,10", "zero length"),
        ("10,10,200,10", "longer than the kernel bound"),
    ],
)
def test_bad_paths_for_an_image_are_refused(sharp, paths, message):
    with pytest.raises(ValueError, match=message):
        run(decompose_iter(sharp, None, paths, kernel_bound=51))


@pytest.mark.parametrize("threaded", [True, False])
def test_the_colour_planes_solved_in_threads_are_the_planes_solved_one_by_one(
    sharp, threaded, monkeypatch
):
    import napari_afb.kernel.decompose as kd
    from napari_afb.kernel.decompose import _deconvolve_rgb

    if not threaded:  # as for an image over THREADED_PIXELS
        monkeypatch.setattr(kd, "THREADED_PIXELS", 0)

    path = BlurPath([[0, 0], [9, -5], [16, 2]])
    blurry = blur_along(sharp, path)
    steps = []
    gen = _deconvolve_rgb(blurry, path, 2000.0, "hyper-laplacian", "linear", None, 5, 20, "x")
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        latent = stop.value
    assert [(s.done, s.total) for s in steps] == [(6, 20), (7, 20), (8, 20)]
    for c in range(3):
        alone = deconvolve(blurry[..., c], path.render(), weight=2000.0, blur="linear")
        assert np.array_equal(latent[..., c], alone)


def test_cancel_stops_the_run(sharp):
    with pytest.raises(Cancelled):
        run(decompose_iter(sharp, None, "10,10,20,10", cancel=lambda: True))
    # cancelled while the three planes are being solved (in threads)
    polls = []

    def cancel_later():
        polls.append(1)
        return len(polls) > 4

    with pytest.raises(Cancelled, match="during the deconvolution"):
        run(decompose_iter(sharp, None, "10,10,20,10", space="gamma", cancel=cancel_later))


def test_the_api_chooses_the_engine(sharp):
    from napari_afb.api import choose_engine

    assert choose_engine("auto") == "kernel"
    assert choose_engine("auto", weights="w.safetensors") == "learned"
    with pytest.raises(ValueError, match="engine must be"):
        choose_engine("magic")
    with pytest.raises(ValueError, match="kernel engine"):
        napari_afb.decompose(
            sharp, np.ones((256, 256), np.uint8), engine="learned", paths="1,1,9,1"
        )
    a = napari_afb.decompose(sharp, paths=[[10, 10], [20, 10]])
    b = run(decompose_iter(sharp, None, "10,10,20,10")).frames
    assert np.array_equal(a, b)


def test_the_plate_photo_gets_sharp_with_a_drawn_and_an_estimated_path():
    """The shipped licence-plate photo (real motion blur, 23 px up-right): both paths make the
    plate's edges several times stronger than the input's, and agree with each other."""
    from napari_afb import samples

    plate = samples.licence_plate()
    region = (slice(200, 290), slice(220, 380))

    def edges(img):
        g = img[region].astype(np.float32).mean(-1)
        return np.abs(np.diff(g, axis=1)).mean() + np.abs(np.diff(g, axis=0)).mean()

    drawn = run(decompose_iter(plate, None, "292,248,308,232"))
    est = run(decompose_iter(plate, None, None))
    p = est.paths[0]
    d = p.direction() * np.sign(p.direction()[0])
    assert d[1] < 0 and 0.6 < -d[1] / d[0] < 1.6, d  # up-right, near 45 degrees
    assert 18 < p.extent() < 32
    for res in (drawn, est):
        assert edges(res.frames[3]) > 1.8 * edges(plate)
        assert res.applied == [True] and res.reblur_psnr > 35  # the frames re-blur to the input


def test_the_kernel_engine_runs_without_torch_napari_or_qt():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('torch', 'napari', 'qtpy', 'PyQt5', 'PyQt6', 'magicgui'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np\n"
        "from napari_afb.jobs import run\n"
        "from napari_afb.kernel.decompose import decompose_iter\n"
        "img = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)\n"
        "print(run(decompose_iter(img, None, '10,10,20,12')).frames.shape)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(7, 40, 50, 3)" in r.stdout


def test_touching_regions_of_different_directions_get_their_own_paths(sharp):
    """Two strokes on two touching guidance regions (left moving right, right moving up): each
    region follows the stroke drawn on it, even where the other stroke reaches across."""
    from napari_afb.kernel.regions import assign, inner_point

    labels = np.zeros((256, 256), np.uint8)
    labels[:, :128] = 1
    labels[:, 128:] = 2
    right = BlurPath([[100, 100], [135, 100]])  # drawn on the left region, reaching across
    up = BlurPath([[200, 150], [200, 130]])
    owner = assign([right, up], labels, (256, 256))
    assert np.all(owner[:, :128] == 0) and np.all(owner[:, 128:] == 1)
    ring = np.ones((50, 50), bool)
    ring[10:40, 10:40] = False  # a centroid in the hole; the deepest point is on the ring
    x, y = inner_point(ring)
    assert ring[int(y), int(x)]


def test_no_paths_at_all_keeps_the_input_and_none_estimates(sharp):
    img = (sharp * 255).astype(np.uint8)
    kept = run(decompose_iter(img, None, []))
    assert kept.paths == [] and np.all(kept.frames == img[None])
    assert any("nothing was deblurred" in n for n in kept.notes)


def test_residual_blur_tells_a_deblurred_image_from_one_still_blurred():
    from napari_afb.kernel.decompose import RESIDUAL_SHARE, residual_blur

    img = data.astronaut()[:384, 64:448].astype(np.float32) / 255
    everywhere = np.ones(img.shape[:2], bool)
    share, spans = residual_blur(img, everywhere)
    assert len(spans) == 9 and share < RESIDUAL_SHARE, spans
    still_blurred = blur_along(img, BlurPath([[100, 100], [126, 100]]))
    share, spans = residual_blur(still_blurred, everywhere)
    assert share >= RESIDUAL_SHARE and max(spans) > 20, spans
    assert residual_blur(img, np.zeros_like(everywhere)) == (0.0, [])  # nothing to judge


def test_the_default_backs_off_where_parts_moved_different_ways():
    """The package's synthetic sample (its background moves one way, a disc another): one
    global path estimated for both leaves a part blurred, so the default keeps the input and
    says why."""
    from napari_afb.samples import synthetic_blur

    s = synthetic_blur()
    res = run(decompose_iter(s.blurry))
    assert any("the blur differs across the image" in n for n in res.notes), res.notes
    assert all(np.array_equal(f, s.blurry) for f in res.frames)
    assert len(res.paths) == 1 and res.applied == [False] and res.reblur_psnr is None


@pytest.fixture(scope="module")
def shaken_in_light():
    """An astronaut crop blurred in linear light along a short curved path, 1 % noise, uint8."""
    from napari_afb.samples import linear_to_srgb, srgb_to_linear

    img = data.astronaut()[:384, :384].astype(np.float32) / 255
    path = BlurPath([[180, 190], [190, 186], [200, 194]])
    blurred = linear_to_srgb(blur_along(srgb_to_linear(img), path))
    noisy = blurred + np.random.default_rng(0).normal(0, 0.01, img.shape)
    return np.rint(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def test_the_check_for_parts_still_blurred_judges_a_gamma_solve(monkeypatch, shaken_in_light):
    """A photo blurred in linear light: the default estimates its path (on the values and on
    the light), deblurs in light, and checks for parts still blurred, and for ringing, on a
    gamma solve along the same path too (the checks' thresholds were set on gamma solves; on a
    linear solve the first missed a box that moved another way: benchmarks/bench_kernel.py's
    clips)."""
    import napari_afb.kernel.decompose as kd

    u8 = shaken_in_light
    solves, judged, rang = [], [], []
    deconvolve_rgb, residual_blur, ringing = kd._deconvolve_rgb, kd.residual_blur, kd.ringing

    def recording_ringing(lat, *args, **kwargs):
        rang.append(lat)
        return ringing(lat, *args, **kwargs)

    def recording_solve(rgb, p, weight, prior, blur, *args):
        lat = yield from deconvolve_rgb(rgb, p, weight, prior, blur, *args)
        solves.append((blur, lat))
        return lat

    def recording_check(lat, *args, **kwargs):
        judged.append(lat)
        return residual_blur(lat, *args, **kwargs)

    monkeypatch.setattr(kd, "_deconvolve_rgb", recording_solve)
    monkeypatch.setattr(kd, "residual_blur", recording_check)
    monkeypatch.setattr(kd, "ringing", recording_ringing)
    res = run(decompose_iter(u8))
    assert res.blurs == ["linear"] and res.applied == [True], res.notes
    assert [b for b, _ in solves] == ["linear", "gamma"]
    assert len(judged) == 1 and judged[0] is solves[1][1]
    assert any(x is solves[0][1] for x in rang) and any(x is solves[1][1] for x in rang)
    # the result is the linear solve: sharper than the input, and re-blurring to it
    inner = (slice(40, -40), slice(40, -40))
    assert np.allclose(res.latent, np.clip(solves[0][1], 0, 1), atol=1e-6)

    def edges(x):
        return float(np.mean(np.abs(np.diff(x[inner].mean(axis=-1), axis=1))))

    assert edges(res.latent) > 1.3 * edges(u8 / 255)
    assert res.reblur_psnr > 33


def test_an_estimated_path_whose_gamma_solve_rings_keeps_the_input(monkeypatch, shaken_in_light):
    """Where the estimated path's linear solve is clean but the gamma solve made for the checks
    rings, the image keeps the input: that is how a clip whose box moved another way than the
    camera backs off (bench_kernel), now that the linear solve no longer rings there."""
    import napari_afb.kernel.decompose as kd

    solved = {}
    deconvolve_rgb, ringing = kd._deconvolve_rgb, kd.ringing

    def recording_solve(rgb, p, weight, prior, blur, *args):
        lat = yield from deconvolve_rgb(rgb, p, weight, prior, blur, *args)
        solved[id(lat)] = blur
        return lat

    def gamma_rings(lat, *args, **kwargs):
        if solved.get(id(lat)) == "gamma":
            return "made to ring in this test"
        return ringing(lat, *args, **kwargs)

    monkeypatch.setattr(kd, "_deconvolve_rgb", recording_solve)
    monkeypatch.setattr(kd, "ringing", gamma_rings)
    res = run(decompose_iter(shaken_in_light))
    assert res.applied == [False], res.notes
    assert "rings (made to ring in this test)" in res.notes[0]
    assert np.array_equal(np.asarray(res.frames)[3], shaken_in_light)


@pytest.mark.parametrize(
    "values_px, light_verdict, taken",
    [
        (8.0, ("gamma", 1.2), "light"),  # the values' estimate collapsed: under half the light's
        (20.0, ("gamma", 1.2), "values"),  # both plausible, the light's test says gamma
        (20.0, ("linear", 0.99), "values"),  # light, but not clearly enough against gamma
        (20.0, ("linear", 0.9), "light"),  # clearly light
        (None, ("gamma", 1.2), None),  # the values' failed and the light's says gamma
    ],
)
def test_the_choice_between_the_values_and_the_lights_estimate(
    monkeypatch, sharp, values_px, light_verdict, taken
):
    """Which estimate a region keeps, with the two estimates and the blur tests made up (the
    real ones are exercised above): the rule of _estimate_on_values_or_light."""
    import napari_afb.kernel.decompose as kd

    light_path = BlurPath([[100, 100], [130, 100]])  # 30 px
    values_path = None if values_px is None else BlurPath([[100, 100], [100 + values_px, 100]])
    calls = iter([[(None, values_path, "values failed")], [(None, light_path, "")]])

    def made_up_estimate(rgb, labels, bound, cancel):
        return next(calls)
        yield  # a generator, like the real one

    def made_up_test(rgb, path, *args, **kwargs):
        return light_verdict if path is light_path else ("gamma", 1.5)

    monkeypatch.setattr(kd, "_estimate_each_region", made_up_estimate)
    monkeypatch.setattr(kd, "choose_blur", made_up_test)
    monkeypatch.setattr(kd, "auto_strength", lambda *args: 1000.0)
    paths, notes, verdicts = run(
        kd._estimate_on_values_or_light(sharp, None, 51, "auto", "auto", "hyper-laplacian", None)
    )
    expected = {"light": [light_path], "values": [values_path], None: []}[taken]
    assert paths == expected
    if taken == "light":
        assert verdicts == [(1000.0, light_verdict[0])]
    if taken is None:
        assert notes == ["values failed"]


def test_a_painted_region_whose_estimate_fails_keeps_the_input():
    """Two painted regions: the left half blurred along a 20 px path, the right half sharp
    (its estimate finds no blur). The right half must keep the input, not borrow the left
    half's path (which deblurs a sharp image into echoes)."""
    img = data.astronaut()[64:448, 64:448].astype(np.float32) / 255
    blurred = blur_along(img, BlurPath([[100, 200], [120, 190]]))  # right and a little up
    image = img.copy()
    image[:, :192] = blurred[:, :192]
    labels = np.full(img.shape[:2], 2, np.uint8)  # left-up: not the left half's direction
    labels[:, :192] = 1  # right-up
    res = run(decompose_iter(image, labels, kernel_bound=31))
    assert res.applied == [True], (res.notes, res.applied)  # the left half got its path
    assert res.paths[0].points[:, 0].max() < 192
    right = np.s_[:, 220:]  # past the soft edge between the regions
    assert all(np.allclose(f[right], image[right], atol=1e-6) for f in res.frames)
    assert not np.allclose(res.frames[0][:, :180], image[:, :180], atol=0.02)


def test_an_estimate_that_runs_into_the_kernel_bound_is_not_trusted(sharp):
    """A 16 px blur looked for with a bound of 17 px: the estimate fills the bound, so the
    engine keeps the input and asks for a larger bound; with the bound at 2x it deblurs."""
    blurry = blur_along(sharp, BlurPath([[100, 100], [114, 108]]))
    res = run(decompose_iter(blurry, kernel_bound=17))
    assert res.applied == [] and any("close to the kernel bound of 17 px" in n for n in res.notes)
    assert all(np.array_equal(f, blurry) for f in res.frames)
    res = run(decompose_iter(blurry, kernel_bound=31))
    assert res.applied == [True] and 12 < res.paths[0].extent() < 20, res.notes
