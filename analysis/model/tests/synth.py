"""Tiny synthetic cases for the tests: a fluid-filled ball in dense bone with
three landmark points, written in the otonode dataset format with nibabel."""

import json
import os

import nibabel as nib
import numpy as np

NAMES = ("helicotrema", "oval_window", "round_window")


def make_volume(shape, centre, radius, rng, noise=30.0):
    """CT (HU) and label over an array indexed [i, j, k]."""
    idx = np.indices(shape).astype(np.float64)
    d = np.sqrt(sum((idx[a] - centre[a]) ** 2 for a in range(3)))
    label = (d <= radius).astype(np.uint8)
    ct = np.where(label > 0, 20.0, 1400.0) + rng.normal(0, noise, shape)
    return ct.astype(np.float32), label


def write_case(root, case_id, shape=(20, 18, 16), spacing=(0.2, 0.2, 0.25), flip=True, centre=None,
               radius=4.0, seed=0, landmarks=True, markups=True, side="R"):
    """Returns the landmark voxels (i, j, k) it wrote, in channel order."""
    rng = np.random.default_rng(seed)
    centre = np.asarray(centre if centre is not None else [s / 2.0 for s in shape], dtype=np.float64)
    ct, label = make_volume(shape, centre, radius, rng)
    if not landmarks:
        label[:] = 0
        ct[:] = 1400.0 + rng.normal(0, 30.0, shape)
    aff = np.diag(list(spacing) + [1.0])
    if flip:  # a voxel grid that runs against RAS on the first two axes, as DICOM's LPS does
        aff[0, 0], aff[1, 1] = -spacing[0], -spacing[1]
    aff[:3, 3] = [12.0, -30.0, 5.0]
    d = os.path.join(root, case_id)
    os.makedirs(d, exist_ok=True)
    nib.save(nib.Nifti1Image(ct, aff), os.path.join(d, "ct.nii.gz"))
    nib.save(nib.Nifti1Image(label, aff), os.path.join(d, "label.nii.gz"))
    vox = []
    if landmarks:
        vox = [centre + np.array([0, 0, radius - 1]), centre + np.array([radius - 1, 0, 0]),
               centre + np.array([0, -(radius - 1), 0])]
    pts = []
    ears = []
    if vox:
        lm = {}
        for n, v in zip(NAMES, vox):
            ras = aff @ np.append(v, 1.0)
            lps = [-ras[0], -ras[1], ras[2]]
            pts.append({"label": f"{n}_{side}", "position": lps})
            lm[n] = {"patient_mm": lps, "voxel": v.tolist()}
        ears = [{"side": side, "landmarks": lm}]
    if markups and vox:
        with open(os.path.join(d, "landmarks.mrk.json"), "w") as f:
            json.dump({"markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "controlPoints": pts}]}, f)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump({"ears": ears, "seed": seed}, f)
    return vox


def write_dataset(root, n_train=3, n_val=1, n_neg=1, **kw):
    ids = {"train": [], "validation": [], "test": []}
    rng = np.random.default_rng(42)
    for n in range(n_train + n_val):
        cid = f"case-{n:03d}"
        shape = kw.get("shape", (24, 22, 20))
        centre = [s / 2.0 + rng.uniform(-2, 2) for s in shape]
        write_case(root, cid, shape=shape, spacing=kw.get("spacing", (0.2, 0.2, 0.2)), centre=centre,
                   radius=kw.get("radius", 5.0), seed=n)
        ids["train" if n < n_train else "validation"].append(cid)
    for n in range(n_neg):
        cid = f"neg-{n:03d}"
        write_case(root, cid, shape=kw.get("shape", (24, 22, 20)), spacing=kw.get("spacing", (0.2, 0.2, 0.2)),
                   seed=100 + n, landmarks=False)
        ids["train"].append(cid)
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({"format": "otonode-dataset/1", "splits": ids, "generator": "tests/synth.py"}, f)
    return ids
