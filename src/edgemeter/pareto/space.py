"""The decision space: which backend runs each kind of operator, and its integer encoding.

A *key* is what one decision applies to: an op kind (``Conv``) in name mode, or an op kind with the
size of the data it produces (``Conv:401408``, in bytes) in index mode, which lets a large early
convolution and a small late one go to different backends. An assignment picks one backend per
key and is encoded as one integer in mixed radix (key 0 is the least significant digit), so 0 puts
everything on the first backend and ``size - 1`` everything on the last.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Sequence

import onnx

from edgemeter.errors import ConfigError

MODES = ("name", "index")


@dataclass(frozen=True)
class DecisionSpace:
    mode: str
    oplist: list[str]                 # the keys, in order of first appearance in the graph
    backends: list[str]
    node_keys: dict[str, int] = field(repr=False)   # ONNX node name -> index into oplist

    @property
    def radices(self) -> list[int]:
        return [len(self.backends)] * len(self.oplist)

    @property
    def size(self) -> int:
        return prod(self.radices)

    def encode(self, digits: Sequence[int]) -> int:
        """Per-key backend indices -> assignment id."""
        if len(digits) != len(self.oplist):
            raise ConfigError(f"expected {len(self.oplist)} choices, got {len(digits)}")
        value = 0
        for digit, radix in zip(reversed(digits), reversed(self.radices)):
            if not 0 <= digit < radix:
                raise ConfigError(f"choice {digit} out of range 0..{radix - 1}")
            value = value * radix + int(digit)
        return value

    def decode(self, ident: int) -> list[int]:
        """Assignment id -> per-key backend indices."""
        if not 0 <= ident < self.size:
            raise ConfigError(f"assignment id {ident} out of range 0..{self.size - 1}")
        digits = []
        for radix in self.radices:
            ident, digit = divmod(ident, radix)
            digits.append(digit)
        return digits

    def config(self, ident: int) -> dict[str, str]:
        """The readable assignment: key -> backend name."""
        return {key: self.backends[d] for key, d in zip(self.oplist, self.decode(ident))}

    def from_config(self, config: dict[str, str]) -> int:
        """Inverse of :meth:`config`."""
        try:
            return self.encode([self.backends.index(config[key]) for key in self.oplist])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"assignment does not fit this space: {exc}") from None

    def node_backends(self, ident: int) -> dict[str, str]:
        """ONNX node name -> backend name for assignment ``ident``."""
        digits = self.decode(ident)
        return {node: self.backends[digits[k]] for node, k in self.node_keys.items()}

    def neighbours(self, ident: int) -> list[int]:
        """Assignments at Hamming distance 1: one key moved to another backend."""
        digits, out = self.decode(ident), []
        for i, radix in enumerate(self.radices):
            for d in range(radix):
                if d != digits[i]:
                    out.append(self.encode([*digits[:i], d, *digits[i + 1:]]))
        return out

    def describe(self) -> str:
        return (f"{self.mode} mode: {len(self.oplist)} keys x {len(self.backends)} backends = "
                f"{self.size:,} assignments")


def build_space(model: onnx.ModelProto, backends: Sequence[str], mode: str = "name"
                ) -> DecisionSpace:
    """The space of ``model`` (prepared by :func:`edgemeter.pareto.partition.prepare_model`, so
    nodes have unique names and output shapes are inferred) over ``backends``."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r} (expected one of: {', '.join(MODES)})")
    if len(backends) < 2 or len(set(backends)) != len(backends):
        raise ConfigError("need at least two distinct backends to assign operators to")
    from edgemeter.pareto.partition import tensor_bytes

    sizes = tensor_bytes(model)
    oplist: list[str] = []
    node_keys: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if mode == "name" else f"{node.op_type}:{sizes.get(node.output[0], '?')}"
        if key not in oplist:
            oplist.append(key)
        node_keys[node.name] = oplist.index(key)
    return DecisionSpace(mode, oplist, list(backends), node_keys)
