"""Model zoo: parametrised PyTorch versions of common edge architectures, their random
variants, and ONNX export.

>>> from edgemeter import zoo
>>> model, shape = zoo.build("mobilenetv3", {"resolution": 160})
>>> zoo.export_onnx(model, shape, "mbv3.onnx")

Families are plain data (:mod:`edgemeter.zoo.families`); importing this package does not import
torch, which only :func:`build` and :func:`export_onnx` need (the ``torch`` extra).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgemeter.errors import ConfigError, import_extra
from edgemeter.zoo.families import FAMILIES, Family, Space, Variant

__all__ = ["FAMILIES", "Family", "Space", "Variant", "build", "export_onnx", "get_family",
           "sample_variant", "size"]


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model family '{name}': choose from "
                          f"{', '.join(sorted(FAMILIES))}") from None


def sample_variant(family: str, rng: np.random.Generator) -> Variant:
    """A random variant of ``family``; the same generator state gives the same variant."""
    return get_family(family).sample_variant(rng)


def build(family: str, variant: Variant | None = None) -> tuple[Any, tuple[int, ...]]:
    """Build a model of ``family`` in eval mode; ``variant`` overrides keys of the family's
    default. Returns the module and its NCHW input shape (batch 1)."""
    fam = get_family(family)
    unknown = set(variant or {}) - set(fam.default)
    if unknown:
        raise ConfigError(f"unknown variant keys for '{family}': {', '.join(sorted(unknown))}"
                          f" (known: {', '.join(sorted(fam.default))})")
    full = fam.default | (variant or {})
    torch = import_extra("torch", "torch", "torch")
    torch.manual_seed(0)  # deterministic weights: the same variant gives the same ONNX file
    module = fam.build(**full).eval()
    return module, (1, 3, full["resolution"], full["resolution"])


def size(family: str, variant: Variant | None = None) -> tuple[int, int]:
    """``(weights, multiply-accumulates)`` of a variant: all its parameters, and the MACs of its
    convolutions and fully connected layers in one forward pass at its resolution (attention's
    own products are left out: a measure of where a variant sits in its family, not a cost)."""
    torch = import_extra("torch", "torch", "torch")
    module, shape = build(family, variant)
    macs = 0

    def count(layer: Any, inputs: Any, output: Any) -> None:
        nonlocal macs
        macs += output.numel() * layer.weight[0].numel()

    for layer in module.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.register_forward_hook(count)
    with torch.no_grad():
        module(torch.zeros(shape))
    return sum(p.numel() for p in module.parameters()), macs


def export_onnx(module: Any, input_shape: tuple[int, ...], path: str | Path,
                dynamic_batch: bool = False) -> Path:
    """Export ``module`` to a single-file ONNX model (opset 17, BatchNorm folded) with one input
    named ``input``; ``dynamic_batch`` makes its dimension 0 symbolic (``batch``)."""
    torch = import_extra("torch", "torch", "torch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        # tracer and deprecation warnings are about the exporter, not the user's model
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=17,
                          do_constant_folding=True, input_names=["input"],
                          dynamic_axes={"input": {0: "batch"}} if dynamic_batch else None)
    return path

