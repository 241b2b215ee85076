"""ONNX → :class:`~edgemeter.graph.Graph`, with every shape made static where it can be.

The pipeline, cheapest first:

1. Parse, and fix symbolic input dims: from ``input_shapes``, else 1 for a symbolic batch dim
   (dim 0); any other symbolic dim is an error that names the ``--input-shape`` flag.
2. ``onnx.shape_inference`` (with data propagation) on a copy whose large weights are typed graph
   inputs instead of initializers: inference only needs their shapes, and skipping the bytes keeps
   it fast. For exported CNNs this one pass gives every shape.
3. Constant folding to a fixed point: a node whose inputs are all constant, or a ``Shape``/``Size``
   of a tensor with a static shape, becomes a constant tensor (not a graph node). Small constants
   (the ``Shape→Gather→Concat→Reshape`` arithmetic of exported models) are evaluated with
   ``onnx.reference``; when that makes new values known, inference runs again.
4. Ops whose output shapes depend on the data (``NonMaxSuppression``, ``NonZero`` …) are marked
   ``data_dependent``; their outputs, and whatever follows from them, keep shape ``None``.
"""
from __future__ import annotations

from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from edgemeter.errors import ConfigError, ModelError
from edgemeter.graph import Graph, Node, Tensor

# Constants up to this many elements are evaluated while folding, and integer ones keep their
# value in the IR (shape vectors, axes, split sizes). Float constants keep theirs only as scalars
# (clip bounds, eps, the 3 of a hard-swish), which kernel detection reads; weights, even a
# small bias, keep only their shape.
SMALL = 64

# Ops whose output shape depends on input values that no static analysis can know.
DATA_DEPENDENT = {"NonMaxSuppression", "NonZero", "Unique", "Compress"}
# Ops whose output shape comes from the *value* of an input: data-dependent when that value is
# unknown at import time (e.g. a TopK whose k is computed from a NonMaxSuppression output).
VALUE_SHAPED = {
    "Reshape", "Expand", "Tile", "Slice", "ConstantOfShape", "Range", "TopK", "Resize",
    "Upsample", "Pad", "OneHot", "Split", "Squeeze", "Unsqueeze", "CenterCropPad", "ReduceMean",
    "ReduceSum", "ReduceMax", "ReduceMin",
}
# Never folded: their value changes from run to run.
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                    "Multinomial", "Bernoulli"}

_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
           8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
           16: "bfloat16"}

Shape = list[int] | None


def import_onnx(model: str | Path | onnx.ModelProto,
                input_shapes: dict[str, list[int]] | None = None) -> Graph:
    """Import an ONNX file or ModelProto.

    ``input_shapes`` maps input names to dims (``""`` = the model's only input); it overrides the
    dims the model declares. Costs are not annotated here: :func:`edgemeter.importers.load_graph`
    does both.
    """
    proto, label = _load(model)
    graph = _Importer(proto, label, input_shapes or {}).run()
    if not isinstance(model, onnx.ModelProto):
        # Exporters name every graph alike ("main_graph", "torch_jit"): the file says more.
        graph.name = Path(model).stem
    return graph


# -- loading and validation -------------------------------------------------------------------

