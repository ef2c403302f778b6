"""The decomposer network: shapes, cost budget, identity start, blur consistency, registry."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_ARGS, perturbed_model
from torch.utils.flop_counter import FlopCounterMode

from napari_afb import models
from napari_afb.models.decomposer import project_blur_consistent, warp
from napari_afb.models.layers import linear_to_srgb, srgb_to_linear


def _inputs(b=2, h=32, w=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 3, h, w, generator=gen)
    labels = torch.randint(0, 5, (b, h, w), generator=gen)
    return image, torch.nn.functional.one_hot(labels, 5).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("n_frames", [2, 5, 7, 9])
def test_output_shape_and_range(n_frames):
    model = perturbed_model(0, n_frames=n_frames)
    image, guidance = _inputs()
    with torch.no_grad():
        out = model(image, guidance)
    assert out.shape == (2, n_frames, 3, 32, 48)
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_default_architecture_is_within_budget():
    """Issue budget: at most 0.5 MMAC per output pixel at N=7 and 15 M parameters (the reference:
    about 10 MMAC/px and 129 M)."""
    model = models.build("motion_unet").eval()
    assert model.n_frames == 7
    params = sum(p.numel() for p in model.parameters())
    image, guidance = _inputs(b=1, h=128, w=128)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image, guidance)
    macs_per_pixel = counter.get_total_flops() / 2 / (128 * 128)
    assert params <= 15e6, params
    assert macs_per_pixel <= 0.5e6, macs_per_pixel
    assert macs_per_pixel > 0.1e6  # the counter saw the convolutions


def test_untrained_network_returns_copies_of_its_input():
    torch.manual_seed(0)
    model = models.build("motion_unet", **SMALL_ARGS).eval()
    image, guidance = _inputs()
    with torch.no_grad():
        out = model(image, guidance)
    assert torch.allclose(out, image[:, None].expand_as(out), atol=1e-5)


def test_frames_average_back_to_the_input_in_linear_light():
    model = perturbed_model(1)
    image, guidance = _inputs(seed=3)
    image[..., :4, :4] = 0.0  # black and white corners: the projection must stay in range there
    image[..., -4:, -4:] = 1.0
    with torch.no_grad():
        out = model(image, guidance)
    assert (out - image[:, None]).abs().mean() > 0.05  # the frames really differ from the input
    reblur = linear_to_srgb(srgb_to_linear(out).mean(dim=1))
    assert float((reblur - image).abs().max()) < 1e-4
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_blur_consistency_can_be_switched_off():
    model = perturbed_model(1, blur_consistent=False)
    image, guidance = _inputs(seed=3)
    with torch.no_grad():
        out = model(image, guidance)
    reblur = linear_to_srgb(srgb_to_linear(out).mean(dim=1))
    assert float((reblur - image).abs().max()) > 1e-2


def test_projection_is_exact_for_any_frames():
    gen = torch.Generator().manual_seed(5)
    frames = 0.2 + 0.6 * torch.rand(1, 7, 3, 8, 8, generator=gen)
    image = 0.3 + 0.4 * torch.rand(1, 3, 8, 8, generator=gen)
    out = project_blur_consistent(frames, image)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(out).mean(1)), image, atol=1e-5)


def test_guidance_changes_the_frames():
    model = perturbed_model(2)
    image, guidance = _inputs()
    with torch.no_grad():
        a = model(image, guidance)
        b = model(image, guidance.flip(1))
    assert (a - b).abs().mean() > 1e-3


def test_warp_moves_content_by_whole_pixels():
    image = torch.arange(5 * 6, dtype=torch.float32).view(1, 1, 5, 6)
    motion = torch.zeros(1, 2, 2, 5, 6)
    motion[0, 0, 0] = 2.0  # frame 0 samples two pixels to the right
    motion[0, 1, 1] = -1.0  # frame 1 samples one pixel up
    out = warp(image, motion)
    assert torch.allclose(out[0, 0, 0, :, :4], image[0, 0, :, 2:])
    assert torch.allclose(out[0, 1, 0, 1:], image[0, 0, :-1])


def test_size_must_match_the_stride():
    model = perturbed_model(0)
    image, guidance = _inputs(h=30, w=48)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(image, guidance)


def test_registry_names_and_errors():
    assert models.role_of("motion_unet") == "decomposer"
    assert models.role_of("guidance_net") == "predictor"
    with pytest.raises(
        ValueError, match="known: guidance_net, motion_deconv, motion_refine, motion_unet"
    ):
        models.build("resnet9000")
    with pytest.raises(ValueError, match="bad arguments"):
        models.build("motion_unet", depth=3)
    with pytest.raises(ValueError, match="one encoder entry per width"):
        models.build("motion_unet", widths=[8, 16], enc_blocks=[1], dec_blocks=[1])
    with pytest.raises(ValueError, match="one encoder entry per width"):
        models.build("guidance_net", widths=[8, 16], enc_blocks=[1], dec_blocks=[1])


def test_predictor_budget_and_shapes():
    """Issue budget: at most 0.5 MMAC per pixel (measured 0.117 at the default widths), and the
    output is 3 axis logits + 1 sign logit per pixel."""
    model = models.build("guidance_net")
    x = torch.rand(1, 3, 128, 128)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    assert out.shape == (1, 4, 128, 128)
    macs_per_pixel = counter.get_total_flops() / 2 / (128 * 128)
    assert macs_per_pixel <= 0.5e6, macs_per_pixel
    assert sum(p.numel() for p in model.parameters()) < 5e6


def test_a_fresh_network_leaves_identity_when_trained():
    """Zero-initialised heads must not trap training: on a real photo moving one pixel per
    frame, the velocity channels get gradients and ten Adam steps lower the loss."""
    from skimage import data
    from skimage.transform import resize

    torch.manual_seed(0)
    model = models.build("motion_unet", **SMALL_ARGS)
    photo = resize(data.astronaut()[100:260, 150:390], (40, 56), anti_aliasing=True)
    sharp = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    frames = torch.stack([torch.roll(sharp, shifts=t - 3, dims=3) for t in range(7)], dim=1)
    frames = frames[..., 4:-4, 4:-4]  # crop the wrapped-around columns: (1, 7, 3, 32, 48)
    lin = srgb_to_linear(frames).mean(1)
    blurry = linear_to_srgb(lin)
    guidance = torch.zeros(1, 5, 32, 48)
    guidance[:, 1] = 1.0  # pure rightward motion is right-up (1) by the tie rule
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for step in range(10):
        opt.zero_grad()
        loss = (model(blurry, guidance) - frames).abs().mean()
        loss.backward()
        if step == 0:
            assert float(model.head.weight.grad[:2].abs().sum()) > 1e-4  # velocity learns
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.97 * losses[0], losses
