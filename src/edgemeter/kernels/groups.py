"""Regressor groups: which latency regressor serves a kernel type.

One function shared by the builder (it trains a regressor per group) and the predictor (it asks a
regressor per group), so the two can never disagree.

As in nn-Meter, the op that dominates a kernel's time picks its group, and what was fused behind
it is a feature, not a group of its own: conv-bn-relu, conv-add-relu6 and conv-hswish are all served
by one ``conv`` regressor, which tells them apart by the features ``ACT`` (activation code of the
tail), ``OPS`` (member nodes: a fused add or bn adds one) and ``BYTES`` (a fused add reads a second
tensor). The groups:

=================  ===============================================================
group              kernel types
=================  ===============================================================
conv               conv, conv-*                    (grouped convs too: GROUPS is a feature)
dwconv             dwconv, dwconv-*
convtranspose      convtranspose, convtranspose-*
matmul             fc, fc-*, matmul, matmul-*, attention  (PARAMS is 0 for activation×activation)
maxpool, avgpool   maxpool-*, avgpool-*
global-pool        global-avgpool, global-maxpool (and their fused tails)
bn                 bn, bn-*                        (bn-relu: ACT)
activation         relu, relu6, sigmoid, hsigmoid, hswish, hswish-eltwise, swish, gelu,
                   activation                      (ACT tells them apart)
eltwise            add, mul, elementwise and their fused tails (add-relu: ACT)
layernorm, norm    layer normalisation; other normalisations
softmax, concat, split, se, channelshuffle, reduce, resize, data-movement, other
                   one group each
=================  ===============================================================

A type that none of the rules name (a pattern type from a user's rules file) is its own group.
"""
from __future__ import annotations

# Leading kind (or pattern type) of a kernel type → group. Matched against the whole type or
# its prefix before "-"; kinds that contain "-" themselves are listed whole and tried first.
_GROUP_OF_HEAD: dict[str, str] = {
    "conv": "conv", "dwconv": "dwconv", "convtranspose": "convtranspose",
    "fc": "matmul", "matmul": "matmul", "attention": "matmul",
    "maxpool": "maxpool", "avgpool": "avgpool",
    "global-avgpool": "global-pool", "global-maxpool": "global-pool",
    "bn": "bn",
    "relu": "activation", "relu6": "activation", "sigmoid": "activation",
    "hsigmoid": "activation", "hswish": "activation", "hswish-eltwise": "activation",
    "swish": "activation", "gelu": "activation", "activation": "activation",
    "add": "eltwise", "mul": "eltwise", "elementwise": "eltwise",
    "layernorm": "layernorm", "norm": "norm", "softmax": "softmax", "concat": "concat",
    "split": "split", "se": "se", "channelshuffle": "channelshuffle", "reduce": "reduce",
    "resize": "resize", "data-movement": "data-movement", "other": "other",
}
_HEADS = sorted(_GROUP_OF_HEAD, key=len, reverse=True)  # longest first: global-avgpool before …

GROUPS = tuple(sorted(set(_GROUP_OF_HEAD.values())))


def kernel_head(kernel_type: str) -> str:
    """The leading kind of a kernel type: ``conv`` for conv-bn-relu, ``global-avgpool`` for
    global-avgpool-relu; the whole type when it starts with no known kind."""
    for head in _HEADS:
        if kernel_type == head or kernel_type.startswith(head + "-"):
            return head
    return kernel_type


def regressor_group(kernel_type: str) -> str:
    """Name of the regressor that predicts kernels of ``kernel_type`` (see the module table)."""
    head = kernel_head(kernel_type)
    return _GROUP_OF_HEAD.get(head, head)