def _load(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "model"
    path = Path(model)
    try:
        # Parsing the bytes directly is ~4x faster than onnx.load(path), which walks every
        # tensor looking for external data; we do that walk only when a tensor needs it.
        proto = onnx.load_model_from_string(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot load its external weights ({exc})") from None
    return proto, path.name


def _validate(proto: onnx.ModelProto, label: str) -> None:
    if not proto.HasField("graph") and not proto.opset_import:
        raise ModelError(f"{label}: not an ONNX model (no graph, no opset)")
    if not proto.graph.node:
        raise ModelError(f"{label}: the ONNX graph is empty (no nodes)")
    supported = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > supported:
            raise ModelError(f"{label}: uses ONNX opset {opset.version}; the installed onnx "
                             f"package supports up to {supported} (pip install -U onnx)")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# -- the importer -------------------------------------------------------------------------------

class _Importer:
    def __init__(self, proto: onnx.ModelProto, label: str, input_shapes: dict[str, list[int]]):
        _validate(proto, label)
        self.proto, self.label = proto, label
        graph = proto.graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                          onnx.defs.onnx_opset_version())
        self.inputs = [vi for vi in graph.input if vi.name not in self.initializers]
        self.output_names = [vi.name for vi in graph.output]
        self.warnings: list[str] = []
        self.given_shapes = bool(input_shapes)
        self.input_types = self._fix_input_shapes(input_shapes)
        self.nodes = self._sorted_nodes()
        # Constant tensors: name -> value (None while unevaluated, or for large weights).
        self.consts: dict[str, np.ndarray | None] = {}
        for name, t in self.initializers.items():
            # External data of a ModelProto given without its folder cannot be read: shape only.
            readable = t.data_location != onnx.TensorProto.EXTERNAL
            self.consts[name] = numpy_helper.to_array(t) if readable and prod(t.dims) <= SMALL \
                else None
        self.shapes: dict[str, Shape] = {n: list(t.dims) for n, t in self.initializers.items()}
        self.dtypes: dict[str, int] = {n: t.data_type for n, t in self.initializers.items()}
        self.folded: set[str] = set()  # names of nodes turned into constants

    def run(self) -> Graph:
        model = self._inference_model()
        try:
            onnx.checker.check_model(model)  # cheap here: the big weights are not in the copy
        except onnx.checker.ValidationError as exc:
            raise ModelError(f"{self.label}: invalid ONNX model: {_first_line(exc)}") from None
        while True:
            self._infer(model)
            if not self._fold() or self._all_shapes_known():
                return self._build()
            model = self._inference_model()

    # -- inputs -------------------------------------------------------------------------------
    def _fix_input_shapes(self, given: dict[str, list[int]]) -> list[onnx.ValueInfoProto]:
        names = [vi.name for vi in self.inputs]
        given = dict(given)
        if "" in given:
            if len(names) != 1:
                raise ConfigError(f"--input-shape without a name needs a model with one input; "
                                  f"{self.label} has {len(names)}: {', '.join(names)} "
                                  "(use NAME=DxDx...)")
            given[names[0]] = given.pop("")
        for name in given:
            if name not in names:
                raise ConfigError(f"--input-shape names '{name}', which is not an input of "
                                  f"{self.label} (inputs: {', '.join(names)})")
        fixed = []
        for vi in self.inputs:
            tensor_type = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None
                    for d in tensor_type.shape.dim] if tensor_type.HasField("shape") else None
            if vi.name in given:
                want = given[vi.name]
                if dims is not None and len(dims) != len(want):
                    raise ConfigError(f"--input-shape {vi.name}={'x'.join(map(str, want))} has "
                                      f"rank {len(want)}, but the model's input '{vi.name}' has "
                                      f"rank {len(dims)}")
                dims = want
            elif dims is None:
                raise ModelError(f"input '{vi.name}' of {self.label} has no declared shape: give "
                                 f"it with --input-shape {vi.name}=DxDx...")
            elif any(d is None for d in dims):
                dims = self._default_dims(vi, dims)
            fixed.append(onnx.helper.make_tensor_value_info(vi.name, tensor_type.elem_type, dims))
        return fixed

    def _default_dims(self, vi: onnx.ValueInfoProto, dims: list[int | None]) -> list[int]:
        symbolic = [i for i, d in enumerate(dims) if d is None]
        if symbolic != [0]:
            i = next(i for i in symbolic if i != 0)
            sym = vi.type.tensor_type.shape.dim[i].dim_param or "?"
            raise ModelError(f"input '{vi.name}' of {self.label} has symbolic dim {i} ('{sym}'): "
                             f"give its shape with --input-shape {vi.name}=DxDx...")
        sym = vi.type.tensor_type.shape.dim[0].dim_param or "?"
        self.warnings.append(f"input '{vi.name}': symbolic batch dim '{sym}' set to 1 "
                             f"(override with --input-shape {vi.name}=...)")
        return [1, *dims[1:]]

    # -- node order and names -----------------------------------------------------------------
    def _sorted_nodes(self) -> list[tuple[str, onnx.NodeProto]]:
        """Give every node a stable unique name and put them in topological order (ONNX requires
        it, but not every producer obeys; a cycle is an error)."""
        taken = {n.name for n in self.proto.graph.node if n.name}
        named: list[tuple[str, onnx.NodeProto]] = []
        seen: set[str] = set()
        for i, node in enumerate(self.proto.graph.node):
            name = node.name if node.name and node.name not in seen else f"{node.op_type}_{i}"
            while name in seen or (name != node.name and name in taken):
                name += "_"
            seen.add(name)
            named.append((name, node))
        producer = {t: i for i, (_, n) in enumerate(named) for t in n.output}
        defined = producer.keys() | self.initializers.keys() | {vi.name for vi in self.inputs}
        for name, node in named:
            missing = next((t for t in node.input if t and t not in defined), None)
            if missing is not None:
                raise ModelError(f"{self.label}: node '{name}' reads tensor '{missing}', which no "
                                 "node, input or initializer defines")
        if all(producer.get(t, -1) < i for i, (_, n) in enumerate(named) for t in n.input):
            return named
        skeleton = Graph(self.label, [Node(name, n.op_type, list(n.input), list(n.output))
                                      for name, n in named], {}, [], [])
        skeleton.sort()
        by_name = dict(named)
        return [(n.name, by_name[n.name]) for n in skeleton.nodes]

    # -- shape inference ----------------------------------------------------------------------
    def _live_nodes(self) -> list[tuple[str, onnx.NodeProto]]:
        return [(name, n) for name, n in self.nodes if name not in self.folded]

    def _inference_model(self) -> onnx.ModelProto:
        """The model as inference sees it: live nodes, small constants as initializers, large
        ones as typed inputs (inference needs their shape, not their bytes)."""
        graph = onnx.GraphProto(name=self.proto.graph.name or "graph")
        live = self._live_nodes()
        graph.node.extend(n for _, n in live)
        graph.input.extend(self.input_types)
        # No graph outputs: inference then reports their shapes in value_info like any other
        # tensor, and the declared ones (a symbolic batch, or none at all) cannot clash.
        used = {t for _, n in live for t in n.input} | set(self.output_names)
        for name in used & self.consts.keys():
            value, shape = self.consts[name], self.shapes.get(name)
            if value is None or shape is None or prod(shape) > SMALL:
                graph.input.append(onnx.helper.make_tensor_value_info(
                    name, self.dtypes.get(name, onnx.TensorProto.FLOAT), shape))
            elif name in self.initializers:
                graph.initializer.append(self.initializers[name])
            else:
                graph.initializer.append(numpy_helper.from_array(value, name))
        model = onnx.helper.make_model(graph, opset_imports=self.proto.opset_import,
                                       ir_version=self.proto.ir_version)
        model.functions.extend(self.proto.functions)
        return model

    def _infer(self, model: onnx.ModelProto) -> None:
        try:
            # Strict: a shape clash (a MatMul of [1, 4] by [1, 4]) is a broken model, not
            # something to import with holes.
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except Exception as exc:  # onnx raises several types, all meaning "this model is bad"
            hint = " (check the --input-shape given)" if self.given_shapes else ""
            raise ModelError(f"{self.label}: shape inference failed: {_first_line(exc)}{hint}") \
                from None
        g = inferred.graph
        for vi in (*g.input, *g.value_info, *g.output):
            tensor_type = vi.type.tensor_type
            if vi.type.HasField("tensor_type"):
                self.dtypes.setdefault(vi.name, tensor_type.elem_type)
                if self.shapes.get(vi.name) is None:
                    self.shapes[vi.name] = _static_shape(tensor_type)

    def _all_shapes_known(self) -> bool:
        return all(self.shapes.get(t) is not None
                   for _, n in self._live_nodes() for t in (*n.input, *n.output) if t)

    # -- constant folding ---------------------------------------------------------------------
    def _fold(self) -> bool:
        """Turn constant-computable nodes into constants; True when new values became known."""
        new_values = False
        for name, node in self._live_nodes():
            if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC:
                continue
            if node.op_type in ("Shape", "Size") and node.input[0] not in self.consts:
                shape = self.shapes.get(node.input[0])
                if shape is None:
                    continue
                self.consts[node.output[0]] = _shape_value(node, shape)
                new_values = True
            elif not all(t in self.consts for t in node.input if t):
                continue
            elif any(self._wanted(t) for t in node.output):
                values = self._evaluate(node)
                if values is None:
                    continue  # the reference evaluator cannot run it: keep it as a node
                for out, value in zip(node.output, values):
                    self.consts[out] = value
                new_values = True
            else:
                self.consts.update(dict.fromkeys(node.output))
            self.folded.add(name)
            for out in node.output:
                value = self.consts[out]
                if value is not None:
                    self.shapes[out] = list(value.shape)
                    if out not in self.dtypes and value.dtype.kind in "biuf":
                        self.dtypes[out] = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
        return new_values

    def _wanted(self, tensor: str) -> bool:
        """Evaluate a folded tensor when its value is small enough to keep, or when its shape is
        unknown (its value is then the only way to learn it)."""
        shape = self.shapes.get(tensor)
        return shape is None or prod(shape) <= SMALL

    def _evaluate(self, node: onnx.NodeProto) -> list[np.ndarray] | None:
        try:
            inputs = [self._value(t) if t else None for t in node.input]
            direct = _NUMPY_OPS.get(node.op_type)
            if direct is not None:
                value = direct(inputs, {a.name: onnx.helper.get_attribute_value(a)
                                        for a in node.attribute})
                if value is not None:
                    return [np.asarray(value)]
            # Imported only here: it takes ~30 ms, and most exported CNNs never get this far.
            from onnx.reference import ReferenceEvaluator

            # A one-node evaluator costs ~0.2 ms: fine for the arithmetic the table leaves.
            evaluator = ReferenceEvaluator(node, opsets={"": self.opset})
            feeds = {t: v for t, v in zip(node.input, inputs) if t}
            return [np.asarray(v) for v in evaluator.run(None, feeds)]
        except Exception:  # noqa: BLE001 - any failure just means "not foldable"
            return None

    def _value(self, tensor: str) -> np.ndarray:
        value = self.consts[tensor]
        if value is None:
            if tensor not in self.initializers:
                # A large folded intermediate feeding a small result: compute it now.
                node = next(n for _, n in self.nodes if tensor in n.output)
                for out, v in zip(node.output, self._evaluate(node) or ()):
                    self.consts[out] = v
                return self.consts[tensor]
            value = self.consts[tensor] = numpy_helper.to_array(self.initializers[tensor])
        return value

    # -- the IR -------------------------------------------------------------------------------
    def _build(self) -> Graph:
        tensors: dict[str, Tensor] = {}

        def tensor(name: str) -> None:
            if name and name not in tensors:
                value = self.consts.get(name)
                keep = value is not None and value.size <= (SMALL if value.dtype.kind in "biu"
                                                            else 1)
                tensors[name] = Tensor(
                    name, self.shapes.get(name), _dtype(self.dtypes.get(name, 1)),
                    constant=name in self.consts,
                    value=_plain(value.ravel().tolist()) if keep else None)

        nodes, unknown = [], set()
        for name, proto in self._live_nodes():
            for t in (*proto.input, *proto.output):
                tensor(t)
            node = Node(name, proto.op_type, list(proto.input), list(proto.output),
                        _attributes(proto))
            if proto.domain not in ("", "ai.onnx"):
                node.attrs.setdefault("domain", proto.domain)
            node.data_dependent = self._data_dependent(proto)
            if node.data_dependent:
                unknown.add(node.op)
            nodes.append(node)
        for t in (*(vi.name for vi in self.input_types), *self.output_names):
            tensor(t)
        warnings = list(self.warnings)
        for op in sorted(unknown):
            names = [n.name for n in nodes if n.op == op and n.data_dependent]
            shown = ", ".join(f"'{n}'" for n in names[:3]) + (" …" if len(names) > 3 else "")
            warnings.append(f"{op} {shown}: output shape depends on the input data; shapes that "
                            "follow from it are unknown and their costs approximate")
        return Graph(self.proto.graph.name or Path(self.label).stem, nodes, tensors,
                     [vi.name for vi in self.input_types], list(self.output_names), warnings)

    def _data_dependent(self, node: onnx.NodeProto) -> bool:
        if node.op_type in DATA_DEPENDENT:
            return True
        # The shape-giving inputs (k, shape, sizes, pads, axes) follow the data input.
        return (node.op_type in VALUE_SHAPED
                and any(self.shapes.get(t) is None for t in node.output if t)
                and any(t and t not in self.consts for t in node.input[1:]))


