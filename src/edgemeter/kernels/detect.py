"""Kernel detection: split a graph into the kernels a runtime executes, following its rules."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from edgemeter.graph import Graph
from edgemeter.kernels.features import kernel_features
from edgemeter.kernels.kinds import node_kind
from edgemeter.kernels.rules import FusionRules, Pattern, Step


@dataclass
class Kernel:
    """One unit of execution: a kernel type, its member node names (graph order), features."""

    type: str
    nodes: list[str]
    features: dict[str, float | int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": self.type, "nodes": self.nodes, "features": self.features}


class _Context:
    """Index of a graph that detection reads many times: kinds, consumers, activation inputs."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes = graph.nodes
        self.kinds = [node_kind(graph, n) for n in self.nodes]
        self.consumers: defaultdict[str, list[int]] = defaultdict(list)
        self.act_inputs: list[list[str]] = []
        tensors = graph.tensors
        for i, node in enumerate(self.nodes):  # one pass: detection runs per model in NAS loops
            act = []
            for name in node.inputs:
                if name:
                    self.consumers[name].append(i)
                    tensor = tensors.get(name)
                    if tensor is None or not tensor.constant:
                        act.append(name)
            self.act_inputs.append(act)
        self.graph_outputs = set(graph.outputs)

    @cached_property
    def producer(self) -> dict[str, int]:
        """Position of the node writing each tensor: only a merge that may close a cycle asks."""
        return {out: i for i, n in enumerate(self.nodes) for out in n.outputs}

    def external_outputs(self, members: list[int], inside: set[int]) -> list[str]:
        """Outputs of ``members`` read outside ``inside`` or by the graph's caller."""
        return [out for i in members for out in self.nodes[i].outputs
                if out in self.graph_outputs
                or not inside.issuperset(self.consumers.get(out, ()))]

    def step_matches(self, i: int, step: Step) -> bool:
        node = self.nodes[i]
        if self.kinds[i] not in step.ops and node.op not in step.ops:
            return False
        return all(node.attrs.get(name) == value for name, value in step.conditions)


def detect(graph: Graph, rules: FusionRules) -> list[Kernel]:
    """Map every node of ``graph`` to exactly one kernel; kernels come back in graph order."""
    ctx = _Context(graph)
    owner = [-1] * len(ctx.nodes)
    groups: list[_Group] = []

    # 1. multi-op patterns, anchored at their first step, in graph order; first match wins.
    tried_at: dict[tuple[str, str], list[Pattern]] = {}
    for i, node in enumerate(ctx.nodes):
        if owner[i] >= 0:
            continue
        key = (ctx.kinds[i], node.op)
        tried = tried_at.get(key)
        if tried is None:
            tried = tried_at[key] = _first_step_fits(rules.patterns, *key)
        for pattern in tried:
            members = _match(ctx, pattern, i, owner)
            if members is not None:
                type_ = pattern.type
                break
        else:
            type_, members = ctx.kinds[i], [i]
        for j in members:
            owner[j] = len(groups)
        groups.append(_Group(type_, members))

    # 2. pair fusion along chains, at kernel granularity so a pattern kernel (hswish) can join
    # the conv before it. Groups were created in order of their first node, which is also a
    # topological order of the groups.
    pairs = rules.pairs
    for group in groups:
        if group.alive and group.type in pairs:  # only a pair's left side absorbs anything
            _grow(ctx, rules, group, groups, owner)

    kernels = []
    for group in groups:
        if group.alive:
            members = sorted(group.members)
            nodes = [ctx.nodes[i] for i in members]
            kernels.append(Kernel(group.type, [n.name for n in nodes],
                                  kernel_features(graph, group.type, nodes,
                                                  [ctx.kinds[i] for i in members])))
    # The model around a kernel changes its time: inside a sub-millisecond model the same
    # small kernels ran faster than inside large ones, and regressors that could not tell the
    # two apart put the small models' kernel sums 25 % high (Zen 4, onnxruntime, 2026-12-01).
    # Its weights too: a model that cycles more weights through the cache than it holds finds
    # its classifier's weights evicted on the next run, and models streaming over 4 MB of
    # weights per ms were the misses of every bench build (bench/bench_weight_rate.py).
    model_flops = sum(k.features.get("FLOPS", 0) for k in kernels)
    model_params = sum(k.features.get("PARAMS", 0) for k in kernels)
    for kernel in kernels:
        kernel.features["MODEL_FLOPS"] = model_flops
        kernel.features["MODEL_PARAMS"] = model_params
    return kernels


