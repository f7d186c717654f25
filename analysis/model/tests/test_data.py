import json
import os

import nibabel as nib
import numpy as np
import pytest

from otomodel.data import (CaseStore, DatasetError, Normalization, compute_normalization, load_case,
                           read_dataset_index, resample_linear, to_resampled_voxel)
from synth import write_case, write_dataset


def test_resample_linear_keeps_centres_and_values():
    a = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 4, 6), dtype=np.float32)
    out = resample_linear(a, (0.2, 0.2, 0.2), 0.1)   # twice as fine along every axis
    assert out.shape == (20, 8, 12)
    # new index n sits at old index (n + 0.5) / 2 - 0.5
    assert out[5, 0, 0] == pytest.approx(2.25)
    assert out[:, 3, 7] == pytest.approx(out[:, 0, 0])
    same = resample_linear(a, (0.1, 0.1, 0.1), 0.1)
    assert np.array_equal(same, a)
    assert to_resampled_voxel([4.5, 0, 0], [0.2] * 3, 0.1)[0] == pytest.approx(9.5)


def test_load_case_resamples_and_maps_landmarks(tmp_path):
    vox = write_case(str(tmp_path), "c1", shape=(20, 18, 16), spacing=(0.2, 0.2, 0.25), centre=(9.0, 8.0, 7.0),
                     radius=4.0)
    c = load_case(str(tmp_path), "c1", voxel_mm=0.1)
    # (i, j, k) = (20*2, 18*2, 16*2.5) -> tensor order (k, j, i)
    assert c.image.shape == (40, 36, 40) and c.label.shape == c.image.shape
    assert c.label.dtype == np.uint8 and set(np.unique(c.label)) == {0, 1}
    assert list(c.channels) == [0, 1, 2] and c.ears == 1
    for v, p in zip(vox, c.points):
        want = to_resampled_voxel(v, (0.2, 0.2, 0.25), 0.1)[::-1]
        assert np.allclose(p, want, atol=1e-6), (p, want)
        # Every landmark was placed inside the ball: the label there is foreground.
        assert c.label[tuple(np.rint(p).astype(int))] == 1
    # Ball of radius 4 voxels * 0.2 mm = 0.8 mm: volume about 4/3 pi 0.8^3 = 2.14 mm^3.
    assert 1.5 < c.foreground_volume_mm3() < 2.8
    # The fluid is dark, the bone bright: the image really went through with the label.
    assert c.image[c.label > 0].mean() < 300 < c.image[c.label == 0].mean()


def test_case_json_fallback_and_negative(tmp_path):
    vox = write_case(str(tmp_path), "c2", markups=False)
    c = load_case(str(tmp_path), "c2", voxel_mm=0.2)
    want = [to_resampled_voxel(v, (0.2, 0.2, 0.25), 0.2)[::-1] for v in vox]
    assert np.allclose(c.points, want)
    assert not np.allclose(want[0], np.asarray(vox[0])[::-1])   # the k axis was resampled
    write_case(str(tmp_path), "neg", landmarks=False)
    n = load_case(str(tmp_path), "neg", voxel_mm=0.2)
    assert n.points.shape == (0, 3) and n.ears == 0 and not n.label.any()