# -- folding without onnx.reference: the ops exported shape arithmetic is mostly made of -------
# Each takes the input values and the attributes; None hands the node to the reference evaluator.

def _constant(inputs: list, attrs: dict) -> np.ndarray | None:
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_int", np.int64), ("value_ints", np.int64),
                       ("value_float", np.float32), ("value_floats", np.float32)):
        if key in attrs:
            return np.array(attrs[key], dtype)
    return None


def _axes(inputs: list, attrs: dict) -> tuple[int, ...] | None:
    """Axes from the second input (opset >= 13) or the attribute (older opsets)."""
    if len(inputs) > 1 and inputs[1] is not None:
        return tuple(int(a) for a in inputs[1])
    return tuple(attrs["axes"]) if "axes" in attrs else None


_NUMPY_OPS: dict[str, Any] = {
    "Constant": _constant,
    "Identity": lambda inputs, attrs: inputs[0],
    "Unsqueeze": lambda inputs, attrs: np.expand_dims(inputs[0], _axes(inputs, attrs)),
    "Squeeze": lambda inputs, attrs: np.squeeze(inputs[0], _axes(inputs, attrs)),
    "Gather": lambda inputs, attrs: np.take(inputs[0], inputs[1], axis=attrs.get("axis", 0)),
    "Concat": lambda inputs, attrs: np.concatenate(inputs, axis=attrs["axis"]),
    "Cast": lambda inputs, attrs: inputs[0].astype(
        onnx.helper.tensor_dtype_to_np_dtype(attrs["to"])),
}


