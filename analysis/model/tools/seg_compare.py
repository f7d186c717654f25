"""Compares `otonode analyze` outputs with a phantom dataset's truth:
Dice of the raw segmentation and of its largest 26-connected component,
false-positive voxels and components, landmark errors (voxels of the source
grid) from report.json against case.json.

    python3 tools/seg_compare.py DATASET RUNDIR [RUNDIR ...]

RUNDIR holds one folder per case (named like the dataset's case folders),
each with segmentation.nii.gz and report.json. Prints one JSON object per
run: per-case rows and mean/sd.
"""

import json
import os
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage


def dice(a, b):
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


def compare_case(truth_dir, run_dir):
    truth = np.asarray(nib.load(os.path.join(truth_dir, "label.nii.gz")).dataobj) > 0
    pred = np.asarray(nib.load(os.path.join(run_dir, "segmentation.nii.gz")).dataobj) > 0
    lab, n = ndimage.label(pred, structure=np.ones((3, 3, 3), bool))
    largest = pred
    if n > 1:
        sizes = np.bincount(lab.ravel())[1:]
        largest = lab == (1 + int(np.argmax(sizes)))
    row = {"case": os.path.basename(run_dir), "dice": dice(pred, truth), "dice_largest": dice(largest, truth),
           "true_voxels": int(truth.sum()), "pred_voxels": int(pred.sum()),
           "fp_voxels": int((pred & ~truth).sum()), "fn_voxels": int((truth & ~pred).sum()), "components": int(n)}
    rep = json.load(open(os.path.join(run_dir, "report.json")))
    rep = rep.get("result", rep)  # otonode analyze wraps the analysis.Result
    info_path = os.path.join(truth_dir, "case.json")  # absent for cases cropped after generation
    info = json.load(open(info_path)) if os.path.exists(info_path) else {}
    if rep.get("ears"):
        row["uncertainty"] = rep["ears"][0].get("uncertainty")
    if rep.get("ears") and info.get("ears"):
        want = info["ears"][0]["landmarks"]
        for lm in rep["ears"][0]["landmarks"]:
            if lm["name"] in want:
                row["err_" + lm["name"]] = float(np.linalg.norm(np.subtract(lm["voxel"], want[lm["name"]]["voxel"])))
    return row


def main(argv):
    data, runs = argv[0], argv[1:]
    for run in runs:
        rows = [compare_case(os.path.join(data, c), os.path.join(run, c)) for c in sorted(os.listdir(run))
                if os.path.exists(os.path.join(run, c, "report.json"))]
        summary = {}
        for k in rows[0] if rows else []:
            if k != "case":
                v = np.array([r[k] for r in rows if r.get(k) is not None], dtype=float)
                summary[k] = [float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0]
        print(json.dumps({"run": run, "cases": rows, "mean_sd": summary}))


if __name__ == "__main__":
    main(sys.argv[1:])
