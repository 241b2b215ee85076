"""Importers: every supported model format becomes a :class:`~edgemeter.graph.Graph`.

``load_graph`` is the one entry point; it picks the importer from the object's type or the file's
suffix and annotates every node with its cost.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgemeter.errors import ConfigError, ModelError
from edgemeter.graph import Graph

InputShapes = dict[str, list[int]]

_SHAPE = re.compile(r"^(?:(?P<name>[^=]+)=)?(?P<dims>\d+(?:x\d+)*)$")


def parse_input_shapes(specs: list[str] | tuple[str, ...] | None) -> InputShapes:
    """Parse ``["input=1x3x224x224", ...]``; a lone ``1x3x224x224`` applies to the only input
    (stored under the empty name)."""
    shapes: InputShapes = {}
    for spec in specs or ():
        match = _SHAPE.match(spec.strip())
        if not match:
            raise ConfigError(f"bad --input-shape '{spec}': expected NAME=DxDx... such as "
                              "input=1x3x224x224")
        shapes[match["name"] or ""] = [int(d) for d in match["dims"].split("x")]
    return shapes


def load_graph(model: Any, input_shapes: InputShapes | None = None) -> Graph:
    """Import ``model`` (a path, an ONNX ModelProto, a torch ``nn.Module``, an edgemeter or
    nn-Meter IR dict, or a Graph) and return it with costs annotated. A Graph whose every node
    already has its cost (an earlier ``load_graph``) comes back as it is: annotating again was a
    third of an in-memory prediction. Set a changed node's ``cost`` to None to have it redone."""
    from edgemeter.cost import annotate

    if isinstance(model, Graph) and all(node.cost is not None for node in model.nodes):
        return model
    input_shapes = input_shapes or {}
    for name, dims in input_shapes.items():
        if any(d < 1 for d in dims):  # shape inference would carry a 0 through to a prediction
            shown = "x".join(map(str, dims))
            raise ConfigError(f"bad input shape {f'{name}={shown}' if name else shown}: every "
                              "dim must be 1 or more")
    graph = _import(model, input_shapes)
    annotate(graph)
    return graph


def _import(model: Any, input_shapes: InputShapes) -> Graph:
    if isinstance(model, Graph):
        return model
    if isinstance(model, dict):
        return _import_dict(model)
    if isinstance(model, (str, Path)):
        return _import_path(Path(model), input_shapes)
    # A user's nn.Module subclass is defined in the user's module: look at its bases too.
    kinds = {cls.__module__.split(".")[0] for cls in type(model).__mro__}
    if "onnx" in kinds:
        from edgemeter.importers.onnx import import_onnx
        return import_onnx(model, input_shapes)
    if "torch" in kinds:
        from edgemeter.importers.torch import import_torch
        return import_torch(model, input_shapes)
    raise ModelError(f"cannot import a {type(model).__name__}: expected a model file, an ONNX "
                     "ModelProto, a torch nn.Module or an IR dict")


def _import_dict(data: dict) -> Graph:
    if "format" in data:
        return Graph.from_dict(data)
    from edgemeter.importers.nnmeter_ir import import_nnmeter_ir
    return import_nnmeter_ir(data)


def _import_path(path: Path, input_shapes: InputShapes) -> Graph:
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not a model file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from edgemeter.importers.onnx import import_onnx
        return import_onnx(path, input_shapes)
    if suffix == ".tflite":
        from edgemeter.importers.tflite import import_tflite
        return import_tflite(path)
    if suffix == ".json":
        import json
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not valid JSON ({exc})") from None
        return _import_dict(data)
    raise ModelError(f"{path}: unknown model format '{suffix}' (expected .onnx, .tflite or .json)")
