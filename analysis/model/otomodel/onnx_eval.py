"""A small, independent evaluator of ONNX graphs in numpy.

ONNX Runtime is not available to Python here, so the export is checked by
running the exported graph -- its nodes, attributes and initializers as
stored in the file -- with this evaluator and comparing the result with
PyTorch. It knows only the operators our network exports to and refuses any
other, so a change in the exported graph cannot pass silently.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import onnx
from onnx import numpy_helper


class UnsupportedOperator(NotImplementedError):
    pass


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv(x, w, b, a):
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1, 1])):
        raise UnsupportedOperator("Conv with groups or dilation")
    k = w.shape[2:]
    s = a.get("strides", [1] * len(k))
    p = a.get("pads", [0] * 2 * len(k))
    nd = len(k)
    x = np.pad(x, [(0, 0), (0, 0)] + [(p[i], p[i + nd]) for i in range(nd)])
    out_sp = [(x.shape[2 + i] - k[i]) // s[i] + 1 for i in range(nd)]
    y = np.zeros((x.shape[0], w.shape[0], *out_sp), dtype=np.float64)
    for off in np.ndindex(*k):
        sl = tuple(slice(off[i], off[i] + s[i] * (out_sp[i] - 1) + 1, s[i]) for i in range(nd))
        patch = x[(slice(None), slice(None)) + sl]
        y += np.einsum("oc,nc...->no...", w[(slice(None), slice(None)) + off], patch)
    if b is not None:
        y += b.reshape((1, -1) + (1,) * nd)
    return y


def _conv_transpose(x, w, b, a):
    k = w.shape[2:]
    nd = len(k)
    s = a.get("strides", [1] * nd)
    if a.get("group", 1) != 1 or any(a.get("pads", [0] * 2 * nd)) or any(a.get("output_padding", [0] * nd)):
        raise UnsupportedOperator("ConvTranspose with groups, pads or output_padding")
    out_sp = [(x.shape[2 + i] - 1) * s[i] + k[i] for i in range(nd)]
    y = np.zeros((x.shape[0], w.shape[1], *out_sp), dtype=np.float64)
    for off in np.ndindex(*k):
        sl = tuple(slice(off[i], off[i] + s[i] * (x.shape[2 + i] - 1) + 1, s[i]) for i in range(nd))
        y[(slice(None), slice(None)) + sl] += np.einsum("co,nc...->no...", w[(slice(None), slice(None)) + off], x)
    if b is not None:
        y += b.reshape((1, -1) + (1,) * nd)
    return y


def _instance_norm(x, scale, bias, a):
    eps = a.get("epsilon", 1e-5)
    axes = tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mu) / np.sqrt(var + eps) * scale.reshape(shape) + bias.reshape(shape)


def run(model: onnx.ModelProto, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Evaluates the graph in float64; returns the outputs in graph order."""
    env: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t).astype(np.float64)
                                  for t in model.graph.initializer}
    for k, v in feeds.items():
        env[k] = np.asarray(v, dtype=np.float64)
    for node in model.graph.node:
        a = _attrs(node)
        ins = [env[n] if n else None for n in node.input]
        op = node.op_type
        if op == "Identity":
            y = ins[0]
        elif op == "Conv":
            y = _conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a)
        elif op == "ConvTranspose":
            y = _conv_transpose(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a)
        elif op == "InstanceNormalization":
            y = _instance_norm(ins[0], ins[1], ins[2], a)
        elif op == "Softplus":
            y = np.logaddexp(0.0, ins[0])
        elif op == "Tanh":
            y = np.tanh(ins[0])
        elif op == "Sigmoid":
            y = 1.0 / (1.0 + np.exp(-ins[0]))
        elif op == "Relu":
            y = np.maximum(ins[0], 0.0)
        elif op == "LeakyRelu":
            y = np.where(ins[0] >= 0, ins[0], a.get("alpha", 0.01) * ins[0])
        elif op == "Mul":
            y = ins[0] * ins[1]
        elif op == "Add":
            y = ins[0] + ins[1]
        elif op == "Concat":
            y = np.concatenate(ins, axis=a["axis"])
        elif op == "Constant":
            y = numpy_helper.to_array(a["value"]).astype(np.float64)
        else:
            raise UnsupportedOperator(op)
        env[node.output[0]] = y
    return [env[o.name] for o in model.graph.output]
