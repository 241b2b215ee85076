"""edgemeter: predict how fast a deep-learning model runs on a device and runtime."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgemeter")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"


def load_predictor(name=None, version=None, engine="numpy"):
    """The latency predictor ``name`` (None: the shipped default), newest version unless
    ``version`` is given, or a package folder/.zip by path; ``engine="onnxruntime"`` for a
    process that predicts many graphs::

        >>> edgemeter.load_predictor().predict("model.onnx").latency_ms

    See :class:`edgemeter.predictor.model.Predictor`. Imported on call: ``import edgemeter``
    stays light."""
    from edgemeter.predictor.model import load_predictor as load

    return load(name, version, engine)
