"""Kernels: the units a runtime executes, found by applying its fusion rules to a graph.

>>> rules = load_rules("onnxruntime-cpu")
>>> kernels = detect(graph, rules)          # [Kernel(type="conv-relu", nodes=[...], ...), ...]
"""
from edgemeter.kernels.detect import Kernel, detect
from edgemeter.kernels.kinds import KINDS, node_kind
from edgemeter.kernels.rules import FusionRules, list_rules, load_rules, parse_rules

__all__ = ["Kernel", "FusionRules", "load_rules", "parse_rules", "list_rules", "detect",
           "node_kind", "KINDS"]
