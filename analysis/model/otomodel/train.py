"""The training loop: AdamW with weight decay, trapezoidal learning rate,
gradient accumulation, deep supervision, the heatmap schedule, periodic
validation, checkpoints that a run resumes from, and progress on stderr.

One iteration (as in the paper) is the forward and backward pass of one batch
of chunks; the optimiser steps every `accumulate` iterations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from . import LANDMARKS
from .augment import AugmentConfig, ChunkSampler, extract_chunk, hard_negative_sample
from .data import Case, CaseStore, Normalization, compute_normalization
from .losses import HeatmapSchedule, batch_heatmaps, rotation_consistency, total_loss, trapezoid_lr
from .manifest import tta_set
from .network import BiHeadedUNet, NetworkConfig, count_parameters, narrow_state_dict


@dataclasses.dataclass
class TrainConfig:
    data: str = ""
    out: str = ""
    preset: str = "small"
    activation: str = ""         # "": the preset's (paper: mish, small: silu)
    attention: bool = True
    deep_supervision: bool = True
    voxel_mm: float = 0.099
    # Box per ear cropped before resampling (0: whole volume): the analysis
    # runs the network over +-12 mm around each ear it finds, so training
    # chunks come from a box as large, background far from the labyrinth
    # included (v0 trained on 20 mm and called soft tissue labyrinth).
    roi_mm: float = 24.0
    chunk: int = 64              # training chunk edge (voxels)
    batch: int = 2
    accumulate: int = 15         # the paper's best setting
    iterations: int = 75000      # the paper's budget
    lr: float = 1e-3
    weight_decay: float = 0.025  # the paper's lambda
    betas: Tuple[float, float] = (0.9, 0.999)
    warmup: float = 0.05
    anneal: float = 0.3
    heatmap_weight: float = 1.0
    # Weight of the rotation-consistency term (losses.rotation_consistency):
    # each batch also runs rotated by a random transform of the TTA set, both
    # copies supervised, and the two segmentations are pulled together.
    # 0: off (the paper's loss).
    consistency: float = 0.0
    p_foreground: float = 0.5
    p_hard: float = 0.3          # chunks around background of the fluid's density (see ChunkSampler)
    init: str = ""               # start from these weights: a checkpoint (.pt) or an exported model.onnx
    augment: bool = True
    seed: int = 1
    threads: int = 0             # 0: leave torch's default
    device: str = "auto"
    validate_every: int = 750    # the paper's interval
    checkpoint_every: int = 150
    log_every: int = 10
    # What the manifest tells the analysis (inference-time settings). The
    # window defaults to the training chunk: a model trained on 64^3 chunks
    # segmented a 128^3 window much worse than a 64^3 one (smoke run: Dice
    # 0.45 against 0.91, same weights), so train on the window you infer on.
    window: int = 0              # 0: the training chunk
    overlap: int = 25

    def inference_window(self) -> int:
        return self.window or self.chunk

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def network_config(self) -> NetworkConfig:
        return NetworkConfig.preset(self.preset, activation=self.activation, attention=self.attention,
                                    deep_supervision_levels=3 if self.deep_supervision else 0)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt_s(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def plausible_volume_range(cases: List[Case], low_factor: float = 0.5, high_factor: float = 1.5) -> Dict[str, float]:
    """Range of inner-ear (fluid space) volume per ear that a prediction must
    fall in, from the training labels, widened by fixed factors."""
    vols = [c.foreground_volume_mm3() / c.ears for c in cases if c.ears > 0 and c.label.any()]
    if not vols:
        return {"min_mm3": None, "max_mm3": None, "training_min_mm3": None, "training_max_mm3": None}
    return {"min_mm3": low_factor * min(vols), "max_mm3": high_factor * max(vols),
            "training_min_mm3": min(vols), "training_max_mm3": max(vols),
            "factors": [low_factor, high_factor]}


def validation_chunk(case: Case, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """A deterministic chunk origin per validation case: centred on the
    landmarks' (or foreground's) centroid, or on the volume's centre."""
    if len(case.points):
        centre = np.asarray(case.points).mean(axis=0)
    elif case.label.any():
        centre = np.argwhere(np.asarray(case.label) > 0).mean(axis=0)
    else:
        centre = np.asarray(case.image.shape) / 2.0
    return np.rint(centre).astype(np.int64) - size // 2


