"""Parse the text TFLite's ``benchmark_model`` prints::

    count=50 first=87163 curr=89038 min=86939 max=93704 avg=88199.2 std=1353
    Inference timings in us: Init: 98471, First inference: 104448, Warmup (avg): 88622.5, ...
    Peak memory footprint (MB): init=0 overall=12.8672

and, with ``--enable_op_profiling=true``, the "Run Order" table of the regular runs (one row per
executed node: type, start, first, avg ms, %, cdf%, mem KB, times called, [name]).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgemeter.errors import ModelError

_STATS = re.compile(r"^count=\d+\b.*$", re.M)
_PAIR = re.compile(r"(\w+)=(-?[\d.]+)")
_TIMINGS = re.compile(r"Inference timings in us: (.*)")
_MEMORY = re.compile(r"(?:Peak memory footprint|Memory footprint delta from the start of the "
                     r"tool) \(MB\): init=([\d.]+) overall=([\d.]+)")
_ROW = re.compile(r"^\s*(?P<type>\S.*?)\s+(?P<start>-?[\d.]+)\s+(?P<first>[\d.]+)\s+"
                  r"(?P<avg>[\d.]+)\s+[\d.]+%\s+[\d.]+%\s+[\d.]+\s+(?P<calls>\d+)\s+"
                  r"(?P<name>\S.*?)\s*$")
_RUN_ORDER = "Run Order"
_REGULAR = "Operator-wise Profiling Info for Regular Benchmark Runs"
_INIT = "Profiling Info for Benchmark Initialization"


@dataclass
class BenchmarkOutput:
    """What one ``benchmark_model`` run reported; times in ms."""

    warmup: dict[str, float] = field(default_factory=dict)   # count, first, min, max, avg, std
    runs: dict[str, float] = field(default_factory=dict)     # the same for the timed runs
    timings: dict[str, float] = field(default_factory=dict)  # init, first inference, ...
    peak_memory_mb: float | None = None
    op_times_ms: dict[str, float] | None = None              # node name -> mean ms

    @property
    def inference_ms(self) -> float:
        return self.timings.get("inference_avg", self.runs["avg"])


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse ``benchmark_model``'s output; ModelError when it holds no timed runs (the tool
    failed: its last line says why)."""
    stats = [{key: float(value) for key, value in _PAIR.findall(line)}
             for line in _STATS.findall(text.split(_INIT)[0].split(_REGULAR)[0])]
    if not stats or "avg" not in stats[-1]:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        raise ModelError(f"benchmark_model gave no timings: {lines[-1] if lines else 'no output'}")
    result = BenchmarkOutput(warmup=_to_ms(stats[0]) if len(stats) > 1 else {},
                             runs=_to_ms(stats[-1]))
    if match := _TIMINGS.search(text):
        for part in match.group(1).split(","):
            key, _, value = part.partition(":")
            result.timings[_snake(key)] = float(value) / 1000
    if match := _MEMORY.search(text):
        result.peak_memory_mb = float(match.group(2))
    result.op_times_ms = _op_table(text)
    return result


def _op_table(text: str) -> dict[str, float] | None:
    """The regular runs' Run Order table: after its own heading in current versions, the first
    table in old ones (which profile no initialization)."""
    if _REGULAR in text:
        text = text.split(_REGULAR, 1)[1]
    elif _INIT in text:
        return None
    if _RUN_ORDER not in text:
        return None
    table = text.split(_RUN_ORDER, 1)[1].split("\n\n", 1)[0]
    times: dict[str, float] = {}
    for line in table.splitlines()[2:]:
        if row := _ROW.match(line):
            name = _node_name(row["name"])
            times[name] = times.get(name, 0.0) + float(row["avg"])
    return times


def _node_name(name: str) -> str:
    """``[tensor]:index`` or ``[tensor]`` -> the output tensor name the node is known by."""
    match = re.fullmatch(r"\[(.*)\](?::\d+)?", name)
    return match.group(1) if match else name


def _to_ms(stats: dict[str, float]) -> dict[str, float]:
    return {key: value if key == "count" else value / 1000 for key, value in stats.items()}


def _snake(key: str) -> str:
    return re.sub(r"\W+", "_", key.strip().lower()).strip("_")
