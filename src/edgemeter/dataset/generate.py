"""``generate``: random variants of the zoo's families, exported to ONNX and indexed.

Variant ``i`` of a family under seed ``s`` is drawn from its own generator, seeded with
``(s, family, i)``: the same call always writes the same models, a larger ``per_family`` only
adds models, and another seed gives a held-out set that shares no draw with it. The canonical
set is each family once at its published configuration (the zoo's default variant), with
widths such as ShuffleNetV2's 116 (split into branches of 58) that random widths, multiples of
8, never produce and to which runtimes are not indifferent.

``reference`` more variants of each family (the next indices after ``per_family``) are marked
``"reference": true`` in the index: measured with the others, they are not scored but give the
evaluation the level this machine runs at against the predictor's build
(:func:`~edgemeter.dataset.evaluate.evaluate`).
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemeter.dataset import jsonl
from edgemeter.errors import ConfigError
from edgemeter.zoo import FAMILIES

INDEX = "index.jsonl"
MODELS = "models"
# SSD ends in non-max suppression, whose time depends on the image: not a fixed latency.
DEFAULT_FAMILIES = tuple(f for f in FAMILIES if f != "ssd")


def model_file(family: str, seed: int | None, i: int) -> str:
    """A variant's file; ``seed`` None: the family's canonical model."""
    if seed is None:
        return f"{MODELS}/{family}-canonical.onnx"
    return f"{MODELS}/{family}-s{seed}-{i:03d}.onnx"


def read_index(folder: str | Path) -> list[dict[str, Any]]:
    """The dataset's models, one dict per model (a model re-exported after its file went
    missing has two lines: the last counts)."""
    path = Path(folder) / INDEX
    if not path.is_file():
        raise ConfigError(f"{folder} is not a dataset: no {INDEX} (run 'edgemeter dataset "
                          "generate' first)")
    return list({e["file"]: e for e in jsonl.read(path)}.values())


def sibling(folder: str | Path, name: str) -> Path:
    """A dataset folder beside ``folder`` that shares its models and index but not its
    measurements: for measuring the same models again at another moment (a truth measured
    twice, or right after a build)."""
    import shutil

    folder = Path(folder)
    other = folder.with_name(name)
    other.mkdir(exist_ok=True)
    if not (other / MODELS).exists():
        (other / MODELS).symlink_to((folder / MODELS).resolve())
    shutil.copy(folder / INDEX, other / INDEX)
    return other


def _rng(seed: int, family: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(family.encode()), i])


def generate(folder: str | Path, per_family: int = 10, seed: int = 0,
             families: Sequence[str] | None = None, progress: bool = False,
             canonical: bool = False, reference: int = 0) -> list[dict[str, Any]]:
    """Write ``per_family`` random variants of each family (default: :data:`DEFAULT_FAMILIES`)
    and ``reference`` more marked as reference models, or with ``canonical`` the family's
    published configuration once (``per_family``, ``seed`` and ``reference`` do not apply), and
    return the index entries of the requested models. Models already in the index are kept,
    so an interrupted run resumes where it stopped."""
    from tqdm import tqdm

    from edgemeter import zoo
    from edgemeter.importers import load_graph

    folder = Path(folder)
    names = list(families or DEFAULT_FAMILIES)
    for name in names:
        zoo.get_family(name)  # unknown names fail before any work
    if per_family < 1:
        raise ConfigError(f"per_family must be >= 1, got {per_family}")
    if reference < 0:
        raise ConfigError(f"reference must be >= 0, got {reference}")
    (folder / MODELS).mkdir(parents=True, exist_ok=True)
    index_path = folder / INDEX
    done = {e["file"]: e for e in jsonl.read(index_path)}
    if canonical:
        seed, per_family, reference = None, 1, 0
    wanted = [(name, i) for name in names for i in range(per_family + reference)]
    entries = []
    with jsonl.open_append(index_path) as index, tqdm(total=len(wanted), desc="generate", unit="model",
                                             disable=not progress) as bar:
        for name, i in wanted:
            file = model_file(name, seed, i)
            entry, role = done.get(file), i >= per_family
            if entry is not None and (folder / file).is_file():
                if entry.get("reference", False) != role:  # asked for in the other role now
                    entry = _with_role(entry, role)
                    jsonl.write(index, entry)
            else:
                variant = ({} if canonical
                           else zoo.sample_variant(name, _rng(seed, name, i)))
                module, shape = zoo.build(name, variant)
                zoo.export_onnx(module, shape, folder / file)
                cost = load_graph(folder / file).total_cost()
                entry = _with_role({"file": file, "family": name, "index": i, "seed": seed,
                                    "input_shape": list(shape), "flops": cost.flops,
                                    "params": cost.params, "variant": variant}, role)
                jsonl.write(index, entry)
            entries.append(entry)
            bar.update()
    return entries


def _with_role(entry: dict[str, Any], reference: bool) -> dict[str, Any]:
    """``entry`` marked as a reference model, or as a scored one (no mark: older indexes)."""
    entry = {k: v for k, v in entry.items() if k != "reference"}
    return {**entry, "reference": True} if reference else entry
