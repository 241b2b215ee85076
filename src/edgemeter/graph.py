"""The graph IR: the plain data every stage of edgemeter reads and writes.

Op types use the ONNX vocabulary (``Conv``, ``Relu``, ``MatMul`` …) whatever the source format,
and activation layouts are NCHW, so importers translate once and nothing downstream cares where a
model came from.
"""
from __future__ import annotations

import heapq
import json
from dataclasses import MISSING, asdict, dataclass, field
from math import prod
from pathlib import Path
from typing import Any, Iterator

from edgemeter.errors import ModelError

FORMAT = "edgemeter-ir/1"

DTYPE_SIZES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}


@dataclass
class Tensor:
    """A value flowing between nodes. ``shape`` is None when it cannot be known before running."""

    name: str
    shape: list[int] | None = None
    dtype: str = "float32"
    constant: bool = False
    # Small constants (shape vectors, axes, split sizes) keep their value: detection and cost
    # rules need them; weights keep only their shape.
    value: list | None = None

    @property
    def size(self) -> int | None:
        return None if self.shape is None else prod(self.shape)

    @property
    def nbytes(self) -> int | None:
        size = self.size
        return None if size is None else size * DTYPE_SIZES.get(self.dtype, 4)


@dataclass
class Cost:
    """Work a node does: FLOPs (a multiply-accumulate counts as 2), parameters, memory traffic."""

    flops: int = 0
    params: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    # False when the op has no cost rule (or unknown shapes) and only its bytes were counted.
    exact: bool = True

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.params + other.params,
                    self.bytes_read + other.bytes_read, self.bytes_written + other.bytes_written,
                    self.exact and other.exact)


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    cost: Cost | None = None
    # The output shape depends on the data (NonMaxSuppression, NonZero …).
    data_dependent: bool = False


@dataclass
class Graph:
    """Nodes in topological order plus every tensor they touch, keyed by name."""

    name: str
    nodes: list[Node]
    tensors: dict[str, Tensor]
    inputs: list[str]
    outputs: list[str]
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._producers: dict[str, Node] | None = None
        self._consumers: dict[str, list[Node]] | None = None

    # -- structure -------------------------------------------------------------------------
    def _index(self) -> None:
        self._producers, self._consumers = {}, {}
        for node in self.nodes:
            for out in node.outputs:
                self._producers[out] = node
            for inp in node.inputs:
                if inp:
                    self._consumers.setdefault(inp, []).append(node)

    def invalidate(self) -> None:
        """Call after editing nodes so producer/consumer look-ups are rebuilt."""
        self._producers = self._consumers = None

    def producer(self, tensor: str) -> Node | None:
        if self._producers is None:
            self._index()
        return self._producers.get(tensor)

    def consumers(self, tensor: str) -> list[Node]:
        if self._consumers is None:
            self._index()
        return self._consumers.get(tensor, [])

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def activation_inputs(self, node: Node) -> list[Tensor]:
        """Inputs of ``node`` that are not constants (weights, shape vectors)."""
        return [self.tensors[i] for i in node.inputs if i and not self.tensors[i].constant]

    def sort(self) -> None:
        """Order nodes topologically (Kahn); raise ModelError naming a node on a cycle."""
        producer = {out: i for i, n in enumerate(self.nodes) for out in n.outputs}
        deps = [{producer[t] for t in n.inputs if t in producer} for n in self.nodes]
        users: dict[int, list[int]] = {}
        for i, d in enumerate(deps):
            for j in d:
                users.setdefault(j, []).append(i)
        pending = [len(d) for d in deps]
        # Smallest ready index first: an order that is already topological stays as it is, so
        # an IR round trip keeps the node order.
        ready = [i for i, p in enumerate(pending) if p == 0]
        order: list[int] = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for u in users.get(i, []):
                pending[u] -= 1
                if pending[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(self.nodes):
            stuck = next(n.name for i, n in enumerate(self.nodes) if pending[i] > 0)
            raise ModelError(f"graph '{self.name}' has a cycle through node '{stuck}'")
        self.nodes = [self.nodes[i] for i in order]
        self.invalidate()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def total_cost(self) -> Cost:
        total = Cost()
        for node in self.nodes:
            if node.cost is not None:
                total = total + node.cost
        return total

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "tensors": {k: _drop_defaults(asdict(t), Tensor) for k, t in self.tensors.items()},
            "nodes": [_node_to_dict(n) for n in self.nodes],
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Graph:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ModelError(f"not an edgemeter IR (expected format '{FORMAT}', found {found!r})")
        try:
            tensors = {k: Tensor(**t) for k, t in data["tensors"].items()}
            nodes = [Node(**{**n, "cost": Cost(**n["cost"]) if n.get("cost") else None})
                     for n in data["nodes"]]
            graph = cls(data["name"], nodes, tensors, list(data["inputs"]),
                        list(data["outputs"]), list(data.get("warnings", [])))
        except (KeyError, TypeError) as exc:
            raise ModelError(f"malformed edgemeter IR: {exc}") from None
        graph.sort()
        return graph

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())


def _drop_defaults(d: dict, cls: type) -> dict:
    """Leave out fields at their default value, keeping the JSON short to read and diff."""
    defaults = {k: f.default for k, f in cls.__dataclass_fields__.items() if f.default is not MISSING}
    return {k: v for k, v in d.items() if k not in defaults or defaults[k] != v}


def _node_to_dict(node: Node) -> dict:
    d = asdict(node)
    if not node.data_dependent:
        del d["data_dependent"]
    if not node.attrs:
        del d["attrs"]
    return d
