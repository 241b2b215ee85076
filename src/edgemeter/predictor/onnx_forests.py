"""Forests run by onnxruntime: every regressor group's trees as one ``TreeEnsembleRegressor``
node (ONNX-ML) in a single in-memory session.

The numpy walk (:meth:`Forest.walk`) costs a fixed ~30 vectorised steps per call whatever the
batch, which is most of a one-graph prediction; onnxruntime walks the same trees in C++, several
times faster per call. Compiling costs about a second (the session parses every node), so this is
the engine for a process that predicts many graphs — a NAS loop — not for one ``edgemeter
predict``. The trees decide exactly as the numpy walk does: features reach both as float32, and
each threshold becomes the float32 at or below it (:func:`.regressors.float32_floor`, as stored
packages already hold it); only the leaf sum is rounded differently (float32 here, ~1e-7).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgemeter.errors import import_extra
from edgemeter.predictor.regressors import Forest, float32_floor

_ML_DOMAIN = "ai.onnx.ml"


class OnnxForests:
    """Leaf sums of named forests (group → (forest, number of features)), one session run per
    call for every group asked."""

    def __init__(self, forests: Mapping[str, tuple[Forest, int]]):
        ort = import_extra("onnxruntime", "onnxruntime", "onnxruntime")
        model = _ensemble_model(forests)
        options = ort.SessionOptions()
        # One thread: the calls this engine is for are small, and a pool's wake-ups cost more
        # than they share; no graph optimisation, there is nothing in a tree ensemble to fuse.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self._session = ort.InferenceSession(model.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])
        # Every input must be fed; a group a call does not ask for gets no rows.
        self._empty = {name: np.zeros((0, width), np.float32)
                       for name, (_, width) in forests.items()}

    def leaf_sums(self, matrices: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Group → sum over its trees of the leaf each row reaches (float32 rows)."""
        names = list(matrices)
        feeds = {**self._empty, **matrices}
        outputs = self._session.run([_output(name) for name in names], feeds)
        return {name: out[:, 0].astype(np.float64) for name, out in zip(names, outputs)}


def _output(group: str) -> str:
    return f"{group}:sum"


def _ensemble_model(forests: Mapping[str, tuple[Forest, int]]):
    from onnx import TensorProto, helper

    nodes, inputs, outputs = [], [], []
    for name, (forest, width) in forests.items():
        nodes.append(_ensemble_node(forest, name, _output(name)))
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["rows", width]))
        outputs.append(helper.make_tensor_value_info(_output(name), TensorProto.FLOAT,
                                                     ["rows", 1]))
    graph = helper.make_graph(nodes, "edgemeter-forests", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(_ML_DOMAIN, 3)])


def _ensemble_node(forest: Forest, input_name: str, output_name: str):
    """A ``TreeEnsembleRegressor`` summing ``forest``'s raw leaf values (no offset or scale:
    the caller applies them in float64). Node ids are local to their tree, as the op wants."""
    from onnx import AttributeProto, NodeProto, numpy_helper

    tree = forest.node_trees()
    base = forest.roots[tree]
    local = np.arange(forest.n_nodes) - base
    leaf = forest.left < 0

    def ints(name: str, values: np.ndarray) -> AttributeProto:
        attr = AttributeProto(name=name, type=AttributeProto.INTS)
        attr.ints.extend(values.tolist())
        return attr

    def tensor(name: str, values: np.ndarray) -> AttributeProto:
        return AttributeProto(name=name, type=AttributeProto.TENSOR,
                              t=numpy_helper.from_array(values))

    modes = AttributeProto(name="nodes_modes", type=AttributeProto.STRINGS)
    modes.strings.extend(np.where(leaf, b"LEAF", b"BRANCH_LEQ").tolist())
    node = NodeProto(op_type="TreeEnsembleRegressor", domain=_ML_DOMAIN, input=[input_name],
                     output=[output_name])
    node.attribute.extend([
        AttributeProto(name="n_targets", type=AttributeProto.INT, i=1),
        AttributeProto(name="aggregate_function", type=AttributeProto.STRING, s=b"SUM"),
        ints("nodes_treeids", tree), ints("nodes_nodeids", local),
        ints("nodes_featureids", np.where(leaf, 0, forest.feature)),
        tensor("nodes_values_as_tensor", float32_floor(np.where(leaf, 0.0, forest.threshold))),
        modes,
        ints("nodes_truenodeids", np.where(leaf, 0, forest.left - base)),
        ints("nodes_falsenodeids", np.where(leaf, 0, forest.right - base)),
        ints("target_treeids", tree[leaf]), ints("target_nodeids", local[leaf]),
        ints("target_ids", np.zeros(int(leaf.sum()), np.int64)),
        tensor("target_weights_as_tensor", forest.value[leaf].astype(np.float32)),
    ])
    return node
