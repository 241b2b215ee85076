"""Predictor builder: measure a backend's kernels and package a latency predictor for it.

>>> from edgemeter.builder import create_workspace, build
>>> create_workspace("ws", backend="onnxruntime-cpu")
>>> report = build("ws", budget_s=1800)     # fusion test → sampling → profiling → training
>>> print(report.format())                  # per-group and held-out whole-model accuracy

Modules: :mod:`~edgemeter.builder.workspace` (configs), :mod:`~edgemeter.builder.fusion_test`,
:mod:`~edgemeter.builder.sampling` (priors, inverse CDF, fine-grained),
:mod:`~edgemeter.builder.onnx_graphs` and :mod:`~edgemeter.builder.kernel_models` (test and kernel
models), :mod:`~edgemeter.builder.collect` (measurements → rows), :mod:`~edgemeter.builder.train`
(regressors, fallback, model term), :mod:`~edgemeter.builder.build` (the pipeline).
"""
from edgemeter.builder.build import BuildReport, build
from edgemeter.builder.workspace import Workspace, create_workspace, load_workspace

__all__ = ["BuildReport", "Workspace", "build", "create_workspace", "load_workspace"]
