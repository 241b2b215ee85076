"""Search the assignment space for the latency/memory Pareto front.

A :class:`Study` owns every evaluation of one space: it caches them (an assignment is measured at
most once, so revisits are free and ``budget`` counts distinct measurements), keeps the Pareto
archive, and checkpoints itself as the output JSON, which is also what a rerun resumes from. The
algorithms are plain functions over a study: :func:`brute_force`, :func:`random_search`,
:func:`nsga2` (pymoo) and :func:`local_search`.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgemeter.errors import ConfigError
from edgemeter.pareto.archive import ParetoArchive
from edgemeter.pareto.space import DecisionSpace

ALGORITHMS = ("brute", "random", "nsga2", "local")


@dataclass
class Solution:
    id: int
    exec_time: float | None = None   # ms, median of the protocol's rounds
    max_rss: int | None = None       # KiB, peak resident memory of the measuring process
    error: str | None = None         # why the assignment is infeasible
    partitions: int | None = None

    @property
    def feasible(self) -> bool:
        return self.error is None

    @property
    def objectives(self) -> tuple[float, float]:
        return (self.exec_time, self.max_rss)


Evaluate = Callable[[int], Solution]


class Study:
    """The evaluations of one decision space, their Pareto archive and their checkpoint file."""

    def __init__(self, space: DecisionSpace, evaluate: Evaluate, *, dump: str | Path | None = None,
                 checkpoint_every: int = 10,
                 on_solution: Callable[[Solution], None] | None = None):
        self.space, self._evaluate = space, evaluate
        self.dump = Path(dump) if dump else None
        self.checkpoint_every = checkpoint_every
        self.on_solution = on_solution
        self.solutions: dict[int, Solution] = {}
        self.archive = ParetoArchive()
        self.extra: dict = {}           # more top-level keys for the output (offline summary)
        self._unsaved = 0

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, ident: int) -> Solution:
        """Measure assignment ``ident`` once; later calls return the recorded solution."""
        if ident not in self.solutions:
            self._record(self._evaluate(ident))
            self._unsaved += 1
            if self.dump and self._unsaved >= self.checkpoint_every:
                self.save()
        return self.solutions[ident]

    def _record(self, solution: Solution) -> None:
        self.solutions[solution.id] = solution
        if solution.feasible:
            self.archive.add(solution.id, solution.objectives)
        if self.on_solution:
            self.on_solution(solution)

    @property
    def measured(self) -> int:
        return len(self.solutions)

    def unmeasured(self) -> int:
        return self.space.size - self.measured

    # -- output and checkpoints ------------------------------------------------------------
    def to_dict(self) -> dict:
        ok = [s for s in self.solutions.values() if s.feasible]
        bad = [s for s in self.solutions.values() if not s.feasible]
        return {
            "mode": self.space.mode,
            "oplist": self.space.oplist,
            "backends": self.space.backends,
            "space_size": self.space.size,
            "solutions": [{"id": s.id, "exec_time": s.exec_time, "max_rss": s.max_rss,
                           "partitions": s.partitions} for s in ok],
            "infeasible": [{"id": s.id, "reason": s.error, "partitions": s.partitions}
                           for s in bad],
            "configs": {str(i): self.space.config(i) for i in sorted(self.solutions)},
            "front": self.archive.front,
            **self.extra,
        }

    def save(self, path: str | Path | None = None) -> None:
        """Write the output JSON atomically (a crash mid-write keeps the previous checkpoint)."""
        path = Path(path or self.dump)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        self._unsaved = 0

    def resume(self, path: str | Path | None = None) -> int:
        """Load the solutions of a previous dump of the same space; return how many."""
        path = Path(path or self.dump)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot resume from {path}: {exc}") from None
        mine = (self.space.mode, self.space.oplist, self.space.backends)
        theirs = (data.get("mode"), data.get("oplist"), data.get("backends"))
        if mine != theirs:
            raise ConfigError(f"cannot resume from {path}: it explores another space "
                              f"(mode/oplist/backends {theirs} instead of {mine})")
        for s in data["solutions"]:
            self._record(Solution(s["id"], s["exec_time"], s["max_rss"],
                                  partitions=s.get("partitions")))
        for s in data.get("infeasible", []):
            self._record(Solution(s["id"], error=s["reason"], partitions=s.get("partitions")))
        return len(self.solutions)


def _budget(study: Study, budget: int | None) -> int:
    """Total distinct measurements to reach, resumed ones included, capped by the space size."""
    if budget is not None and budget < 1:
        raise ConfigError(f"budget must be >= 1, got {budget}")
    return study.space.size if budget is None else min(budget, study.space.size)


# -- algorithms ---------------------------------------------------------------------------------
def brute_force(study: Study, budget: int | None = None) -> None:
    """Every assignment in id order (or the first ``budget`` of them)."""
    limit = _budget(study, budget)
    for ident in range(study.space.size):
        if study.measured >= limit:
            break
        study.evaluate(ident)


def random_search(study: Study, budget: int, seed: int = 0) -> None:
    """Uniform sampling without replacement."""
    limit, rng = _budget(study, budget), random.Random(seed)
    while study.measured < limit:
        study.evaluate(_unmeasured(study, rng))


def _unmeasured(study: Study, rng: random.Random) -> int:
    """A uniformly random assignment not measured yet (the study must not be complete)."""
    while True:
        ident = rng.randrange(study.space.size)
        if ident not in study.solutions:
            return ident


def local_search(study: Study, budget: int, seed: int = 0) -> None:
    """Hamming-neighbourhood search around the current front: measure an unmeasured neighbour
    (one key moved to another backend) of a front member, chosen at random; when the front has
    none left, restart from a random unmeasured assignment. An empty study starts from the
    single-backend assignments, the natural anchors of the front."""
    limit, rng, space = _budget(study, budget), random.Random(seed), study.space
    uniform = [space.encode([b] * len(space.oplist)) for b in range(len(space.backends))]
    for ident in uniform:
        if study.measured >= limit:
            return
        study.evaluate(ident)
    while study.measured < limit:
        candidates = {n for i in study.archive.front for n in space.neighbours(i)
                      if n not in study.solutions}
        if candidates:
            study.evaluate(rng.choice(sorted(candidates)))
        else:
            study.evaluate(_unmeasured(study, rng))


def nsga2(study: Study, budget: int, seed: int = 0, pop_size: int | None = None,
          patience: int = 10) -> None:
    """NSGA-II (pymoo) over the per-key backend choices: uniform crossover and random-reset
    mutation suit unordered choices better than real-coded operators. Stops at ``budget``
    distinct measurements, or after ``patience`` generations that measured nothing new (the
    population has converged onto assignments already measured)."""
    import numpy as np
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.ux import UniformCrossover
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.problems.static import StaticProblem

    limit, space = _budget(study, budget), study.space
    radices = np.array(space.radices)
    problem = Problem(n_var=len(radices), n_obj=2, n_ieq_constr=1, xl=0, xu=radices - 1,
                      vtype=int)
    pop_size = pop_size or max(4, min(20, limit // 4, space.size // 2))
    algorithm = NSGA2(pop_size=pop_size, sampling=IntegerRandomSampling(),
                      crossover=UniformCrossover(), mutation=_random_reset(),
                      eliminate_duplicates=True)
    algorithm.setup(problem, seed=seed, verbose=False)
    idle = 0
    while study.measured < limit and idle < patience:
        pop = algorithm.ask()
        before = study.measured
        F, G = [], []
        for x in pop.get("X"):
            if study.measured >= limit:   # keep the budget exact; the rest count as infeasible
                F.append([np.inf, np.inf])
                G.append([1.0])
                continue
            s = study.evaluate(space.encode([int(v) for v in x]))
            F.append(list(s.objectives) if s.feasible else [np.inf, np.inf])
            G.append([0.0 if s.feasible else 1.0])
        Evaluator().eval(StaticProblem(problem, F=np.array(F, float), G=np.array(G)), pop)
        algorithm.tell(infills=pop)
        idle = idle + 1 if study.measured == before else 0


def _random_reset():
    """pymoo mutation: each variable, with probability 1/n_var, takes a random other choice."""
    from pymoo.core.mutation import Mutation

    class RandomReset(Mutation):
        def _do(self, problem, X, random_state=None, **kwargs):
            X = X.copy()
            prob = self.get_prob_var(problem, size=len(X))
            for k in range(problem.n_var):
                hit = random_state.random(len(X)) < prob
                radix = int(problem.xu[k]) + 1
                shift = random_state.integers(1, max(radix, 2), hit.sum())
                X[hit, k] = (X[hit, k] + shift) % radix
            return X

    return RandomReset()


def run_search(study: Study, algo: str, budget: int | None = None, seed: int = 0) -> None:
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo!r} (expected one of: {', '.join(ALGORITHMS)})")
    if algo == "brute":
        brute_force(study, budget)
        return
    if budget is None:
        raise ConfigError(f"--algo {algo} needs a --budget (number of measurements)")
    {"random": random_search, "nsga2": nsga2, "local": local_search}[algo](study, budget, seed)
