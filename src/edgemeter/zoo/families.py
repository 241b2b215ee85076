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
    widths: tuple[str, ...] = ("channels",)  # keys whose (nested) ints are channel counts
    scale: tuple[float, float] = (0.5, 1.5)  # each width × U(scale), rounded to ``divisor``
    divisor: int = 8
    depths: tuple[str, ...] = ("depths",)  # keys whose ints are re-drawn in [d·lo, d·hi]
    depth: tuple[float, float] = (0.5, 1.5)
    choices: dict[str, tuple] = field(default_factory=dict)  # key -> values to draw from
    tiny: Variant = field(default_factory=dict)  # overrides after shrinking, for tests

    def sample(self, default: Variant, rng: np.random.Generator) -> Variant:
        variant = copy.deepcopy(default)
        variant["resolution"] = int(rng.choice(self.resolutions))
        for key in self.widths:
            variant[key] = _map(variant[key], lambda c: self.round(c * rng.uniform(*self.scale)))
        for key in self.depths:
            variant[key] = [int(rng.integers(max(1, math.floor(d * self.depth[0])),
                                             math.ceil(d * self.depth[1]) + 1))
                            for d in variant[key]]
        for key, values in self.choices.items():
            pick = lambda _: _plain(values[rng.integers(len(values))])  # noqa: E731
            variant[key] = _map(variant[key], pick) if isinstance(variant[key], list) else pick(0)
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


def _plain(value: Any) -> Any:
    """numpy scalars → Python ones, so variants stay JSON-able."""
    return value.item() if isinstance(value, np.generic) else value


def _builder(name: str, resolution: bool = False) -> Callable[..., Any]:
    """``models.<name>`` imported on first call; ``resolution`` is passed only to builders whose
    architecture depends on it (flattened classifiers, position embeddings, anchors)."""
    def build(**variant: Any) -> Any:
        if not resolution:
            variant = {k: v for k, v in variant.items() if k != "resolution"}
        return getattr(importlib.import_module("edgemeter.zoo.models"), name)(**variant)
    build.__qualname__ = f"models.{name}"
    return build


# Published architectures, stage by stage. Lists follow models.py: channels = [stem, stages...].
_MOBILENET_V2 = {
    "resolution": 224, "block": "mbconv", "act": "relu6",
    "channels": [32, 16, 24, 32, 64, 96, 160, 320], "depths": [1, 2, 3, 4, 3, 3, 1],
    "strides": [1, 2, 2, 2, 1, 2, 1], "kernels": [3] * 7, "expansions": [1, 6, 6, 6, 6, 6, 6],
    "head": 1280, "classes": 1000,
}
_MOBILE_SPACE = Space(widths=("channels", "head"),
                      choices={"kernels": (3, 5, 7), "expansions": (3, 4, 6)})

FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("mobilenetv2", _builder("mobile_net"), _MOBILENET_V2, _MOBILE_SPACE),
    Family("mobilenetv3", _builder("mobile_net"), {
        "resolution": 224, "block": "mbconv", "act": "hswish", "se_gate": "hsigmoid",
        "channels": [16, 16, 24, 40, 80, 112, 160], "depths": [1, 2, 3, 4, 2, 3],
        "strides": [1, 2, 2, 2, 1, 2], "kernels": [3, 3, 5, 3, 3, 5],
        "expansions": [1, 4, 3, 3, 6, 6], "se": [0, 0, 0.25, 0, 0.25, 0.25],
        "acts": ["relu", "relu", "relu", "hswish", "hswish", "hswish"],
        "head": 960, "hidden": 1280, "classes": 1000,
    }, Space(widths=("channels", "head", "hidden"),
             choices={"kernels": (3, 5, 7), "expansions": (3, 4, 6), "se": (0, 0.25)})),
    Family("resnet", _builder("res_net"), {
        "resolution": 224, "block": "basic", "expansion": 4, "channels": [64, 64, 128, 256, 512],
        "depths": [2, 2, 2, 2], "strides": [1, 2, 2, 2], "kernels": [3] * 4, "classes": 1000,
    }, Space(resolutions=(96, 128, 160, 192), scale=(0.5, 1.25),
             choices={"kernels": (3, 5), "block": ("basic", "bottleneck")})),
    Family("shufflenetv2", _builder("shuffle_net"), {
        "resolution": 224, "channels": [24, 116, 232, 464], "depths": [4, 8, 4],
        "kernels": [3] * 3, "head": 1024, "classes": 1000,
    }, Space(widths=("channels", "head"), divisor=16, choices={"kernels": (3, 5, 7)})),
    Family("densenet", _builder("dense_net"), {
        "resolution": 224, "channels": [64], "growth": 32, "depths": [6, 12, 24, 16],
        "kernels": [3] * 4, "classes": 1000,
    }, Space(resolutions=(96, 128, 160), widths=("channels", "growth"), scale=(0.5, 1.0),
             depth=(0.25, 1.0), choices={"kernels": (3, 5)}, tiny={"growth": 8})),
    Family("vit", _builder("vit", resolution=True), {
        "resolution": 224, "patch": 16, "heads": 3, "head_dim": 64, "depths": [12],
        "mlp_ratio": 4.0, "classes": 1000,
    }, Space(resolutions=(96, 128, 160, 192, 224), widths=(), depth=(0.5, 1.0),
             choices={"heads": (2, 3, 4), "head_dim": (32, 48, 64), "mlp_ratio": (2.0, 3.0, 4.0)},
             tiny={"heads": 2, "head_dim": 16})),
    Family("ssd", _builder("ssd", resolution=True), {
        **{k: v for k, v in _MOBILENET_V2.items() if k not in ("block", "act", "classes")},
        "resolution": 320, "extras": [512, 256], "anchors": 6, "classes": 21,
        "candidates": 200, "max_detections": 100,
    }, Space(resolutions=(192, 256, 320), widths=("channels", "head", "extras"),
             choices={"kernels": (3, 5, 7), "expansions": (3, 4, 6)},
             tiny={"resolution": 128, "classes": 5, "candidates": 50, "max_detections": 10})),
]}
