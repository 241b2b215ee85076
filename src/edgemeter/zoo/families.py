"""The zoo's families as data: each one's builder, published default variant, sampling space
and a tiny variant for tests. Imports no torch; builders load :mod:`edgemeter.zoo.models` on use.

A variant is a JSON-able dict: ``resolution`` plus the builder's keyword arguments. Random
variants follow nn-Meter's dataset generation: every stage's width is rescaled independently,
depths, kernel sizes and expansion ratios are re-drawn, and the input resolution varies; the
ranges keep each model edge-sized (about 10 MFLOPs to 2 GFLOPs).
"""
from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Variant = dict[str, Any]


@dataclass(frozen=True)
class Space:
    """How :meth:`Family.sample_variant` perturbs the default variant."""

    resolutions: tuple[int, ...] = (96, 128, 160, 192, 224)
    # key -> range: each (nested) channel count × U(range), rounded to ``divisor``; nn-Meter
    # rescales every layer's width independently
    widths: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"channels": (0.5, 1.5)})
    divisor: int = 8
    depths: tuple[str, ...] = ("depths",)  # keys whose ints are re-drawn in [d·lo, d·hi]
    depth: tuple[float, float] = (0.5, 1.5)
    # key -> values to draw each entry from, or a list of such tuples, one per position
    choices: dict[str, tuple | list[tuple]] = field(default_factory=dict)
    tiny: Variant = field(default_factory=dict)  # overrides after shrinking, for tests

    def sample(self, default: Variant, rng: np.random.Generator) -> Variant:
        variant = copy.deepcopy(default)
        variant["resolution"] = int(rng.choice(self.resolutions))
        for key, (lo, hi) in self.widths.items():
            variant[key] = _map(variant[key], lambda c: self.round(c * rng.uniform(lo, hi)))
        for key in self.depths:
            variant[key] = [int(rng.integers(max(1, math.floor(d * self.depth[0])),
                                             math.ceil(d * self.depth[1]) + 1))
                            for d in variant[key]]
        for key, values in self.choices.items():
            if isinstance(values, list):
                variant[key] = [_pick(rng, v) for v in values]
            elif isinstance(variant[key], list):
                variant[key] = _map(variant[key], lambda _: _pick(rng, values))
            else:
                variant[key] = _pick(rng, values)
        return variant

    def shrink(self, default: Variant) -> Variant:
        """The default at a quarter width, at most two blocks per stage (so that residual and
        split paths stay), 64 px and 10 classes."""
        variant = copy.deepcopy(default) | {"resolution": 64}
        for key in self.widths:
            variant[key] = _map(variant[key], lambda c: self.round(c / 4))
        for key in self.depths:
            variant[key] = [min(d, 2) for d in variant[key]]
        if "classes" in variant:
            variant["classes"] = 10
        return variant | copy.deepcopy(self.tiny)

    def round(self, channels: float) -> int:
        return max(self.divisor, int(round(channels / self.divisor)) * self.divisor)


