"""Export round trip: the exported ONNX graph, evaluated from the file by an
independent numpy evaluator (otomodel.onnx_eval), must give PyTorch's outputs.
ONNX Runtime itself is not available to Python here; the Go side runs the
same file through ONNX Runtime."""

import numpy as np
import onnx
import pytest
import torch

from otomodel import onnx_eval
from otomodel.export import INPUT_NAME, OPSET, export_onnx
from otomodel.network import BiHeadedUNet, NetworkConfig


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("cfg,shape", [
    (NetworkConfig(widths=(4, 8, 8), activation="mish"), (2, 1, 8, 12, 16)),
    (NetworkConfig(widths=(4, 8), activation="leakyrelu", attention=False), (1, 1, 6, 4, 10)),
    (NetworkConfig.preset("small"), (1, 1, 16, 16, 32)),
])
def test_round_trip(tmp_path, cfg, shape):
    torch.manual_seed(3)
    net = BiHeadedUNet(cfg).eval()
    # Random non-trivial norm affine parameters, so they are exercised too.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    path = str(tmp_path / "m.onnx")
    export_onnx(net, path)
    model = onnx.load(path)
    assert model.opset_import[0].version == OPSET
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == ["segmentation", "heatmaps"]
    assert _dims(model.graph.input[0]) == ["N", 1, "D", "H", "W"]
    assert _dims(model.graph.output[0]) == ["N", 1, "D", "H", "W"]
    assert _dims(model.graph.output[1]) == ["N", 3, "D", "H", "W"]
    # The export used a cube of 2*multiple; evaluate at another, non-cubic size and batch.
    x = torch.randn(*shape)
    with torch.no_grad():
        seg, heat = net(x)
    got_seg, got_heat = onnx_eval.run(model, {INPUT_NAME: x.numpy()})
    assert got_seg.shape == tuple(seg.shape) and got_heat.shape == tuple(heat.shape)
    scale = max(float(seg.abs().max()), float(heat.abs().max()), 1.0)
    assert np.abs(got_seg - seg.numpy()).max() < 1e-4 * scale
    assert np.abs(got_heat - heat.numpy()).max() < 1e-4 * scale


def test_evaluator_notices_a_different_graph(tmp_path):
    """The comparison can fail: weights changed after export give other outputs."""
    torch.manual_seed(0)
    net = BiHeadedUNet(NetworkConfig(widths=(4, 8))).eval()
    path = str(tmp_path / "m.onnx")
    export_onnx(net, path)
    with torch.no_grad():
        net.seg.head.bias.add_(0.5)
        seg, _ = net(torch.ones(1, 1, 4, 4, 4))
    got, _ = onnx_eval.run(onnx.load(path), {INPUT_NAME: np.ones((1, 1, 4, 4, 4), np.float32)})
    assert np.allclose(got, seg.numpy() - 0.5, atol=1e-4)


def test_evaluator_refuses_unknown_operators():
    node = onnx.helper.make_node("Resize", ["x"], ["y"])
    g = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    with pytest.raises(onnx_eval.UnsupportedOperator):
        onnx_eval.run(onnx.helper.make_model(g), {"x": np.zeros(1, np.float32)})
