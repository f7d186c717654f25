"""Export a trained checkpoint to ONNX (opset 17, dynamic batch and spatial
axes, full-resolution outputs only) and write the manifest beside it."""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
import warnings
from typing import Optional

import numpy as np
import onnx
import torch

from . import LANDMARKS
from .manifest import FORMAT, INTENDED_USE_PHANTOM, sha256_file, tta_set, validate
from .network import BiHeadedUNet, ExportWrapper, NetworkConfig, count_parameters

OPSET = 17
INPUT_NAME = "input"


def _finite(x):
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def load_network(state: dict) -> BiHeadedUNet:
    net = BiHeadedUNet(NetworkConfig.from_dict(state["network"]))
    net.load_state_dict(state["model"])
    return net.eval()


def export_onnx(net: BiHeadedUNet, path: str, example_size: int = 0) -> None:
    """Writes the ONNX graph and checks it with onnx.checker (full check,
    including shape inference)."""
    net = net.eval().cpu()
    m = net.cfg.spatial_multiple
    s = example_size or 2 * m
    x = torch.zeros(1, net.cfg.in_channels, s, s, s)
    dyn = {0: "N", 2: "D", 3: "H", 4: "W"}
    tmp = path + ".tmp"
    with torch.no_grad(), warnings.catch_warnings():
        # InstanceNorm has no running statistics, so "exported with train=True"
        # computes exactly what eval mode computes.
        warnings.filterwarnings("ignore", message=".*instance_norm.*")
        # instance_norm's own size check in Python; it does not enter the graph.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(ExportWrapper(net), (x,), tmp, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=["segmentation", "heatmaps"],
                          dynamic_axes={INPUT_NAME: dyn, "segmentation": dyn, "heatmaps": dyn},
                          do_constant_folding=True)
    model = onnx.load(tmp)
    onnx.checker.check_model(model, full_check=True)
    os.replace(tmp, path)


POSTPROCESSING_NOTE = {
    True: ("keep each ear's largest 26-connected component of the thresholded segmentation, and take each "
           "landmark within 1.5 mm of it; the node and `otonode analyze` apply it, `--raw` measures the "
           "network alone"),
    False: "none: the thresholded network output is the segmentation (the paper's protocol)",
}


def postprocessing(largest_component: bool, note: Optional[str] = None) -> dict:
    """The manifest's postprocessing block: what the analysis does to the
    network's output, and with which the model's figures were measured."""
    out = {"largest_component": bool(largest_component), "description": POSTPROCESSING_NOTE[bool(largest_component)]}
    if note:
        out["note"] = note
    return out


def scores_from_reports(pairs, source: str = "") -> dict:
    """[(group, path of an `otonode analyze` report.json)] -> the document
    uncertainty_from_scores reads: one case per analysed ear (its TTA score,
    volume and flag); a report without ears (no inner ear found, not
    analysable) is kept under "not_analysed" with its status and reason."""
    cases, skipped = [], []
    for group, path in pairs:
        with open(path) as f:
            rep = json.load(f)
        rep = rep.get("result", rep)  # `otonode analyze` writes {input, result: analysis.Result}
        name = os.path.basename(os.path.dirname(os.path.abspath(path)))
        ears = rep.get("ears") or []
        if not ears:
            skipped.append({"case": name, "group": group, "status": rep.get("status"), "reason": rep.get("reason")})
        for i, e in enumerate(ears):
            flag = e.get("flag") or {}
            cases.append({"case": name if len(ears) == 1 else f"{name}/{i + 1}", "group": group,
                          "laterality": e.get("laterality"), "score": e.get("uncertainty"),
                          "volume_mm3": e.get("volume_mm3"), "flagged": bool(flag.get("raised")),
                          "flag_reason": flag.get("reason"),
                          "tta": (e.get("analysed_region") or {}).get("tta")})
    return {"source": source, "cases": cases, "not_analysed": skipped}


def uncertainty_from_scores(doc: dict, margin_mm: float = 1.0, group: str = "normal") -> dict:
    """The manifest's uncertainty block from TTA scores measured elsewhere
    (the Go analysis: `otonode analyze` on phantoms of known kind). doc is
    {"source": str, "cases": [{"case": str, "group": str, "score": float, ...}]};
    the flag threshold comes from the cases of `group` by flag_threshold's
    rule, and every group's median is kept with its ratio to that group's
    median, so the manifest says how far the score separates them."""
    from .infer import SCORE_DEFINITION, flag_threshold

    cases = doc.get("cases") or []
    for c in cases:
        if not isinstance(c.get("score"), (int, float)) or isinstance(c.get("score"), bool) \
                or not math.isfinite(c["score"]) or c["score"] < 0:
            raise ValueError(f"calibration case {c.get('case')!r}: score must be a finite number >= 0")
    normal = [float(c["score"]) for c in cases if c.get("group") == group]
    if not normal:
        raise ValueError(f"calibration: no case of group {group!r}")
    ref = float(np.median(normal))
    groups = {}
    for g in dict.fromkeys(c.get("group") for c in cases):
        s = [float(c["score"]) for c in cases if c.get("group") == g]
        med = float(np.median(s))
        groups[str(g)] = {"n": len(s), "median": med, "min": min(s), "max": max(s),
                          "ratio_to_normal_median": (med / ref) if ref > 0 else None}
    return {"score": SCORE_DEFINITION, "margin_mm": float(doc.get("margin_mm", margin_mm)),
            "flag_threshold": flag_threshold(normal),
            "calibration": {"source": doc.get("source", ""), "reference_group": group,
                            "rule": f"max(3 x median, 1.2 x max) of the {group} cases' scores",
                            "median": ref, "groups": groups, "cases": cases}}