@dataclass(frozen=True)
class Family:
    """A model family: ``build(**variant)`` returns an ``nn.Module``."""

    name: str
    build: Callable[..., Any]
    default: Variant
    space: Space = field(default_factory=Space)

    def sample_variant(self, rng: np.random.Generator) -> Variant:
        return self.space.sample(self.default, rng)

    @property
    def tiny(self) -> Variant:
        """A small variant of the family's architecture that builds and runs in milliseconds."""
        return self.space.shrink(self.default)


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every leaf of a nested list (the zoo's variant lists), or to a scalar."""
    return [_map(v, fn) for v in value] if isinstance(value, list) else fn(value)


def _pick(rng: np.random.Generator, values: tuple) -> Any:
    return values[rng.integers(len(values))]  # indexing keeps Python types: JSON-able


def _builder(name: str, resolution: bool = False) -> Callable[..., Any]:
    """``models.<name>`` imported on first call; ``resolution`` is passed only to builders whose
    architecture depends on it (flattened classifiers, position embeddings, anchors)."""
    def build(**variant: Any) -> Any:
        if not resolution:
            variant = {k: v for k, v in variant.items() if k != "resolution"}
        return getattr(importlib.import_module("edgemeter.zoo.models"), name)(**variant)
    build.__qualname__ = f"models.{name}"
    return build


# Published architectures, stage by stage (lists follow models.py: channels = [stem, stages...]);
# blocks that vary inside a published stage take the stage's most common setting.
_T, _F = True, False
_WIDE = (0.5, 1.25)
_MBCONV = {"kernels": (3, 5, 7), "expansions": (3, 4, 6)}
_MOBILE = Space(widths={"channels": _WIDE, "head": _WIDE}, choices=_MBCONV)
_MOBILENET_V2 = {
    "resolution": 224, "block": "mbconv", "act": "relu6",
    "channels": [32, 16, 24, 32, 64, 96, 160, 320], "depths": [1, 2, 3, 4, 3, 3, 1],
    "strides": [1, 2, 2, 2, 1, 2, 1], "kernels": [3] * 7, "expansions": [1, 6, 6, 6, 6, 6, 6],
    "head": 1280, "classes": 1000,
}
_MOBILENET_V3 = {  # Large
    "resolution": 224, "block": "mbconv", "act": "hswish", "se_gate": "hsigmoid",
    "channels": [16, 16, 24, 40, 80, 112, 160], "depths": [1, 2, 3, 4, 2, 3],
    "strides": [1, 2, 2, 2, 1, 2], "kernels": [3, 3, 5, 3, 3, 5],
    "expansions": [1, 4, 3, 3, 6, 6], "se": [0, 0, 0.25, 0, 0.25, 0.25],
    "acts": ["relu", "relu", "relu", "hswish", "hswish", "hswish"],
    "head": 960, "hidden": 1280, "classes": 1000,
}
_RESNET = {  # ResNet-18; "bottleneck" with channels as inner widths gives ResNet-50's shape
    "resolution": 224, "block": "basic", "expansion": 4, "channels": [64, 64, 128, 256, 512],
    "depths": [2, 2, 2, 2], "strides": [1, 2, 2, 2], "kernels": [3] * 4, "classes": 1000,
}

FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("alexnet", _builder("plain_net", resolution=True), {
        "resolution": 224, "channels": [64, 192, 384, 256, 256], "depths": [1] * 5,
        "kernels": [11, 5, 3, 3, 3], "pools": [_T, _T, _F, _F, _T], "pool": 3, "stem_stride": 4,
        "hidden": 4096, "classes": 1000,
    }, Space(resolutions=(128, 160, 192, 224), depths=(),
             # the published 4096-wide MLP alone is 230 MB of weights: not an edge model
             widths={"channels": _WIDE, "hidden": (0.06, 0.19)},
             choices={"kernels": [(7, 9, 11), (3, 5), (3, 5), (3, 5), (3, 5)]})),
    Family("vgg", _builder("plain_net", resolution=True), {  # VGG-16
        "resolution": 224, "channels": [64, 128, 256, 512, 512], "depths": [2, 2, 3, 3, 3],
        "kernels": [3] * 5, "pools": [_T] * 5, "hidden": 4096, "classes": 1000,
    }, Space(resolutions=(96, 128, 160), widths={"channels": (0.25, 0.6), "hidden": (0.06, 0.19)},
             depth=(0.5, 1.0))),
    Family("resnet", _builder("res_net"), _RESNET,
           # 5x5 kernels in bottlenecks would make 150 MB models: widths and kernels stay small
           Space(resolutions=(96, 128, 160, 192), widths={"channels": (0.375, 0.875)},
                 choices={"block": ("basic", "bottleneck")})),
    Family("resnext", _builder("res_net"), {  # ResNeXt-50 32x4d
        **_RESNET, "block": "bottleneck", "channels": [64, 128, 256, 512, 1024],
        "depths": [3, 4, 6, 3], "expansion": 2, "groups": 32,
    }, Space(resolutions=(96, 128, 160), widths={"channels": (0.375, 0.75)},
             choices={"groups": (8, 16, 32)}, tiny={"groups": 4})),
    Family("regnet", _builder("res_net"), {  # RegNetY-400MF
        **_RESNET, "block": "bottleneck", "channels": [32, 48, 104, 208, 440],
        "depths": [1, 3, 6, 6], "strides": [2, 2, 2, 2], "expansion": 1, "group_width": 8,
        "se": 0.25, "stem_kernel": 3, "stem_pool": False,
    }, Space(resolutions=(128, 160, 192, 224, 256), choices={"group_width": (8, 16, 24),
                                                           "se": (0.0, 0.25)})),
    Family("densenet", _builder("dense_net"), {  # DenseNet-121
        "resolution": 224, "channels": [64], "growth": 32, "depths": [6, 12, 24, 16],
        "kernels": [3] * 4, "classes": 1000,
    }, Space(resolutions=(96, 128, 160), widths={"channels": (0.5, 1.0), "growth": (0.5, 1.0)},
             depth=(0.25, 0.75), choices={"kernels": (3, 5)})),
    Family("googlenet", _builder("inception_net"), {
        "resolution": 224,
        "channels": [64, 192, [64, 96, 128, 16, 32, 32], [128, 128, 192, 32, 96, 64],
                     [192, 96, 208, 16, 48, 64], [160, 112, 224, 24, 64, 64],
                     [128, 128, 256, 24, 64, 64], [112, 144, 288, 32, 64, 64],
                     [256, 160, 320, 32, 128, 128], [256, 160, 320, 32, 128, 128],
                     [384, 192, 384, 48, 128, 128]],
        "kernels": [5] * 9, "pools": [_F, _T, _F, _F, _F, _F, _T, _F, _F], "classes": 1000,
    }, Space(resolutions=(96, 128, 160, 192, 224), widths={"channels": (0.5, 1.25)},
             depths=(), choices={"kernels": (3, 5)})),
    Family("squeezenet", _builder("squeeze_net"), {  # SqueezeNet 1.1
        "resolution": 224,
        "channels": [64, [16, 64], [16, 64], [32, 128], [32, 128], [48, 192], [48, 192],
                     [64, 256], [64, 256]],
        "kernels": [3] * 8, "pools": [_F, _T, _F, _T, _F, _F, _F, _F], "classes": 1000,
    }, Space(resolutions=(128, 160, 192, 224, 256), depths=(), choices={"kernels": (1, 3, 5)})),
    Family("shufflenetv2", _builder("shuffle_net"), {  # 1.0x
        "resolution": 224, "channels": [24, 116, 232, 464], "depths": [4, 8, 4],
        "kernels": [3] * 3, "head": 1024, "classes": 1000,
    }, Space(widths={"channels": _WIDE, "head": _WIDE}, divisor=16,
             choices={"kernels": (3, 5, 7)})),
    Family("mobilenetv1", _builder("mobile_net"), {
        "resolution": 224, "block": "separable", "act": "relu",
        "channels": [32, 64, 128, 256, 512, 1024], "depths": [1, 2, 2, 6, 2],
        "strides": [1, 2, 2, 2, 2], "kernels": [3] * 5, "classes": 1000,
    }, Space(resolutions=(128, 160, 192, 224), choices={"kernels": (3, 5, 7)})),
    Family("mobilenetv2", _builder("mobile_net"), _MOBILENET_V2, _MOBILE),
    Family("mobilenetv3", _builder("mobile_net"), _MOBILENET_V3,
           Space(widths={"channels": _WIDE, "head": _WIDE, "hidden": _WIDE},
                 choices=_MBCONV | {"se": (0, 0.25)})),
    Family("mnasnet", _builder("mobile_net"), {  # MnasNet-A1
        **_MOBILENET_V2, "act": "relu", "channels": [32, 16, 24, 40, 80, 112, 160, 320],
        "depths": [1, 2, 3, 4, 2, 3, 1], "kernels": [3, 3, 5, 3, 3, 5, 3],
        "expansions": [1, 6, 3, 6, 6, 6, 6], "se": [0, 0, 0.25, 0, 0.25, 0.25, 0],
    }, Space(widths={"channels": _WIDE, "head": _WIDE}, choices=_MBCONV | {"se": (0, 0.25)})),
    Family("proxylessnas", _builder("mobile_net"), {  # ProxylessNAS-Mobile
        **_MOBILENET_V2, "channels": [32, 16, 32, 40, 80, 96, 192, 320],
        "depths": [1, 2, 4, 4, 4, 4, 1], "kernels": [3, 5, 7, 7, 5, 7, 7],
        "expansions": [1, 3, 3, 6, 3, 6, 6],
    }, _MOBILE),
    Family("efficientnet", _builder("mobile_net"), {  # EfficientNet-B0
        **_MOBILENET_V2, "act": "swish", "channels": [32, 16, 24, 40, 80, 112, 192, 320],
        "depths": [1, 2, 2, 3, 3, 4, 1], "kernels": [3, 3, 5, 3, 5, 5, 3],
        "expansions": [1, 6, 6, 6, 6, 6, 6], "se": [0.25] * 7,
    }, Space(resolutions=(128, 160, 192, 224, 256), widths={"channels": _WIDE, "head": _WIDE},
             choices=_MBCONV)),
    Family("ghostnet", _builder("mobile_net"), {  # GhostNet 1.0x
        **{k: v for k, v in _MOBILENET_V3.items() if k != "acts"}, "block": "ghost", "act": "relu",
        "channels": [16, 16, 24, 40, 80, 112, 160], "depths": [1, 2, 2, 4, 2, 5],
        "kernels": [3, 3, 5, 3, 3, 5], "expansions": [1, 3, 3, 3, 6, 6],
        "se": [0, 0, 0.25, 0, 0.25, 0.25],
    }, Space(widths={"channels": _WIDE, "head": _WIDE, "hidden": _WIDE},
             choices={"kernels": (3, 5, 7), "expansions": (2, 3, 4, 6), "se": (0, 0.25)})),
    Family("vit", _builder("vit", resolution=True), {  # DeiT-Tiny
        "resolution": 224, "patch": 16, "heads": 3, "head_dim": 64, "depths": [12],
        "mlp_ratio": 4.0, "classes": 1000,
    }, Space(resolutions=(96, 128, 160, 192), widths={}, depth=(0.5, 1.0),
             choices={"heads": (2, 3, 4), "head_dim": (32, 48, 64), "mlp_ratio": (2.0, 3.0, 4.0)},
             tiny={"heads": 2, "head_dim": 16})),
    Family("mobilevit", _builder("mobile_vit"), {  # MobileViT-XXS; sides multiple of 64
        "resolution": 256, "channels": [16, 16, 24, 48, 64, 80], "depths": [1, 3],
        "dims": [64, 80, 96], "vit_depths": [2, 4, 3], "kernels": [3] * 5, "expansion": 2,
        "heads": 4, "head": 320, "classes": 1000,
    }, Space(resolutions=(128, 192, 256),  # 2x2 patches tile the stride-32 map
             widths={"channels": _WIDE, "dims": _WIDE, "head": _WIDE},
             depths=("depths", "vit_depths"), choices={"kernels": (3, 5), "expansion": (2, 4)})),
    Family("ssd", _builder("ssd", resolution=True), {  # SSDLite-MobileNetV2, no classifier
        **{k: v for k, v in _MOBILENET_V2.items() if k not in ("block", "act", "classes")},
        "resolution": 320, "extras": [512, 256], "anchors": 6, "classes": 21,
        "candidates": 200, "max_detections": 100,
    }, Space(resolutions=(192, 256, 320),
             widths={"channels": _WIDE, "head": _WIDE, "extras": _WIDE}, choices=_MBCONV,
             tiny={"resolution": 128, "classes": 5, "candidates": 50, "max_detections": 10})),
]}
