import numpy as np
import pytest
import torch

from otomodel.infer import (dilate_ball, flag_threshold, landmarks_from_heatmaps, sliding_window, tta,
                            uncertainty_score)


def _pointwise(x):
    """An exactly rotation-equivariant 'model': outputs depend on each voxel only."""
    return 2.0 * x - 1.0, torch.cat([x, x * x, -x], dim=1)


def _ramp(x):
    """Not equivariant: adds a ramp along the first axis."""
    r = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1)
    return x + 0.2 * r, x.repeat(1, 3, 1, 1, 1)


@pytest.mark.parametrize("shape,window,overlap", [((20, 17, 9), (8, 8, 8), 3), ((5, 6, 7), (8, 8, 8), 2)])
def test_sliding_window_covers_everything_once(shape, window, overlap):
    x = torch.randn(*shape)
    seg, heat = sliding_window(_pointwise, x, window, overlap, multiple=4, fill=-5.0)
    assert seg.shape == shape and heat.shape == (3, *shape)
    assert torch.allclose(seg, 2 * x - 1, atol=1e-6) and torch.allclose(heat[1], x * x, atol=1e-6)


def test_tta_undoes_rotations():
    x = torch.randn(8, 8, 8)
    out = tta(_pointwise, x, (8, 8, 8), 0)
    assert torch.allclose(out["prob"], torch.sigmoid(2 * x - 1), atol=1e-6)
    assert float(out["std"].max()) < 1e-6
    assert torch.allclose(out["heatmaps"][0], x, atol=1e-6)
    spread = tta(_ramp, x, (8, 8, 8), 0)
    assert float(spread["std"].mean()) > 0.01


def test_uncertainty_score_region_and_margin():
    prob = torch.zeros(20, 20, 20)
    prob[8:12, 8:12, 8:12] = 0.9
    std = torch.zeros(20, 20, 20)
    std[0, 0, 0] = 1.0        # far away: must not count
    std[8, 8, 8] = 0.64       # inside the structure
    s0 = uncertainty_score(prob, std, 0.5, 0.0, 0.1)
    assert s0 == pytest.approx(0.64 / 64)
    s1 = uncertainty_score(prob, std, 0.5, 0.1, 0.1)   # margin of 1 voxel: the cube and its 6 faces
    assert s1 == pytest.approx(0.64 / (64 + 6 * 16))
    assert uncertainty_score(torch.zeros(4, 4, 4), torch.ones(4, 4, 4), 0.5, 1.0, 0.1) == 0.0
    # A ball, not a cube: a point grows to the 7-voxel cross at r = 1, 19 voxels at sqrt(2), 27 at sqrt(3).
    pt = torch.zeros(9, 9, 9, dtype=torch.bool)
    pt[4, 4, 4] = True
    assert [int(dilate_ball(pt, r).sum()) for r in (0.5, 1.0, 2 ** 0.5, 3 ** 0.5)] == [1, 7, 19, 27]
    # The Go pipeline's region for r = 2: every offset with squared length <= 4 (33 voxels).
    assert int(dilate_ball(pt, 2.0).sum()) == 33


def test_landmarks_and_threshold():
    h = torch.zeros(3, 5, 6, 7)
    h[0, 1, 2, 3] = 1
    h[1, 4, 5, 6] = 2
    h[2, 0, 0, 1] = 3
    assert landmarks_from_heatmaps(h).tolist() == [[1, 2, 3], [4, 5, 6], [0, 0, 1]]
    assert flag_threshold([1e-3, 2e-3, 3e-3]) == pytest.approx(6e-3)
    assert flag_threshold([1e-3, 1e-3, 1e-2]) == pytest.approx(1.2e-2)
    assert flag_threshold([]) is None
