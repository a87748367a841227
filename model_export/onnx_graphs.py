"""The exported graphs, written with ``onnx.helper`` from the fitted parameters, using only standard
ops that onnxruntime's CUDA provider executes (``udfs.model_contract.CUDA_OPS``). skl2onnx would emit
``ai.onnx.ml`` ops (LinearClassifier, Scaler) for the same models, and those have no CUDA kernels: the
CUDA session would quietly run them on the CPU.

Both graphs take the whole float32 feature vector; the weights select the columns a model uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from udfs.model_contract import ONNX_INPUT, PROBABILITIES, SEGMENT_LABEL, SEGMENT_SCORES

OPSET = 18  # pinned: the graph must not change with the library's default
IR_VERSION = 9  # readable by onnxruntime >= 1.15


def _const(name: str, value: np.ndarray | float, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], outputs: list[onnx.ValueInfoProto],
           n_features: int, name: str) -> onnx.ModelProto:
    x = helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, [None, n_features])
    graph = helper.make_graph(nodes, name, [x], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="profile-engine model_export")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _log_blend(src: str, mask: np.ndarray, dtype: type, prefix: str) -> tuple[list[onnx.NodeProto],
                                                                              list[onnx.TensorProto], str]:
    """Nodes computing ``where(mask, log(max(x, 0) + 1), x)`` column-wise as ``mask * log(...) + (1 -
    mask) * x`` (Mul/Add instead of Where: the mask is constant, and the fewer op kinds the better)."""
    if not mask.any():
        return [], [], src
    m = mask.astype(dtype).reshape(1, -1)
    inits = [_const(f"{prefix}_zero", 0.0, dtype), _const(f"{prefix}_one", 1.0, dtype),
             _const(f"{prefix}_mask", m, dtype), _const(f"{prefix}_keep", 1.0 - m, dtype)]
    nodes = [
        helper.make_node("Max", [src, f"{prefix}_zero"], [f"{prefix}_pos"]),
        helper.make_node("Add", [f"{prefix}_pos", f"{prefix}_one"], [f"{prefix}_pos1"]),
        helper.make_node("Log", [f"{prefix}_pos1"], [f"{prefix}_log"]),
        helper.make_node("Mul", [f"{prefix}_log", f"{prefix}_mask"], [f"{prefix}_logged"]),
        helper.make_node("Mul", [src, f"{prefix}_keep"], [f"{prefix}_kept"]),
        helper.make_node("Add", [f"{prefix}_logged", f"{prefix}_kept"], [f"{prefix}_x"]),
    ]
    return nodes, inits, f"{prefix}_x"


def linear_classifier(mask: np.ndarray, weights: np.ndarray, bias: float) -> onnx.ModelProto:
    """``features`` [n, F] -> ``probabilities`` [n, 2] = [1 - p, p], p = sigmoid(x' @ weights + bias),
    x' = ``log1p(max(x, 0))`` where ``mask`` else x. float32 throughout."""
    n = len(weights)
    if len(mask) != n:
        raise ValueError(f"mask has {len(mask)} columns, weights {n}")
    nodes, inits, x = _log_blend(ONNX_INPUT, np.asarray(mask, dtype=bool), np.float32, "prep")
    inits += [_const("W", np.asarray(weights).reshape(n, 1)), _const("b", [float(bias)]),
              _const("one", 1.0)]
    nodes += [
        helper.make_node("MatMul", [x, "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["q", "p"], [PROBABILITIES], axis=1),
    ]
    out = helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [None, 2])
    return _model(nodes, inits, [out], n, "propensity")


def kmeans_assigner(n_features: int, columns: Sequence[int], log_mask: np.ndarray, mean: np.ndarray,
                    scale: np.ndarray, centres: np.ndarray) -> onnx.ModelProto:
    """``features`` [n, F] -> ``label`` int64 [n] (nearest centre) and ``scores`` [n, k] (distances), in
    float64: float32 distances flip near-tie labels between scikit-learn and onnxruntime.
    z = (x'[:, columns] - mean) / scale as one MatMul with a selection matrix."""
    cols = np.asarray(columns, dtype=np.int64)
    d, k = len(cols), len(centres)
    full_mask = np.zeros(n_features, dtype=bool)
    full_mask[cols] = log_mask
    select = np.zeros((n_features, d))
    select[cols, np.arange(d)] = 1.0 / np.asarray(scale, dtype=np.float64)
    c = np.asarray(centres, dtype=np.float64)
    nodes = [helper.make_node("Cast", [ONNX_INPUT], ["x64"], to=TensorProto.DOUBLE)]
    blend, inits, x = _log_blend("x64", full_mask, np.float64, "prep")
    nodes += blend
    inits += [_const("select", select, np.float64), _const("shift", -np.asarray(mean) / scale, np.float64),
              _const("ones", np.ones((d, 1)), np.float64), _const("cross", -2.0 * c.T, np.float64),
              _const("cc", (c * c).sum(axis=1).reshape(1, k), np.float64), _const("zero", 0.0, np.float64)]
    nodes += [
        helper.make_node("MatMul", [x, "select"], ["zs"]),
        helper.make_node("Add", ["zs", "shift"], ["z"]),
        helper.make_node("Mul", ["z", "z"], ["z2"]),
        helper.make_node("MatMul", ["z2", "ones"], ["zz"]),
        helper.make_node("MatMul", ["z", "cross"], ["zc"]),
        helper.make_node("Add", ["zc", "zz"], ["d2a"]),
        helper.make_node("Add", ["d2a", "cc"], ["d2"]),
        helper.make_node("ArgMin", ["d2"], [SEGMENT_LABEL], axis=1, keepdims=0),
        helper.make_node("Max", ["d2", "zero"], ["d2pos"]),
        helper.make_node("Sqrt", ["d2pos"], [SEGMENT_SCORES]),
    ]
    outs = [helper.make_tensor_value_info(SEGMENT_LABEL, TensorProto.INT64, [None]),
            helper.make_tensor_value_info(SEGMENT_SCORES, TensorProto.DOUBLE, [None, k])]
    return _model(nodes, inits, outs, n_features, "segments")


def graph_ops(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(domain, op type) of every node, in graph order."""
    return [(n.domain, n.op_type) for n in model.graph.node]
