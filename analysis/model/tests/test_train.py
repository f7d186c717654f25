"""End to end on a tiny synthetic dataset: train a few iterations, resume,
export, and check the manifest (schema, hash, figures from the data)."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from otomodel import onnx_eval
from otomodel.export import INPUT_NAME, export_checkpoint, load_network
from otomodel.manifest import ManifestError, sha256_file, tta_set, validate
from otomodel.train import Trainer, TrainConfig, load_checkpoint
from synth import write_dataset

HERE = os.path.dirname(os.path.abspath(__file__))


def _cfg(data, out, **kw):
    base = dict(data=data, out=out, preset="tiny", chunk=16, batch=2, accumulate=2, iterations=6,
                voxel_mm=0.2, validate_every=4, checkpoint_every=2, log_every=2, threads=1, seed=7,
                device="cpu", window=32, overlap=8)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset(str(root), n_train=3, n_val=1, n_neg=1)
    return str(root)


def test_train_resume_is_exact(dataset, tmp_path):
    a = Trainer(_cfg(dataset, str(tmp_path / "a")))
    last = a.run()
    assert a.iteration == 6 and last["iteration"] == 6
    assert "val_dice" in last and 0.0 <= last["val_dice"] <= 1.0
    log = [json.loads(l, parse_constant=lambda c: pytest.fail(f"{c} in the log")) for l in open(tmp_path / "a" / "train_log.jsonl")]
    assert [r["iteration"] for r in log] == list(range(1, 7))
    assert all(np.isfinite(r["loss"]) for r in log)
    assert os.path.exists(tmp_path / "a" / "best.pt")

    # The same run, interrupted after 2 iterations (as by SIGTERM) and resumed.
    b = Trainer(_cfg(dataset, str(tmp_path / "b")))
    orig = b.sampler.batch
    calls = []

    def stop_after_two(n):
        calls.append(n)
        if len(calls) == 2:
            b._stop = True
        return orig(n)

    b.sampler.batch = stop_after_two
    b.run()
    assert b.iteration == 2
    b2 = Trainer(_cfg(dataset, str(tmp_path / "b")))
    assert b2.iteration == 2
    b2.run()
    assert b2.iteration == 6
    for (k, va), vb in zip(a.net.state_dict().items(), b2.net.state_dict().values()):
        assert torch.equal(va, vb), k


def test_consistency_term_is_trained_and_logged(dataset, tmp_path):
    tr = Trainer(_cfg(dataset, str(tmp_path / "c"), consistency=1.0, iterations=4))
    tr.run()
    log = [json.loads(l) for l in open(tmp_path / "c" / "train_log.jsonl")]
    assert len(log) == 4
    for r in log:
        assert np.isfinite(r["consistency"]) and r["consistency"] >= 0
        assert r["loss"] >= r["consistency"]  # the paper's loss plus the weighted term
    assert TrainConfig(**{**tr.cfg.to_dict(), "betas": tuple(tr.cfg.betas)}).consistency == 1.0


def test_export_and_manifest(dataset, tmp_path):
    out = str(tmp_path / "run")
    t = Trainer(_cfg(dataset, out, iterations=4, validate_every=2), command=["python3", "-m", "otomodel", "train"])
    t.run()
    man_path = export_checkpoint(os.path.join(out, "best.pt"), out, calibrate=True)
    m = json.load(open(man_path))
    validate(m)
    cal = m["uncertainty"]["calibration"]
    assert [r["case"] for r in cal["cases"]] == ["case-003/R"]
    assert m["uncertainty"]["flag_threshold"] is None or m["uncertainty"]["flag_threshold"] > cal["cases"][0]["score"]
    onnx_path = os.path.join(out, m["onnx"]["file"])
    assert m["onnx"]["sha256"] == sha256_file(onnx_path) and m["onnx"]["bytes"] == os.path.getsize(onnx_path)
    assert m["trained_on_synthetic_phantoms"] is True
    assert "not for diagnosis" in m["intended_use"] or "must not be used for diagnosis" in m["intended_use"]
    assert m["landmarks"] == ["helicotrema", "oval_window", "round_window"]
    assert m["chunk"] == {"size": [32, 32, 32], "overlap": 8, "stride": 24, "blend": "mean of overlapping windows"}
    assert m["voxel_size_mm"] == 0.2 and m["input"]["spatial_multiple"] == 4
    assert len(m["tta"]["set"]) == 10
    assert m["training"]["iterations"] == 4 and m["training"]["wall_time_s"] >= 0
    assert m["training"]["weights_from_iteration"] in (4, 2)   # best.pt: the best validation
    assert m["training"]["command"] == "python3 -m otomodel train"
    assert m["training"]["data"]["cases"] == {"train": 4, "validation": 1, "test": 0}
    # Normalisation comes from the training images: bone ~1400 HU, fluid ~20 HU.
    n = m["normalization"]
    assert -100 < n["clip_low"] < 200 and 1300 < n["clip_high"] < 1500 and n["std"] > 100
    # The plausible range brackets the training balls (radius 5 voxels of 0.2 mm: 4/3 pi 1^3 = 4.19 mm^3).
    pv = m["plausible_volume_mm3"]
    assert pv["min"] < pv["training_min"] <= pv["training_max"] < pv["max"]
    assert 3.5 < pv["training_min"] and pv["training_max"] < 5.0
    # The ONNX file holds the checkpoint's network.
    net = load_network(load_checkpoint(os.path.join(out, "best.pt")))
    x = torch.randn(1, 1, 12, 8, 16)
    with torch.no_grad():
        seg, heat = net(x)
    gs, gh = onnx_eval.run(onnx.load(onnx_path), {INPUT_NAME: x.numpy()})
    assert np.allclose(gs, seg.numpy(), atol=1e-4) and np.allclose(gh, heat.numpy(), atol=1e-4)


def _good_manifest():
    return {
        "format": "otonode-model-manifest/1", "name": "m", "created_utc": "2026-01-01T00:00:00Z",
        "intended_use": "trained on phantoms; not for diagnosis", "trained_on_synthetic_phantoms": True,
        "onnx": {"file": "model.onnx", "sha256": "0" * 64, "bytes": 10, "opset": 17},
        "input": {"name": "input", "layout": "NCDHW", "dtype": "float32", "axes": ["k", "j", "i"],
                  "spatial_multiple": 16},
        "outputs": {"segmentation": {"name": "segmentation", "layout": "NCDHW", "channels": 1, "kind": "logits"},
                    "heatmaps": {"name": "heatmaps", "layout": "NCDHW", "channels": 3}},
        "landmarks": ["helicotrema", "oval_window", "round_window"],
        "voxel_size_mm": 0.099, "chunk": {"size": [128, 128, 128], "overlap": 25},
        "normalization": {"low_quantile": 0.01, "high_quantile": 0.99, "clip_low": -500.0, "clip_high": 2000.0,
                          "mean": 800.0, "std": 400.0},
        "threshold": 0.5, "tta": {"set": tta_set()},
        "uncertainty": {"score": "s", "margin_mm": 1.0, "flag_threshold": 0.01},
        "plausible_volume_mm3": {"min": 50.0, "max": 400.0},
        "architecture": {}, "training": {"command": "c", "data": {}, "wall_time_s": 1.0, "iterations": 1},
    }


def _set(d, path, value):
    *head, last = path.split(".")
    for p in head:
        d = d[p]
    if value is KeyError:
        del d[last]
    else:
        d[last] = value


@pytest.mark.parametrize("path,value", [
    ("format", "other/1"), ("onnx.sha256", "xyz"), ("onnx.file", "../model.onnx"), ("input.layout", "NDHWC"),
    ("input.spatial_multiple", 12), ("outputs.heatmaps.channels", 2), ("outputs.segmentation.kind", "probability"),
    ("landmarks", ["oval_window", "helicotrema", "round_window"]), ("chunk.size", [100, 128, 128]),
    ("chunk.overlap", 128), ("normalization.std", 0.0), ("normalization.clip_high", -600.0), ("threshold", 1.5),
    ("tta.set", tta_set()[:9]), ("plausible_volume_mm3.max", 10.0), ("uncertainty.flag_threshold", "high"),
    ("intended_use", KeyError), ("training.wall_time_s", KeyError), ("voxel_size_mm", True),
])
def test_manifest_validation_rejects(path, value):
    validate(_good_manifest())
    m = copy.deepcopy(_good_manifest())
    _set(m, path, value)
    with pytest.raises(ManifestError):
        validate(m)


def test_cli_train_and_export(dataset, tmp_path):
    """python -m otomodel train ... runs, resumes, and exports on completion."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    out = str(tmp_path / "cli")
    cmd = [sys.executable, "-m", "otomodel", "train", "--data", dataset, "--out", out, "--preset", "tiny",
           "--chunk", "16", "--batch", "1", "--accumulate", "1", "--iterations", "2", "--voxel-mm", "0.2",
           "--threads", "1", "--window", "32", "--overlap", "8", "--log-every", "1"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "it 2/2" in r.stderr and os.path.exists(os.path.join(out, "model.onnx"))
    validate(json.load(open(os.path.join(out, "model.json"))))
    bad = subprocess.run([sys.executable, "-m", "otomodel", "train", "--data", str(tmp_path / "nope"), "--out", out],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "dataset.json" in bad.stderr


def test_no_validation_split_exports_plain_json(tmp_path):
    data = str(tmp_path / "data")
    write_dataset(data, n_train=2, n_val=0, n_neg=0)
    out = str(tmp_path / "run")
    Trainer(_cfg(data, out, iterations=2)).run()
    man_path = export_checkpoint(os.path.join(out, "best.pt"), out, calibrate=True)
    m = json.loads(open(man_path).read(), parse_constant=lambda c: pytest.fail(f"{c} in the manifest"))
    validate(m)
    assert m["training"]["best_validation_score"] is None
    assert m["uncertainty"]["flag_threshold"] is None and m["uncertainty"]["calibration"] is None


def test_real_data_export_needs_a_statement(dataset, tmp_path):
    out = str(tmp_path / "run")
    Trainer(_cfg(dataset, out, iterations=2)).run()
    with pytest.raises(ValueError, match="intended-use"):
        export_checkpoint(os.path.join(out, "best.pt"), out, synthetic=False)
    p = export_checkpoint(os.path.join(out, "best.pt"), out, synthetic=False,
                          intended_use="Research use on site X's CT; not for diagnosis.")
    m = json.load(open(p))
    assert m["trained_on_synthetic_phantoms"] is False and m["intended_use"].startswith("Research use")


def test_window_defaults_to_the_training_chunk(dataset, tmp_path):
    assert TrainConfig(chunk=96).inference_window() == 96
    assert TrainConfig(chunk=96, window=128).inference_window() == 128
    out = str(tmp_path / "run")
    Trainer(_cfg(dataset, out, iterations=1, window=0, overlap=5)).run()
    m = json.load(open(export_checkpoint(os.path.join(out, "best.pt"), out, calibrate=False)))
    assert m["chunk"]["size"] == [16, 16, 16] and m["chunk"]["overlap"] == 5
    with pytest.raises(ValueError, match="overlap"):
        Trainer(_cfg(dataset, str(tmp_path / "bad"), window=0, overlap=16))


def test_fine_tune_starts_from_an_exported_model(dataset, tmp_path):
    out = str(tmp_path / "run")
    Trainer(_cfg(dataset, out, iterations=2, validate_every=2)).run()
    # After two steps many instance-norm weights still equal their initial
    # ones, and the ONNX exporter merges equal initializers (the loader then
    # refuses); trained weights differ, so make these differ too.
    st = load_checkpoint(os.path.join(out, "best.pt"))
    gen = torch.Generator().manual_seed(0)
    st["model"] = {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in st["model"].items()}
    torch.save(st, os.path.join(out, "noisy.pt"))
    man_path = export_checkpoint(os.path.join(out, "noisy.pt"), out, calibrate=False)
    src = load_network(st)
    t = Trainer(_cfg(dataset, str(tmp_path / "ft"), init=os.path.join(out, "model.onnx"), seed=11))
    m = json.load(open(man_path))
    assert t.norm.to_dict() == {k: m["normalization"][k] for k in t.norm.to_dict()}
    own = t.net.state_dict()
    for k, v in src.state_dict().items():
        if ".terminals." not in k:   # deep supervision is not exported
            assert torch.equal(own[k], v), k
    assert t.schedule.at(0, 10) == t.schedule.at(9, 10) == (100.0, 2.0)
    with pytest.raises(ValueError):
        Trainer(_cfg(dataset, str(tmp_path / "bad"), preset="small", init=os.path.join(out, "model.onnx")))


def test_export_writes_postprocessing_and_volume_range(dataset, tmp_path):
    """The manifest names its post-processing (the Go analysis reads
    postprocessing.largest_component) and the plausible volume range, with
    no editing by hand."""
    out = str(tmp_path / "run")
    Trainer(_cfg(dataset, out, iterations=1)).run()
    plain = json.load(open(export_checkpoint(os.path.join(out, "best.pt"), out)))
    validate(plain)
    assert plain["postprocessing"]["largest_component"] is False
    p = export_checkpoint(os.path.join(out, "best.pt"), out, largest_component=True,
                          postprocessing_note="measured with it", history=["first line", "second line"])
    m = json.load(open(p))
    validate(m)
    assert m["postprocessing"]["largest_component"] is True and m["postprocessing"]["note"] == "measured with it"
    assert "largest" in m["postprocessing"]["description"]
    assert m["training"]["history"] == ["first line", "second line"]
    pv = m["plausible_volume_mm3"]
    assert pv["min"] == pytest.approx(0.5 * pv["training_min"]) and pv["max"] == pytest.approx(1.5 * pv["training_max"])
    assert "0.5" in pv["rule"] and "1.5" in pv["rule"]
    # A volume far outside the training labels' falls outside the range.
    assert not pv["min"] <= 0.0 <= pv["max"] and not pv["min"] <= 10 * pv["training_max"] <= pv["max"]


@pytest.mark.parametrize("value", ["yes", 1])
def test_manifest_validation_rejects_a_non_bool_largest_component(value):
    m = copy.deepcopy(_good_manifest())
    m["postprocessing"] = {"largest_component": True}
    validate(m)
    m["postprocessing"]["largest_component"] = value
    with pytest.raises(ManifestError, match="postprocessing"):
        validate(m)


def test_export_takes_scores_measured_by_the_go_analysis(dataset, tmp_path):
    out = str(tmp_path / "run")
    Trainer(_cfg(dataset, out, iterations=1)).run()
    scores = {"source": "otonode analyze, commit x", "cases": [
        {"case": "n1", "group": "normal", "score": 0.01}, {"case": "n2", "group": "normal", "score": 0.02},
        {"case": "n3", "group": "normal", "score": 0.03}, {"case": "m1", "group": "moderate", "score": 0.08}]}
    m = json.load(open(export_checkpoint(os.path.join(out, "best.pt"), out, scores=scores, calibrate=True)))
    validate(m)
    u = m["uncertainty"]
    # max(3 x median 0.02, 1.2 x max 0.03) = 0.06: above every normal case.
    assert u["flag_threshold"] == pytest.approx(0.06)
    assert u["calibration"]["source"] == "otonode analyze, commit x" and len(u["calibration"]["cases"]) == 4
    g = u["calibration"]["groups"]
    assert g["normal"]["median"] == pytest.approx(0.02) and g["moderate"]["ratio_to_normal_median"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="normal"):
        export_checkpoint(os.path.join(out, "best.pt"), out, scores={"cases": [{"case": "m", "group": "mild", "score": 1.0}]})
    with pytest.raises(ValueError, match="score"):
        export_checkpoint(os.path.join(out, "best.pt"), out,
                          scores={"cases": [{"case": "n", "group": "normal", "score": float("nan")}]})


def test_scores_from_reports(tmp_path):
    from otomodel.export import scores_from_reports, uncertainty_from_scores

    def report(name, doc):
        d = tmp_path / name
        d.mkdir()
        (d / "report.json").write_text(json.dumps(doc))
        return str(d / "report.json")

    ear = {"laterality": "R", "uncertainty": 0.02, "volume_mm3": 170.0, "flag": {"raised": False},
           "analysed_region": {"tta": "focused"}}
    a = report("n1", {"status": "done", "ears": [ear]})
    b = report("m1", {"input": {}, "result": {"status": "done", "ears": [
        dict(ear, uncertainty=0.05, flag={"raised": True, "reason": "r"})]}})
    c = report("neg", {"status": "no-inner-ear", "reason": "no labyrinth", "ears": []})
    doc = scores_from_reports([("normal", a), ("moderate", b), ("negative", c)], source="test")
    assert [(x["case"], x["group"], x["score"], x["flagged"]) for x in doc["cases"]] == \
        [("n1", "normal", 0.02, False), ("m1", "moderate", 0.05, True)]
    assert doc["not_analysed"] == [{"case": "neg", "group": "negative", "status": "no-inner-ear", "reason": "no labyrinth"}]
    u = uncertainty_from_scores(doc)
    assert u["calibration"]["groups"]["moderate"]["ratio_to_normal_median"] == pytest.approx(2.5)


def test_cli_export_with_postprocessing_and_scores(dataset, tmp_path):
    """python -m otomodel scores + export --largest-component --scores: the
    shipped manifest comes from commands, not from editing by hand."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    out = str(tmp_path / "run")
    Trainer(_cfg(dataset, out, iterations=1)).run()
    reps = []
    for name, group, score in (("a", "normal", 0.01), ("b", "normal", 0.03), ("c", "severe", 0.2)):
        d = tmp_path / name
        d.mkdir()
        (d / "report.json").write_text(json.dumps({"status": "done", "ears": [
            {"laterality": "R", "uncertainty": score, "volume_mm3": 4.0, "flag": {"raised": False}}]}))
        reps.append(f"{group}={d / 'report.json'}")
    scores = str(tmp_path / "scores.json")
    r = subprocess.run([sys.executable, "-m", "otomodel", "scores", "--source", "unit test", "--out", scores] + reps,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "otomodel", "export", "--checkpoint", os.path.join(out, "best.pt"),
                        "--out", out, "--largest-component", "true", "--scores", scores,
                        "--history", "one", "--history", "two"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = json.load(open(os.path.join(out, "model.json")))
    validate(m)
    assert m["postprocessing"]["largest_component"] is True
    assert m["uncertainty"]["flag_threshold"] == pytest.approx(max(3 * 0.02, 1.2 * 0.03))
    assert m["uncertainty"]["calibration"]["source"] == "unit test"
    assert m["training"]["history"] == ["one", "two"]
    bad = subprocess.run([sys.executable, "-m", "otomodel", "scores", "nogroup.json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "GROUP=" in bad.stderr


def test_recalibrate_manifest_keeps_the_model(dataset, tmp_path):
    from otomodel.export import recalibrate_manifest

    out = str(tmp_path / "run")
    Trainer(_cfg(dataset, out, iterations=1)).run()
    p = export_checkpoint(os.path.join(out, "best.pt"), out)
    before = json.load(open(p))
    scores = {"source": "s", "cases": [{"case": "a", "group": "normal", "score": 0.1},
                                       {"case": "b", "group": "moderate", "score": 0.15}]}
    m = recalibrate_manifest(p, scores, largest_component=True, postprocessing_note="why")
    assert m == json.load(open(p))
    assert m["uncertainty"]["flag_threshold"] == pytest.approx(0.3)
    assert m["postprocessing"]["largest_component"] is True and m["postprocessing"]["note"] == "why"
    assert {k: v for k, v in m.items() if k not in ("uncertainty", "postprocessing")} == \
        {k: v for k, v in before.items() if k not in ("uncertainty", "postprocessing")}
    # A manifest whose ONNX file changed is refused.
    with open(os.path.join(out, m["onnx"]["file"]), "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="sha256"):
        recalibrate_manifest(p, scores)
