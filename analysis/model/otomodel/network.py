"""The bi-headed 3D U-Net of Stebani et al. 2023.

Layout (widths w0..wL, L = depth = number of down-samplings):
  encoder level 0:  double conv 1 -> w0
  encoder level l:  strided 2^3 conv w(l-1) -> w(l-1) (channels kept across
                    the transition, as the paper says), then double conv -> w(l)
  decoder level l:  transposed 2^3 conv w(l+1) -> w(l), attention gate on the
                    skip, concatenation, double conv 2 w(l) -> w(l)
Each conv is 3^3, followed by instance norm and the activation. The two
decoders have their own weights; the segmentation head ends in 1 logit
channel, the heatmap head in 3 linear channels. Deep supervision adds 1x1 conv
terminals at the lower decoder levels; they exist only for training and are
not part of the exported graph.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS: Dict[str, Tuple[int, ...]] = {
    # The paper's channel cascade: five levels, four down-samplings.
    "paper": (32, 64, 128, 256, 320),
    # Sized for CPU inference: one 128^3 window in about 2 s on two cores.
    "small": (8, 16, 32, 64, 64),
    # The small preset with half the channels at the two finest levels, where
    # almost all of the per-voxel work is: about half its ONNX Runtime time per
    # window, for the 60 s budget of a 512x512x400 volume with 10 TTA passes.
    "compact": (4, 8, 32, 64, 64),
    # For tests only.
    "tiny": (4, 8, 8),
}

# Each preset's activation. The paper's final network uses Mish; its ablation
# found SiLU and GELU about as good. ONNX (opset 17) has no Mish operator, so
# Mish runs as three element-wise passes (Softplus, Tanh, Mul) and made the
# small preset 1.4-1.8x slower in ONNX Runtime on two cores, over the budget,
# while ONNX Runtime fuses x * sigmoid(x): the small preset uses SiLU.
PRESET_ACTIVATION: Dict[str, str] = {"paper": "mish", "small": "silu", "compact": "silu", "tiny": "mish"}


class Mish(nn.Module):
    """x * tanh(softplus(x)), written out so that it exports to ONNX
    opsets without a Mish operator (Softplus, Tanh and Mul are everywhere)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


def make_activation(name: str) -> nn.Module:
    name = name.lower()
    if name == "mish":
        return Mish()
    if name in ("leakyrelu", "leaky_relu"):
        # The paper's base configuration used slope 0.025.
        return nn.LeakyReLU(0.025, inplace=False)
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name in ("silu", "swish"):
        return nn.SiLU()
    if name == "prelu":
        return nn.PReLU()
    raise ValueError(f"unknown activation {name!r} (mish, leakyrelu, relu, gelu, silu, prelu)")


@dataclasses.dataclass
class NetworkConfig:
    widths: Tuple[int, ...] = PRESETS["small"]
    activation: str = "mish"
    attention: bool = True
    deep_supervision_levels: int = 3  # terminals t1..t3 as in the paper's Fig. 2
    in_channels: int = 1
    landmarks: int = 3

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def spatial_multiple(self) -> int:
        return 2 ** self.depth

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> "NetworkConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r} ({', '.join(PRESETS)})")
        if not overrides.get("activation"):
            overrides["activation"] = PRESET_ACTIVATION[name]
        return cls(widths=PRESETS[name], **overrides)


