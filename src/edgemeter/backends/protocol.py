"""The measurement protocol: trustworthy latency on a noisy machine.

Timings inside one process vary 1-3 %, but medians of separate processes of the same model vary up
to ~10 % (memory layout, thread placement, frequency). So every round runs in a FRESH child process
(``python -m edgemeter.backends.worker``): warm-up, then ``repeats`` timed runs. The result is the
median of the round medians; rounds are added until their CV is under ``target_cv`` or the time
budget is spent, and a measurement that never got there is flagged unstable, not hidden. With
``target_sem``, rounds are added instead until that median's standard error is under it; the
flag still tells whether the rounds' CV met ``target_cv``.

The child also isolates faults: a segfault, a hang (timeout), a model the runtime rejects or a
missing runtime become a failed :class:`Measurement` carrying the reason, and the caller goes on.
"""
from __future__ import annotations

import hashlib
import json
import math
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
    # ... or, when set (instead of target_cv), when the median's relative standard error is at
    # most this: a truth needs its median known, not its rounds alike. For 2 %, a model whose
    # processes spread by 10 % needs about 40 rounds, one that spreads by 3 % four.
    target_sem: float | None = None
    time_budget_s: float = 120  # ... or when another round would exceed this budget
    timeout_s: float = 120      # one child process (load + warm-up + runs) is killed after this
    profile_runs: int = 20      # profiled runs for per-node times (with profile=True)
    anchor: bool = False        # time the speed anchor after every run (edgemeter.backends.anchor)
    # measure_models runs round r of every model before round r + 1 of any, so each model's
    # rounds are spread over the whole set: a slow spell of the host then moves one round of
    # many models, not every round of a few (bench/bench_truth.py).
    interleave: bool = False

    def __post_init__(self) -> None:
        for name in ("repeats", "rounds", "max_rounds", "profile_runs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"protocol: {name}={getattr(self, name)!r} must be an "
                                  "integer >= 1")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"protocol: warmup={self.warmup!r} must be an integer >= 0")
        for name in ("anchor", "interleave"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"protocol: {name}={getattr(self, name)!r} must be true or "
                                  "false")
        for name in ("target_cv", "time_budget_s", "timeout_s", "target_sem"):
            value = getattr(self, name)
            if name == "target_sem" and value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"protocol: {name}={value!r} must be a number > 0")
        self.max_rounds = max(self.max_rounds, self.rounds)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"protocol: unknown setting {unknown[0]!r} "
                              f"(allowed: {', '.join(sorted(known))})")
        return cls(**data)


# How a model is measured when its latency is the truth that predictions are judged by (``edgemeter
# dataset measure``, the benchmarks, a build's reference level and held-out models): nine fresh
# processes, interleaved. Two such measurements of 90 models agreed within ±10 % for all of them,
# three rounds for 82-86 % (bench/bench_truth.py).
REFERENCE = {"warmup": 10, "repeats": 30, "rounds": 9}
# Given ``max_rounds`` above ``rounds``, rounds are added past them, in further interleaved
# passes, while the median's standard error is above this: the models whose processes spread
# most (GhostNet's 8-14 % on Zen 4) get them.
REFERENCE_SEM = 0.02


def reference_protocol(**overrides: Any) -> Protocol:
    """:data:`REFERENCE` (anchored, interleaved; ``rounds`` rounds, and more up to
    ``max_rounds`` while the median's standard error is above :data:`REFERENCE_SEM`), with
    ``overrides`` of any :class:`Protocol` setting but ``anchor``."""
    settings = {**REFERENCE, "interleave": True, "target_sem": REFERENCE_SEM, **overrides}
    settings.setdefault("max_rounds", settings["rounds"])
    return Protocol(**settings, anchor=True)


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
    # The speed anchor's median beside the model's (Protocol.anchor), per round, and the one
    # paired with median_ms (paired_anchor_ms): median_ms / anchor_ms is the latency in anchor
    # units, comparable across moments.
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
        m = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        if m.anchor_round_medians_ms:  # stored before the pairing was per round: derive it again
            m.anchor_ms = paired_anchor_ms(m.round_medians_ms, m.anchor_round_medians_ms)
        return m


