"""Reference inference in PyTorch: sliding windows with mean blending, the
10-pass rotation TTA, the uncertainty score, and the calibration of the
manifest's flag threshold on validation cases.

The Go analysis is the production implementation; this one exists to
calibrate the manifest and to check the Go side against (same definitions,
stated in the manifest).
"""

from __future__ import annotations

import math
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .manifest import tta_set

Model = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]

SCORE_DEFINITION = (
    "mean, over the region, of the voxel-wise standard deviation (population, ddof 0) of the sigmoid "
    "probability across the TTA passes; the region is the predicted structure (TTA-mean probability >= "
    "threshold) and every voxel whose centre lies within margin_mm (Euclidean, in mm) of a voxel of it; 0 "
    "when nothing is predicted (negatives are caught by plausible_volume_mm3 instead)"
)


def _starts(n: int, w: int, stride: int) -> List[int]:
    if n <= w:
        return [0]
    s = list(range(0, n - w + 1, stride))
    if s[-1] != n - w:
        s.append(n - w)
    return s


@torch.no_grad()
def sliding_window(model: Model, x: torch.Tensor, window: Sequence[int], overlap: int,
                   multiple: int = 1, fill: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """x [D,H,W] (normalised) -> (segmentation logits [D,H,W], heatmaps
    [C,D,H,W]), windows blended by their mean. Axes shorter than the window
    are padded with fill (rounded up to `multiple`)."""
    shape = list(x.shape)
    win = [min(w, int(math.ceil(n / multiple) * multiple)) for w, n in zip(window, shape)]
    pad = [max(w - n, 0) for w, n in zip(win, shape)]
    if any(pad):
        x = F.pad(x[None, None], [0, pad[2], 0, pad[1], 0, pad[0]], value=fill)[0, 0]
    P = list(x.shape)
    seg = torch.zeros(P)
    heat = None
    count = torch.zeros(P)
    for a in _starts(P[0], win[0], win[0] - overlap):
        for b in _starts(P[1], win[1], win[1] - overlap):
            for c in _starts(P[2], win[2], win[2] - overlap):
                sl = (slice(a, a + win[0]), slice(b, b + win[1]), slice(c, c + win[2]))
                s, h = model(x[sl][None, None])
                if heat is None:
                    heat = torch.zeros([h.shape[1]] + P)
                seg[sl] += s[0, 0].float().cpu()
                heat[(slice(None),) + sl] += h[0].float().cpu()
                count[sl] += 1
    seg /= count
    heat /= count
    D, H, W = shape
    return seg[:D, :H, :W], heat[:, :D, :H, :W]


def tta(model: Model, x: torch.Tensor, window: Sequence[int], overlap: int, multiple: int = 1,
        fill: float = 0.0) -> Dict[str, torch.Tensor]:
    """The 10 passes of the manifest's TTA set. Returns the voxel-wise mean
    probability, its standard deviation, and the mean heatmaps."""
    probs = []
    heat_sum = None
    for t in tta_set():
        if t["axis"] is None:
            xr, dims, k = x, None, 0
        else:
            dims, k = tuple(t["plane"]), t["k"]
            xr = torch.rot90(x, k, dims)
        s, h = sliding_window(model, xr, window, overlap, multiple, fill)
        if dims is not None:
            s = torch.rot90(s, -k, dims)
            h = torch.rot90(h, -k, tuple(d + 1 for d in dims))
        probs.append(torch.sigmoid(s))
        heat_sum = h if heat_sum is None else heat_sum + h
    p = torch.stack(probs)
    return {"prob": p.mean(0), "std": p.std(0, unbiased=False), "heatmaps": heat_sum / len(probs)}


def dilate_ball(mask: torch.Tensor, r: float) -> torch.Tensor:
    """mask and every voxel within r voxels (Euclidean, centre to centre) of
    it: the region the Go analysis scores (a squared distance transform
    against margin_mm squared)."""
    n = int(math.floor(r))
    if n <= 0:
        return mask.bool()
    g = torch.arange(-n, n + 1, dtype=torch.float32)
    ball = ((g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= r * r + 1e-6).float()
    m = mask.float()[None, None]
    return F.conv3d(m, ball[None, None], padding=n)[0, 0] > 0.5


def uncertainty_score(prob: torch.Tensor, std: torch.Tensor, threshold: float, margin_mm: float,
                      voxel_mm: float) -> float:
    region = dilate_ball(prob >= threshold, margin_mm / voxel_mm)
    if not bool(region.any()):
        return 0.0
    return float(std[region].mean())


def landmarks_from_heatmaps(heat: torch.Tensor) -> np.ndarray:
    """Argmax of each channel, [C,3] voxel coordinates in tensor order."""
    C = heat.shape[0]
    flat = heat.reshape(C, -1).argmax(dim=1)
    return np.stack([np.unravel_index(int(i), tuple(heat.shape[1:])) for i in flat]).astype(np.float64)


def flag_threshold(scores: Sequence[float], median_factor: float = 3.0, max_factor: float = 1.2) -> Optional[float]:
    """The score above which a case is flagged: above every normal
    validation case by a margin, and well above their median."""
    s = [x for x in scores if x > 0]
    if not s:
        return None
    return float(max(median_factor * np.median(s), max_factor * max(s)))


def calibrate(net, cases, norm, threshold: float, margin_mm: float, window: int) -> dict:
    """Runs TTA on one window around each (normal) validation case's ear and
    derives the flag threshold. Returns the manifest's uncertainty fields."""
    from .train import validation_chunk
    from .augment import extract_chunk

    net = net.eval()
    mult = net.cfg.spatial_multiple
    dev = next(net.parameters()).device
    model = lambda t: net(t.to(dev))  # noqa: E731
    rows = []
    for c in cases:
        if not c.label.any():
            continue
        origin = validation_chunk(c, window)
        img, lab, pts = extract_chunk(c, origin, (window,) * 3, np.eye(3), fill=norm.clip_low)
        out = tta(model, norm.apply(img), (window,) * 3, 0, mult)
        score = uncertainty_score(out["prob"], out["std"], threshold, margin_mm, c.voxel_mm)
        pred = out["prob"] >= threshold
        dice = float(2 * (pred & (lab > 0)).sum() / max(int(pred.sum() + (lab > 0).sum()), 1))
        rows.append({"case": c.case_id, "score": score, "dice": dice})
        print(f"calibration {c.case_id}: uncertainty {score:.3g}, dice {dice:.4f}", file=sys.stderr, flush=True)
    scores = [r["score"] for r in rows]
    return {"score": SCORE_DEFINITION, "margin_mm": margin_mm, "flag_threshold": flag_threshold(scores),
            "calibration": {"cases": rows, "median": float(np.median(scores)) if scores else None,
                            "rule": "max(3 x median, 1.2 x max) of the normal validation scores",
                            "window": window}}