def _conv_norm_act(cin: int, cout: int, act: str, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    pad = kernel // 2 if stride == 1 else 0
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=pad, bias=True),
        nn.InstanceNorm3d(cout, affine=True),
        make_activation(act),
    )


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, act: str):
        super().__init__(_conv_norm_act(cin, cout, act), _conv_norm_act(cout, cout, act))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018) on a skip connection.

    The gating signal is the up-sampled decoder feature map, which already has
    the skip's resolution, so the gate needs no resize operator: that keeps the
    exported graph free of shape arithmetic and valid for any input size.
    """

    def __init__(self, channels: int, act: str):
        super().__init__()
        inter = max(channels // 2, 1)
        self.wx = nn.Conv3d(channels, inter, 1, bias=False)
        self.wg = nn.Conv3d(channels, inter, 1, bias=True)
        self.act = make_activation(act)
        self.psi = nn.Conv3d(inter, 1, 1, bias=True)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.psi(self.act(self.wx(skip) + self.wg(gate))))
        return skip * a


class Encoder(nn.Module):
    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        w = cfg.widths
        self.stem = DoubleConv(cfg.in_channels, w[0], cfg.activation)
        self.down = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for lvl in range(1, len(w)):
            self.down.append(_conv_norm_act(w[lvl - 1], w[lvl - 1], cfg.activation, kernel=2, stride=2))
            self.blocks.append(DoubleConv(w[lvl - 1], w[lvl], cfg.activation))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = [self.stem(x)]
        for down, block in zip(self.down, self.blocks):
            feats.append(block(down(feats[-1])))
        return feats


class Decoder(nn.Module):
    """One head. Returns the full-resolution output and, when asked, the
    deep-supervision outputs of the lower levels (finest first)."""

    def __init__(self, cfg: NetworkConfig, out_channels: int):
        super().__init__()
        w = cfg.widths
        self.up = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.blocks = nn.ModuleList()
        # Index i handles the transition from level i+1 to level i.
        for lvl in range(len(w) - 2, -1, -1):
            self.up.append(nn.ConvTranspose3d(w[lvl + 1], w[lvl], 2, stride=2))
            self.gates.append(AttentionGate(w[lvl], cfg.activation) if cfg.attention else nn.Identity())
            self.blocks.append(DoubleConv(2 * w[lvl], w[lvl], cfg.activation))
        self.attention = cfg.attention
        self.head = nn.Conv3d(w[0], out_channels, 1)
        # Terminals t1..tk at decoder levels 1..k (outputs at 1/2, 1/4, ...).
        n_ds = min(cfg.deep_supervision_levels, len(w) - 2)
        self.terminals = nn.ModuleList([nn.Conv3d(w[lvl], out_channels, 1) for lvl in range(1, n_ds + 1)])

    def forward(self, feats: Sequence[torch.Tensor], deep: bool = False):
        x = feats[-1]
        by_level: Dict[int, torch.Tensor] = {}
        n = len(feats)
        for i, (up, gate, block) in enumerate(zip(self.up, self.gates, self.blocks)):
            lvl = n - 2 - i
            x = up(x)
            skip = feats[lvl]
            if self.attention:
                skip = gate(skip, x)
            x = block(torch.cat([skip, x], dim=1))
            by_level[lvl] = x
        out = self.head(x)
        if not deep:
            return out
        aux = [t(by_level[lvl]) for lvl, t in enumerate(self.terminals, start=1)]
        return [out] + aux


class BiHeadedUNet(nn.Module):
    """forward(x) -> (segmentation logits [N,1,...], heatmaps [N,3,...]).

    forward(x, deep=True) -> (list of segmentation outputs, list of heatmap
    outputs), full resolution first, then 1/2, 1/4, ... for deep supervision.
    """

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.seg = Decoder(cfg, 1)
        self.heat = Decoder(cfg, cfg.landmarks)
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper initialised from a uniform distribution; Kaiming-uniform
        # (PyTorch's default family) scaled for the activation is that.
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_uniform_(m.weight, a=0.025, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        m = self.cfg.spatial_multiple
        if x.dim() != 5 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"input must be [N,{self.cfg.in_channels},D,H,W], got {list(x.shape)}")
        if any(s % m for s in x.shape[2:]):
            raise ValueError(f"spatial size {list(x.shape[2:])} must be divisible by {m}")

    def forward(self, x: torch.Tensor, deep: bool = False):
        feats = self.encoder(x)
        return self.seg(feats, deep), self.heat(feats, deep)


class ExportWrapper(nn.Module):
    """The graph that is exported: full-resolution outputs only."""

    def __init__(self, net: BiHeadedUNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        seg, heat = self.net(image, deep=False)
        return seg, heat


def narrow_state_dict(src: Dict[str, torch.Tensor], dst: Dict[str, torch.Tensor],
                      scale: bool = True) -> Dict[str, torch.Tensor]:
    """Weights of a wider network of the same layout cut down to dst's shapes
    (for example `small` into `compact`): along every channel axis that is
    narrower in dst the first channels are kept. Keeping the same index set
    in every channel space (each level's encoder, up-sampling, decoder and
    attention channels) keeps the layers that feed each other consistent;
    the decoder's concatenation [skip, up] keeps the first channels of both
    halves. Input axes that were cut are scaled by old/new so that the
    layers not followed by instance norm (attention gates, heads) keep their
    magnitude. A start for fine-tuning, not a finished network. Keys of dst
    missing in src (deep-supervision terminals of an ONNX file) are left out."""
    out: Dict[str, torch.Tensor] = {}
    for name, want in dst.items():
        if name not in src:
            continue
        t = src[name]
        if t.dim() != want.dim():
            raise ValueError(f"{name}: {t.dim()} axes, want {want.dim()}")
        # A transposed convolution's weight is [in, out, k...]; a convolution's [out, in, k...].
        transposed = ".up." in f".{name}" and name.endswith(".weight")
        in_axis = 0 if transposed else 1
        concat = bool(re.search(r"(^|\.)blocks\.\d+\.0\.0\.weight$", name)) and (
            name.startswith("seg.") or name.startswith("heat."))
        for a, (old, new) in enumerate(zip(t.shape, want.shape)):
            if old == new:
                continue
            if new > old:
                raise ValueError(f"{name}: axis {a} has {old} channels, want more ({new})")
            if concat and a == 1:
                if old % 2 or new % 2:
                    raise ValueError(f"{name}: concatenated axis of odd size")
                idx = list(range(new // 2)) + list(range(old // 2, old // 2 + new // 2))
            else:
                idx = list(range(new))
            t = t.index_select(a, torch.tensor(idx))
            if scale and a == in_axis and t.dim() == 5:
                t = t * (old / new)
        out[name] = t.contiguous().clone()
    return out


def count_parameters(model: nn.Module, exported_only: bool = True) -> int:
    n = 0
    for name, p in model.named_parameters():
        if exported_only and ".terminals." in name:
            continue
        n += p.numel()
    return n
