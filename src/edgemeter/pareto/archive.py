"""Pareto archive of (latency, memory) points, both minimised, and its hypervolume."""
from __future__ import annotations

from typing import Iterable, Sequence

Point = tuple[float, float]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Strict (Pareto) dominance: no worse in every objective and better in at least one. Equal
    points do not dominate each other, so ties all stay on the front."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


class ParetoArchive:
    """The non-dominated subset of the points added so far, keyed by assignment id."""

    def __init__(self, points: Iterable[tuple[int, Point]] = ()):
        self.points: dict[int, Point] = {}
        for ident, point in points:
            self.add(ident, point)

    def add(self, ident: int, point: Point) -> bool:
        """Add ``point``; return whether it joined the front (dominated members leave)."""
        point = tuple(point)
        if any(dominates(p, point) for p in self.points.values()):
            return False
        self.points = {i: p for i, p in self.points.items() if not dominates(point, p)}
        self.points[ident] = point
        return True

    @property
    def front(self) -> list[int]:
        """Ids on the front, by increasing first objective."""
        return sorted(self.points, key=lambda i: (self.points[i], i))

    def __len__(self) -> int:
        return len(self.points)

    def __contains__(self, ident: int) -> bool:
        return ident in self.points

    def hypervolume(self, reference: Point) -> float:
        return hypervolume(self.points.values(), reference)


def hypervolume(points: Iterable[Point], reference: Point) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (two minimised objectives).
    Points beyond the reference in either objective add nothing."""
    inside = sorted(p for p in points if p[0] < reference[0] and p[1] < reference[1])
    area, best_y = 0.0, reference[1]
    for x, y in inside:           # sweep by increasing x; only new lows in y add area
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


def reference_point(points: Iterable[Point], margin: float = 0.1) -> Point:
    """A reference slightly beyond the worst value of each objective, so that every point,
    extremes included, contributes to the hypervolume."""
    points = list(points)
    if not points:
        raise ValueError("no points to take a reference from")
    return tuple((1 + margin) * max(p[k] for p in points) for k in (0, 1))
