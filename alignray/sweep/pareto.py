"""The Pareto frontier of two objectives and its hypervolume; both objectives are maximised here (a minimised one
comes in negated, with its reference value: ``alignray.sweep.objectives.signed``).

Point a dominates point b when a ≥ b in both objectives and a > b in at least one. The hypervolume of a set of
points is the area they dominate above a reference point (r_first, r_second): the larger, the better the frontier,
and two searches measured against the same reference point compare.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hypervolume", "hypervolume_curve", "pareto_mask"]


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Which rows of ``points`` (n, 2) no other row dominates, shape (n,); equal rows are all kept.

    Rows holding NaN are never on the frontier.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(points).all(axis=1)
    at_least = (points[:, None, :] >= points[None, :, :]).all(axis=2)  # [j, i]: j ≥ i everywhere
    better = (points[:, None, :] > points[None, :, :]).any(axis=2)  # [j, i]: j > i somewhere
    dominated = ((at_least & better) & finite[:, None]).any(axis=0)
    return finite & ~dominated


def hypervolume(points: np.ndarray, reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (n, 2) and above ``reference``; points not above it in both count nothing."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    r_x, r_y = reference
    points = points[np.isfinite(points).all(axis=1) & (points[:, 0] > r_x) & (points[:, 1] > r_y)]
    if len(points) == 0:
        return 0.0
    front = points[pareto_mask(points)]
    front = front[np.lexsort((front[:, 1], -front[:, 0]))]  # the first descending, so the second ascends
    area, y_below = 0.0, r_y
    for x, y in front:
        if y > y_below:
            area += (x - r_x) * (y - y_below)
            y_below = y
    return float(area)


def hypervolume_curve(points: np.ndarray, reference: tuple[float, float]) -> list[float]:
    """The hypervolume of the first k points for k = 1..n: a search's progress, trial by trial."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return [hypervolume(points[: k + 1], reference) for k in range(len(points))]