def paired_anchor_ms(round_medians: list[float], anchor_round_medians: list[float]) -> float:
    """The anchor time that goes with the median of ``round_medians``: that median over the
    median of each round's model-to-anchor ratio (the plain anchor median if the rounds do not
    pair up). A round's model and anchor share one process and one moment, and a slow spell
    of the host lasts minutes: it moves both, so their ratio drops it, where the anchor's
    median over rounds is one figure for several moments. Five nine-round truths of the same
    54 models (2026-12-01, Zen 4, bench/bench_truth_hours.py) agreed within ±10 % for 95.8 % of
    them in mean over their ten pairs anchored by the anchors' median, for 99.8 % paired."""
    if len(round_medians) != len(anchor_round_medians) or not round_medians:
        return statistics.median(anchor_round_medians)
    ratio = statistics.median(m / a for m, a in zip(round_medians, anchor_round_medians))
    return statistics.median(round_medians) / ratio


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def median_sem(values: list[float]) -> float | None:
    """Relative standard error of the median of ``values``: sqrt(pi / 2) times that of the
    mean, as for normal data; None for fewer than two values."""
    spread = cv(values)
    return None if spread is None else math.sqrt(math.pi / 2) * spread / math.sqrt(len(values))


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
    run = Rounds(model_path, backend_name, config, protocol or Protocol(), profile=profile)
    while not run.done:
        run.next_round()
    return run.finish()


class Rounds:
    """One model's measurement in progress, a round at a time: ``next_round`` until ``done``,
    then ``finish`` (the profiled run, if asked for) gives the Measurement. ``measure`` drives
    one to the end; ``measure_models`` can drive many in passes."""

    def __init__(self, model_path: str | Path, backend_name: str,
                 config: dict[str, Any] | None, protocol: Protocol, *, profile: bool = False):
        from edgemeter.backends import backend_class, backend_target

        model_path = Path(model_path)
        cls = backend_class(backend_name)
        self.backend = cls(**(config or {}))
        self.protocol, self.profile = protocol, profile
        self.result = Measurement(model=str(model_path), backend=backend_name,
                                  config=self.backend.settings(), profiled=profile,
                                  protocol=asdict(protocol))
        self.rounds: list[list[float]] = []
        self.anchors: list[float] = []
        self.spent_s = 0.0  # this model's own rounds: interleaved passes run others between
        self.done = False
        try:
            self.result.model_sha256 = file_sha256(model_path)
        except OSError as exc:
            self.fail(f"cannot read model: {exc.strerror}")
            return
        if not cls.available():
            self.fail(f"{cls.requires} is not installed: pip install 'edgemeter[{cls.extra}]'")
            return
        self.payload = {"target": backend_target(backend_name), "config": self.backend.settings(),
                        "model": str(model_path.resolve()), "warmup": protocol.warmup,
                        "repeats": protocol.repeats, "profile_runs": 0,
                        "anchor": protocol.anchor}

    def fail(self, reason: str) -> None:
        self.result.error, self.done = reason, True

    def next_round(self) -> dict[str, Any] | None:
        """Run one round; returns the worker's output (what :meth:`take` accepts again, with
        the round's wall time as ``elapsed_s``), or None when the round failed the model."""
        round_start = time.monotonic()
        try:
            out = self.backend.run_round(self.payload, self.protocol.timeout_s)
        except RoundFailed as exc:
            self.fail(str(exc))
            return None
        out = {**out, "elapsed_s": time.monotonic() - round_start}
        self.take(out)
        return out

    def take(self, out: dict[str, Any]) -> None:
        """Add a completed round: one just run, or one an interrupted run left in the store."""
        result, protocol = self.result, self.protocol
        self.rounds.append(out["samples_ms"])
        if out.get("others_cores") is not None:
            result.others_cores = max(result.others_cores or 0.0, out["others_cores"])
        result.env = out["env"]
        result.max_rss_kb = max(result.max_rss_kb or 0, out["max_rss_kb"])
        result.samples_ms = [s for r in self.rounds for s in r]
        result.__dict__.update(summarize(self.rounds))
        if out.get("anchor_samples_ms"):  # a remote worker of an older edgemeter: none
            self.anchors.append(statistics.median(out["anchor_samples_ms"]))
            result.anchor_round_medians_ms = self.anchors
            result.anchor_ms = paired_anchor_ms(result.round_medians_ms, self.anchors)
        result.stable = is_stable(result.spread, protocol.target_cv)
        last = out["elapsed_s"]
        self.spent_s += last
        n = len(self.rounds)
        over_budget = self.spent_s + last > protocol.time_budget_s
        self.done = n >= protocol.max_rounds or (
            n >= protocol.rounds and (self.settled() or over_budget))

    def settled(self) -> bool:
        """Whether the rounds so far meet the protocol's target: the CV of the round medians
        (``stable``), or with ``target_sem`` the standard error of the median the latency is
        taken from, judged on the model-to-anchor ratios when the rounds are anchored."""
        target = self.protocol.target_sem
        if target is None:
            return self.result.stable
        medians = self.result.round_medians_ms
        values = ([m / a for m, a in zip(medians, self.anchors)]
                  if len(self.anchors) == len(medians) else medians)
        sem = median_sem(values)
        return sem is not None and sem <= target

    def finish(self) -> Measurement:
        if self.profile and self.result.ok:
            try:
                out = self.backend.run_round({**self.payload, "repeats": 0,
                                              "profile_runs": self.protocol.profile_runs},
                                             self.protocol.timeout_s)
            except RoundFailed as exc:
                self.result.error = str(exc)
            else:
                self.result.node_times_ms = out["node_times_ms"]
                self.result.node_origins = out.get("node_origins")
                self.result.node_inputs = out.get("node_inputs")
        return self.result


