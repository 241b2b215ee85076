"""Fusion rules: which ops a runtime executes as one kernel, read from a YAML data file.

A rules file (see ``edgemeter/data/fusion/*.yaml``) has three parts:

``patterns``
    kernel type → list of multi-op patterns, tried first. A pattern is a chain of steps
    ``step -> step -> ...``; each step is one op, and consumes the previous step's output plus
    the extra inputs named in parentheses: ``x`` (the input of the first step), a label given
    earlier with ``label=Step``, or ``*`` (any tensor). Only activations count as inputs;
    constants (weights, eps, shape vectors) are ignored. A step is a kind (``conv``, ``relu6``)
    or an ONNX op type (``ReduceMean``), alternatives separated by ``|``, with optional
    attribute conditions such as ``Transpose[perm=0,2,1,3,4]``.
``pairs``
    kernel type so far → kinds (or pattern kernel types) it absorbs when they consume its only
    output: ``conv: [relu, add]`` and ``conv-add: [relu]`` make conv-relu, conv-add and
    conv-add-relu kernels.
``multiple_consumers``
    ``stop``: a kernel whose output feeds several kernels absorbs none of them;
    ``fuse-first``: it may absorb the first one that pairs, the others read its output.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edgemeter.errors import ConfigError
from edgemeter.kernels.kinds import KINDS, ONNX_OPS

FORMAT = "edgemeter-fusion/1"
POLICIES = ("stop", "fuse-first")
# libyaml where PyYAML was built with it: a package's rules parse in ~0.2 ms instead of ~2.5.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_KEYS = {"format", "runtime", "description", "multiple_consumers", "patterns", "pairs"}
_STEP = re.compile(r"^(?:(?P<label>\w+)=)?(?P<ops>[\w|-]+)"
                   r"(?:\[(?P<cond>[^\]]*)\])?(?:\((?P<refs>[^)]*)\))?$")


@dataclass(frozen=True)
class Step:
    ops: frozenset[str]                                  # kinds or ONNX op types
    refs: tuple[str, ...] = ()                           # "x", "*" or an earlier label
    conditions: tuple[tuple[str, Any], ...] = ()         # attribute name, required value
    label: str | None = None


@dataclass(frozen=True)
class Pattern:
    type: str
    steps: tuple[Step, ...]
    text: str


@dataclass
class FusionRules:
    name: str
    patterns: list[Pattern] = field(default_factory=list)
    pairs: dict[str, frozenset[str]] = field(default_factory=dict)
    multiple_consumers: str = "stop"
    source: str = ""

    def fuses(self, kernel_type: str, next_type: str) -> bool:
        return next_type in self.pairs.get(kernel_type, ())


def list_rules() -> list[str]:
    """Names of the rule files shipped with edgemeter."""
    folder = resources.files("edgemeter") / "data" / "fusion"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_rules(name_or_path: str | Path) -> FusionRules:
    """Load shipped rules by runtime name (``onnxruntime-cpu``) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if str(name_or_path) not in list_rules():
            raise ConfigError(f"unknown fusion rules '{name_or_path}': choose one of "
                              f"{', '.join(list_rules())} or give a .yaml file")
        path = Path(str(resources.files("edgemeter") / "data" / "fusion" / f"{name_or_path}.yaml"))
    if not path.is_file():
        raise ConfigError(f"{path}: no such fusion rules file")
    return read_rules(path.read_text(), source=str(path))


def read_rules(text: str, source: str = "<rules>") -> FusionRules:
    """Parse rules YAML text and validate it; every error names ``source``."""
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_rules(data, source=source)


def parse_rules(data: Any, source: str = "<rules>") -> FusionRules:
    """Validate a rules mapping; every error names ``source`` and the offending key."""
    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{source}: {msg}")

    if not isinstance(data, dict):
        raise fail("expected a mapping at the top level")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise fail(f"unknown key '{unknown[0]}' (expected {', '.join(sorted(_KEYS))})")
    if data.get("format") != FORMAT:
        raise fail(f"key 'format' must be '{FORMAT}', found {data.get('format')!r}")
    policy = data.get("multiple_consumers", "stop")
    if policy not in POLICIES:
        raise fail(f"key 'multiple_consumers' must be one of {', '.join(POLICIES)}, "
                   f"found {policy!r}")

    patterns = []
    for type_, texts in (data.get("patterns") or {}).items():
        for text in [texts] if isinstance(texts, str) else texts or []:
            try:
                patterns.append(Pattern(str(type_), _parse_pattern(str(text)), str(text)))
            except ValueError as exc:
                raise fail(f"pattern '{type_}': {exc}") from None
    pattern_types = {p.type for p in patterns}

    pairs: dict[str, frozenset[str]] = {}
    for left, rights in (data.get("pairs") or {}).items():
        if not isinstance(rights, list):
            raise fail(f"pairs '{left}': expected a list of kinds")
        for right in rights:
            if right not in KINDS and right not in pattern_types:
                raise fail(f"pairs '{left}': unknown kind '{right}' "
                           f"(kinds: {', '.join(KINDS)})")
        pairs[str(left)] = frozenset(rights)
    for left in pairs:
        # A left side is a kind, a pattern type, or a kernel type another pair produces.
        if left not in KINDS and left not in pattern_types and not any(
                left.startswith(k + "-") and left[len(k) + 1:] in v for k, v in pairs.items()):
            raise fail(f"pairs: unknown kernel type '{left}' (not a kind, a pattern type or "
                       "the result of another pair)")
    return FusionRules(str(data.get("runtime", Path(source).stem)), patterns, pairs, policy,
                       source)


def _parse_pattern(text: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    labels: set[str] = set()
    for raw in text.split("->"):
        match = _STEP.match(raw.strip())
        if not match:
            raise ValueError(f"cannot read step '{raw.strip()}'")
        ops = frozenset(match["ops"].split("|"))
        for op in ops:
            if op not in KINDS and op not in ONNX_OPS:
                raise ValueError(f"unknown kind or op '{op}'")
        refs = tuple(r.strip() for r in (match["refs"] or "").split(",") if r.strip())
        for ref in refs:
            if ref not in ("x", "*") and ref not in labels:
                raise ValueError(f"step '{raw.strip()}' refers to '{ref}' before it is labelled")
        steps.append(Step(ops, refs, _parse_conditions(match["cond"]), match["label"]))
        if match["label"]:
            labels.add(match["label"])
    return tuple(steps)


def _parse_conditions(text: str | None) -> tuple[tuple[str, Any], ...]:
    conditions = []
    for item in (text or "").split(";"):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"condition '{item}' is not NAME=VALUE")
        numbers = [float(v) if "." in v else int(v) for v in value.split(",")]
        conditions.append((name.strip(), numbers if len(numbers) > 1 else numbers[0]))
    return tuple(conditions)