@dataclass(slots=True)
class _Group:
    type: str
    members: list[int]
    alive: bool = True


def _first_step_fits(patterns: list[Pattern], kind: str, op: str) -> list[Pattern]:
    """The patterns, in rules order, whose first step names ``kind`` or ``op``: the others fail
    on their first step at such a node, and trying them all at every node was most of the
    matching time."""
    return [p for p in patterns if kind in p.steps[0].ops or op in p.steps[0].ops]


def _match(ctx: _Context, pattern: Pattern, anchor: int, owner: list[int]) -> list[int] | None:
    """Member node positions if ``pattern`` matches starting at node ``anchor``, else None."""
    first = pattern.steps[0]
    if not ctx.step_matches(anchor, first):
        return None
    inputs = ctx.act_inputs[anchor]
    if not inputs:
        return None
    x = inputs[0]
    labels: dict[str, str] = {}
    if not _inputs_fit(inputs[1:], first.refs, x, labels):
        return None
    members = [anchor]
    prev = ctx.nodes[anchor].outputs[0]
    if first.label:
        labels[first.label] = prev
    for step in pattern.steps[1:]:
        for j in ctx.consumers.get(prev, ()):
            if owner[j] < 0 and j not in members and ctx.step_matches(j, step):
                rest = list(ctx.act_inputs[j])
                rest.remove(prev)
                if _inputs_fit(rest, step.refs, x, labels):
                    break
        else:
            return None
        members.append(j)
        prev = ctx.nodes[j].outputs[0]
        if step.label:
            labels[step.label] = prev
    # Intermediate results must stay inside the kernel: nothing outside may read them.
    if ctx.external_outputs(members[:-1], set(members)):
        return None
    return members


def _inputs_fit(inputs: list[str], refs: tuple[str, ...], x: str, labels: dict[str, str]) -> bool:
    """Whether the activation inputs (besides the chain input) are exactly ``refs``."""
    if len(inputs) != len(refs):
        return False
    remaining = list(inputs)
    for ref in sorted(refs, key=lambda r: r == "*"):  # wildcards take what is left
        wanted = x if ref == "x" else labels.get(ref)
        if ref == "*":
            remaining.pop()
        elif wanted in remaining:
            remaining.remove(wanted)
        else:
            return False
    return True


def _grow(ctx: _Context, rules: FusionRules, group: _Group, groups: list[_Group],
          owner: list[int]) -> None:
    """Absorb following kernels into ``group`` while the rules allow it."""
    start = min(group.members)
    tail = list(group.members)
    while group.type in rules.pairs:
        inside = set(group.members)
        outs = ctx.external_outputs(tail, inside)
        if len(outs) != 1 or outs[0] in ctx.graph_outputs:
            return
        readers = sorted({owner[c] for c in ctx.consumers.get(outs[0], ()) if c not in inside})
        if len(readers) > 1 and rules.multiple_consumers == "stop":
            return
        # With one reader and one way out of the group, no path can lead back into it. (On the
        # first step the tail is the whole group: its way out is ``outs``.)
        safe = len(readers) == 1 and (len(tail) == len(group.members)
                                      or ctx.external_outputs(group.members, inside) == outs)
        for g in readers:
            nxt = groups[g]
            if rules.fuses(group.type, nxt.type) and (safe or _no_cycle(ctx, nxt, inside, start)):
                break
        else:
            return
        for i in nxt.members:
            owner[i] = owner[group.members[0]]
        group.members.extend(nxt.members)
        group.type = f"{group.type}-{nxt.type}"
        nxt.alive = False
        tail = nxt.members


def _no_cycle(ctx: _Context, nxt: _Group, inside: set[int], start: int) -> bool:
    """Merging is safe when every other input of ``nxt`` comes from inside the group or from a
    node before the group's first node (which therefore cannot depend on the group)."""
    members = set(nxt.members)
    for i in nxt.members:
        for name in ctx.act_inputs[i]:
            p = ctx.producer.get(name, -1)
            if p > start and p not in members and p not in inside:
                return False
    return True
