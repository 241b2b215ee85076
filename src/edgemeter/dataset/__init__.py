"""Benchmark datasets: random zoo variants as ONNX files, their measurements, and the evaluation
of a predictor against them.

A dataset is a folder a person can read::

    DIR/index.jsonl                    one line per model: file, family, variant, seed, shape, FLOPs
    DIR/models/<family>-s<seed>-<i>.onnx
    DIR/measurements.sqlite            the results store (what makes measuring resumable)
    DIR/measurements-<backend>.jsonl   one line per measured model (median, spread, settings)

>>> generate("ds", per_family=20, seed=1)
>>> measure("ds", "onnxruntime-cpu", threads=1)
>>> evaluate(load_predictor(), "ds", out="ds/report")
"""
from edgemeter.dataset.evaluate import Evaluation, evaluate
from edgemeter.dataset.generate import DEFAULT_FAMILIES, generate, read_index, sibling
from edgemeter.dataset.measure import measure, read_measurements

__all__ = ["DEFAULT_FAMILIES", "Evaluation", "evaluate", "generate", "measure", "read_index",
           "read_measurements", "sibling"]
