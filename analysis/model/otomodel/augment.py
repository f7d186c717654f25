"""Chunk sampling and the paper's augmentation protocol Aug_beta.

A chunk is cut from a case through one rotation R about the chunk's centre:
output voxel o reads input position p = R (o - c) + c + origin, where c is the
chunk centre and origin the chunk's corner in the case. R is the product of a
free rotation (up to +-45 degrees about a random axis) and a fixed rotation by
0/90/180/270 degrees about a random one of the three axes; with R = I (or a
pure 90-degree rotation) every p is a voxel centre, so the chunk is an exact
copy. Only the region that R actually reads is cropped from the case, so large
cases stay memory-mapped. Landmarks move with the same R.

Intensity augmentation (after normalisation): contrast scaling by a random
factor, additive Gaussian noise, Poisson noise.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .data import Case, Normalization

MAX_POINTS = 6  # three landmarks per ear, two ears


@dataclasses.dataclass
class AugmentConfig:
    enabled: bool = True
    p_rot90: float = 0.5          # fixed rotation about one of all three axes (Aug_beta)
    p_free: float = 0.5
    max_free_deg: float = 45.0    # Aug_beta amplitude (Aug_alpha: 30, first axis only)
    p_contrast: float = 0.5
    contrast: Tuple[float, float] = (0.75, 1.25)
    p_gauss: float = 0.3
    gauss_sigma: Tuple[float, float] = (0.0, 0.15)   # in standardised units
    p_poisson: float = 0.2
    poisson_rate: Tuple[float, float] = (20.0, 100.0)  # counts per standardised unit

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def rotation_matrix(axis: int, angle: float) -> np.ndarray:
    """Rotation by angle (radians) about tensor axis 0, 1 or 2."""
    c, s = math.cos(angle), math.sin(angle)
    a, b = [x for x in range(3) if x != axis]
    R = np.eye(3)
    R[a, a], R[a, b], R[b, a], R[b, b] = c, -s, s, c
    return R


def rot90_matrix(axis: int, k: int) -> np.ndarray:
    return np.rint(rotation_matrix(axis, k * math.pi / 2))


def random_rotation(rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    R = np.eye(3)
    if not cfg.enabled:
        return R
    if rng.random() < cfg.p_rot90:
        R = rot90_matrix(int(rng.integers(3)), int(rng.integers(1, 4))) @ R
    if rng.random() < cfg.p_free and cfg.max_free_deg > 0:
        ang = math.radians(rng.uniform(-cfg.max_free_deg, cfg.max_free_deg))
        R = rotation_matrix(int(rng.integers(3)), ang) @ R
    return R


def _crop(arr: np.ndarray, lo: np.ndarray, hi: np.ndarray, fill: float) -> np.ndarray:
    """arr[lo:hi] with out-of-range parts filled (lo/hi may lie outside)."""
    out = np.full(tuple(int(h - l) for l, h in zip(lo, hi)), fill, dtype=np.float32)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(hi, arr.shape)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - lo
    dst_hi = dst_lo + (src_hi - src_lo)
    out[dst_lo[0]:dst_hi[0], dst_lo[1]:dst_hi[1], dst_lo[2]:dst_hi[2]] = \
        arr[src_lo[0]:src_hi[0], src_lo[1]:src_hi[1], src_lo[2]:src_hi[2]]
    return out


def extract_chunk(case: Case, origin: np.ndarray, size: Tuple[int, int, int], R: np.ndarray,
                  fill: float) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Returns image [D,H,W] (HU), foreground [D,H,W] in {0,1}, and the case's
    landmark points in chunk coordinates [P,3]."""
    size_a = np.asarray(size, dtype=np.float64)
    c = (size_a - 1.0) / 2.0
    centre = c + np.asarray(origin, dtype=np.float64)
    points = (np.asarray(case.points).reshape(-1, 3) - centre) @ R + c  # R^T (q - centre) + c
    if np.allclose(R, np.eye(3)):
        lo = np.asarray(origin, dtype=np.int64)
        img = _crop(case.image, lo, lo + np.asarray(size), fill)
        lab = _crop(case.label, lo, lo + np.asarray(size), 0.0)
        return torch.from_numpy(img), torch.from_numpy(lab), points
    half = np.abs(R) @ c  # half extent of the rotated chunk per input axis
    lo = np.floor(centre - half).astype(np.int64) - 1
    hi = np.ceil(centre + half).astype(np.int64) + 2
    img = torch.from_numpy(_crop(case.image, lo, hi, fill))
    lab = torch.from_numpy(_crop(case.label, lo, hi, 0.0))
    # Input positions for every output voxel, relative to the crop.
    axes = [torch.arange(int(n), dtype=torch.float64) - ci for n, ci in zip(size, c)]
    g = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # [D,H,W,3] in (d,h,w)
    p = g @ torch.from_numpy(R).T + torch.from_numpy(centre - lo)
    dims = torch.tensor(img.shape, dtype=torch.float64)
    norm = 2.0 * p / (dims - 1.0) - 1.0
    grid = norm.flip(-1).float()[None]  # grid_sample wants (x=W, y=H, z=D)
    both = torch.stack([img, lab])[None]
    out = F.grid_sample(both, grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    return out[0], (out[1] >= 0.5).float(), points


def intensity_augment(x: torch.Tensor, rng: np.random.Generator, cfg: AugmentConfig) -> torch.Tensor:
    if not cfg.enabled:
        return x
    if rng.random() < cfg.p_contrast:
        x = x * float(rng.uniform(*cfg.contrast))
    if rng.random() < cfg.p_gauss:
        sigma = float(rng.uniform(*cfg.gauss_sigma))
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        x = x + sigma * torch.randn(x.shape, generator=gen)
    if rng.random() < cfg.p_poisson:
        rate = float(rng.uniform(*cfg.poisson_rate))
        lo = float(x.min())
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        x = torch.poisson((x - lo) * rate, generator=gen) / rate + lo
    return x


class ChunkSampler:
    """Draws training chunks from a case's region (the box the analysis feeds
    the network: see data.load_case_rois). With probability p_foreground the
    chunk is placed around a random foreground voxel or landmark, with p_hard
    around a random background voxel of the labyrinth fluid's own density
    range (soft tissue, nerve and vessel canals, the external canal: what a
    model that only saw the labyrinth calls labyrinth), otherwise anywhere in
    the region. Placements are jittered by up to a quarter chunk."""

    def __init__(self, cases, norm: Normalization, size: Tuple[int, int, int], rng: np.random.Generator,
                 aug: Optional[AugmentConfig] = None, p_foreground: float = 0.8, p_hard: float = 0.0):
        self.cases = list(cases)
        if not self.cases:
            raise ValueError("no cases to sample from")
        if p_foreground < 0 or p_hard < 0 or p_foreground + p_hard > 1:
            raise ValueError(f"p_foreground {p_foreground} and p_hard {p_hard} must be >= 0 and sum to at most 1")
        self.norm = norm
        self.size = tuple(int(s) for s in size)
        self.rng = rng
        self.aug = aug or AugmentConfig()
        self.p_foreground = p_foreground
        self.p_hard = p_hard
        self._fg = [self._foreground_sample(c) for c in self.cases]
        self._hard = [hard_negative_sample(c) if p_hard > 0 else np.zeros((0, 3), np.int64) for c in self.cases]

    def _foreground_sample(self, case: Case, n: int = 20000) -> np.ndarray:
        idx = np.argwhere(np.asarray(case.label) > 0)
        if len(idx) > n:
            # A fixed generator of its own, so that building a sampler does not
            # move the training stream (a resumed run rebuilds it).
            idx = idx[np.random.default_rng(len(idx)).choice(len(idx), n, replace=False)]
        if len(case.points):
            idx = np.concatenate([idx, np.rint(case.points).astype(np.int64)])
        return idx

    def sample(self):
        """Returns image [1,D,H,W] (normalised, augmented), foreground
        [1,D,H,W], points [MAX_POINTS,3] and channels [MAX_POINTS] (-1 = none)."""
        i = int(self.rng.integers(len(self.cases)))
        case, fg, hard = self.cases[i], self._fg[i], self._hard[i]
        size = np.asarray(self.size)
        shape = np.asarray(case.image.shape)
        u = self.rng.random()
        if len(fg) and u < self.p_foreground:
            centre = fg[int(self.rng.integers(len(fg)))] + self.rng.integers(-size // 4, size // 4 + 1)
            origin = centre - size // 2
        elif len(hard) and u < self.p_foreground + self.p_hard:
            centre = hard[int(self.rng.integers(len(hard)))] + self.rng.integers(-size // 4, size // 4 + 1)
            origin = centre - size // 2
        else:
            origin = np.array([int(self.rng.integers(min(0, s - n), max(0, s - n) + 1)) for s, n in zip(shape, size)])
        R = random_rotation(self.rng, self.aug)
        img, lab, pts = extract_chunk(case, origin, self.size, R, fill=self.norm.clip_low)
        img = intensity_augment(self.norm.apply(img), self.rng, self.aug)
        P = np.zeros((MAX_POINTS, 3), dtype=np.float32)
        C = -np.ones(MAX_POINTS, dtype=np.int64)
        n = min(len(pts), MAX_POINTS)
        P[:n], C[:n] = pts[:n], case.channels[:n]
        return img[None].float(), lab[None].float(), torch.from_numpy(P), torch.from_numpy(C)

    def batch(self, n: int):
        items = [self.sample() for _ in range(n)]
        return tuple(torch.stack(t) for t in zip(*items))


def hard_negative_sample(case: Case, n: int = 20000, quantiles: Tuple[float, float] = (0.1, 0.9)) -> np.ndarray:
    """Background voxels [n,3] whose intensity lies within the foreground's
    (its 10th to 90th percentile): the places that look like labyrinth fluid
    voxel by voxel and differ only by their surroundings. Cases without
    foreground give none. Drawn with a generator of their own (see
    _foreground_sample)."""
    label = np.asarray(case.label) > 0
    if not label.any():
        return np.zeros((0, 3), np.int64)
    img = np.asarray(case.image)
    lo, hi = np.quantile(img[label], quantiles)
    idx = np.argwhere((img >= lo) & (img <= hi) & ~label)
    if len(idx) > n:
        idx = idx[np.random.default_rng(len(idx)).choice(len(idx), n, replace=False)]
    return idx
