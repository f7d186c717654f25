"""Losses: BCE + soft Dice for segmentation, MSE against Gaussian heatmaps,
deep-supervision weighting, and the heatmap amplitude/spread schedule."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the whole batch ("batch Dice"): chunks without
    foreground then do not produce a meaningless 0/0 term each."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    denom = p.sum() + target.sum()
    return 1.0 - (2.0 * inter + eps) / (denom + eps)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
    bce = F.binary_cross_entropy_with_logits(logits, target)
    dice = soft_dice_loss(logits, target)
    return bce + dice, {"bce": float(bce.detach()), "dice_loss": float(dice.detach())}


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def rotation_consistency(seg_a: torch.Tensor, seg_b: torch.Tensor, k: int, dims: Tuple[int, int]) -> torch.Tensor:
    """Mean squared difference of the segmentation probabilities of a batch
    (seg_a, logits NCDHW) and of the same batch rotated by k quarter turns in
    the spatial plane dims (seg_b, logits, rotated back here). The analysis's
    uncertainty score is the spread of these probabilities over the TTA
    rotations; on normal anatomy that spread is the score's floor, and this
    term trains it down."""
    back = torch.rot90(torch.sigmoid(seg_b), -k, (dims[0] + 2, dims[1] + 2))
    return F.mse_loss(torch.sigmoid(seg_a), back)


def deep_supervision_weights(n: int) -> List[float]:
    """1, 1/2, 1/4, ... normalised to sum 1 (full resolution first)."""
    w = [0.5 ** i for i in range(n)]
    s = sum(w)
    return [x / s for x in w]


def downsample_targets(seg: torch.Tensor, heat: torch.Tensor, levels: int):
    """Targets for the deep-supervision terminals: the segmentation as the
    foreground fraction of each coarse voxel (soft label), the heatmaps by max
    pooling so that a peak keeps its amplitude."""
    segs, heats = [seg], [heat]
    for _ in range(1, levels):
        segs.append(F.avg_pool3d(segs[-1], 2))
        heats.append(F.max_pool3d(heats[-1], 2))
    return segs, heats


def total_loss(seg_out: Sequence[torch.Tensor], heat_out: Sequence[torch.Tensor],
               seg_t: torch.Tensor, heat_t: torch.Tensor,
               heatmap_weight: float = 1.0) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Loss of Eq. (1) without the weight-decay term (AdamW applies that).

    seg_out/heat_out are lists (deep supervision, full resolution first) or
    single tensors."""
    if isinstance(seg_out, torch.Tensor):
        seg_out, heat_out = [seg_out], [heat_out]
    n = len(seg_out)
    ws = deep_supervision_weights(n)
    segs, heats = downsample_targets(seg_t, heat_t, n)
    total = seg_t.new_zeros(())
    parts: Dict[str, float] = {}
    for i, (w, so, ho, st, ht) in enumerate(zip(ws, seg_out, heat_out, segs, heats)):
        ls, p = segmentation_loss(so, st)
        lh = heatmap_loss(ho, ht)
        total = total + w * (ls + heatmap_weight * lh)
        if i == 0:
            parts.update(p)
            parts["mse"] = float(lh.detach())
    parts["loss"] = float(total.detach())
    return total, parts


@dataclasses.dataclass
class HeatmapSchedule:
    """Piecewise-constant schedule of the Gaussian target's amplitude and
    spread (sigma, in voxels), as fractions of the run: the amplitude rises
    and the spread narrows during training. The paper's exact sequence
    ("protocol gamma") is in its supplement, which we do not have; these
    values are ours and are recorded in the manifest."""

    milestones: Tuple[float, ...] = (0.0, 0.2, 0.45, 0.7)
    amplitudes: Tuple[float, ...] = (10.0, 25.0, 50.0, 100.0)
    sigmas: Tuple[float, ...] = (6.0, 4.0, 3.0, 2.0)

    def __post_init__(self):
        if not (len(self.milestones) == len(self.amplitudes) == len(self.sigmas)) or not self.milestones:
            raise ValueError("heatmap schedule: milestones, amplitudes and sigmas must have the same length")
        if list(self.milestones) != sorted(self.milestones) or self.milestones[0] != 0.0:
            raise ValueError("heatmap schedule: milestones must start at 0 and increase")

    def at(self, iteration: int, total: int) -> Tuple[float, float]:
        frac = iteration / max(total, 1)
        k = 0
        for i, m in enumerate(self.milestones):
            if frac >= m:
                k = i
        return self.amplitudes[k], self.sigmas[k]

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def gaussian_heatmaps(shape: Sequence[int], points: torch.Tensor, channels: torch.Tensor, n_channels: int,
                      amplitude: float, sigma: float) -> torch.Tensor:
    """Heatmaps [n_channels, D, H, W]: amplitude * exp(-|x - p|^2 / (2 sigma^2))
    for each point p (voxel coordinates in tensor axis order, float, may lie
    outside the chunk); a channel with several points (both ears) takes their
    maximum, a channel with none is zero. Points with channel < 0 are padding.
    Separable, so the cost is one outer product per point."""
    D, H, W = (int(s) for s in shape)
    dev = points.device
    out = torch.zeros((n_channels, D, H, W), dtype=torch.float32, device=dev)
    axes = [torch.arange(n, dtype=torch.float32, device=dev) for n in (D, H, W)]
    for p in range(points.shape[0]):
        c = int(channels[p])
        if c < 0:
            continue
        g = [torch.exp(-((a - points[p, i].float()) ** 2) / (2.0 * sigma * sigma)) for i, a in enumerate(axes)]
        out[c] = torch.maximum(out[c], amplitude * g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :])
    return out


def batch_heatmaps(shape: Sequence[int], points: torch.Tensor, channels: torch.Tensor, n_channels: int,
                   amplitude: float, sigma: float) -> torch.Tensor:
    """gaussian_heatmaps for a batch: points [N,P,3], channels [N,P]."""
    return torch.stack([gaussian_heatmaps(shape, points[n], channels[n], n_channels, amplitude, sigma)
                        for n in range(points.shape[0])])


def trapezoid_lr(step: int, total_steps: int, base_lr: float, warmup: float = 0.05,
                 anneal: float = 0.3, floor: float = 0.01) -> float:
    """Trapezoidal schedule: linear warm-up, plateau, linear annealing to
    floor*base_lr. warmup and anneal are fractions of the optimiser steps."""
    total_steps = max(total_steps, 1)
    w = max(int(math.ceil(warmup * total_steps)), 1)
    a = int(math.ceil(anneal * total_steps))
    if step < w:
        return base_lr * (step + 1) / w
    start_anneal = total_steps - a
    if a > 0 and step >= start_anneal:
        t = min((step - start_anneal) / a, 1.0)
        return base_lr * (1.0 - t * (1.0 - floor))
    return base_lr
