"""The measurement protocol: trustworthy latency on a noisy machine.

Timings inside one process vary 1-3 %, but medians of separate processes of the same model vary up
to ~10 % (memory layout, thread placement, frequency). So every round runs in a FRESH child process
(``python -m edgemeter.backends.worker``): warm-up, then ``repeats`` timed runs. The result is the
median of the round medians; rounds are added until their CV is under ``target_cv`` or the time
budget is spent, and a measurement that never got there is flagged unstable, not hidden.

The child also isolates faults: a segfault, a hang (timeout), a model the runtime rejects or a
missing runtime become a failed :class:`Measurement` carrying the reason, and the caller goes on.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from edgemeter.errors import ConfigError

# Thread pools that runtimes and BLAS libraries size from the environment: pinned in the child so
# a backend's ``threads`` is what actually runs.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


@dataclass
class Protocol:
    warmup: int = 10            # untimed runs per round (caches, lazy kernel selection)
    repeats: int = 30           # timed runs per round
    rounds: int = 3             # rounds always run, each in a fresh process
    max_rounds: int = 8         # adaptive rounds stop here ...
    target_cv: float = 0.02     # ... or when the CV of round medians is at most this
    time_budget_s: float = 120  # ... or when another round would exceed this budget
    timeout_s: float = 120      # one child process (load + warm-up + runs) is killed after this
    profile_runs: int = 20      # profiled runs for per-node times (with profile=True)
    anchor: bool = False        # time the speed anchor after every run (edgemeter.backends.anchor)

    def __post_init__(self) -> None:
        for name in ("repeats", "rounds", "max_rounds", "profile_runs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"protocol: {name}={getattr(self, name)!r} must be an "
                                  "integer >= 1")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"protocol: warmup={self.warmup!r} must be an integer >= 0")
        if not isinstance(self.anchor, bool):
            raise ConfigError(f"protocol: anchor={self.anchor!r} must be true or false")
        for name in ("target_cv", "time_budget_s", "timeout_s"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise ConfigError(f"protocol: {name}={getattr(self, name)!r} must be a number > 0")
        self.max_rounds = max(self.max_rounds, self.rounds)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"protocol: unknown setting {unknown[0]!r} "
                              f"(allowed: {', '.join(sorted(known))})")
        return cls(**data)


# What a measurement's latency is: the median of the round medians (the default), or the
# fastest timed run (steadier on a shared host).
STATISTICS = ("median", "min")


@dataclass
class Measurement:
    model: str
    backend: str
    config: dict[str, Any]              # the backend's full settings (threads + options)
    model_sha256: str = ""
    samples_ms: list[float] = field(default_factory=list)       # every timed run, all rounds
    round_medians_ms: list[float] = field(default_factory=list)
    median_ms: float | None = None      # median of the round medians
    spread: dict[str, float | None] = field(default_factory=dict)
    stable: bool = False
    env: dict[str, Any] = field(default_factory=dict)
    profiled: bool = False              # per-node times were asked for
    node_times_ms: dict[str, float] | None = None
    node_origins: dict[str, list[str]] | None = None  # runtime node -> model nodes it runs
    node_inputs: dict[str, list[str]] | None = None   # runtime node -> runtime nodes feeding it
    max_rss_kb: int | None = None       # peak resident memory of the measuring processes
    # The speed anchor's median beside the model's (Protocol.anchor), per round and overall:
    # median_ms / anchor_ms is the latency in anchor units, comparable across moments.
    anchor_round_medians_ms: list[float] | None = None
    anchor_ms: float | None = None
    # Cores other processes kept busy during a round, the most over rounds (None: unknown).
    others_cores: float | None = None
    error: str | None = None
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def min_ms(self) -> float | None:
        """The fastest timed run. On a shared host a neighbour only ever adds time: over minutes
        the fastest run moved less than the median (bench/bench_anchor.py)."""
        return min(self.samples_ms) if self.samples_ms else None

    def latency_ms(self, statistic: str = "median") -> float | None:
        """The model's latency by ``statistic`` (one of STATISTICS)."""
        return self.median_ms if statistic == "median" else self.min_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cv(values: list[float]) -> float | None:
    """Coefficient of variation (stdev / mean); None for fewer than two values."""
    if len(values) < 2 or statistics.fmean(values) == 0:
        return None
    return statistics.stdev(values) / statistics.fmean(values)


def iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q3 - q1


def robust_cv(values: list[float]) -> float | None:
    """IQR / 1.349 / median: the CV of a normal distribution, unmoved by the rare 10x outliers
    (preemption, page faults) that make stdev / mean of one process's runs meaningless here."""
    if len(values) < 2 or statistics.median(values) == 0:
        return None
    return iqr(values) / 1.349 / statistics.median(values)


def summarize(rounds: list[list[float]]) -> dict[str, Any]:
    """Median of round medians; spread: IQR of all runs, robust CV within a process (median
    over rounds) and CV of the round medians between processes."""
    medians = [statistics.median(r) for r in rounds]
    within = [c for c in map(robust_cv, rounds) if c is not None]
    return {
        "round_medians_ms": medians,
        "median_ms": statistics.median(medians),
        "spread": {"iqr_ms": iqr([s for r in rounds for s in r]),
                   "cv_within": statistics.median(within) if within else None,
                   "cv_between": cv(medians)},
    }


