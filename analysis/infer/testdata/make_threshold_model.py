"""Writes threshold.onnx: a fixed, untrained network of the model contract
that marks voxels less dense than a level (in normalised units) as
foreground and puts its heatmaps' peaks at the least dense voxels. It lets
end-to-end tests of `otonode analyze` produce a non-empty segmentation (and
so a DICOM SEG) without a trained model. Run with Debian's PyTorch:

    /usr/bin/python3 make_threshold_model.py
"""
import torch
from torch import nn


class Threshold(nn.Module):
    def __init__(self, level=0.5):
        super().__init__()
        self.seg = nn.Conv3d(1, 1, 1)
        self.heat = nn.Conv3d(1, 3, 1)
        with torch.no_grad():
            self.seg.weight.fill_(-20.0)
            self.seg.bias.fill_(20.0 * level)
            self.heat.weight.fill_(-1.0)
            self.heat.bias.zero_()

    def forward(self, x):
        return self.seg(x), self.heat(x)


def main():
    m = Threshold().eval()
    x = torch.zeros(1, 1, 8, 8, 8)
    torch.onnx.export(
        m, x, "threshold.onnx", opset_version=17,
        input_names=["input"], output_names=["segmentation", "heatmaps"],
        dynamic_axes={"input": {0: "n", 2: "d", 3: "h", 4: "w"},
                      "segmentation": {0: "n", 2: "d", 3: "h", 4: "w"},
                      "heatmaps": {0: "n", 2: "d", 3: "h", 4: "w"}})


if __name__ == "__main__":
    main()