def test_ras_markups_read_the_same(tmp_path):
    write_case(str(tmp_path), "c3")
    a = load_case(str(tmp_path), "c3", 0.2)
    p = tmp_path / "c3" / "landmarks.mrk.json"
    doc = json.loads(p.read_text())
    doc["markups"][0]["coordinateSystem"] = "RAS"
    for cp in doc["markups"][0]["controlPoints"]:
        x, y, z = cp["position"]
        cp["position"] = [-x, -y, z]
    p.write_text(json.dumps(doc))
    b = load_case(str(tmp_path), "c3", 0.2)
    assert np.allclose(a.points, b.points)


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_dataset_index(str(tmp_path))
    (tmp_path / "dataset.json").write_text('{"format": "other"}')
    with pytest.raises(DatasetError, match="format"):
        read_dataset_index(str(tmp_path))
    (tmp_path / "dataset.json").write_text("{nope")
    with pytest.raises(DatasetError, match="not JSON"):
        read_dataset_index(str(tmp_path))
    with pytest.raises(DatasetError, match="missing"):
        load_case(str(tmp_path), "missing", 0.1)
    write_case(str(tmp_path), "bad")
    lab = nib.load(str(tmp_path / "bad" / "label.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), lab.affine), str(tmp_path / "bad" / "label.nii.gz"))
    with pytest.raises(DatasetError, match="shape"):
        load_case(str(tmp_path), "bad", 0.1)


def test_normalization_statistics():
    rng = np.random.default_rng(0)
    imgs = [rng.normal(100, 10, (20, 20, 20)).astype(np.float32) for _ in range(3)]
    imgs[0][0, 0, 0] = 1e6  # an outlier the clipping must remove
    n = compute_normalization(imgs)
    assert 70 < n.clip_low < 80 and 120 < n.clip_high < 130
    assert abs(n.mean - 100) < 1 and 8 < n.std < 10
    z = n.apply(np.concatenate([i.ravel() for i in imgs]))
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05 and z.max() <= (n.clip_high - n.mean) / n.std + 1e-5
    assert Normalization.from_dict(n.to_dict()) == n


def test_case_store_cache(tmp_path):
    data = tmp_path / "data"
    ids = write_dataset(str(data), n_train=2, n_val=1, n_neg=1)
    store = CaseStore(str(data), 0.2, cache_dir=str(tmp_path / "cache"))
    assert store.ids("train") == ids["train"] and store.ids("test") == []
    [first] = store.load(ids["train"][0])
    [again] = store.load(ids["train"][0])   # now from the cache, memory-mapped
    assert isinstance(again.image, np.memmap)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.points, again.points)
    assert len(os.listdir(tmp_path / "cache")) == 3


def _bilateral(root):
    """Two balls far apart with landmarks suffixed _R and _L."""
    vr = write_case(root, "bi", shape=(60, 20, 16), spacing=(0.3, 0.3, 0.3), centre=(12.0, 9.0, 8.0), radius=3.0)
    ct, lab = [nib.load(os.path.join(root, "bi", n)) for n in ("ct.nii.gz", "label.nii.gz")]
    c = np.asarray(ct.dataobj).copy()
    l = np.asarray(lab.dataobj).copy()
    c[36:, :, :] = c[12:36, :, :]   # a copy of the right ear's slab, 36 voxels along i
    idx = np.indices(l.shape)
    ball = np.sqrt((idx[0] - 48.0) ** 2 + (idx[1] - 9.0) ** 2 + (idx[2] - 8.0) ** 2) <= 3.0
    l[ball] = 2
    c[ball] = 20.0
    nib.save(nib.Nifti1Image(c, ct.affine), os.path.join(root, "bi", "ct.nii.gz"))
    nib.save(nib.Nifti1Image(l, ct.affine), os.path.join(root, "bi", "label.nii.gz"))
    p = os.path.join(root, "bi", "landmarks.mrk.json")
    doc = json.load(open(p))
    pts = doc["markups"][0]["controlPoints"]
    for cp in list(pts):
        q = dict(cp, label=cp["label"].replace("_R", "_L"))
        x, y, z = cp["position"]
        q["position"] = [x + 36 * 0.3, y, z]   # RAS x = -0.3 i + 12, so LPS x = 0.3 i - 12
        pts.append(q)
    json.dump(doc, open(p, "w"))
    return vr


def test_rois_one_per_ear(tmp_path):
    from otomodel.data import load_case_rois
    _bilateral(str(tmp_path))
    whole = load_case_rois(str(tmp_path), "bi", 0.15, 0.0)
    assert len(whole) == 1 and len(whole[0].points) == 6 and whole[0].ears == 2
    rois = load_case_rois(str(tmp_path), "bi", 0.15, roi_mm=4.0)
    assert [r.case_id for r in rois] == ["bi/L", "bi/R"]
    for r in rois:
        assert r.ears == 1 and list(r.channels) == [0, 1, 2]
        # A 4 mm box along i (the other axes are clipped by the small volume).
        assert 4.0 <= r.image.shape[2] * 0.15 <= 5.0
        for p in r.points:
            assert r.label[tuple(np.rint(p).astype(int))] == 1   # each ear's landmarks hit its own ball
        assert 0.5 * 4 / 3 * np.pi * 0.9 ** 3 < r.foreground_volume_mm3() < 1.5 * 4 / 3 * np.pi * 0.9 ** 3
