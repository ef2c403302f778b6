"""The guidance label convention and its transformation rules (ARCHITECTURE.md, contracts)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_afb import guidance as G
from napari_afb.guidance import Augmentation, guidance_from_flow

augmentations = st.builds(
    Augmentation, st.booleans(), st.booleans(), st.integers(0, 3), st.booleans()
)
small_shapes = st.tuples(st.integers(1, 6), st.integers(1, 6))


def flows(shape, tie_free=False):
    """Flow fields in px/step. tie_free: at each pixel both components are at or above the
    default threshold, or both below (no axis-aligned motion, where the tie rule applies)."""
    elements = st.floats(-5, 5, allow_nan=False, width=32)
    arr = arrays(np.float32, (*shape, 2), elements=elements)
    return arr.map(_drop_ties) if tie_free else arr


def _drop_ties(f: np.ndarray) -> np.ndarray:
    f = f.copy()
    small = np.abs(f) < G.VIDEO_THRESHOLD
    f[small.any(-1) & ~small.all(-1)] = 0.0
    return f


def test_table_of_the_contract():
    flow = np.array(
        [[[1, -1], [-1, -1], [-1, 1], [1, 1], [0, 0]]],
        dtype=np.float32,
    )
    assert guidance_from_flow(flow).tolist() == [[1, 2, 3, 4, 0]]
    assert G.NAMES == ("static", "right-up", "left-up", "left-down", "right-down")
    assert G.VECTORS.tolist() == [[0, 0], [1, -1], [-1, -1], [-1, 1], [1, 1]]
    assert G.COLORS[0][3] == 0.0  # static is transparent
    assert G.COLORS[1][:3] == (1.0, 0.0, 0.0)  # red
    assert G.COLORS[4][2] > G.COLORS[4][0]  # blue


def test_tie_breaking_and_threshold():
    flow = np.array(
        [[[0, 2], [0, -2], [2, 0], [-2, 0], [0.49, 0.49], [0.5, 0.1], [-0.1, -0.5]]],
        dtype=np.float32,
    )
    assert guidance_from_flow(flow).tolist() == [[4, 2, 1, 3, 0, 1, 2]]
    assert guidance_from_flow(flow, threshold=0.2)[0, 4] == 4
    assert guidance_from_flow(flow, threshold=G.TRAINING_THRESHOLD)[0, 5] == 1


def test_guidance_from_flow_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        guidance_from_flow(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        guidance_from_flow(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="threshold"):
        guidance_from_flow(np.zeros((2, 2, 2)), threshold=-1)


def test_check_guidance_messages():
    assert G.check_guidance(np.ones((3, 4), np.int64)).dtype == np.uint8
    assert G.check_guidance(np.ones((3, 4, 1), np.float32)).shape == (3, 4)
    with pytest.raises(ValueError, match="does not match"):
        G.check_guidance(np.zeros((3, 4)), shape=(4, 3))
    with pytest.raises(ValueError, match=r"0-4, found \[5\]"):
        G.check_guidance(np.full((2, 2), 5))
    with pytest.raises(ValueError, match="non-integer"):
        G.check_guidance(np.full((2, 2), 1.5))
    with pytest.raises(ValueError, match="2-D"):
        G.check_guidance(np.zeros((2, 2, 2)))
    with pytest.raises(TypeError):
        G.check_guidance(np.zeros((2, 2), bool))


def test_names_and_arrows():
    assert G.label_from_name("right-down") == 4
    assert G.label_from_name("Left Up") == 2
    assert G.label_from_name("\u2197") == 1
    assert G.label_from_name(3) == 3
    with pytest.raises(ValueError, match="unknown direction"):
        G.label_from_name("sideways")


def test_vectors_and_one_hot_round_trip():
    labels = np.arange(5, dtype=np.uint8).reshape(1, 5)
    assert np.array_equal(G.vectors_to_labels(G.labels_to_vectors(labels)), labels)
    oh = G.one_hot(labels)
    assert oh.shape == (5, 1, 5) and np.array_equal(oh.argmax(0), labels)
    assert np.all(oh.sum(0) == 1)


@pytest.mark.parametrize(
    ("aug", "expected"),
    [
        (Augmentation(reverse=True), [0, 3, 4, 1, 2]),  # 1 <-> 3, 2 <-> 4
        (Augmentation(flip_x=True), [0, 2, 1, 4, 3]),  # sx negated
        (Augmentation(flip_y=True), [0, 4, 3, 2, 1]),  # sy negated
        (Augmentation(rot90=1), [0, 2, 3, 4, 1]),  # counter-clockwise: right-up -> left-up
        (Augmentation(rot90=2), [0, 3, 4, 1, 2]),  # half turn = time reversal of labels
    ],
)
def test_label_permutations_match_the_contract(aug, expected):
    got = [aug.apply_guidance(np.array([[label]], np.uint8)).item() for label in range(5)]
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(data=st.data(), shape=small_shapes)
def test_reversing_twice_is_identity(data, shape):
    labels = data.draw(arrays(np.uint8, shape, elements=st.integers(0, 4)))
    rev = Augmentation(reverse=True)
    assert np.array_equal(rev.apply_guidance(rev.apply_guidance(labels)), labels)
    frames = data.draw(arrays(np.uint8, (3, *shape), elements=st.integers(0, 255)))
    assert np.array_equal(rev.apply_frames(rev.apply_frames(frames)), frames)


@settings(max_examples=80, deadline=None)
@given(aug=augmentations, data=st.data(), shape=small_shapes)
def test_inverse_undoes_every_modality(aug, data, shape):
    inv = aug.inverse()
    image = data.draw(arrays(np.uint8, (*shape, 3), elements=st.integers(0, 255)))
    frames = data.draw(arrays(np.uint8, (4, *shape, 3), elements=st.integers(0, 255)))
    labels = data.draw(arrays(np.uint8, shape, elements=st.integers(0, 4)))
    flow = data.draw(flows(shape))
    assert np.array_equal(inv.apply_image(aug.apply_image(image)), image)
    assert np.array_equal(inv.apply_frames(aug.apply_frames(frames)), frames)
    assert np.array_equal(inv.apply_guidance(aug.apply_guidance(labels)), labels)
    assert np.allclose(inv.apply_flow(aug.apply_flow(flow)), flow)


@settings(max_examples=100, deadline=None)
@given(aug=augmentations, data=st.data(), shape=small_shapes)
def test_transforming_labels_commutes_with_labels_of_transformed_flow(aug, data, shape):
    """Away from axis-aligned motion (where the tie rule is a convention), transforming the
    guidance equals computing guidance from the transformed flow, for every augmentation."""
    flow = data.draw(flows(shape, tie_free=True))
    direct = guidance_from_flow(aug.apply_flow(flow))
    assert np.array_equal(aug.apply_guidance(guidance_from_flow(flow)), direct)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, 3), reverse=st.booleans(), data=st.data(), shape=small_shapes)
def test_rotation_and_reversal_commute_even_with_ties(k, reverse, data, shape):
    flow = data.draw(flows(shape))  # includes axis-aligned and sub-threshold components
    aug = Augmentation(rot90=k, reverse=reverse)
    assert np.array_equal(
        aug.apply_guidance(guidance_from_flow(flow)), guidance_from_flow(aug.apply_flow(flow))
    )


def test_flip_of_axis_aligned_motion_keeps_the_sign_along_the_axis():
    """Documented limit: flipping pure downward motion (label 4 by the tie rule) left-right
    relabels it left-down (3), while the flipped flow is still pure downward (4). Both agree on
    the sign along the motion's axis (sy = +1), which is what orders the frames."""
    flow = np.array([[[0.0, 2.0]]], dtype=np.float32)
    aug = Augmentation(flip_x=True)
    flipped_labels = aug.apply_guidance(guidance_from_flow(flow))
    labels_of_flipped = guidance_from_flow(aug.apply_flow(flow))
    assert flipped_labels.item() == 3 and labels_of_flipped.item() == 4
    assert G.VECTORS[3][1] == G.VECTORS[4][1] == 1


def test_image_and_guidance_move_together():
    """A marked pixel and its label land on the same place under any augmentation."""
    image = np.zeros((5, 7, 3), np.uint8)
    image[1, 5] = 255
    labels = np.zeros((5, 7), np.uint8)
    labels[1, 5] = 1
    for aug in [
        Augmentation(a, b, k, r) for a in (0, 1) for b in (0, 1) for k in range(4) for r in (0, 1)
    ]:
        im = aug.apply_image(image)
        lab = aug.apply_guidance(labels)
        assert np.array_equal(np.argwhere(im[..., 0]), np.argwhere(lab))
