"""Per-operator times of a .tflite model from LiteRT's own profiler, and which model nodes each
operator runs.

The Python interpreter of ai-edge-litert has no profiler; the C library it ships (libLiteRt.so)
has one, reached here with ctypes. A compiled model built with the runtime option
``enable_profiling`` records an event per operator: one per XNNPACK operator inside each
delegate partition (tags like ``Convolution (NHWC, F32) IGEMM``, indices counted per partition),
one per TFLite op XNNPACK left to the builtin kernels (``SPLIT_V``). Times are whole
microseconds, so operators under a microsecond read 0.

Operators carry no model node names. XNNPACK creates them in the order of the TFLite ops, which
the converter writes in the order of the model's nodes: one operator per node, a few for some
(a HardSigmoid runs as Multiply, Add, Clamp), none for others (a Relu folded into its conv, a
reshape it drops). :func:`align` matches the two sequences by kind (a convolution runs a Conv,
never a pool), which is what lets per-operator times become in-context kernel times
(:mod:`edgemeter.backends.kernel_times`).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

from edgemeter.errors import EdgemeterError
from edgemeter.graph import Graph

# LiteRtProfilerEventType values (litert_profiler_event.h): a TFLite op; an XNNPACK operator
# (reported with either of two types); the runtime's own record that opens each run.
_OPERATOR, _DELEGATE_OPERATORS, _RUN_START = 1 << 1, (1 << 2) | (1 << 3), 1 << 4
_CPU = 1  # kLiteRtHwAcceleratorCpu


class _MemoryUsage(ctypes.Structure):
    # Three int64 in the library ai-edge-litert 2.3.0 ships (its events lie 104 bytes apart),
    # where LiteRT's C header declares two: an array sized by the header is overrun.
    _fields_ = [("max_rss_kb", ctypes.c_int64), ("total_allocated_bytes", ctypes.c_int64),
                ("in_use_allocated_bytes", ctypes.c_int64)]


class _Event(ctypes.Structure):
    """ProfiledEventData (litert_profiler_event.h) as the shipped library lays it out: 104
    bytes."""
    _fields_ = [("tag", ctypes.c_char_p), ("event_type", ctypes.c_int),
                ("start_us", ctypes.c_uint64), ("elapsed_us", ctypes.c_uint64),
                ("begin_mem", _MemoryUsage), ("end_mem", _MemoryUsage),
                ("metadata1", ctypes.c_uint64), ("metadata2", ctypes.c_uint64),
                ("source", ctypes.c_int)]


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    import ai_edge_litert

    return ctypes.CDLL(str(Path(ai_edge_litert.__file__).with_name("libLiteRt.so")))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The library logs its set-up (accelerator registry, INFO lines) to the process's stderr at
    every compilation: dozens of lines per model, none for the user; failures come back as
    statuses."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _call(name: str, *args) -> None:
    status = getattr(_library(), name)(*args)
    if status != 0:
        raise EdgemeterError(f"LiteRT profiler: {name} failed (status {status})")


def _opaque_toml(options: ctypes.c_void_p, identifier: bytes, toml: str, keep: list) -> None:
    """Attach a TOML payload under ``identifier``: how the runtime takes its runtime and XNNPACK
    options (the option builders of LiteRT's SDK are not exported by the library)."""
    payload = ctypes.create_string_buffer(toml.encode())
    deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: None)
    keep += [payload, deleter]  # owned here: they must outlive the compiled model
    opaque = ctypes.c_void_p()
    _call("LiteRtCreateOpaqueOptions", identifier, ctypes.cast(payload, ctypes.c_void_p),
          deleter, ctypes.byref(opaque))
    _call("LiteRtAddOpaqueOptions", options, opaque)


def operator_times(model: bytes, runs: int, threads: int = 1) -> list[tuple[str, float]]:
    """``(label, ms)`` of every operator of the .tflite ``model`` in execution order, the mean
    over ``runs`` profiled runs after one warm-up; labels are ``p<partition>.<index> <tag>``
    for XNNPACK operators (partitions counted from 1 in execution order) and
    ``op<index> <tag>`` for builtin ops (index: the TFLite op's)."""
    with _quiet_stderr():
        return _operator_times(model, runs, threads)


