"""Writes tiny.onnx and a reference input/output pair for analysis/infer tests.

The network is small and untrained (fixed seed), but it follows the model
contract of DESIGN.md: input [N,1,D,H,W] float32 named "input", outputs
"segmentation" [N,1,D,H,W] and "heatmaps" [N,3,D,H,W], dynamic batch and
spatial axes, opset 17, with a stride-2 down/up path so spatial sizes must be
even. Run from this folder with Debian's PyTorch:

    /usr/bin/python3 make_tiny_model.py
"""
import struct

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.InstanceNorm3d(4, affine=True), nn.LeakyReLU(0.01))
        self.down = nn.Conv3d(4, 8, 2, stride=2)
        self.up = nn.ConvTranspose3d(8, 4, 2, stride=2)
        self.seg = nn.Conv3d(8, 1, 1)
        self.heat = nn.Conv3d(8, 3, 1)

    def forward(self, x):
        a = self.enc(x)
        b = torch.relu(self.down(a))
        c = torch.cat([a, self.up(b)], dim=1)
        return self.seg(c), self.heat(c)


def write_f32(path, t):
    flat = t.detach().contiguous().view(-1).tolist()
    with open(path, "wb") as f:
        f.write(struct.pack("<%df" % len(flat), *flat))


def main():
    torch.manual_seed(7)
    m = Tiny().eval()
    x = torch.randn(1, 1, 6, 8, 10)
    torch.onnx.export(
        m, x, "tiny.onnx", opset_version=17,
        input_names=["input"], output_names=["segmentation", "heatmaps"],
        dynamic_axes={"input": {0: "n", 2: "d", 3: "h", 4: "w"},
                      "segmentation": {0: "n", 2: "d", 3: "h", 4: "w"},
                      "heatmaps": {0: "n", 2: "d", 3: "h", 4: "w"}})
    with torch.no_grad():
        seg, heat = m(x)
    write_f32("tiny_input_1x1x6x8x10.f32", x)
    write_f32("tiny_segmentation_1x1x6x8x10.f32", seg)
    write_f32("tiny_heatmaps_1x3x6x8x10.f32", heat)


if __name__ == "__main__":
    main()
