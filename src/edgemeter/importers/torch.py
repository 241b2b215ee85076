"""PyTorch ``nn.Module`` → :class:`~edgemeter.graph.Graph`, through an in-memory ONNX export.

The TorchScript exporter (``dynamo=False``, opset 17, constant folding) writes one self-contained
model, folds BatchNorm into Conv as deployment runtimes do, and needs no extra packages.
"""
from __future__ import annotations

import io
import warnings
from typing import Any

from edgemeter.errors import ConfigError, ModelError, import_extra
from edgemeter.graph import Graph

OPSET = 17


def import_torch(module: Any, input_shapes: dict[str, list[int]] | None = None,
                 example_input: Any = None) -> Graph:
    """Export ``module`` to ONNX and import it.

    The input is ``example_input`` (a tensor or a tuple of tensors) when given, else zeros of the
    shapes in ``input_shapes``: ``{"": dims}`` or ``{name: dims}`` for one input, one entry per
    input (in ``forward``'s order) for several; the names become the graph's input names.
    """
    torch = import_extra("torch", "torch", "torch")
    import onnx

    from edgemeter.importers.onnx import import_onnx

    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
    args, names = _example(torch, input_shapes or {}, example_input)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated upstream; that is not the user's concern.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET,
                              do_constant_folding=True, input_names=names)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types for one cause
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"torch.onnx.export failed for {type(module).__name__}: {first}") \
            from None
    graph = import_onnx(onnx.load_model_from_string(buffer.getvalue()))
    graph.name = type(module).__name__
    return graph


def _example(torch: Any, input_shapes: dict[str, list[int]], example_input: Any
             ) -> tuple[tuple, list[str] | None]:
    if example_input is not None:
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        return args, [name for name in input_shapes if name] or None
    if not input_shapes:
        raise ConfigError("a PyTorch model needs its input shape: --input-shape 1x3x224x224 "
                          "on the command line, input_shape=[1, 3, 224, 224] to predict()")
    args = tuple(torch.zeros(dims) for dims in input_shapes.values())
    names = [name or "input" for name in input_shapes]
    return args, names

