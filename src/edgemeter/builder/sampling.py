"""Kernel configuration sampling: priors from the zoo, inverse-CDF draws, fine-grained draws.

Priors are not typed by hand: :func:`compute_priors` imports zoo models, detects their kernels and
keeps each kernel's shape features, a CSV per regressor group (``edgemeter/data/priors/``). A row
of a prior is a real layer; the ``layout`` of a row is the set of shape columns it has (a 4-D
``add`` has HW and CIN, a transformer's has ROWS and COLS).

:func:`sample_prior` draws like nn-Meter: a layout by its frequency, a kernel type by its
frequency within the layout, then every column independently through the inverse of its empirical
CDF, snapped to a valid value (channels to multiples of 8, everything else to a value the zoo
uses). :func:`sample_finegrained` keeps a configuration and re-draws only its channels, around the
configurations a regressor got wrong. Duplicates are removed everywhere.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgemeter.builder.kernel_models import emit_error
from edgemeter.kernels.groups import regressor_group

Config = dict[str, Any]

# Shape columns per group: what fixes a kernel's shape (costs follow from them).
SHAPE_COLUMNS: dict[str, tuple[str, ...]] = {
    "conv": ("HW", "CIN", "COUT", "KERNEL_SIZE", "STRIDES", "GROUPS"),
    "dwconv": ("HW", "CIN", "KERNEL_SIZE", "STRIDES"),
    "convtranspose": ("HW", "CIN", "COUT", "KERNEL_SIZE", "STRIDES"),
    "matmul": ("M", "K", "N", "BATCH"),
    "maxpool": ("HW", "CIN", "KERNEL_SIZE", "STRIDES"),
    "avgpool": ("HW", "CIN", "KERNEL_SIZE", "STRIDES"),
    "global-pool": ("HW", "CIN"),
    "bn": ("HW", "CIN", "ROWS", "COLS"),
    "activation": ("HW", "CIN", "ROWS", "COLS"),
    "eltwise": ("HW", "CIN", "ROWS", "COLS"),
    "concat": ("HW", "COLS", "INPUTS", "CIN1", "CIN2", "CIN3", "CIN4"),
    "softmax": ("ROWS", "COLS"),
    "layernorm": ("ROWS", "COLS"),
    "se": ("HW", "CIN", "CMID"),
    "channelshuffle": ("HW", "CIN"),
}
# Shape columns left out of a row at this value: a grouped conv is a layout of its own, so its
# columns are drawn from grouped convs (3×3 and wide) and it is drawn as often as the zoo has one.
DEFAULTS = {"GROUPS": 1}
# Channel-like columns: snapped to multiples of 8 and re-drawn by fine-grained sampling.
CHANNELS = frozenset({"CIN", "COUT", "CIN1", "CIN2", "CIN3", "CIN4", "CMID", "K", "N", "COLS"})
DIVISOR = 8
# A share of the drawn kernels have channels in multiples of 2 only, as published models do
# (ShuffleNetV2 splits 116 channels into 58): onnxruntime ran a depthwise conv of 58 channels
# 3.4 times slower than one of 56 or 60, which no kernel in multiples of 8 can show.
FINE_SHARE, FINE_DIVISOR = 0.2, 2


def priors_dir() -> Path:
    return Path(str(resources.files("edgemeter") / "data" / "priors"))


# -- priors -------------------------------------------------------------------------------------

def prior_rows(kernels: Iterable[Any]) -> dict[str, list[Config]]:
    """Group → shape rows (``type`` + shape columns) of detected kernels that can be emitted
    (a concat of 3-D detection-head tensors has no HW or COLS to draw from)."""
    rows: dict[str, list[Config]] = {}
    for kernel in kernels:
        group = regressor_group(kernel.type)
        if group not in SHAPE_COLUMNS:
            continue
        row = shape_config(group, kernel.type, kernel.features)
        if emit_error(row) is None:
            rows.setdefault(group, []).append(row)
    return rows


def shape_config(group: str, kernel_type: str, features: Mapping[str, Any]) -> Config:
    """The configuration of a kernel: its type and the shape columns of its features (a column
    at its default left out, as in the priors)."""
    return {"type": kernel_type, **{c: features[c] for c in SHAPE_COLUMNS.get(group, ())
                                    if c in features and features[c] != DEFAULTS.get(c)}}


def compute_priors(families: Sequence[str] | None = None, variants: int = 3, seed: int = 7,
                   rules: str = "onnxruntime-cpu") -> dict[str, list[Config]]:
    """Shape rows of the kernels of the zoo: each family's default and ``variants`` random
    variants (drawn with ``seed``, never the seeds used to evaluate predictors)."""
    import tempfile

    from edgemeter import zoo
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect, load_rules

    rule_set = load_rules(rules)
    rng = np.random.default_rng(seed)
    priors: dict[str, list[Config]] = {}
    with tempfile.TemporaryDirectory(prefix="edgemeter-priors-") as tmp:
        for family in families or sorted(zoo.FAMILIES):
            for i in range(variants + 1):
                variant = zoo.get_family(family).default if i == 0 else \
                    zoo.sample_variant(family, rng)
                module, shape = zoo.build(family, variant)
                path = zoo.export_onnx(module, shape, Path(tmp) / f"{family}-{i}.onnx")
                for group, rows in prior_rows(detect(load_graph(path), rule_set)).items():
                    priors.setdefault(group, []).extend(rows)
    return priors


def write_priors(priors: Mapping[str, Sequence[Config]], folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, rows in sorted(priors.items()):
        columns = ["type", *[c for c in SHAPE_COLUMNS[group] if any(c in r for r in rows)]]
        path = folder / f"{group}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    return paths


def load_priors(folder: str | Path | None = None) -> dict[str, list[Config]]:
    """Group → prior rows, from ``folder`` (default: the shipped priors)."""
    folder = Path(folder) if folder is not None else priors_dir()
    priors = {}
    for path in sorted(folder.glob("*.csv")):
        with open(path, newline="") as f:
            priors[path.stem] = [{k: (v if k == "type" else int(v)) for k, v in row.items()
                                  if v != ""} for row in csv.DictReader(f)]
    return priors


# -- sampling -----------------------------------------------------------------------------------

def config_key(config: Mapping[str, Any]) -> str:
    return json.dumps(dict(config), sort_keys=True)


def dedupe(configs: Iterable[Config], seen: set[str] | None = None) -> list[Config]:
    """Configurations not seen before (``seen`` is updated), in order."""
    seen = set() if seen is None else seen
    unique = []
    for config in configs:
        key = config_key(config)
        if key not in seen:
            seen.add(key)
            unique.append(config)
    return unique


def snap(column: str, value: float, observed: np.ndarray, divisor: int = DIVISOR) -> int:
    """A valid value: channels to a multiple of ``divisor`` (small ones, such as an RGB
    input's 3, to the nearest value the zoo uses), everything else to the nearest value the zoo
    uses."""
    if column in CHANNELS and value >= DIVISOR:
        return int(max(divisor, round(value / divisor) * divisor))
    return int(observed[np.argmin(np.abs(observed - value))])


def inverse_cdf(values: np.ndarray, u: float, column: str, divisor: int = DIVISOR) -> int:
    """The ``u``-quantile of the empirical distribution of ``values``, snapped."""
    ordered = np.sort(values)
    # Channels interpolate between observed widths; discrete settings take an observed value.
    method = "linear" if column in CHANNELS else "inverted_cdf"
    return snap(column, float(np.quantile(ordered, u, method=method)), np.unique(ordered),
                divisor)


def _layout(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in row if k != "type"))


def sample_prior(prior: Sequence[Config], n: int, rng: np.random.Generator,
                 seen: set[str] | None = None, max_tries: int = 20) -> list[Config]:
    """Up to ``n`` new configurations drawn from ``prior`` (fewer when the space runs dry)."""
    if not prior:
        return []
    by_layout: dict[tuple[str, ...], list[Config]] = {}
    for row in prior:
        by_layout.setdefault(_layout(row), []).append(row)
    layouts = list(by_layout)
    weights = np.array([len(by_layout[k]) for k in layouts], dtype=float)
    columns = {k: {c: np.array([r[c] for r in rows]) for c in k} for k, rows in by_layout.items()}
    types = {k: Counter(r["type"] for r in rows) for k, rows in by_layout.items()}
    seen = set() if seen is None else seen
    out: list[Config] = []
    for _ in range(n * max_tries):
        if len(out) == n:
            break
        layout = layouts[rng.choice(len(layouts), p=weights / weights.sum())]
        names, counts = zip(*sorted(types[layout].items()))
        config: Config = {"type": names[rng.choice(len(names), p=np.array(counts) / sum(counts))]}
        divisor = FINE_DIVISOR if rng.random() < FINE_SHARE else DIVISOR
        for column in layout:
            config[column] = inverse_cdf(columns[layout][column], rng.random(), column, divisor)
        out.extend(dedupe([_consistent(config)], seen))
    return out


def sample_finegrained(config: Mapping[str, Any], n: int, rng: np.random.Generator,
                       seen: set[str] | None = None, spread: float = 0.5) -> list[Config]:
    """Up to ``n`` new configurations like ``config`` with its channels re-drawn within
    ±``spread`` (the other columns kept: nn-Meter's fine-grained sampling)."""
    seen = set() if seen is None else seen
    channels = [c for c, v in config.items()
                if c in CHANNELS and isinstance(v, (int, float)) and v >= DIVISOR]
    # Around a kernel with fine channels, fine ones: its error may be their slow path.
    divisor = DIVISOR if all(config[c] % DIVISOR == 0 for c in channels) else FINE_DIVISOR
    out: list[Config] = []
    for _ in range(n * 10):
        if len(out) == n:
            break
        new = dict(config)
        for column in channels:
            new[column] = snap(column, config[column] * rng.uniform(1 - spread, 1 + spread),
                               np.array([config[column]]), divisor)
        out.extend(dedupe([_consistent(new)], seen))
    return out


def _consistent(config: Config) -> Config:
    """Fix what independent draws can get wrong: a concat's unused inputs, a stride over HW,
    channels a grouped conv cannot split into its groups (rounded to a multiple of them)."""
    if "INPUTS" in config:
        for i in range(int(config["INPUTS"]) + 1, 5):
            config.pop(f"CIN{i}", None)
    if "STRIDES" in config and "HW" in config:
        config["STRIDES"] = min(config["STRIDES"], config["HW"])
    groups = config.get("GROUPS", 1)
    if groups > 1:
        for column in ("CIN", "COUT"):
            if column in config:
                config[column] = max(1, round(config[column] / groups)) * groups
    return config