def measure_models(models: Iterable[str | Path], backend_name: str,
                   config: dict[str, Any] | None = None, protocol: Protocol | None = None, *,
                   profile: bool = False, store: Any = None, reuse_failures: bool = False,
                   until: Callable[[], bool] | None = None,
                   on_result: Callable[[Measurement, bool], None] | None = None,
                   on_round: Callable[[], None] | None = None,
                   ) -> list[Measurement]:
    """Measure several models: each in turn, or with ``protocol.interleave`` in passes (round
    r of every model before round r + 1 of any). ``models`` is read lazily, one model as its
    first round starts; once ``until()`` says True no further model starts (those started are
    finished), and the list returned is that much shorter.

    With a :class:`~edgemeter.store.Store`, each measurement is saved the moment it completes
    and models already measured with the same settings, and at least ``protocol.rounds``
    rounds, are taken from it (``on_result(measurement, reused=True)``) instead of re-run:
    successful ones, and failed ones too with ``reuse_failures``. Every completed round is
    saved as well, so a model whose measurement an interruption cut short resumes from its
    rounds. ``on_result`` is called in the order of ``models``; ``on_round`` after every round
    that completed (a failed one ends its model instead)."""
    from edgemeter.backends import get_backend

    protocol = protocol or Protocol()
    settings = get_backend(backend_name, **(config or {})).settings()
    results: list[Measurement | None] = []
    reused: list[bool] = []
    reported = 0

    def finished(i: int, m: Measurement) -> None:
        nonlocal reported
        results[i] = m
        if store is not None and not reused[i]:
            store.add(m)
        while reported < len(results) and results[reported] is not None:
            if on_result:
                on_result(results[reported], reused[reported])
            reported += 1

    def advance(i: int, run: Rounds) -> None:
        if not run.done:  # a model that failed before its first round runs none
            out = run.next_round()
            if out is not None:
                if store is not None:
                    store.add_round(run.result, out)
                if on_round:
                    on_round()
        if run.done:
            finished(i, run.finish())

    waiting: dict[int, Rounds] = {}  # interleaved: the models with rounds still to run
    pending = iter(models)
    # until() is asked before the next model is taken: the caller may export it lazily.
    while not (until is not None and until()):
        model = next(pending, None)
        if model is None:
            break
        i = len(results)
        results.append(None)
        reused.append(False)
        done = (store.find(model, backend_name, settings, profile, failed=reuse_failures)
                if store is not None else None)
        if done is not None and done.ok and len(done.round_medians_ms) < protocol.rounds:
            done = None  # taken with fewer rounds than now asked for: measured again
        if done is not None:
            reused[i] = True
            finished(i, done)
            continue
        run = Rounds(model, backend_name, config, protocol, profile=profile)
        if store is not None and run.result.ok:
            for out in store.rounds(run.result):
                run.take(out)
        advance(i, run)  # interleaved: this is the first pass
        while not (run.done or protocol.interleave):
            advance(i, run)
        if not run.done:
            waiting[i] = run
    while waiting:
        for i, run in list(waiting.items()):
            advance(i, run)
            if run.done:
                del waiting[i]
    return results  # type: ignore[return-value]  # every slot is filled by now
