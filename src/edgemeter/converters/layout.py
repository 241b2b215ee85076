"""NCHW (ONNX, edgemeter's graph) ↔ NHWC (TFLite, nn-Meter) layout arithmetic, and TensorFlow's
SAME padding, shared by the TFLite and nn-Meter importers and the TFLite converter."""
from __future__ import annotations

NCHW_TO_NHWC = [0, 2, 3, 1]
NHWC_TO_NCHW = [0, 3, 1, 2]
# NHWC_AXIS[a]: where ONNX axis a (N, C, H, W) sits in an NHWC tensor; NCHW_AXIS the inverse.
NHWC_AXIS = [0, 3, 1, 2]
NCHW_AXIS = [0, 2, 3, 1]


def to_nchw(shape: list[int]) -> list[int]:
    """An NHWC shape in NCHW order; shapes of other ranks are returned unchanged."""
    return [shape[i] for i in NHWC_TO_NCHW] if len(shape) == 4 else list(shape)


def to_nhwc(shape: list[int]) -> list[int]:
    return [shape[i] for i in NCHW_TO_NHWC] if len(shape) == 4 else list(shape)


def same_pads(size: list[int], kernel: list[int], strides: list[int],
              dilations: list[int]) -> list[int]:
    """TensorFlow's SAME padding as ONNX pads ``[begin…, end…]``: the odd pixel goes last."""
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end
