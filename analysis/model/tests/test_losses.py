import numpy as np
import pytest
import torch

from otomodel.losses import (HeatmapSchedule, batch_heatmaps, deep_supervision_weights, downsample_targets,
                             gaussian_heatmaps, rotation_consistency, segmentation_loss, soft_dice_loss, total_loss,
                             trapezoid_lr)
from otomodel.network import BiHeadedUNet, NetworkConfig


def test_soft_dice_perfect_and_wrong():
    t = torch.zeros(1, 1, 8, 8, 8)
    t[..., 2:6, 2:6, 2:6] = 1
    good = (t * 2 - 1) * 50  # confident and right
    assert float(soft_dice_loss(good, t)) < 1e-3
    assert float(soft_dice_loss(-good, t)) > 0.99
    l_good, parts = segmentation_loss(good, t)
    l_bad, _ = segmentation_loss(-good, t)
    assert float(l_good) < 0.01 < 1.0 < float(l_bad)
    assert set(parts) == {"bce", "dice_loss"}


def test_gaussian_heatmaps_peak_amplitude_and_padding():
    pts = torch.tensor([[3.0, 4.0, 5.0], [10.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    ch = torch.tensor([0, 2, -1])
    h = gaussian_heatmaps((8, 9, 10), pts, ch, 3, amplitude=7.0, sigma=1.5)
    assert h.shape == (3, 8, 9, 10)
    assert np.unravel_index(int(h[0].argmax()), h[0].shape) == (3, 4, 5)
    assert abs(float(h[0].max()) - 7.0) < 1e-5
    assert float(h[1].abs().max()) == 0.0          # no point for channel 1
    assert 0 < float(h[2].max()) < 7.0 * np.exp(-9 / (2 * 1.5 ** 2)) + 1e-6  # point outside the chunk
    # Two ears on one channel: both peaks present.
    pts2 = torch.tensor([[1.0, 1.0, 1.0], [6.0, 7.0, 8.0]])
    h2 = gaussian_heatmaps((8, 9, 10), pts2, torch.tensor([1, 1]), 3, 1.0, 1.0)
    assert abs(float(h2[1, 1, 1, 1]) - 1) < 1e-6 and abs(float(h2[1, 6, 7, 8]) - 1) < 1e-6
    hb = batch_heatmaps((8, 9, 10), pts[None], ch[None], 3, 7.0, 1.5)
    assert torch.equal(hb[0], h)


def test_schedule_raises_amplitude_and_narrows():
    s = HeatmapSchedule()
    prev = s.at(0, 1000)
    for it in range(0, 1001, 50):
        a, sg = s.at(it, 1000)
        assert a >= prev[0] and sg <= prev[1]
        prev = (a, sg)
    assert s.at(0, 1000) != s.at(999, 1000)
    with pytest.raises(ValueError):
        HeatmapSchedule(milestones=(0.0, 0.5), amplitudes=(1.0,), sigmas=(2.0, 1.0))


def test_trapezoid_lr():
    lrs = [trapezoid_lr(s, 100, 1.0, warmup=0.1, anneal=0.3, floor=0.01) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x == 1.0 for x in lrs[10:70])
    assert lrs[70] == pytest.approx(1.0) and lrs[99] < 0.05
    assert all(a >= b for a, b in zip(lrs[70:], lrs[71:]))


def test_deep_supervision_targets_and_weights():
    w = deep_supervision_weights(4)
    assert sum(w) == pytest.approx(1.0) and w[0] > w[1] > w[2] > w[3]
    seg = torch.zeros(1, 1, 8, 8, 8)
    seg[..., :4, :4, :4] = 1
    heat = torch.zeros(1, 3, 8, 8, 8)
    heat[0, 1, 5, 5, 5] = 9.0
    segs, heats = downsample_targets(seg, heat, 3)
    assert [s.shape[-1] for s in segs] == [8, 4, 2]
    assert float(segs[2][0, 0, 0, 0, 0]) == 1.0 and float(segs[2][0, 0, 1, 1, 1]) == 0.0
    assert float(heats[2].max()) == 9.0  # max pooling keeps the peak


def test_loss_decreases_on_tiny_phantom():
    """A few optimiser steps on one fixed blob-and-points volume must lower the loss."""
    torch.manual_seed(0)
    n = 16
    idx = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32)] * 3, indexing="ij"))
    d = ((idx - torch.tensor([8.0, 7.0, 9.0]).view(3, 1, 1, 1)) ** 2).sum(0).sqrt()
    lab = (d <= 4).float()[None, None]
    img = (1.0 - 2.0 * lab) + 0.1 * torch.randn(1, 1, n, n, n)
    pts = torch.tensor([[[8.0, 7.0, 12.0], [11.0, 7.0, 9.0], [8.0, 4.0, 9.0]]])
    heat = batch_heatmaps((n,) * 3, pts, torch.tensor([[0, 1, 2]]), 3, amplitude=10.0, sigma=2.0)
    net = BiHeadedUNet(NetworkConfig(widths=(8, 16, 16), activation="mish"))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.025)
    losses = []
    for _ in range(25):
        seg_o, heat_o = net(img, deep=True)
        loss, parts = total_loss(seg_o, heat_o, lab, heat)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["loss"])
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("k,dims", [(1, (0, 1)), (2, (0, 2)), (3, (1, 2))])
def test_rotation_consistency_is_zero_for_an_equivariant_output(k, dims):
    torch.manual_seed(3)
    a = torch.randn(2, 1, 6, 6, 6) * 3
    b = torch.rot90(a, k, (dims[0] + 2, dims[1] + 2))  # what a rotation-equivariant network gives
    assert float(rotation_consistency(a, b, k, dims)) < 1e-12
    # The same output without rotating it: a network that ignores the rotation.
    assert float(rotation_consistency(a, a, k, dims)) > 1e-3
