"""python -m otomodel {train,export,bench} ... (run from analysis/model, or
with analysis/model on PYTHONPATH)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .network import PRESETS


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"want true/false, got {s!r}")


def _train(a) -> int:
    from .export import export_checkpoint
    from .train import Trainer, TrainConfig

    cfg = TrainConfig(data=a.data, out=a.out, preset=a.preset, activation=a.activation, attention=a.attention,
                      deep_supervision=a.deep_supervision, voxel_mm=a.voxel_mm, roi_mm=a.roi_mm, chunk=a.chunk, batch=a.batch,
                      accumulate=a.accumulate, iterations=a.iterations, lr=a.lr, weight_decay=a.weight_decay,
                      warmup=a.warmup, anneal=a.anneal, heatmap_weight=a.heatmap_weight, consistency=a.consistency,
                      p_foreground=a.p_foreground, p_hard=a.p_hard, init=a.init, augment=a.augment, seed=a.seed, threads=a.threads,
                      device=a.device, validate_every=a.validate_every, checkpoint_every=a.checkpoint_every,
                      log_every=a.log_every, window=a.window, overlap=a.overlap)
    trainer = Trainer(cfg, command=[sys.executable, "-m", "otomodel"] + sys.argv[1:])
    last = trainer.run()
    if a.export and trainer.iteration >= cfg.iterations:
        export_checkpoint(os.path.join(a.out, "best.pt"), a.out, name=a.name, calibrate=a.calibrate,
                          calibrate_window=a.calibrate_window or None, largest_component=a.largest_component)
    print(json.dumps(last, allow_nan=False))
    return 0


def _export(a) -> int:
    from .export import export_checkpoint

    scores = None
    if a.scores:
        with open(a.scores) as f:
            scores = json.load(f)
    export_checkpoint(a.checkpoint, a.out, name=a.name, window=a.window, overlap=a.overlap,
                      calibrate=a.calibrate and scores is None, calibrate_data=a.data,
                      calibrate_window=a.calibrate_window or None, synthetic=a.synthetic,
                      intended_use=a.intended_use, largest_component=a.largest_component,
                      postprocessing_note=a.postprocessing_note, scores=scores, history=a.history)
    return 0


def _scores(a) -> int:
    from .export import scores_from_reports

    pairs = []
    for arg in a.reports:
        group, sep, path = arg.partition("=")
        if not sep or not group or not path:
            raise ValueError(f"want GROUP=REPORT.json, got {arg!r}")
        pairs.append((group, path))
    doc = scores_from_reports(pairs, source=a.source)
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _calibrate(a) -> int:
    from .export import recalibrate_manifest

    scores = None
    if a.scores:
        with open(a.scores) as f:
            scores = json.load(f)
    m = recalibrate_manifest(a.manifest, scores, a.largest_component, a.postprocessing_note)
    u = m["uncertainty"]
    print(json.dumps({"flag_threshold": u.get("flag_threshold"),
                      "groups": (u.get("calibration") or {}).get("groups"),
                      "postprocessing": m.get("postprocessing")}, indent=2))
    return 0


def _bench(a) -> int:
    import torch

    from .network import BiHeadedUNet, NetworkConfig, count_parameters

    if a.threads:
        torch.set_num_threads(a.threads)
    net = BiHeadedUNet(NetworkConfig.preset(a.preset, activation=a.activation)).eval()
    x = torch.randn(1, 1, a.size, a.size, a.size)
    times = []
    with torch.no_grad():
        net(x)
        for _ in range(a.repeat):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    print(json.dumps({"preset": a.preset, "activation": net.cfg.activation, "size": a.size,
                      "threads": torch.get_num_threads(), "parameters": count_parameters(net),
                      "torch_seconds": [round(t, 3) for t in times], "torch_min_s": round(min(times), 3)}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m otomodel", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train (resumes from OUT/checkpoint.pt if present), then export")
    t.add_argument("--data", required=True, help="dataset folder (dataset.json + case folders)")
    t.add_argument("--out", required=True, help="output folder: checkpoints, log, cache, model.onnx + model.json")
    t.add_argument("--preset", default="small", choices=sorted(PRESETS))
    t.add_argument("--activation", default="", help="mish, silu, gelu, leakyrelu, relu, prelu (default: the preset's)")
    t.add_argument("--attention", type=_bool, default=True)
    t.add_argument("--deep-supervision", type=_bool, default=True)
    t.add_argument("--voxel-mm", type=float, default=0.099)
    t.add_argument("--roi-mm", type=float, default=24.0,
                   help="box per ear cropped before resampling, mm (0: whole volumes); the analysis runs +-12 mm")
    t.add_argument("--chunk", type=int, default=64, help="training chunk edge in voxels")
    t.add_argument("--batch", type=int, default=2)
    t.add_argument("--accumulate", type=int, default=15, help="iterations per optimiser step")
    t.add_argument("--iterations", type=int, default=75000)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.025)
    t.add_argument("--warmup", type=float, default=0.05, help="fraction of steps")
    t.add_argument("--anneal", type=float, default=0.3, help="fraction of steps")
    t.add_argument("--heatmap-weight", type=float, default=1.0)
    t.add_argument("--consistency", type=float, default=0.0,
                   help="weight of the rotation-consistency term: each batch also runs under a random TTA "
                        "rotation and the two segmentations are pulled together (0: off, the paper's loss)")
    t.add_argument("--p-foreground", type=float, default=0.5, help="chunks placed around the labyrinth")
    t.add_argument("--p-hard", type=float, default=0.3,
                   help="chunks placed around background of the labyrinth fluid's density (the rest: anywhere)")
    t.add_argument("--init", default="", help="start from these weights: a checkpoint .pt or an exported model.onnx "
                   "(with its model.json; keeps its normalisation and the heatmap schedule's last stage)")
    t.add_argument("--augment", type=_bool, default=True)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    t.add_argument("--validate-every", type=int, default=750)
    t.add_argument("--checkpoint-every", type=int, default=150)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--window", type=int, default=0,
                   help="inference window for the manifest and validation (0: --chunk; train on what you infer on)")
    t.add_argument("--overlap", type=int, default=25, help="inference overlap for the manifest")
    t.add_argument("--export", type=_bool, default=True, help="export OUT/model.onnx when the run completes")
    t.add_argument("--name", default="otonode-inner-ear-phantom")
    t.add_argument("--calibrate", type=_bool, default=True,
                   help="calibrate the uncertainty flag threshold by TTA on the validation cases at export")
    t.add_argument("--calibrate-window", type=int, default=0, help="TTA window for calibration (0: --window)")
    t.add_argument("--largest-component", type=_bool, default=False,
                   help="the exported manifest asks the analysis to keep each ear's largest connected component")
    t.set_defaults(func=_train)

    e = sub.add_parser("export", help="checkpoint -> ONNX + manifest")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--name", default="otonode-inner-ear-phantom")
    e.add_argument("--window", type=int, default=0)
    e.add_argument("--overlap", type=int, default=None)
    e.add_argument("--calibrate", type=_bool, default=True)
    e.add_argument("--calibrate-window", type=int, default=0)
    e.add_argument("--data", default=None, help="dataset for calibration (default: the one trained on)")
    e.add_argument("--synthetic", type=_bool, default=True, help="trained on synthetic phantoms")
    e.add_argument("--intended-use", default=None, help="the statement for users (required with --synthetic false)")
    e.add_argument("--largest-component", type=_bool, default=False,
                   help="the manifest asks the analysis to keep each ear's largest connected component")
    e.add_argument("--postprocessing-note", default=None, help="why (the figures it was measured with)")
    e.add_argument("--scores", default=None,
                   help="JSON of TTA uncertainty scores measured by the Go analysis ({source, cases: [{case, group, "
                        "score}]}): the flag threshold comes from the 'normal' group (replaces --calibrate)")
    e.add_argument("--history", action="append", default=None,
                   help="a line for training.history (repeatable): how the run really went")
    e.set_defaults(func=_export)

    s = sub.add_parser("scores", help="collect TTA uncertainty scores from `otonode analyze` reports "
                       "into the JSON that export --scores reads")
    s.add_argument("reports", nargs="+", help="GROUP=path/report.json (group: normal, mild, moderate, ...)")
    s.add_argument("--source", default="", help="how the reports were made (command, commit, machine)")
    s.add_argument("--out", default="", help="write here instead of stdout")
    s.set_defaults(func=_scores)

    c = sub.add_parser("calibrate", help="rewrite an exported manifest's uncertainty block from a scores file "
                       "(and/or its postprocessing); the ONNX file is unchanged")
    c.add_argument("--manifest", required=True)
    c.add_argument("--scores", default=None, help="from `otomodel scores`")
    c.add_argument("--largest-component", type=_bool, default=None)
    c.add_argument("--postprocessing-note", default=None)
    c.set_defaults(func=_calibrate)

    b = sub.add_parser("bench", help="PyTorch CPU time of one forward pass")
    b.add_argument("--preset", default="small", choices=sorted(PRESETS))
    b.add_argument("--activation", default="")
    b.add_argument("--size", type=int, default=128)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--repeat", type=int, default=3)
    b.set_defaults(func=_bench)

    a = p.parse_args(argv)
    try:
        return a.func(a)
    except (ValueError, OSError) as err:
        print(f"otomodel {a.cmd}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