# -- helpers ------------------------------------------------------------------------------------

def _static_shape(tensor_type: onnx.TypeProto.Tensor) -> Shape:
    if not tensor_type.HasField("shape"):
        return None
    dims = tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return [d.dim_value for d in dims]


def _shape_value(node: onnx.NodeProto, shape: list[int]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(prod(shape), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.array(shape[start:end], dtype=np.int64)


def _dtype(elem_type: int) -> str:
    return _DTYPES.get(elem_type) or onnx.TensorProto.DataType.Name(elem_type).lower()


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: _plain(_attribute_value(a)) for a in node.attribute}


def _attribute_value(attr: onnx.AttributeProto) -> Any:
    kind = onnx.AttributeProto
    if attr.type in (kind.GRAPH, kind.GRAPHS):
        return "<subgraph>"  # control-flow bodies are not imported
    if attr.type == kind.TENSOR:
        array = numpy_helper.to_array(attr.t)
        return array.ravel().tolist() if array.size <= SMALL else f"<tensor {list(array.shape)}>"
    if attr.type in (kind.TENSORS, kind.SPARSE_TENSOR, kind.SPARSE_TENSORS, kind.TYPE_PROTO,
                     kind.TYPE_PROTOS):
        return f"<{kind.AttributeType.Name(attr.type).lower()}>"
    return onnx.helper.get_attribute_value(attr)


def _plain(value: Any) -> Any:
    """JSON-able plain values: str for bytes, float32 attributes at their printed precision
    (0.1, not 0.10000000149011612)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        return float(f"{value:.7g}")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value] if any(isinstance(v, (float, bytes)) for v in value) \
            else list(value)
    return value
