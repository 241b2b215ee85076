"""bench/bench_pareto.py: the brute-force truth is measured in whole passes, each in its own
order, and an assignment's latency is its median over them."""
from __future__ import annotations

import pytest

from conftest import load_script
from edgemeter.pareto.search import Solution
from edgemeter.pareto.space import DecisionSpace


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_pareto.py")


def test_a_pass_measures_every_assignment_once_in_its_own_order_and_resumes(bench, tmp_path):
    space = DecisionSpace("name", ["Conv", "Relu", "Add"], ["a", "b"], {})
    orders = []

    def evaluator_for(order):
        def evaluate(ident):
            order.append(ident)
            return Solution(ident, 1.0 + ident, 1000 + ident, partitions=1)
        return evaluate

    for seed in (0, 1):
        orders.append([])
        solutions = bench.brute_force_pass(space, evaluator_for(orders[-1]),
                                           tmp_path / f"pass-{seed}.json", seed)
        assert sorted(orders[-1]) == list(range(space.size))
        assert solutions[5].exec_time == 6.0
    assert orders[0] != orders[1] and orders[0] != sorted(orders[0])
    again = []
    bench.brute_force_pass(space, evaluator_for(again), tmp_path / "pass-0.json", 0)
    assert again == []  # every assignment was in the dump already


def test_median_solution_takes_the_middle_round_and_any_failure(bench):
    rounds = [Solution(3, 2.0, 900, partitions=2), Solution(3, 9.0, 1100, partitions=2),
              Solution(3, 2.4, 1000, partitions=2)]
    merged = bench.median_solution(rounds)
    assert (merged.id, merged.exec_time, merged.max_rss, merged.partitions) == (3, 2.4, 1000, 2)
    failed = Solution(3, error="partition rejected", partitions=2)
    assert bench.median_solution([rounds[0], failed, rounds[2]]) is failed
