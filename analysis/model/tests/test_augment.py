import math

import numpy as np
import pytest
import torch

from otomodel.augment import (AugmentConfig, ChunkSampler, extract_chunk, intensity_augment, random_rotation,
                              rot90_matrix, rotation_matrix)
from otomodel.data import Case, Normalization
from otomodel.losses import gaussian_heatmaps


def _case(shape=(30, 28, 26), point=(14.0, 12.0, 15.0), seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=shape).astype(np.float32)
    idx = np.indices(shape).astype(np.float64)
    d = np.sqrt(sum((idx[a] - point[a]) ** 2 for a in range(3)))
    img += 50.0 * np.exp(-d ** 2 / 8.0).astype(np.float32)   # a bright spot at the landmark
    lab = (d <= 5).astype(np.uint8)
    return Case("t", img, lab, np.asarray([point]), np.array([1]), 0.1, 1)


def test_identity_chunk_is_an_exact_crop_with_padding():
    c = _case()
    img, lab, pts = extract_chunk(c, np.array([-2, 3, 20]), (8, 8, 8), np.eye(3), fill=-7.0)
    ref = c.image[0:6, 3:11, 20:26]
    assert np.array_equal(img[2:, :, :6].numpy(), ref)
    assert float(img[0, 0, 0]) == -7.0 and float(img[3, 0, 7]) == -7.0
    assert np.allclose(pts, np.asarray(c.points) - [-2, 3, 20])


@pytest.mark.parametrize("axis,k", [(0, 1), (1, 2), (2, 3)])
def test_rot90_chunk_is_exact(axis, k):
    c = _case()
    o = np.array([4, 5, 6])
    img, lab, pts = extract_chunk(c, o, (12, 12, 12), rot90_matrix(axis, k), fill=0.0)
    ref = c.image[4:16, 5:17, 6:18]
    matches = [np.allclose(np.rot90(ref, kk, axes=ax), img.numpy(), atol=1e-5)
               for kk in (1, 2, 3) for ax in [(0, 1), (1, 2), (0, 2)]]
    assert sum(matches) >= 1
    # The landmark moved with the data: the bright spot sits at the new point.
    p = np.rint(pts[0]).astype(int)
    assert np.unravel_index(int(img.argmax()), img.shape) == tuple(p)


@pytest.mark.parametrize("seed", range(6))
def test_free_rotation_moves_landmark_with_image(seed):
    rng = np.random.default_rng(seed)
    c = _case()
    R = rotation_matrix(int(rng.integers(3)), math.radians(rng.uniform(-45, 45))) @ rot90_matrix(
        int(rng.integers(3)), int(rng.integers(4)))
    img, lab, pts = extract_chunk(c, np.array([6, 4, 7]), (16, 16, 16), R, fill=0.0)
    peak = np.array(np.unravel_index(int(img.argmax()), img.shape))
    assert np.linalg.norm(peak - pts[0]) <= 1.0, (peak, pts[0])
    assert set(np.unique(lab.numpy())) <= {0.0, 1.0}
    assert lab[tuple(peak)] == 1.0


def test_rotations_are_rotations():
    rng = np.random.default_rng(1)
    for _ in range(50):
        R = random_rotation(rng, AugmentConfig())
        assert np.allclose(R @ R.T, np.eye(3)) and np.linalg.det(R) == pytest.approx(1.0)
    assert np.array_equal(random_rotation(rng, AugmentConfig(enabled=False)), np.eye(3))


def test_intensity_augment_changes_only_when_enabled():
    x = torch.randn(8, 8, 8)
    rng = np.random.default_rng(0)
    assert torch.equal(intensity_augment(x, rng, AugmentConfig(enabled=False)), x)
    cfg = AugmentConfig(p_contrast=1.0, p_gauss=1.0, p_poisson=1.0)
    y = intensity_augment(x, rng, cfg)
    assert y.shape == x.shape and not torch.allclose(x, y) and torch.isfinite(y).all()


def test_sampler_prefers_foreground_and_keeps_points():
    c = _case(shape=(60, 60, 60), point=(30.0, 30.0, 30.0))
    norm = Normalization(clip_low=-3, clip_high=60, mean=0.0, std=2.0)
    s = ChunkSampler([c], norm, (16, 16, 16), np.random.default_rng(0), AugmentConfig(), p_foreground=1.0)
    img, lab, pts, ch = s.batch(6)
    assert img.shape == (6, 1, 16, 16, 16) and lab.shape == img.shape
    assert pts.shape == (6, 6, 3) and ch.shape == (6, 6)
    assert (ch[:, 0] == 1).all() and (ch[:, 1:] == -1).all()
    assert float(lab.mean()) > 0.02   # foreground-biased chunks see the structure
    # The heatmap built from the moved point peaks where the bright spot is.
    for n in range(6):
        p = pts[n, 0]
        if (p >= 0).all() and (p <= 15).all():
            h = gaussian_heatmaps((16, 16, 16), pts[n], ch[n], 3, 1.0, 2.0)[1]
            hp = np.array(np.unravel_index(int(h.argmax()), h.shape))
            assert np.linalg.norm(hp - p.numpy()) <= 0.87


def _case_with_confuser(shape=(40, 40, 40)):
    """A fluid ball (the labyrinth) in bone, and a fluid-density slab far from
    it that is not labelled (a nerve canal, say)."""
    rng = np.random.default_rng(3)
    img = (1400.0 + rng.normal(0, 20, shape)).astype(np.float32)
    idx = np.indices(shape).astype(np.float64)
    d = np.sqrt(sum((idx[a] - 10.0) ** 2 for a in range(3)))
    lab = (d <= 5).astype(np.uint8)
    img[lab > 0] = 20.0 + rng.normal(0, 20, int(lab.sum()))
    img[30:36, 25:38, 25:38] = 20.0 + rng.normal(0, 20, (6, 13, 13))
    return Case("c", img, lab, np.asarray([[10.0, 10.0, 10.0]]), np.array([0]), 0.1, 1)


def test_hard_negatives_are_unlabelled_voxels_of_the_fluid_density():
    from otomodel.augment import hard_negative_sample

    c = _case_with_confuser()
    h = hard_negative_sample(c)
    assert len(h) > 100
    assert (c.label[tuple(h.T)] == 0).all()
    # All of them in the slab: bone is far outside the fluid's intensity range.
    assert (h[:, 0] >= 30).all() and (h[:, 0] < 36).all()
    empty = Case("n", c.image, np.zeros_like(c.label), np.zeros((0, 3)), np.zeros(0, np.int64), 0.1, 0)
    assert len(hard_negative_sample(empty)) == 0


def test_sampler_hard_chunks_see_the_confuser():
    c = _case_with_confuser()
    norm = Normalization(clip_low=-100, clip_high=1500, mean=700.0, std=700.0)
    s = ChunkSampler([c], norm, (16, 16, 16), np.random.default_rng(0), AugmentConfig(enabled=False),
                     p_foreground=0.0, p_hard=1.0)
    img, lab, _, _ = s.batch(8)
    fluid = (img < (200.0 - 700.0) / 700.0).float().mean(dim=(1, 2, 3, 4))
    assert (fluid > 0.02).all(), fluid
    assert float(lab.sum()) == 0.0  # the ball is far from every hard chunk
    with pytest.raises(ValueError):
        ChunkSampler([c], norm, (16, 16, 16), np.random.default_rng(0), p_foreground=0.8, p_hard=0.3)