def _operator_times(model: bytes, runs: int, threads: int) -> list[tuple[str, float]]:
    P = ctypes.c_void_p
    made: list[tuple[str, ctypes.c_void_p]] = []  # (its destroy function, handle), in order

    def create(function: str, destroy: str, *args) -> ctypes.c_void_p:
        handle = P()
        _call(function, *args, ctypes.byref(handle))
        made.append((destroy, handle))
        return handle

    keep: list = []
    try:
        env = create("LiteRtCreateEnvironment", "LiteRtDestroyEnvironment", ctypes.c_int(0),
                     None)
        data = ctypes.create_string_buffer(model, len(model))
        keep.append(data)  # the model reads its weights from this buffer
        tfl = create("LiteRtCreateModelFromBuffer", "LiteRtDestroyModel", env, data,
                     ctypes.c_size_t(len(model)))
        options = create("LiteRtCreateOptions", "LiteRtDestroyOptions")
        _call("LiteRtSetOptionsHardwareAccelerators", options, ctypes.c_int(_CPU))
        _opaque_toml(options, b"runtime_options_string", "enable_profiling = true\n", keep)
        _opaque_toml(options, b"xnnpack", f"num_threads = {threads}\n", keep)
        compiled = create("LiteRtCreateCompiledModel", "LiteRtDestroyCompiledModel", env, tfl,
                          options)
        signature = P()
        _call("LiteRtGetModelSignature", tfl, ctypes.c_size_t(0), ctypes.byref(signature))

        def buffers(kind: str) -> ctypes.Array:
            count = ctypes.c_size_t()
            _call(f"LiteRtGetNumSignature{kind}s", signature, ctypes.byref(count))
            handles = (P * count.value)()
            for i in range(count.value):
                tensor, requirements = P(), P()
                tensor_type = ctypes.create_string_buffer(512)  # LiteRtRankedTensorType: 72 B
                _call(f"LiteRtGetSignature{kind}TensorByIndex", signature, ctypes.c_size_t(i),
                      ctypes.byref(tensor))
                _call("LiteRtGetRankedTensorType", tensor, tensor_type)
                _call(f"LiteRtGetCompiledModel{kind}BufferRequirements", compiled,
                      ctypes.c_size_t(0), ctypes.c_size_t(i), ctypes.byref(requirements))
                handles[i] = create("LiteRtCreateManagedTensorBufferFromRequirements",
                                    "LiteRtDestroyTensorBuffer", env, tensor_type,
                                    requirements).value
            return handles

        inputs, outputs = buffers("Input"), buffers("Output")
        profiler = P()  # owned by the compiled model
        _call("LiteRtCompiledModelGetProfiler", compiled, ctypes.byref(profiler))
        if not profiler:
            raise EdgemeterError("LiteRT profiler: the compiled model has no profiler")
        for i in range(runs + 1):  # the first is a warm-up
            if i == 1:
                _call("LiteRtStartProfiler", profiler)
            _call("LiteRtRunCompiledModel", compiled, ctypes.c_size_t(0),
                  ctypes.c_size_t(len(inputs)), inputs, ctypes.c_size_t(len(outputs)), outputs)
        _call("LiteRtStopProfiler", profiler)
        count = ctypes.c_int()
        _call("LiteRtGetNumProfilerEvents", profiler, ctypes.byref(count))
        events = (_Event * count.value)()
        _call("LiteRtGetProfilerEvents", profiler, count, events)
        return operator_means([(e.event_type, (e.tag or b"").decode(), e.elapsed_us,
                                e.metadata1) for e in events], runs)
    finally:
        for destroy, handle in reversed(made):
            getattr(_library(), destroy)(handle)


def operator_means(events: Sequence[tuple[int, str, int, int]], runs: int
                   ) -> list[tuple[str, float]]:
    """Events ``(type, tag, elapsed µs, index)``, as the profiler lists them (in time order)
    over ``runs`` runs → ``(label, mean ms)`` per operator, in execution order. XNNPACK
    operators carry their index within their partition and no start time; a partition is a run
    of them between builtin ops, counted from each run's start."""
    totals: dict[str, float] = {}
    partition, inside = 0, False
    for kind, tag, elapsed, index in events:
        if kind & _DELEGATE_OPERATORS:
            if not inside:
                partition, inside = partition + 1, True
            label = f"p{partition}.{index} {tag}"
        else:
            inside = False
            if kind & _RUN_START:
                partition = 0
            if not kind & _OPERATOR:
                continue
            label = f"op{index} {tag}"
        totals[label] = totals.get(label, 0.0) + elapsed / 1000
    return [(label, total / runs) for label, total in totals.items()]


# -- which model nodes an operator runs ----------------------------------------------------

def operator_class(tag: str) -> str:
    """The kind of work an operator tag names: conv, dwconv, fc, pool, reduce, softmax, pad,
    move (copies, reshapes, transposes, slices) or elt (everything element-wise)."""
    t = tag.lower()
    if "dwconv" in t or "depthwise" in t:
        return "dwconv"
    if t in ("pad", "padv2") or t.startswith("constant pad"):
        return "pad"
    for kind, words in (("conv", ("convolution", "conv_2d")),
                        ("fc", ("fully connected", "fully_connected", "matrix multiply",
                                "batch_matmul")),
                        ("pool", ("pooling", "pool_2d")),
                        ("softmax", ("softmax",)),
                        ("reduce", ("mean", "reduce", "sum (nd)")),
                        ("move", ("copy", "reshape", "transpose", "slice", "concat", "split",
                                  "pad", "gather", "pack", "resize", "space", "squeeze"))):
        if any(w in t for w in words):
            return kind
    return "elt"


