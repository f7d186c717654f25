"""Where the TTA uncertainty score comes from, on phantoms analysed with
`otonode analyze` (REPORT.md, "Severity curve, paired seeds").

    python3 tools/score_where.py CALDIR [--out out] [--seeds 7001,7002]

CALDIR holds one folder per case named GROUP_SEED (normal_7001,
moderate_7001, ...), each with case/ (the phantom: ct.nii.gz, case.json) and
OUT/ (the analysis: report.json, segmentation.nii.gz, uncertainty-*.nii.gz).
The cases must share the phantoms' voxel size (the uncertainty map is on the
analysed box at the model's voxel size; it is pasted on the input grid by its
affine's offset).

Prints, for each seed of --seeds that has a normal case:
  - the share of the normal's score in layers counted from the predicted
    surface (layer 0: the voxels on either side of it);
  - for each lesion case of the same seed (same anatomy, grid and noise):
    the spread added near the lesion (voxels whose HU differs from the
    normal's by > 150, dilated by 3 voxels) and elsewhere, and the ratio the
    score would reach were every lesion voxel in the region at the largest
    standard deviation a probability can have (0.5) and nothing else changed.
Then, over every case, the lesion groups' median against the normals' median
for the issue's score and for other statistics of the same maps.
"""

import argparse
import glob
import json
import os
import statistics

import nibabel as nib
import numpy as np

MARGIN_MM = 1.0


def load(caldir, name, out):
    o = os.path.join(caldir, name)
    ear = json.load(open(os.path.join(o, out, "report.json")))["result"]["ears"][0]
    side = {"L": "left", "R": "right"}[ear["laterality"]]
    un = nib.load(os.path.join(o, out, f"uncertainty-{side}.nii.gz"))
    sn = nib.load(os.path.join(o, out, "segmentation.nii.gz"))
    off = np.rint(np.linalg.inv(sn.affine) @ un.affine[:, 3])[:3].astype(int)
    box = un.get_fdata(dtype=np.float32)
    spread = np.zeros(sn.shape, np.float32)
    spread[tuple(slice(off[c], off[c] + box.shape[c]) for c in range(3))] = box
    seg = np.asarray(sn.dataobj) > 0
    ct = np.asarray(nib.load(os.path.join(o, "case", "ct.nii.gz")).dataobj).astype(np.float32)
    voxel = float(abs(sn.affine[0, 0]))
    return ear, spread, seg, ct, voxel


def dilate6(m):
    """One step of 6-neighbour dilation."""
    o = m.copy()
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        o[tuple(a)] |= m[tuple(b)]
        o[tuple(b)] |= m[tuple(a)]
    return o


def dilate_ball(m, r):
    """m and every voxel within r voxels (Euclidean) of it, as the node's
    score region (FFT convolution with a ball)."""
    n = int(np.floor(r))
    g = np.mgrid[-n:n + 1, -n:n + 1, -n:n + 1]
    k = ((g ** 2).sum(0) <= r * r + 1e-6).astype(np.float32)
    shape = [m.shape[c] + 2 * n + 1 for c in range(3)]
    f = np.fft.rfftn(m.astype(np.float32), shape) * np.fft.rfftn(k, shape)
    c = np.fft.irfftn(f, shape)[n:n + m.shape[0], n:n + m.shape[1], n:n + m.shape[2]]
    return c > 0.5


def layers(fg, n=12):
    """Distance in 6-neighbour steps from the predicted surface: 0 for the
    voxels on either side of it, 99 beyond n."""
    lay = np.full(fg.shape, 99, np.int16)
    out, inn = dilate6(fg) & ~fg, dilate6(~fg) & fg
    lay[out | inn] = 0
    a, b = fg | out, ~fg | inn
    for k in range(1, n):
        na, nb = dilate6(a), dilate6(b)
        lay[na & ~a] = k
        lay[nb & ~b] = k
        a, b = na, nb
    return lay