def validation_background_chunks(case: Case, size: int, n: int = 2) -> List[np.ndarray]:
    """Deterministic chunk origins around background voxels of the fluid's
    density (hard_negative_sample), so validation sees the false positives
    that the analysis's larger region exposes."""
    hard = hard_negative_sample(case, n=2000)
    if not len(hard):
        return []
    pick = np.random.default_rng(len(hard)).choice(len(hard), min(n, len(hard)), replace=False)
    return [hard[i] - size // 2 for i in pick]


@torch.no_grad()
def validate(net: BiHeadedUNet, cases: List[Case], norm: Normalization, size: int, device: torch.device,
             amplitude: float, sigma: float) -> Dict[str, float]:
    """Dice (threshold 0.5) and landmark error (argmax, voxels) on one chunk
    per validation case around its ear; val_dice_context adds two chunks per
    case around background of the fluid's density (their false positives
    count against it), val_fp_voxels is the mean false-positive count of
    those chunks."""
    net.eval()
    inter = denom = 0.0
    bg_inter = bg_denom = 0.0
    fp: List[float] = []
    errs: List[List[float]] = [[] for _ in LANDMARKS]
    losses = []
    for c in cases:
        origin = validation_chunk(c, size)
        img, lab, pts = extract_chunk(c, origin, (size,) * 3, np.eye(3), fill=norm.clip_low)
        x = norm.apply(img)[None, None].to(device)
        y = lab[None, None].to(device)
        seg, heat = net(x)
        P = torch.from_numpy(np.asarray(pts, dtype=np.float32)).reshape(1, -1, 3)
        C = torch.from_numpy(np.asarray(c.channels, dtype=np.int64)).reshape(1, -1)
        ht = batch_heatmaps((size,) * 3, P.to(device), C.to(device), len(LANDMARKS), amplitude, sigma)
        loss, _ = total_loss(seg, heat, y, ht)
        losses.append(float(loss))
        pred = (seg > 0).float()
        inter += float((pred * y).sum())
        denom += float(pred.sum() + y.sum())
        for p, ch in zip(pts, c.channels):
            if np.all(p >= 0) and np.all(p <= size - 1):
                flat = int(torch.argmax(heat[0, ch]))
                am = np.array(np.unravel_index(flat, (size,) * 3), dtype=np.float64)
                errs[ch].append(float(np.linalg.norm(am - p)))
        for origin in validation_background_chunks(c, size):
            img, lab, _ = extract_chunk(c, origin, (size,) * 3, np.eye(3), fill=norm.clip_low)
            seg, _ = net(norm.apply(img)[None, None].to(device))
            pred = (seg[0, 0] > 0).float()
            y = lab.to(device)
            bg_inter += float((pred * y).sum())
            bg_denom += float(pred.sum() + y.sum())
            fp.append(float((pred * (1 - y)).sum()))
    net.train()
    out = {"val_loss": float(np.mean(losses)) if losses else float("nan"),
           "val_dice": (2 * inter / denom) if denom > 0 else float("nan"),
           "val_dice_context": (2 * (inter + bg_inter) / (denom + bg_denom)) if denom + bg_denom > 0 else float("nan"),
           "val_fp_voxels": float(np.mean(fp)) if fp else float("nan")}
    all_errs = []
    for name, e in zip(LANDMARKS, errs):
        out[f"val_err_{name}"] = float(np.mean(e)) if e else float("nan")
        all_errs += e
    out["val_err_mean"] = float(np.mean(all_errs)) if all_errs else float("nan")
    # One number to pick the best checkpoint: a voxel of landmark error
    # costs as much as 0.02 Dice.
    d = out["val_dice_context"] if not math.isnan(out["val_dice_context"]) else 0.0
    e = out["val_err_mean"] if not math.isnan(out["val_err_mean"]) else 0.0
    out["val_score"] = d - 0.02 * e
    return out


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Our own checkpoints hold numpy RNG state and configuration besides
    tensors; PyTorch >= 2.6 loads only tensors unless told otherwise."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except TypeError:  # PyTorch without the weights_only argument
        return torch.load(path, map_location=map_location)


def _atomic_save(obj, path: str) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_initial_weights(net: BiHeadedUNet, path: str, device="cpu") -> Normalization:
    """Loads net's weights from a checkpoint (.pt) or an exported ONNX file
    (its initializers; the manifest beside it gives the normalisation the
    weights expect). The deep-supervision terminals are not exported, so from
    ONNX they keep their fresh initialisation. Returns the normalisation."""
    if path.endswith(".onnx"):
        import onnx
        from onnx import numpy_helper

        man_path = os.path.join(os.path.dirname(path) or ".", "model.json")
        with open(man_path) as f:
            man = json.load(f)
        model = onnx.load(path)
        tensors = {}
        for t in model.graph.initializer:
            name = t.name[len("net."):] if t.name.startswith("net.") else t.name
            tensors[name] = torch.from_numpy(numpy_helper.to_array(t).copy())
        own = net.state_dict()
        missing = [k for k in own if k not in tensors]
        if any(".terminals." not in k for k in missing):
            raise ValueError(f"{path}: no initializers for {[k for k in missing if '.terminals.' not in k][:5]} "
                             "(another architecture, or equal initializers merged by the exporter)")
        if any(k in tensors and tuple(tensors[k].shape) != tuple(own[k].shape) for k in own):
            # A wider network of the same layout (small -> compact): cut
            # down; other shapes are another architecture and fail here.
            try:
                tensors = narrow_state_dict(tensors, own)
            except ValueError as e:
                raise ValueError(f"{path}: weights do not fit {net.cfg.widths}: {e}") from e
            _progress(f"narrowed the weights of {path} to widths {list(net.cfg.widths)} (first channels kept)")
        net.load_state_dict({k: tensors[k] for k in own if k in tensors}, strict=False)
        n = man["normalization"]
        return Normalization(n["low_quantile"], n["high_quantile"], n["clip_low"], n["clip_high"], n["mean"], n["std"])
    st = load_checkpoint(path, device)
    theirs, ours = dict(st.get("network") or {}), net.cfg.to_dict()
    if {k: v for k, v in theirs.items() if k != "widths"} != {k: v for k, v in ours.items() if k != "widths"} or \
            len(theirs.get("widths", ())) != len(ours["widths"]):
        raise ValueError(f"{path}: checkpoint network {st.get('network')} differs from {ours}")
    model = st["model"]
    if list(theirs["widths"]) != list(ours["widths"]):
        model = narrow_state_dict(model, net.state_dict())
        _progress(f"narrowed the weights of {path} to widths {list(net.cfg.widths)} (first channels kept)")
    net.load_state_dict(model)
    return Normalization.from_dict(st["normalization"])


class Trainer:
    def __init__(self, cfg: TrainConfig, command: Optional[List[str]] = None):
        if not cfg.data or not cfg.out:
            raise ValueError("training needs a dataset folder and an output folder")
        self.cfg = cfg
        self.command = command or []
        os.makedirs(cfg.out, exist_ok=True)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.device = select_device(cfg.device)
        seed_everything(cfg.seed)
        self.store = CaseStore(cfg.data, cfg.voxel_mm, os.path.join(cfg.out, "cache"), cfg.roi_mm)
        ncfg = cfg.network_config()
        for what, n in (("chunk", cfg.chunk), ("window", cfg.inference_window())):
            if n % ncfg.spatial_multiple:
                raise ValueError(f"{what} {n} must be divisible by {ncfg.spatial_multiple}")
        if not 0 <= cfg.overlap < cfg.inference_window():
            raise ValueError(f"overlap {cfg.overlap} must be in [0, window)")
        t0 = time.time()
        train_ids, val_ids = self.store.ids("train"), self.store.ids("validation")
        if not train_ids:
            raise ValueError(f"{cfg.data}: the train split is empty")
        self.train_cases = []
        for n, cid in enumerate(train_ids, 1):
            self.train_cases.extend(self.store.load(cid))
            _progress(f"loading training cases {n}/{len(train_ids)} ({cid})")
        self.val_cases = [c for cid in val_ids for c in self.store.load(cid)]
        _progress(f"loaded {len(self.train_cases)} training and {len(self.val_cases)} validation regions "
                  f"in {time.time() - t0:.1f} s")
        self.net = BiHeadedUNet(ncfg).to(self.device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     betas=tuple(cfg.betas))
        self.schedule = HeatmapSchedule()
        if cfg.init:
            # Fine-tuning keeps the heatmaps the weights were trained to
            # give: the schedule's last stage throughout.
            d = HeatmapSchedule()
            self.schedule = HeatmapSchedule((0.0,), (d.amplitudes[-1],), (d.sigmas[-1],))
        self.aug = AugmentConfig(enabled=cfg.augment)
        self.iteration = 0
        self.wall_s = 0.0
        self.best_score = -float("inf")
        self.rng = np.random.default_rng(cfg.seed)
        self.norm: Optional[Normalization] = None
        self._stop = False
        ckpt = os.path.join(cfg.out, "checkpoint.pt")
        if os.path.exists(ckpt):
            self._resume(ckpt)
        elif cfg.init:
            self.norm = load_initial_weights(self.net, cfg.init, self.device)
            _progress(f"starting from the weights of {cfg.init}")
        if self.norm is None:
            self.norm = compute_normalization([c.image for c in self.train_cases], seed=cfg.seed)
        self.sampler = ChunkSampler(self.train_cases, self.norm, (cfg.chunk,) * 3, self.rng, self.aug,
                                    cfg.p_foreground, cfg.p_hard)

    # -- checkpoints ------------------------------------------------------
    def state(self) -> dict:
        return {"format": "otomodel-checkpoint/1", "iteration": self.iteration, "wall_s": self.wall_s,
                "best_score": self.best_score, "train_config": self.cfg.to_dict(),
                "network": self.net.cfg.to_dict(), "normalization": self.norm.to_dict(),
                "heatmap_schedule": self.schedule.to_dict(), "augment": self.aug.to_dict(),
                "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "rng_numpy": self.rng.bit_generator.state, "rng_torch": torch.get_rng_state(),
                "plausible_volume": plausible_volume_range(self.train_cases),
                "data_summary": self.data_summary(), "command": self.command,
                "torch_version": torch.__version__, "device": str(self.device)}

    def _resume(self, path: str) -> None:
        st = load_checkpoint(path, self.device)
        if st.get("network") != self.net.cfg.to_dict():
            raise ValueError(f"{path}: checkpoint network {st.get('network')} differs from {self.net.cfg.to_dict()}")
        self.net.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.iteration = int(st["iteration"])
        self.wall_s = float(st.get("wall_s", 0.0))
        self.best_score = float(st.get("best_score", -float("inf")))
        self.norm = Normalization.from_dict(st["normalization"])
        self.rng.bit_generator.state = st["rng_numpy"]
        torch.set_rng_state(st["rng_torch"])
        _progress(f"resumed from {path} at iteration {self.iteration} ({_fmt_s(self.wall_s)} trained so far)")

    def save_checkpoint(self) -> str:
        path = os.path.join(self.cfg.out, "checkpoint.pt")
        _atomic_save(self.state(), path)
        return path

    def data_summary(self) -> dict:
        idx = self.store.index
        extra = {k: v for k, v in idx.items() if k not in ("splits",)}
        return {"path": os.path.abspath(self.cfg.data),
                "cases": {k: len(v or []) for k, v in idx.get("splits", {}).items()},
                "dataset": extra}

    def _consistency_step(self, img: torch.Tensor, lab: torch.Tensor, heat_t: torch.Tensor):
        """The batch and its copy under a random non-identity TTA rotation in
        one forward pass: the paper's loss on both, plus the consistency term
        on the full-resolution segmentations."""
        cfg = self.cfg
        t = tta_set()[1:][int(self.rng.integers(len(tta_set()) - 1))]
        k, dims = t["k"], tuple(t["plane"])
        sp = (dims[0] + 2, dims[1] + 2)
        rot = lambda x: torch.rot90(x, k, sp)
        seg_o, heat_o = self.net(torch.cat([img, rot(img)]), deep=cfg.deep_supervision)
        loss, parts = total_loss(seg_o, heat_o, torch.cat([lab, rot(lab)]), torch.cat([heat_t, rot(heat_t)]),
                                 cfg.heatmap_weight)
        full = seg_o[0] if isinstance(seg_o, (list, tuple)) else seg_o
        n = img.shape[0]
        c = rotation_consistency(full[:n], full[n:], k, dims)
        loss = loss + cfg.consistency * c
        parts["consistency"] = float(c.detach())
        parts["loss"] = float(loss.detach())
        return loss, parts

    # -- the loop -----------------------------------------------------------
    def _on_signal(self, signum, frame):
        _progress(f"signal {signum}: stopping at the next optimiser step (a checkpoint will be written)")
        self._stop = True

    def run(self) -> dict:
        cfg = self.cfg
        steps_total = math.ceil(cfg.iterations / cfg.accumulate)
        log_path = os.path.join(cfg.out, "train_log.jsonl")
        old = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                old[s] = signal.signal(s, self._on_signal)
        except ValueError:  # not the main thread
            pass
        self.net.train()
        params = count_parameters(self.net)
        _progress(f"training {cfg.preset} ({params} parameters, exported graph) on {self.device}, "
                  f"chunk {cfg.chunk}^3 x {cfg.batch}, accumulate {cfg.accumulate}, "
                  f"{cfg.iterations} iterations, from iteration {self.iteration}")
        t_window, n_window = time.time(), 0
        last: Dict[str, float] = {}
        self.opt.zero_grad(set_to_none=True)
        try:
            with open(log_path, "a") as log:
                while self.iteration < cfg.iterations:
                    t_it = time.time()
                    step = self.iteration // cfg.accumulate
                    lr = trapezoid_lr(step, steps_total, cfg.lr, cfg.warmup, cfg.anneal)
                    for g in self.opt.param_groups:
                        g["lr"] = lr
                    amp, sigma = self.schedule.at(self.iteration, cfg.iterations)
                    img, lab, pts, chans = self.sampler.batch(cfg.batch)
                    img, lab = img.to(self.device), lab.to(self.device)
                    heat_t = batch_heatmaps((cfg.chunk,) * 3, pts.to(self.device), chans.to(self.device),
                                            len(LANDMARKS), amp, sigma)
                    if cfg.consistency > 0:
                        loss, parts = self._consistency_step(img, lab, heat_t)
                    else:
                        seg_o, heat_o = self.net(img, deep=cfg.deep_supervision)
                        loss, parts = total_loss(seg_o, heat_o, lab, heat_t, cfg.heatmap_weight)
                    (loss / cfg.accumulate).backward()
                    self.iteration += 1
                    boundary = self.iteration % cfg.accumulate == 0 or self.iteration == cfg.iterations
                    if boundary:
                        self.opt.step()
                        self.opt.zero_grad(set_to_none=True)
                    dt = time.time() - t_it
                    self.wall_s += dt
                    n_window += 1
                    rec = {"iteration": self.iteration, "lr": lr, "amplitude": amp, "sigma": sigma,
                           "seconds": round(dt, 4), **{k: round(v, 6) for k, v in parts.items()}}
                    if boundary and self.val_cases and (self.iteration % cfg.validate_every < cfg.accumulate
                                                        or self.iteration == cfg.iterations):
                        # Validate on the inference window (the manifest's), not the
                        # training chunk: that is what the analysis will run.
                        v = validate(self.net, self.val_cases, self.norm, cfg.inference_window(), self.device,
                                     amp, sigma)
                        rec.update({k: (None if math.isnan(x) else round(x, 6)) for k, x in v.items()})
                        if v["val_score"] > self.best_score:
                            self.best_score = v["val_score"]
                            _atomic_save(self.state(), os.path.join(cfg.out, "best.pt"))
                        _progress(f"  validation at {self.iteration}: dice {v['val_dice']:.4f}, landmark error "
                                  f"{v['val_err_mean']:.2f} vox, loss {v['val_loss']:.4f}")
                    log.write(json.dumps(rec) + "\n")
                    last = rec
                    if self.iteration % cfg.log_every == 0 or self.iteration == cfg.iterations:
                        log.flush()
                        per_it = (time.time() - t_window) / max(n_window, 1)
                        _progress(f"it {self.iteration}/{cfg.iterations} loss {parts['loss']:.4f} "
                                  f"(bce {parts['bce']:.4f} dice {parts['dice_loss']:.4f} mse {parts['mse']:.4f}) "
                                  f"lr {lr:.2e} amp {amp:g} sigma {sigma:g} {per_it:.2f} s/it "
                                  f"eta {_fmt_s(per_it * (cfg.iterations - self.iteration))}")
                        t_window, n_window = time.time(), 0
                    if boundary and (self.iteration % cfg.checkpoint_every < cfg.accumulate or self._stop):
                        self.save_checkpoint()
                    if self._stop and boundary:
                        break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        path = self.save_checkpoint()
        if not self.val_cases or not os.path.exists(os.path.join(cfg.out, "best.pt")):
            _atomic_save(self.state(), os.path.join(cfg.out, "best.pt"))
        _progress(f"checkpoint {path} at iteration {self.iteration}, {_fmt_s(self.wall_s)} of training")
        return last
