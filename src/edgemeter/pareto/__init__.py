"""Pareto front of per-operator backend assignments: latency against peak memory.

>>> from edgemeter.pareto import prepare_model, build_space, PartitionedEvaluator, Study, nsga2
>>> model = prepare_model("model.onnx")
>>> space = build_space(model, ["onnxruntime-cpu", "openvino-cpu-bf16"], mode="name")
>>> study = Study(space, PartitionedEvaluator("model.onnx", space, "work"), dump="front.json")
>>> nsga2(study, budget=50); study.save()

The evaluator (real runtimes, fresh processes) is the expensive part; everything else is plain
data: integer ids, configs, the output JSON.
"""
from edgemeter.pareto.archive import ParetoArchive, dominates, hypervolume
from edgemeter.pareto.executor import PartitionedEvaluator
from edgemeter.pareto.offline import OfflineEstimator, offline_search, profiled_predictor
from edgemeter.pareto.partition import Partition, partition, prepare_model
from edgemeter.pareto.search import (Solution, Study, brute_force, local_search, nsga2,
                                     random_search, run_search)
from edgemeter.pareto.space import DecisionSpace, build_space

__all__ = ["DecisionSpace", "OfflineEstimator", "ParetoArchive", "Partition",
           "PartitionedEvaluator", "Solution", "Study", "brute_force", "build_space", "dominates",
           "hypervolume", "local_search", "nsga2", "offline_search", "partition", "prepare_model",
           "profiled_predictor", "random_search", "run_search"]