# A model op → the operator kinds its first operator may be and the rest; ops not named here
# are element-wise. XNNPACK folds some ops into their producer (a Relu after a Conv), which then
# get no operator.
_OP_KINDS: tuple[tuple[tuple[str, ...], set[str], set[str]], ...] = (
    (("Conv", "ConvTranspose"), {"conv", "fc", "dwconv"}, set()),
    (("Gemm", "MatMul"), {"fc"}, set()),
    (("MaxPool", "AveragePool"), {"pool"}, set()),
    (("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax",
      "ReduceMin"), {"reduce", "pool"}, set()),
    (("Softmax",), {"softmax"}, set()),
    (("LayerNormalization",), {"reduce"}, {"reduce", "elt"}),
    (("Pad",), {"pad", "move"}, set()),
    (("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
      "Gather", "Resize", "Identity", "Expand", "Tile", "DepthToSpace", "SpaceToDepth"),
     {"move"}, {"move"}))
_OPS = {op: (frozenset(first), frozenset(rest))
        for ops, first, rest in _OP_KINDS for op in ops}
_ELEMENTWISE = (frozenset({"elt"}), frozenset({"elt"}))
# The most operators one model op runs (a LayerNormalization: eight or nine).
_MOST_PER_OP = 10
# Ops whose padding the converter writes as a Pad before them (a builtin PADV2 XNNPACK leaves).
_PADDED = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool"})
# How far the alignment may stray from the diagonal, in operators beyond the difference of the
# two lengths (nodes folded away shift the match by up to that much).
_BAND = 64


def align(node_ops: Sequence[str], operator_tags: Sequence[str]) -> list[int | None]:
    """For each operator, the index of the model node it runs (None: no node fits), matching
    the two sequences in order: a node takes a run of operators whose first is of a kind its op
    can be (after the Pad the converter wrote for a padded op) and the rest of kinds its op can
    continue with. Most operators placed wins; among equals, the one giving more nodes an
    operator."""
    K, J = len(node_ops), len(operator_tags)
    allowed = [_OPS.get(op, _ELEMENTWISE) for op in node_ops]
    padded = [op in _PADDED for op in node_ops]
    classes = [operator_class(t) for t in operator_tags]
    NEG = float("-inf")
    # best[i][j]: score with the first i nodes and the first j operators placed or skipped.
    best = [[NEG] * (J + 1) for _ in range(K + 1)]
    step: list[list[tuple[int, int] | None]] = [[None] * (J + 1) for _ in range(K + 1)]
    best[0][0] = 0.0
    band = _BAND + abs(K - J)
    bonus = 1 / (K + 1)  # per node given an operator: all of them together weigh less than one
    for i in range(K + 1):
        centre = round(i * J / K) if K else 0
        for j in range(max(0, centre - band), min(J, centre + band) + 1):
            score = best[i][j]
            if score == NEG:
                continue
            if j < J and score > best[i][j + 1]:  # operator j runs no node
                best[i][j + 1], step[i][j + 1] = score, (i, j)
            if i == K:
                continue
            if score > best[i + 1][j]:  # node i runs no operator
                best[i + 1][j], step[i + 1][j] = score, (i, j)
            first, rest = allowed[i]
            main = j + 1 if padded[i] and j < J and classes[j] == "pad" else j
            if main < J and classes[main] in first:
                end = main + 1
                while True:
                    gain = score + (end - j) + bonus
                    if gain > best[i + 1][end]:
                        best[i + 1][end], step[i + 1][end] = gain, (i, j)
                    if end == J or end - j == _MOST_PER_OP or classes[end] not in rest:
                        break
                    end += 1
    owner: list[int | None] = [None] * J
    if best[K][J] == NEG:
        return owner
    i, j = K, J
    while (i, j) != (0, 0):
        pi, pj = step[i][j]
        if pi == i - 1 and pj < j:
            for o in range(pj, j):
                owner[o] = pi
        i, j = pi, pj
    return owner


def operator_origins(graph: Graph, labels: Sequence[str]) -> dict[str, list[str]]:
    """Operator label → the model node :func:`align` gives it (none: its time stays
    unattributed)."""
    nodes = graph.nodes
    owner = align([n.op for n in nodes], [label.split(" ", 1)[1] for label in labels])
    return {label: [nodes[o].name] if o is not None else [] for label, o in zip(labels, owner)}