def recalibrate_manifest(path: str, scores: Optional[dict] = None, largest_component: Optional[bool] = None,
                         postprocessing_note: Optional[str] = None) -> dict:
    """Rewrites an exported manifest's uncertainty block from scores (see
    uncertainty_from_scores) and/or its postprocessing block, keeping
    everything else; the ONNX file and its hash are unchanged, so a model's
    threshold is calibrated on the pipeline that applies it without
    re-exporting (or editing the file by hand). Returns the new manifest."""
    with open(path) as f:
        man = json.load(f)
    onnx_path = os.path.join(os.path.dirname(os.path.abspath(path)), man["onnx"]["file"])
    if sha256_file(onnx_path) != man["onnx"]["sha256"]:
        raise ValueError(f"{onnx_path} does not match the manifest's sha256")
    if scores is not None:
        man["uncertainty"] = uncertainty_from_scores(scores, float(man.get("uncertainty", {}).get("margin_mm", 1.0)))
    if largest_component is not None:
        old = (man.get("postprocessing") or {}).get("note")
        man["postprocessing"] = postprocessing(largest_component, postprocessing_note or old)
    validate(man)
    with open(path + ".tmp", "w") as f:
        json.dump(man, f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return man


def build_manifest(state: dict, onnx_path: str, *, name: str, window: int, overlap: int,
                   threshold: float = 0.5, uncertainty: Optional[dict] = None,
                   synthetic: bool = True, intended_use: Optional[str] = None,
                   largest_component: bool = False, postprocessing_note: Optional[str] = None,
                   history: Optional[list] = None) -> dict:
    net_cfg = state["network"]
    tc = state.get("train_config", {})
    mult = 2 ** (len(net_cfg["widths"]) - 1)
    net = load_network(state)
    from .infer import SCORE_DEFINITION

    unc = {"score": SCORE_DEFINITION, "margin_mm": 1.0, "flag_threshold": None, "calibration": None}
    if uncertainty:
        unc.update(uncertainty)
    pv = state.get("plausible_volume") or {}
    return {
        "format": FORMAT,
        "name": name,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "intended_use": intended_use or INTENDED_USE_PHANTOM,
        "trained_on_synthetic_phantoms": synthetic,
        "onnx": {"file": os.path.basename(onnx_path), "sha256": sha256_file(onnx_path),
                 "bytes": os.path.getsize(onnx_path), "opset": OPSET},
        "input": {"name": INPUT_NAME, "layout": "NCDHW", "dtype": "float32", "channels": 1,
                  "axes": ["k", "j", "i"], "spatial_multiple": mult,
                  "note": ("the volume's voxel buffer with i fastest read as a C-order [D,H,W] array "
                           "(D = k, H = j, W = i), resampled to voxel_size_mm and normalised; any "
                           "batch size and any spatial size divisible by spatial_multiple")},
        "outputs": {
            "segmentation": {"name": "segmentation", "layout": "NCDHW", "channels": 1, "kind": "logits",
                             "activation": "sigmoid", "structure": "inner-ear fluid space (cochlea, "
                             "vestibule, semicircular canals) as one foreground"},
            "heatmaps": {"name": "heatmaps", "layout": "NCDHW", "channels": len(LANDMARKS), "kind": "heatmap",
                         "activation": "none", "order": list(LANDMARKS),
                         "landmark": "argmax of each channel"},
        },
        "landmarks": list(LANDMARKS),
        "voxel_size_mm": float(tc.get("voxel_mm", 0.099)),
        "chunk": {"size": [window] * 3, "overlap": overlap, "stride": window - overlap,
                  "blend": "mean of overlapping windows"},
        "normalization": dict(state["normalization"], units="HU",
                              method="clip at the quantiles' values, subtract mean, divide by std"),
        "threshold": threshold,
        "tta": {"passes": len(tta_set()), "set": tta_set(),
                "rotation": ("numpy.rot90(x, k, axes=plane) on the [D,H,W] array; undo with -k; the "
                             "result is the voxel-wise mean, the uncertainty map the voxel-wise std")},
        "uncertainty": unc,
        "postprocessing": postprocessing(largest_component, postprocessing_note),
        "plausible_volume_mm3": {"min": pv.get("min_mm3"), "max": pv.get("max_mm3"),
                                 "per": "ear", "training_min": pv.get("training_min_mm3"),
                                 "training_max": pv.get("training_max_mm3"),
                                 "rule": ("{0} x the smallest and {1} x the largest foreground volume per ear of "
                                          "the training labels").format(*(pv.get("factors") or ["?", "?"])),
                                 "use": ("an ear whose predicted volume falls outside is flagged: a scan "
                                         "without an inner ear, or a failed segmentation, which the TTA "
                                         "spread cannot catch")},
        "architecture": {"kind": "bi-headed 3D U-Net (Stebani et al. 2023)", **net_cfg,
                         "preset": tc.get("preset"), "parameters": count_parameters(net),
                         "deep_supervision": "training only (not in the exported graph)"},
        "training": {"data": state.get("data_summary", {}), "command": " ".join(state.get("command") or []),
                     "iterations": int(state.get("iteration", 0)),
                     "weights_from_iteration": int(state.get("weights_iteration", state.get("iteration", 0))),
                     "wall_time_s": round(float(state.get("wall_s", 0.0)), 1),
                     "config": tc, "heatmap_schedule": state.get("heatmap_schedule"),
                     "augmentation": state.get("augment"), "torch_version": state.get("torch_version"),
                     "device": state.get("device"), "best_validation_score": _finite(state.get("best_score")),
                     **({"history": list(history)} if history else {})},
    }


def calibrate_uncertainty(state: dict, data: Optional[str] = None, window: Optional[int] = None,
                          margin_mm: float = 1.0, threshold: float = 0.5) -> Optional[dict]:
    """TTA on the validation split of the training data (or of `data`);
    None when there is no validation case."""
    from .data import CaseStore, Normalization
    from .infer import calibrate

    tc = state.get("train_config", {})
    data = data or tc.get("data")
    if not data or not os.path.exists(os.path.join(data, "dataset.json")):
        return None
    store = CaseStore(data, float(tc.get("voxel_mm", 0.099)), None, float(tc.get("roi_mm", 0.0)))
    cases = [c for cid in store.ids("validation") for c in store.load(cid)]
    if not any(c.label.any() for c in cases):
        return None
    net = load_network(state)
    window = window or int(tc.get("window") or tc.get("chunk") or 128)
    return calibrate(net, cases, Normalization.from_dict(state["normalization"]), threshold, margin_mm, window)


def export_checkpoint(checkpoint: str, out_dir: str, name: str = "otonode-inner-ear",
                      window: Optional[int] = None, overlap: Optional[int] = None,
                      uncertainty: Optional[dict] = None, onnx_name: str = "model.onnx",
                      calibrate_data: Optional[str] = None, calibrate: bool = False,
                      calibrate_window: Optional[int] = None, synthetic: bool = True,
                      intended_use: Optional[str] = None, largest_component: bool = False,
                      postprocessing_note: Optional[str] = None, scores: Optional[dict] = None,
                      history: Optional[list] = None) -> str:
    """checkpoint (best.pt or checkpoint.pt) -> out_dir/model.onnx + model.json.
    With calibrate, the uncertainty flag threshold comes from TTA on the
    validation cases; with scores (see uncertainty_from_scores), from scores
    measured by the Go analysis instead. Returns the manifest's path."""
    from .train import load_checkpoint

    state = load_checkpoint(checkpoint)
    tc = state.get("train_config", {})
    # best.pt holds the weights of the best validation; the run's length and
    # wall time are those of the last checkpoint beside it.
    last = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "checkpoint.pt")
    state["weights_iteration"] = state.get("iteration", 0)
    if os.path.exists(last) and os.path.abspath(last) != os.path.abspath(checkpoint):
        run = load_checkpoint(last)
        state["iteration"], state["wall_s"] = run.get("iteration", 0), run.get("wall_s", 0.0)
    if scores is not None and uncertainty is None:
        uncertainty = uncertainty_from_scores(scores)
    if calibrate and uncertainty is None:
        uncertainty = calibrate_uncertainty(state, calibrate_data, calibrate_window)
    window = window or int(tc.get("window") or tc.get("chunk") or 128)
    overlap = overlap if overlap is not None else int(tc.get("overlap", 25))
    if not 0 <= overlap < window:
        raise ValueError(f"overlap {overlap} must be in [0, window {window})")
    os.makedirs(out_dir, exist_ok=True)
    onnx_path = os.path.join(out_dir, onnx_name)
    export_onnx(load_network(state), onnx_path)
    if not synthetic and not intended_use:
        raise ValueError("a model trained on real data needs an intended-use statement (--intended-use)")
    man = build_manifest(state, onnx_path, name=name, window=window, overlap=overlap, uncertainty=uncertainty,
                         synthetic=synthetic, intended_use=intended_use, largest_component=largest_component,
                         postprocessing_note=postprocessing_note, history=history)
    validate(man)
    man_path = os.path.splitext(onnx_path)[0] + ".json"
    with open(man_path + ".tmp", "w") as f:
        json.dump(man, f, indent=2, allow_nan=False)  # Go's encoding/json reads no NaN
        f.write("\n")
    os.replace(man_path + ".tmp", man_path)
    print(f"wrote {onnx_path} ({os.path.getsize(onnx_path)} bytes) and {man_path}", file=sys.stderr)
    return man_path