def paired(caldir, seed, out):
    ear_n, u_n, seg_n, ct_n, vox = load(caldir, f"normal_{seed}", out)
    reg_n = dilate_ball(seg_n, MARGIN_MM / vox)
    lay = layers(seg_n)
    total = float(u_n[reg_n].sum())
    print(f"normal_{seed}: score {ear_n['uncertainty']:.4f} (re-made {u_n[reg_n].mean():.4f}), "
          f"{int(reg_n.sum())} voxels, spread sum {total:.0f}")
    for lo, hi in ((0, 0), (1, 1), (2, 3), (4, 99)):
        m = reg_n & (lay >= lo) & (lay <= hi)
        print(f"  layers {lo}-{hi}: {int(m.sum()):7d} voxels, {u_n[m].sum() / total:5.1%} of the sum, "
              f"mean {u_n[m].mean():.3f}")
    for group in ("mild", "moderate", "severe"):
        name = f"{group}_{seed}"
        if not os.path.exists(os.path.join(caldir, name, out, "report.json")):
            continue
        ear, u, seg, ct, _ = load(caldir, name, out)
        reg = dilate_ball(seg, MARGIN_MM / vox)
        lesion = np.abs(ct - ct_n) > 150
        near = reg & dilate_ball(lesion, 3)
        n_in = int((lesion & reg).sum())
        bound = (total + 0.5 * n_in) / reg.sum() / u_n[reg_n].mean()
        print(f"{name}: score {ear['uncertainty']:.4f} ({ear['uncertainty'] / ear_n['uncertainty']:.2f}x), "
              f"spread sum {u[reg].sum():.0f}; lesion voxels {int(lesion.sum())} ({n_in} in the region); "
              f"near the lesion {u[near].sum():.0f} (normal {u_n[near].sum():.0f}), "
              f"elsewhere {u[reg & ~near].sum():.0f} (normal {u_n[reg & ~near].sum():.0f}); "
              f"every lesion voxel at 0.5: <= {bound:.2f}x")


def statistics_table(caldir, out):
    rows = []
    for case in sorted(glob.glob(os.path.join(caldir, "*_*"))):
        name = os.path.basename(case)
        if not os.path.exists(os.path.join(case, out, "report.json")):
            continue
        ear, u, seg, _, vox = load(caldir, name, out)
        reg = dilate_ball(seg, MARGIN_MM / vox)
        v = np.sort(u[reg])
        off_surface = reg & (layers(seg, 3) >= 2)
        rows.append((name.split("_")[0], {
            "the issue's score (mean)": ear["uncertainty"],
            "99th percentile": float(np.percentile(v, 99)),
            "99.9th percentile": float(np.percentile(v, 99.9)),
            "mean of the top 1 %": float(v[int(0.99 * len(v)):].mean()),
            "mean without the +-1-voxel surface layer": float(u[off_surface].mean()),
        }))
    normal = [r for g, r in rows if g == "normal"]
    if not normal:
        return
    for stat in normal[0]:
        med = statistics.median(r[stat] for r in normal)
        parts = [f"{stat}: normal median {med:.4f} (n={len(normal)})"]
        for group in ("mild", "moderate", "severe"):
            xs = [r[stat] for g, r in rows if g == group]
            if xs:
                parts.append(f"{group} {statistics.median(xs) / med:.2f}x (n={len(xs)}, min {min(xs) / med:.2f}x)")
        print("; ".join(parts))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("caldir")
    p.add_argument("--out", default="out", help="the analysis folder's name inside each case folder")
    p.add_argument("--seeds", default="", help="comma-separated seeds to decompose (default: every normal)")
    a = p.parse_args()
    seeds = [s for s in a.seeds.split(",") if s] or sorted(
        os.path.basename(c).split("_")[1] for c in glob.glob(os.path.join(a.caldir, "normal_*")))
    for s in seeds:
        if glob.glob(os.path.join(a.caldir, f"*_{s}", a.out, "report.json")):
            paired(a.caldir, s, a.out)
    statistics_table(a.caldir, a.out)


if __name__ == "__main__":
    main()