def is_stable(spread: dict[str, float | None], target_cv: float) -> bool:
    # One round has no between-process spread; its within-process CV is an optimistic stand-in.
    judged = spread["cv_between"] if spread["cv_between"] is not None else spread["cv_within"]
    return judged is not None and judged <= target_cv


class RoundFailed(Exception):
    """A child process ended without a result; the message is the reason."""


def run_child(payload: dict[str, Any], timeout_s: float, threads: int) -> dict[str, Any]:
    """Run one worker process on ``payload``; return its result or raise RoundFailed."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_ENV}}
    with tempfile.TemporaryDirectory(prefix="edgemeter-round-") as tmp:
        result_path = Path(tmp) / "result.json"
        payload = {**payload, "result": str(result_path), "sys_path": sys.path}
        # Own session: a timeout kills the child's whole process group (runtimes fork helpers).
        proc = subprocess.Popen([sys.executable, "-m", "edgemeter.backends.worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
        try:
            _, stderr = proc.communicate(json.dumps(payload).encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise RoundFailed(f"timed out after {timeout_s:g} s") from None
        except BaseException:  # Ctrl-C: take the child down with us
            _kill(proc)
            raise
        if result_path.exists():
            result = json.loads(result_path.read_text())
            if "error" in result:
                raise RoundFailed(result["error"])
            return result
    tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
    detail = f": {' | '.join(tail)}" if tail else ""
    if proc.returncode < 0:
        raise RoundFailed(f"runtime crashed ({signal.Signals(-proc.returncode).name}){detail}")
    raise RoundFailed(f"worker exited with code {proc.returncode} without a result{detail}")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def measure(model_path: str | Path, backend_name: str, config: dict[str, Any] | None = None,
            protocol: Protocol | None = None, *, profile: bool = False) -> Measurement:
    """Measure ``model_path`` on backend ``backend_name`` (built with ``config``: threads and
    options). Bad settings raise ConfigError; everything that goes wrong while measuring gives a
    Measurement whose ``error`` says why."""
    from edgemeter.backends import backend_class, backend_target

    protocol = protocol or Protocol()
    model_path = Path(model_path)
    cls = backend_class(backend_name)
    backend = cls(**(config or {}))
    result = Measurement(model=str(model_path), backend=backend_name, config=backend.settings(),
                         profiled=profile, protocol=asdict(protocol))
    try:
        result.model_sha256 = file_sha256(model_path)
    except OSError as exc:
        result.error = f"cannot read model: {exc.strerror}"
        return result
    if not cls.available():
        result.error = f"{cls.requires} is not installed: pip install 'edgemeter[{cls.extra}]'"
        return result

    payload = {"target": backend_target(backend_name), "config": backend.settings(),
               "model": str(model_path.resolve()), "warmup": protocol.warmup,
               "repeats": protocol.repeats, "profile_runs": 0, "anchor": protocol.anchor}
    rounds: list[list[float]] = []
    anchors: list[float] = []
    start = time.monotonic()
    try:
        while True:
            round_start = time.monotonic()
            out = backend.run_round(payload, protocol.timeout_s)
            rounds.append(out["samples_ms"])
            if out.get("others_cores") is not None:
                result.others_cores = max(result.others_cores or 0.0, out["others_cores"])
            if out.get("anchor_samples_ms"):  # a remote worker of an older edgemeter: none
                anchors.append(statistics.median(out["anchor_samples_ms"]))
                result.anchor_round_medians_ms = anchors
                result.anchor_ms = statistics.median(anchors)
            result.env = out["env"]
            result.max_rss_kb = max(result.max_rss_kb or 0, out["max_rss_kb"])
            result.samples_ms = [s for r in rounds for s in r]
            result.__dict__.update(summarize(rounds))
            result.stable = is_stable(result.spread, protocol.target_cv)
            elapsed, last = time.monotonic() - start, time.monotonic() - round_start
            if len(rounds) >= protocol.max_rounds or (
                    len(rounds) >= protocol.rounds
                    and (result.stable or elapsed + last > protocol.time_budget_s)):
                break
        if profile:
            out = backend.run_round({**payload, "repeats": 0,
                                     "profile_runs": protocol.profile_runs}, protocol.timeout_s)
            result.node_times_ms = out["node_times_ms"]
            result.node_origins = out.get("node_origins")
            result.node_inputs = out.get("node_inputs")
    except RoundFailed as exc:
        result.error = str(exc)
    return result


def measure_models(models: Iterable[str | Path], backend_name: str,
                   config: dict[str, Any] | None = None, protocol: Protocol | None = None, *,
                   profile: bool = False, store: Any = None,
                   on_result: Callable[[Measurement, bool], None] | None = None,
                   ) -> list[Measurement]:
    """Measure several models, one after the other. With a :class:`~edgemeter.store.Store`,
    each measurement is saved the moment it completes and models already measured with the same
    settings are taken from it (``on_result(measurement, reused=True)``) instead of re-run."""
    from edgemeter.backends import get_backend

    settings = get_backend(backend_name, **(config or {})).settings()
    results = []
    for model in models:
        done = store.find(model, backend_name, settings, profile) if store is not None else None
        if done is None:
            done = measure(model, backend_name, config, protocol, profile=profile)
            if store is not None:
                store.add(done)
            reused = False
        else:
            reused = True
        results.append(done)
        if on_result:
            on_result(done, reused)
    return results
