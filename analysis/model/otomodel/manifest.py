"""The model manifest: the JSON file beside the ONNX file that tells the
analysis everything it must not hard-code (DESIGN.md, "Contracts -> Model").
The schema is documented in analysis/model/README.md; validate() checks it."""

from __future__ import annotations

import hashlib
import math
from typing import Any, Dict, List

from . import LANDMARKS

FORMAT = "otonode-model-manifest/1"

INTENDED_USE_PHANTOM = (
    "This model was trained only on synthetic phantoms (computer-generated images of an inner ear), "
    "not on patient data. It is a reference that lets the otonode pipeline run and be tested. "
    "It is not a medical device and must not be used for diagnosis or treatment decisions. "
    "Replace it with a model trained and validated on clinical data before any clinical use."
)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tta_set() -> List[Dict[str, Any]]:
    """Identity plus 90/180/270 degree rotations about each tensor axis (10)."""
    out = [{"axis": None, "k": 0, "plane": None}]
    for axis in range(3):
        plane = [a for a in range(3) if a != axis]
        for k in (1, 2, 3):
            out.append({"axis": axis, "k": k, "plane": plane})
    return out


class ManifestError(ValueError):
    pass


def _req(m: dict, path: str, typ, errs: List[str]):
    cur: Any = m
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            errs.append(f"missing {path}")
            return None
        cur = cur[part]
    if typ is not None and not isinstance(cur, typ) or isinstance(cur, bool) and typ in (int, float, (int, float)):
        errs.append(f"{path}: want {typ}, got {type(cur).__name__}")
        return None
    return cur


def validate(m: dict) -> None:
    """Raises ManifestError listing every violation of the schema."""
    errs: List[str] = []
    num = (int, float)
    if _req(m, "format", str, errs) not in (None, FORMAT):
        errs.append(f"format: want {FORMAT}")
    _req(m, "name", str, errs)
    _req(m, "created_utc", str, errs)
    iu = _req(m, "intended_use", str, errs)
    if iu is not None and "not" not in iu.lower():
        errs.append("intended_use must say what the model is not for")
    _req(m, "trained_on_synthetic_phantoms", bool, errs)
    f = _req(m, "onnx.file", str, errs)
    if f is not None and ("/" in f or "\\" in f):
        errs.append("onnx.file must be a file name beside the manifest")
    sha = _req(m, "onnx.sha256", str, errs)
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        errs.append("onnx.sha256 must be 64 lower-case hex digits")
    _req(m, "onnx.bytes", int, errs)
    if _req(m, "onnx.opset", int, errs) not in (None,) and not 13 <= m["onnx"]["opset"] <= 21:
        errs.append("onnx.opset out of range")
    _req(m, "input.name", str, errs)
    if _req(m, "input.layout", str, errs) not in (None, "NCDHW"):
        errs.append("input.layout must be NCDHW")
    if _req(m, "input.dtype", str, errs) not in (None, "float32"):
        errs.append("input.dtype must be float32")
    sm = _req(m, "input.spatial_multiple", int, errs)
    if sm is not None and (sm < 1 or sm & (sm - 1)):
        errs.append("input.spatial_multiple must be a power of two")
    ax = _req(m, "input.axes", list, errs)
    if ax is not None and ax != ["k", "j", "i"]:
        errs.append("input.axes must be [k, j, i]")
    outs = _req(m, "outputs", dict, errs) or {}
    for key, ch in (("segmentation", 1), ("heatmaps", len(LANDMARKS))):
        o = outs.get(key)
        if not isinstance(o, dict):
            errs.append(f"missing outputs.{key}")
            continue
        if o.get("name") != key:
            errs.append(f"outputs.{key}.name must be {key!r}")
        if o.get("channels") != ch:
            errs.append(f"outputs.{key}.channels must be {ch}")
        if o.get("layout") != "NCDHW":
            errs.append(f"outputs.{key}.layout must be NCDHW")
    if outs.get("segmentation", {}).get("kind") != "logits":
        errs.append("outputs.segmentation.kind must be logits")
    if _req(m, "landmarks", list, errs) not in (None, list(LANDMARKS)):
        errs.append(f"landmarks must be {list(LANDMARKS)}")
    v = _req(m, "voxel_size_mm", num, errs)
    if v is not None and not 0 < v < 10:
        errs.append("voxel_size_mm out of range")
    size = _req(m, "chunk.size", list, errs)
    ov = _req(m, "chunk.overlap", int, errs)
    if size is not None:
        if len(size) != 3 or not all(isinstance(s, int) and s > 0 for s in size):
            errs.append("chunk.size must be three positive integers")
        elif sm and any(s % sm for s in size):
            errs.append("chunk.size must be divisible by input.spatial_multiple")
        elif ov is not None and not 0 <= ov < min(size):
            errs.append("chunk.overlap must be in [0, chunk size)")
    for k in ("low_quantile", "high_quantile", "clip_low", "clip_high", "mean", "std"):
        x = _req(m, f"normalization.{k}", num, errs)
        if x is not None and not math.isfinite(x):
            errs.append(f"normalization.{k} must be finite")
    n = m.get("normalization", {})
    if isinstance(n.get("std"), num) and n["std"] <= 0:
        errs.append("normalization.std must be positive")
    if all(isinstance(n.get(k), num) for k in ("clip_low", "clip_high")) and n["clip_low"] >= n["clip_high"]:
        errs.append("normalization.clip_low must be below clip_high")
    t = _req(m, "threshold", num, errs)
    if t is not None and not 0 < t < 1:
        errs.append("threshold (a probability) must be in (0, 1)")
    tta = _req(m, "tta.set", list, errs)
    if tta is not None and tta != tta_set():
        errs.append("tta.set must be identity plus k=1..3 about axes 0, 1, 2")
    _req(m, "uncertainty.score", str, errs)
    mm = _req(m, "uncertainty.margin_mm", num, errs)
    if mm is not None and mm < 0:
        errs.append("uncertainty.margin_mm must be >= 0")
    ft = _req(m, "uncertainty", dict, errs) or {}
    if ft.get("flag_threshold") is not None and not isinstance(ft.get("flag_threshold"), num):
        errs.append("uncertainty.flag_threshold must be a number or null")
    lo = _req(m, "plausible_volume_mm3.min", num, errs)
    hi = _req(m, "plausible_volume_mm3.max", num, errs)
    if lo is not None and hi is not None and not 0 <= lo < hi:
        errs.append("plausible_volume_mm3 must have 0 <= min < max")
    pp = m.get("postprocessing")
    if pp is not None and (not isinstance(pp, dict) or not isinstance(pp.get("largest_component"), bool)):
        errs.append("postprocessing.largest_component must be true or false")
    _req(m, "architecture", dict, errs)
    _req(m, "training.command", str, errs)
    _req(m, "training.data", dict, errs)
    w = _req(m, "training.wall_time_s", num, errs)
    if w is not None and w < 0:
        errs.append("training.wall_time_s must be >= 0")
    _req(m, "training.iterations", int, errs)
    if errs:
        raise ManifestError("; ".join(errs))
