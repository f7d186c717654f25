"""Reading the otonode dataset format and preparing cases for training.

Format (written by `otonode phantom dataset`; a site converts real data to it):

    DATASET/dataset.json           {"format": "otonode-dataset/1",
                                    "splits": {"train": [...], "validation": [...], "test": [...]}}
    DATASET/<case>/ct.nii.gz       CT in HU (NIfTI, qform/sform in RAS)
    DATASET/<case>/label.nii.gz    0 background, 1 cochlea, 2 vestibule, 3 canals
    DATASET/<case>/landmarks.mrk.json   3D Slicer markups (LPS or RAS), points
                                   helicotrema, oval_window, round_window (+ "_R"/"_L")
    DATASET/<case>/case.json       generation parameters; landmark voxels per ear

Axis convention (a contract with the Go analysis): the model sees a volume as
the C-order array of its voxel buffer with i fastest, i.e. tensor axes
(D, H, W) = (k, j, i). nibabel loads arrays as [i, j, k], so they are
transposed here, and landmark voxel coordinates (i, j, k) become (k, j, i).

Resampling keeps the volume's axes and changes only the spacing, with voxel
centres aligned: new index n maps to old index (n + 0.5) * new/old - 0.5.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import nibabel as nib
import numpy as np

from . import LANDMARKS

DATASET_FORMAT = "otonode-dataset/1"


class DatasetError(Exception):
    """Bad or missing dataset content, with the file it concerns."""


def read_dataset_index(root: str) -> dict:
    path = os.path.join(root, "dataset.json")
    try:
        with open(path) as f:
            idx = json.load(f)
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: not found (is {root!r} a dataset folder?)") from e
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not JSON: {e}") from e
    if idx.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{path}: format {idx.get('format')!r}, want {DATASET_FORMAT!r}")
    splits = idx.get("splits")
    if not isinstance(splits, dict) or not isinstance(splits.get("train"), list):
        raise DatasetError(f"{path}: missing splits.train")
    return idx


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def _linear_axis(arr: np.ndarray, axis: int, n_out: int, scale: float) -> np.ndarray:
    n_in = arr.shape[axis]
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = (src - i0).astype(np.float32)
    shape = [1] * arr.ndim
    shape[axis] = n_out
    f = f.reshape(shape)
    return np.take(arr, i0, axis=axis) * (1.0 - f) + np.take(arr, i1, axis=axis) * f


def resample_linear(arr: np.ndarray, spacing: Sequence[float], target: float) -> np.ndarray:
    """Separable (tri)linear resampling of a 3D array to isotropic spacing."""
    out = arr.astype(np.float32, copy=False)
    for ax in range(3):
        scale = target / float(spacing[ax])
        n_out = max(int(round(arr.shape[ax] * float(spacing[ax]) / target)), 1)
        if n_out == out.shape[ax] and abs(scale - 1.0) < 1e-6:
            continue
        out = _linear_axis(out, ax, n_out, scale)
    return out.astype(np.float32, copy=False)


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: float) -> Tuple[int, int, int]:
    return tuple(max(int(round(n * float(s) / target)), 1) for n, s in zip(shape, spacing))


def to_resampled_voxel(ijk: Sequence[float], spacing: Sequence[float], target: float) -> np.ndarray:
    """A voxel coordinate (i, j, k) in the original grid -> the resampled grid."""
    return (np.asarray(ijk, dtype=np.float64) + 0.5) * np.asarray(spacing, dtype=np.float64) / target - 0.5


def _landmark_channel(name: str) -> Tuple[Optional[int], str]:
    """Point label -> (channel, ear suffix "R"/"L"/"")."""
    n = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    m = re.search(r"_(r|l|right|left)$", n)
    ear = m.group(1)[0].upper() if m else ""
    n = n[:m.start()] if m else n
    for c, lm in enumerate(LANDMARKS):
        if n == lm:
            return c, ear
    return None, ear


def read_markups(path: str, affine: np.ndarray) -> List[Tuple[int, np.ndarray, str]]:
    """3D Slicer .mrk.json -> [(channel, voxel (i, j, k) in the image grid, ear)]."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: {e}") from e
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    out = []
    for m in doc.get("markups", []):
        system = str(m.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise DatasetError(f"{path}: coordinateSystem {system!r}, want LPS or RAS")
        for p in m.get("controlPoints", []):
            c, ear = _landmark_channel(p.get("label", ""))
            pos = p.get("position")
            if c is None or not isinstance(pos, list) or len(pos) != 3:
                continue
            x = np.asarray(pos, dtype=np.float64)
            if system == "LPS":
                x = x * np.array([-1.0, -1.0, 1.0])  # NIfTI affines map to RAS
            out.append((c, (inv @ np.append(x, 1.0))[:3], ear))
    return out


def read_case_json_landmarks(path: str) -> List[Tuple[int, np.ndarray, str]]:
    """Fallback when no markups file exists: case.json's per-ear voxels."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: {e}") from e
    out = []
    for n, ear in enumerate(doc.get("ears", []) or []):
        side = str(ear.get("laterality", ear.get("side", n))) if isinstance(ear, dict) else str(n)
        lms = ear.get("landmarks", {}) if isinstance(ear, dict) else {}
        items = lms.items() if isinstance(lms, dict) else [(x.get("name", ""), x) for x in lms]
        for name, v in items:
            c, _ = _landmark_channel(name)
            if c is not None and isinstance(v, dict) and "voxel" in v:
                out.append((c, np.asarray(v["voxel"], dtype=np.float64), side))
    return out


@dataclasses.dataclass
class Case:
    """One case resampled to the model's voxel size, in tensor axis order
    (k, j, i). image is in the scanner's units (HU), not yet normalised."""

    case_id: str
    image: np.ndarray            # float32 [D, H, W]
    label: np.ndarray            # uint8 {0, 1} foreground [D, H, W]
    points: np.ndarray           # float64 [P, 3] landmark voxels, tensor order
    channels: np.ndarray         # int64 [P] landmark index into LANDMARKS
    voxel_mm: float
    ears: int                    # number of ears labelled (for volumes per ear)

    def foreground_volume_mm3(self) -> float:
        return float(self.label.sum()) * self.voxel_mm ** 3


def _read_landmarks(d: str, affine: np.ndarray) -> List[Tuple[int, np.ndarray, str]]:
    mrk = os.path.join(d, "landmarks.mrk.json")
    cj = os.path.join(d, "case.json")
    if os.path.exists(mrk):
        return read_markups(mrk, affine)
    if os.path.exists(cj):
        return read_case_json_landmarks(cj)
    return []


def _make_case(case_id, ct_arr, fg_arr, sp, voxel_mm, lms, offset) -> Case:
    img = resample_linear(ct_arr, sp, voxel_mm)
    fg = (resample_linear(fg_arr.astype(np.float32), sp, voxel_mm) >= 0.5).astype(np.uint8)  # thresholded linear
    pts = np.array([to_resampled_voxel(np.asarray(v) - offset, sp, voxel_mm)[::-1] for _, v, _ in lms],
                   dtype=np.float64).reshape(-1, 3)
    chans = np.array([c for c, _, _ in lms], dtype=np.int64)
    ears = max([int((chans == c).sum()) for c in range(len(LANDMARKS))] + [0])
    if ears == 0 and fg.any():
        ears = 1
    return Case(case_id, np.ascontiguousarray(img.transpose(2, 1, 0)),
                np.ascontiguousarray(fg.transpose(2, 1, 0)), pts, chans, voxel_mm, ears)


def _open_pair(root: str, case_id: str):
    d = os.path.join(root, case_id)
    ct_path, lab_path = os.path.join(d, "ct.nii.gz"), os.path.join(d, "label.nii.gz")
    try:
        ct = nib.load(ct_path)
        lab = nib.load(lab_path)
    except (FileNotFoundError, nib.filebasedimages.ImageFileError) as e:
        raise DatasetError(f"case {case_id}: {e}") from e
    if ct.shape[:3] != lab.shape[:3] or len(ct.shape) != 3:
        raise DatasetError(f"case {case_id}: ct shape {ct.shape} and label shape {lab.shape} differ or are not 3D")
    if not np.allclose(ct.affine, lab.affine, atol=1e-4):
        raise DatasetError(f"case {case_id}: ct and label affines differ")
    return d, ct, lab


def load_case(root: str, case_id: str, voxel_mm: float) -> Case:
    """The whole volume of one case, resampled."""
    d, ct, lab = _open_pair(root, case_id)
    lms = _read_landmarks(d, ct.affine)
    return _make_case(case_id, np.asarray(ct.dataobj, dtype=np.float32), np.asarray(lab.dataobj) > 0,
                      voxel_spacing(ct.affine), voxel_mm, lms, np.zeros(3))


def load_case_rois(root: str, case_id: str, voxel_mm: float, roi_mm: float) -> List[Case]:
    """One Case per ear: a box of roi_mm around the ear's landmarks, cropped
    before resampling (a whole head resampled to 0.099 mm would not fit in
    memory). A case without landmarks gives one box around its labelled
    voxels, or around the volume's centre (negatives). roi_mm <= 0 gives the
    whole volume. Ears are told apart by the landmark labels' suffixes
    (_R/_L) or case.json's ear entries."""
    if roi_mm <= 0:
        return [load_case(root, case_id, voxel_mm)]
    d, ct, lab = _open_pair(root, case_id)
    lms = _read_landmarks(d, ct.affine)
    sp = voxel_spacing(ct.affine)
    shape = np.asarray(ct.shape[:3])
    groups: Dict[str, list] = {}
    for item in lms:
        groups.setdefault(item[2], []).append(item)
    centres: List[Tuple[str, np.ndarray]] = []
    for ear, items in sorted(groups.items()):
        centres.append((ear, np.mean([np.asarray(v) for _, v, _ in items], axis=0)))
    if not centres:
        labd = np.asarray(lab.dataobj)
        nz = np.argwhere(labd > 0)
        centres.append(("", nz.mean(axis=0) if len(nz) else (shape - 1) / 2.0))
    half = roi_mm / 2.0 / sp
    out = []
    for ear, c in centres:
        lo = np.clip(np.floor(c - half).astype(np.int64), 0, shape)
        hi = np.clip(np.ceil(c + half).astype(np.int64) + 1, 0, shape)
        if np.any(hi - lo < 2):
            raise DatasetError(f"case {case_id}: ear {ear or '?'} lies outside the volume")
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        ct_arr = np.asarray(ct.dataobj[sl], dtype=np.float32)
        fg_arr = np.asarray(lab.dataobj[sl]) > 0
        mine = [x for x in lms if x[2] == ear] if lms else []
        out.append(_make_case(f"{case_id}/{ear}" if ear else case_id, ct_arr, fg_arr, sp, voxel_mm, mine, lo))
    return out


@dataclasses.dataclass
class Normalization:
    """Clip at the low/high quantiles, then standardise (the paper's
    0.01/0.99 quantiles, computed over the whole training set)."""

    low_quantile: float = 0.01
    high_quantile: float = 0.99
    clip_low: float = 0.0
    clip_high: float = 1.0
    mean: float = 0.0
    std: float = 1.0

    def apply(self, x):
        if isinstance(x, np.ndarray):
            return ((np.clip(x, self.clip_low, self.clip_high) - self.mean) / self.std).astype(np.float32)
        return (x.clamp(self.clip_low, self.clip_high) - self.mean) / self.std

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(**d)


def compute_normalization(images: Sequence[np.ndarray], low: float = 0.01, high: float = 0.99,
                          per_case: int = 2_000_000, seed: int = 0) -> Normalization:
    """Pooled statistics over the training images (a fixed random subsample of
    at most per_case voxels from each, so memory stays bounded)."""
    rng = np.random.default_rng(seed)
    parts = []
    for im in images:
        flat = np.asarray(im).reshape(-1)
        if flat.size > per_case:
            flat = flat[rng.integers(0, flat.size, per_case)]
        parts.append(flat.astype(np.float32))
    if not parts:
        raise DatasetError("no training images to compute the normalisation from")
    v = np.concatenate(parts)
    lo, hi = np.quantile(v, [low, high])
    c = np.clip(v, lo, hi)
    std = float(c.std())
    return Normalization(low, high, float(lo), float(hi), float(c.mean()), std if std > 0 else 1.0)


class CaseStore:
    """Loads, crops and resamples cases once, caching them as .npy files so
    that a training run (and its resumption) maps them from disk instead of
    holding a whole real dataset in memory. load() returns one Case per ear
    (see load_case_rois)."""

    def __init__(self, root: str, voxel_mm: float, cache_dir: Optional[str] = None, roi_mm: float = 0.0):
        self.root = root
        self.voxel_mm = voxel_mm
        self.roi_mm = roi_mm
        self.cache_dir = cache_dir
        self.index = read_dataset_index(root)

    def ids(self, split: str) -> List[str]:
        return list(self.index.get("splits", {}).get(split, []) or [])

    def _cache_key(self, case_id: str) -> str:
        h = hashlib.sha256()
        for name in ("ct.nii.gz", "label.nii.gz", "landmarks.mrk.json", "case.json"):
            p = os.path.join(self.root, case_id, name)
            if os.path.exists(p):
                st = os.stat(p)
                h.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
        h.update(f"{self.voxel_mm:.6f}:{self.roi_mm:.3f}:v2".encode())
        return h.hexdigest()[:16]

    def load(self, case_id: str) -> List[Case]:
        if not self.cache_dir:
            return load_case_rois(self.root, case_id, self.voxel_mm, self.roi_mm)
        base = os.path.join(self.cache_dir, f"{re.sub(r'[^A-Za-z0-9_.-]', '_', case_id)}-{self._cache_key(case_id)}")
        if os.path.exists(base + ".json"):
            with open(base + ".json") as f:
                meta = json.load(f)
            return [Case(m["case_id"], np.load(f"{base}.{n}.image.npy", mmap_mode="r"),
                         np.load(f"{base}.{n}.label.npy", mmap_mode="r"),
                         np.asarray(m["points"], dtype=np.float64).reshape(-1, 3),
                         np.asarray(m["channels"], dtype=np.int64), m["voxel_mm"], m["ears"])
                    for n, m in enumerate(meta["rois"])]
        cases = load_case_rois(self.root, case_id, self.voxel_mm, self.roi_mm)
        os.makedirs(self.cache_dir, exist_ok=True)
        for n, c in enumerate(cases):
            np.save(f"{base}.{n}.image.npy", c.image)
            np.save(f"{base}.{n}.label.npy", c.label)
        with open(base + ".json.tmp", "w") as f:
            json.dump({"rois": [{"case_id": c.case_id, "points": c.points.tolist(), "channels": c.channels.tolist(),
                                 "voxel_mm": c.voxel_mm, "ears": c.ears} for c in cases]}, f)
        os.replace(base + ".json.tmp", base + ".json")
        return self.load(case_id)
