"""Kernel latency regressors and the predictor packages that ship them.

- :mod:`~edgemeter.predictor.regressors`: tree ensembles trained with scikit-learn, evaluated
  with numpy alone (a batch of rows per call), saved as plain arrays.
- :mod:`~edgemeter.predictor.batch`: every kernel type's forest in one vectorised pass.
- :mod:`~edgemeter.predictor.onnx_forests`: the same forests compiled into an onnxruntime session.
- :mod:`~edgemeter.predictor.training`: ``train_kernel_regressor`` with its 80/20 split.
- :mod:`~edgemeter.predictor.metrics`: RMSE, RMSPE, share within ±5% / ±10%.
- :mod:`~edgemeter.predictor.package`: the package format (manifest, rules, regressors, data).
- :mod:`~edgemeter.predictor.registry`: shipped and user-registered predictors.
- :mod:`~edgemeter.predictor.fingerprint`: the build machine's hardware and runtime versions.
"""
from edgemeter.predictor.batch import KernelBatchPredictor
from edgemeter.predictor.package import PredictorPackage, load_package, save_package
from edgemeter.predictor.registry import (
    PredictorInfo, find_predictor, list_predictors, register, unregister,
)
from edgemeter.predictor.regressors import (
    BoostingRegressor, ForestRegressor, TreeRegressor, load_regressor, make_regressor,
)
from edgemeter.predictor.training import train_kernel_regressor

__all__ = [
    "BoostingRegressor", "ForestRegressor", "KernelBatchPredictor", "PredictorInfo",
    "PredictorPackage", "TreeRegressor", "find_predictor", "list_predictors", "load_package",
    "load_regressor", "make_regressor", "register", "save_package", "train_kernel_regressor",
    "unregister",
]
