"""Shared fixtures. ``zoo_onnx`` exports zoo models once per test session, so every test file can
ask for e.g. ``zoo_onnx("mobilenetv3")`` without paying for the export twice."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``zoo_onnx(family, dynamic_batch=False, **variant) -> Path`` of an ONNX file of the
    family's tiny variant (64 px, quarter width, at most two blocks per stage) with ``variant`` keys on
    top, e.g. ``zoo_onnx("resnet", block="bottleneck", resolution=96)``. Needs torch."""
    pytest.importorskip("torch")
    from edgemeter import zoo

    root = tmp_path_factory.mktemp("zoo")
    cache: dict[str, Path] = {}

    def export(family: str, dynamic_batch: bool = False, **variant) -> Path:
        key = json.dumps([family, dynamic_batch, variant], sort_keys=True)
        if key not in cache:
            module, shape = zoo.build(family, zoo.get_family(family).tiny | variant)
            name = f"{family}-{len(cache)}{'-dyn' if dynamic_batch else ''}.onnx"
            cache[key] = zoo.export_onnx(module, shape, root / name, dynamic_batch)
        return cache[key]

    return export
