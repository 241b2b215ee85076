"""Kernel models: a sampled kernel configuration emitted as a small ONNX model.

A configuration is a kernel type plus the features of :mod:`edgemeter.kernels.features` that fix
its shape (``{"type": "conv-relu", "HW": 28, "CIN": 32, "COUT": 64, "KERNEL_SIZE": 3,
"STRIDES": 1}``). :func:`emit` builds its head op from those numbers and appends the fused tail
(``bn``, ``relu``, ``add`` …) kind by kind. Training rows never trust the configuration: the
builder runs kernel detection on the emitted model and takes the features from there, exactly as
the predictor will see them.

:func:`emit_batch` puts several kernels side by side as independent branches of one model: on
runtimes that report per-node times, one profiled run then times them all, inside a model (as
they are timed inside real models) and at the cost of one process instead of one per kernel.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import onnx

from edgemeter.builder.onnx_graphs import GraphBuilder
from edgemeter.kernels.groups import kernel_head

Config = Mapping[str, Any]

_ACTIVATIONS = ("relu", "relu6", "sigmoid", "hsigmoid", "hswish", "swish", "gelu")
# Heads emit() can build; kernel types led by anything else are learned from zoo models only.
EMITTABLE = ("conv", "dwconv", "convtranspose", "fc", "matmul", "maxpool", "avgpool",
             "global-avgpool", "bn", "add", "mul", "concat", "softmax", "layernorm", "se",
             "channelshuffle", *_ACTIVATIONS)


def can_emit(kernel_type: str) -> bool:
    head = kernel_head(kernel_type)
    return head in EMITTABLE and all(t in _ACTIVATIONS or t in ("bn", "add", "mul")
                                     for t in _tail(kernel_type))


def _tail(kernel_type: str) -> list[str]:
    rest = kernel_type[len(kernel_head(kernel_type)) + 1:]
    return rest.split("-") if rest else []


def _int(config: Config, key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None or value != value:  # missing or NaN
        raise ValueError(f"configuration lacks {key}")
    return max(1, int(value))


def _activation_input(g: GraphBuilder, config: Config) -> str:
    """A 4-D NCHW input when the configuration has HW and CIN, else rows × columns."""
    if config.get("CIN") and config.get("HW"):
        hw = _int(config, "HW")
        return g.input([1, _int(config, "CIN"), _int(config, "H", hw), _int(config, "W", hw)])
    return g.input([1, _int(config, "ROWS"), _int(config, "COLS")])


def _head(g: GraphBuilder, head: str, config: Config) -> str:
    k, s = _int(config, "KERNEL_SIZE", 1), _int(config, "STRIDES", 1)
    if head == "fc":
        rows = _int(config, "M", 1)
        x = g.input([1, rows, _int(config, "K")] if rows > 1 else [1, _int(config, "K")])
        return g.fc(x, _int(config, "N"))
    if head == "matmul":
        batch, m, inner, n = (_int(config, key, 1) for key in ("BATCH", "M", "K", "N"))
        return g.matmul(g.input([batch, m, inner]), g.input([batch, inner, n]))
    if head == "concat":  # along axis 1: channels of NCHW, tokens of (1, tokens, COLS)
        inner = [_int(config, "HW")] * 2 if config.get("HW") else [_int(config, "COLS")]
        xs = [g.input([1, _int(config, f"CIN{i}", config.get("CIN")), *inner])
              for i in range(1, _int(config, "INPUTS", 2) + 1)]
        return g.concat(xs)
    x = _activation_input(g, config)
    if head == "conv":
        return g.conv(x, _int(config, "COUT"), k, s, groups=_int(config, "GROUPS", 1))
    if head == "dwconv":
        return g.dwconv(x, k, s)
    if head == "convtranspose":
        return g.convtranspose(x, _int(config, "COUT"), k, s)
    if head in ("maxpool", "avgpool"):
        return g.pool(x, head, k, s)
    if head == "global-avgpool":
        return g.global_pool(x)
    if head == "se":
        return g.se(x, _int(config, "CMID", 8) / _int(config, "CIN"))
    if head == "channelshuffle":
        return g.channelshuffle(x)
    return g.apply(head, x)


def add_kernel(g: GraphBuilder, config: Config) -> str:
    """Append one kernel (its own inputs, head and fused tail) to ``g``; returns its output."""
    kernel_type = str(config["type"])
    if not can_emit(kernel_type):
        raise ValueError(f"cannot emit kernel type '{kernel_type}'")
    y = _head(g, kernel_head(kernel_type), config)
    for kind in _tail(kernel_type):
        y = g.apply(kind, y)
    g.output(y)
    return y


def emit_error(config: Config) -> str | None:
    """Why no model can have this configuration (a feature missing or out of range), or None."""
    try:
        add_kernel(GraphBuilder(), config)
    except (ValueError, KeyError) as exc:
        return str(exc)
    return None


def emit(config: Config, seed: int = 0) -> onnx.ModelProto:
    """One kernel as a model of its own (for runtimes without per-node times)."""
    g = GraphBuilder(seed, name=str(config["type"]))
    add_kernel(g, config)
    return g.model()


def emit_batch(configs: Sequence[Config], seed: int = 0) -> onnx.ModelProto:
    """Several kernels as independent branches of one model (for per-node profiling)."""
    g = GraphBuilder(seed, name="kernel-batch")
    for config in configs:
        add_kernel(g, config)
    return g.model()
