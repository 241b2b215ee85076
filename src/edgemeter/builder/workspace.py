"""Builder workspace: a folder with commented YAML configs, the results store and the outputs.

::

    DIR/configs/backend.yaml      which backend measures, with what protocol
    DIR/configs/fusion_test.yaml  the fusion-rule test
    DIR/configs/build.yaml        the predictor build: kernels, samples, iterations, budget, zoo
    DIR/measurements.sqlite       every measurement, stored the moment it completes
    DIR/models/                   generated test and kernel models (re-creatable)
    DIR/results/                  fusion rules, training data, build reports
    DIR/predictor/                the package a build writes

Every setting is declared once in :data:`SCHEMA` with its default, its check and a comment; the
files :func:`create_workspace` writes and the validation of :func:`load_workspace` both come from
there, so an error can always name the file, the key and what is allowed.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgemeter.backends.protocol import REFERENCE, STATISTICS
from edgemeter.errors import ConfigError

CONFIG_DIR = "configs"
FILES = ("backend.yaml", "fusion_test.yaml", "build.yaml")
FUSION_OPS = ("conv", "dwconv", "convtranspose", "fc", "matmul", "add", "mul", "relu", "relu6",
              "hswish", "sigmoid", "bn", "maxpool", "avgpool", "global-avgpool", "concat",
              "reshape", "layernorm", "softmax", "gelu")


@dataclass(frozen=True)
class Setting:
    default: Any
    help: str
    check: Callable[[Any], Any]      # returns the value (converted) or raises ValueError(allowed)


def _int(low: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"an integer >= {low}")
        return value
    return check


def _number(low: float, high: float = float("inf")) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not low < value <= high:
            raise ValueError(f"a number in ({low:g}, {high:g}]")
        return float(value)
    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value) == "":
        raise ValueError("a non-empty string")
    return str(value)


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return value
    return check


def _mapping(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError("a mapping (key: value)")
    return value


def _list_or_all(allowed: tuple[str, ...] | None) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value == "all":
            return value
        if not isinstance(value, list) or not value:
            raise ValueError(f"'all' or a non-empty list{_of(allowed)}")
        bad = [v for v in value if allowed is not None and v not in allowed]
        if bad:
            raise ValueError(f"'all' or a list{_of(allowed)} (not {bad[0]!r})")
        return value
    return check


def _of(allowed: tuple[str, ...] | None) -> str:
    return f" of {', '.join(allowed)}" if allowed else ""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"`` or ``"1.5h"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match or float(match[1]) <= 0:
        raise ValueError("a duration such as 90s, 30m or 1h")
    return float(match[1]) * {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[match[2]]


def _families(value: Any) -> Any:
    from edgemeter.zoo import FAMILIES
    return _list_or_all(tuple(sorted(FAMILIES)))(value)


def _family_weights(value: Any) -> dict[str, int]:
    from edgemeter.zoo import FAMILIES
    if not isinstance(value, dict):
        raise ValueError("a mapping of zoo family to an integer >= 1, e.g. {ghostnet: 3}")
    for family, weight in value.items():
        if family not in FAMILIES:
            raise ValueError(f"zoo families{_of(tuple(sorted(FAMILIES)))} (not {family!r})")
        try:
            _int(1)(weight)
        except ValueError as exc:
            raise ValueError(f"{exc} as each weight (not {weight!r} for {family})") from None
    return value


def _groups(value: Any) -> Any:
    from edgemeter.builder.sampling import SHAPE_COLUMNS
    return _list_or_all(tuple(SHAPE_COLUMNS))(value)


SCHEMA: dict[str, dict[str, Setting]] = {
    "backend.yaml": {
        "backend": Setting("onnxruntime-cpu", "backend that measures (edgemeter backends lists "
                           "them)", _text),
        "threads": Setting(1, "threads the runtime may use", _int(1)),
        "options": Setting({}, "the backend's own options, e.g. graph_optimization_level: all",
                           _mapping),
        "warmup": Setting(5, "untimed runs per measuring process", _int(0)),
        "repeats": Setting(20, "timed runs per measuring process", _int(1)),
        "rounds": Setting(2, "fresh processes per measurement at least", _int(1)),
        "max_rounds": Setting(3, "... and at most, until their spread is under target_cv",
                              _int(1)),
        "target_cv": Setting(0.03, "spread (CV of round medians) that ends a measurement",
                             _number(0, 1)),
        "timeout_s": Setting(120, "a measuring process is killed after this many seconds",
                             _number(0)),
        "profile_runs": Setting(10, "profiled runs for per-node times", _int(1)),
        "anchor": Setting(True, "time the speed anchor beside every measurement and learn "
                          "latencies at one machine speed (this machine's speed drifts)", _bool),
        "interleave": Setting(True, "measure a phase's models in passes, a round of each per "
                              "pass, so a slow spell of the machine moves one round of many "
                              "models rather than every round of a few", _bool),
    },
    "fusion_test.yaml": {
        "enabled": Setting(True, "run the fusion-rule test before building (false: use the "
                           "rules named below)", _bool),
        "rules": Setting("auto", "rules used when the test is off: 'auto' (shipped rules of "
                         "the backend), a shipped name or a .yaml path", _text),
        "ops": Setting("all", "op kinds whose pairs are tested: 'all' or a list of "
                       + ", ".join(FUSION_OPS), _list_or_all(FUSION_OPS)),
        "hw": Setting(56, "height and width of the test tensors", _int(1)),
        "channels": Setting(64, "channels of the test tensors", _int(1)),
        "max_repeats": Setting(4, "measurements of a pair at most, until the decision is clear",
                               _int(1)),
        "margin": Setting(0.5, "a pair counts as fused when it hides more than this share of "
                          "the cheaper op's own time", _number(0, 1)),
    },
    "build.yaml": {
        "name": Setting("my-predictor", "package name", _text),
        "version": Setting("1.0", "package version", _text),
        "budget": Setting("30m", "wall-time budget of the whole build (90s, 30m, 1h)",
                          parse_duration),
        "statistic": Setting("median", "a measurement's latency: median (of the round medians) "
                             "or min (the fastest timed run: steadier on a shared host, where "
                             "neighbours only add time)", _choice(*STATISTICS)),
        "algo": Setting("rf", "regressor: rf (random forest) or gb (gradient boosting)",
                        _choice("rf", "gb")),
        "trees": Setting(100, "trees per regressor (fewer: smaller package, a bit less "
                         "accurate)", _int(1)),
        "kernels": Setting("all", "regressor groups to sample kernels for: 'all' or a list of "
                           "conv, dwconv, matmul, ... (see edgemeter.builder.sampling)",
                           _groups),
        "init_samples": Setting(40, "kernels sampled per group from the zoo prior", _int(0)),
        "finegrained_samples": Setting(4, "kernels sampled around each large-error kernel",
                                       _int(0)),
        "iterations": Setting(10, "sampling + training rounds at most (1: prior samples only); "
                              "rounds stop earlier once every group reaches the target or the "
                              "budget's share for kernels is used", _int(1)),
        "error_threshold": Setting(0.1, "relative error that makes a kernel 'large-error'",
                                   _number(0, 10)),
        "target_within_10": Setting(95.0, "a group stops iterating once this % of its test "
                                    "kernels is within ±10%", _number(0, 100)),
        "batch_size": Setting(24, "kernels per profiled batch model (runtimes with per-node "
                              "times)", _int(1)),
        "zoo_families": Setting("all", "zoo families whose random variants give in-context "
                                "kernel times and the model term: 'all' or a list", _families),
        "zoo_train_variants": Setting(64, "random variants per family measured for training, "
                                      "taken so that each family's first ones spread over its "
                                      "sizes; the budget's zoo share usually ends the list "
                                      "earlier", _int(0)),
        "zoo_family_weights": Setting({}, "families that get more training variants than "
                                      "the rest: family -> variants per one of the others' "
                                      "(e.g. {ghostnet: 3}), for families whose models stray "
                                      "most from their kernels' sum", _family_weights),
        "zoo_eval_variants": Setting(1, "held-out random variants per family for the final "
                                     "whole-model accuracy", _int(0)),
        "reference_models": Setting(19, "new zoo variants (seed + 2) measured as truths are, "
                                    "a third before the zoo models, a third after them, the "
                                    "rest after the kernels; the model term is scaled to meet "
                                    "them in median (0: none)", _int(0)),
        "reference_rounds": Setting(REFERENCE["rounds"], "fresh processes per model when "
                                    "measured as truths are (reference-level and held-out "
                                    "models)", _int(1)),
        "zoo_seed": Setting(1000, "seed of the training variants (held-out ones use seed + 1, "
                            "reference ones seed + 2; all differ from the dataset's "
                            "evaluation seeds)", _int(0)),
    },
}


@dataclass
class Workspace:
    path: Path
    backend: dict[str, Any]
    fusion_test: dict[str, Any]
    build: dict[str, Any]

    def subdir(self, name: str) -> Path:
        folder = self.path / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def package_path(self) -> Path:
        """Where a build writes the package its ``build.yaml`` names."""
        return self.subdir("predictor") / f"{self.build['name']}-{self.build['version']}"

    def protocol(self):
        from edgemeter.backends import Protocol

        keys = ("warmup", "repeats", "rounds", "max_rounds", "target_cv", "timeout_s",
                "profile_runs", "anchor", "interleave")
        return Protocol(**{k: self.backend[k] for k in keys})

    def backend_config(self) -> dict[str, Any]:
        return {"threads": self.backend["threads"], **self.backend["options"]}


def _render(file: str, values: dict[str, Any]) -> str:
    lines = [f"# edgemeter builder workspace: {file}. Edit the values; every key is checked "
             "when the workspace is used."]
    for key, setting in SCHEMA[file].items():
        lines.append(f"\n# {setting.help}")
        value = yaml.safe_dump(values.get(key, setting.default), default_flow_style=True)
        lines.append(f"{key}: {value.removesuffix(chr(10) + '...' + chr(10)).strip()}")
    return "\n".join(lines) + "\n"


def create_workspace(path: str | Path, backend: str, overwrite: bool = False,
                     **settings: Any) -> Workspace:
    """Write the three commented config files for ``backend`` (checked to exist) into
    ``path/configs``; ``settings`` override defaults by key (from any of the files)."""
    from edgemeter.backends import get_backend

    path = Path(path)
    existing = [f for f in FILES if (path / CONFIG_DIR / f).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{path} is already a workspace ({CONFIG_DIR}/{existing[0]} exists; "
                          "pass --force to overwrite its configs)")
    known = {k for schema in SCHEMA.values() for k in schema}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"unknown workspace setting '{unknown[0]}' "
                          f"(known: {', '.join(sorted(known))})")
    values = {"backend": backend, **settings}
    get_backend(backend, threads=values.get("threads", 1), **values.get("options", {}))
    (path / CONFIG_DIR).mkdir(parents=True, exist_ok=True)
    for file in FILES:
        (path / CONFIG_DIR / file).write_text(_render(file, values))
    return load_workspace(path)


def load_workspace(path: str | Path) -> Workspace:
    """Read and check a workspace; a missing or half-written one says what to do."""
    path = Path(path)
    hint = f"create one with: edgemeter workspace create {path} --backend NAME"
    if not path.is_dir():
        raise ConfigError(f"workspace {path} does not exist ({hint})")
    missing = [f for f in FILES if not (path / CONFIG_DIR / f).is_file()]
    if len(missing) == len(FILES):
        raise ConfigError(f"{path} is not a workspace: no {CONFIG_DIR}/ files ({hint})")
    if missing:
        raise ConfigError(f"workspace {path} is incomplete: {CONFIG_DIR}/{missing[0]} is missing "
                          f"(recreate the configs with: edgemeter workspace create {path} "
                          "--backend NAME --force)")
    sections = {file: _read(path / CONFIG_DIR / file, SCHEMA[file]) for file in FILES}
    ws = Workspace(path, sections["backend.yaml"], sections["fusion_test.yaml"],
                   sections["build.yaml"])
    try:
        from edgemeter.backends import get_backend
        get_backend(ws.backend["backend"], **ws.backend_config())
        ws.protocol()
    except ConfigError as exc:
        raise ConfigError(f"{path / CONFIG_DIR / 'backend.yaml'}: {exc}") from None
    return ws


def _read(file: Path, schema: dict[str, Setting]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        raise ConfigError(f"{file} is empty (half-written?); recreate it with "
                          "edgemeter workspace create DIR --backend NAME --force")
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected key: value lines at the top level")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise ConfigError(f"{file}: unknown key '{unknown[0]}' "
                          f"(allowed: {', '.join(schema)})")
    values = {}
    for key, setting in schema.items():
        raw = data.get(key, setting.default)
        try:
            values[key] = setting.check(raw)
        except ValueError as exc:
            raise ConfigError(f"{file}: key '{key}' = {raw!r} is not allowed "
                              f"(allowed: {exc})") from None
    return values
