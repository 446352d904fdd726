"""The sweep's two objectives: recorded metrics (``alignray.metrics.METRICS``), each maximised or minimised.

An objective is written ``metric`` or ``metric:max`` / ``metric:min`` (default max): ``reward/mean`` against
``diversity/word_entropy`` (the default), or ``reward/mean`` against ``kl/ref:min`` (the DPO paper's reward–KL
frontier). The Pareto and hypervolume maths (``alignray.sweep.pareto``) maximise every column: ``signed`` negates a
minimised objective's values, so that it applies unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from alignray.metrics import METRICS
from alignray.registry import unknown_name

__all__ = ["DIRECTIONS", "Objective", "objective_points", "parse_objective", "parse_objectives", "signed",
           "with_objectives"]  # fmt: skip

DIRECTIONS = ("max", "min")
"""An objective's direction: maximised or minimised."""


@dataclass(frozen=True)
class Objective:
    """A recorded metric and whether the sweep maximises or minimises it."""

    metric: str
    """A recorded metric (``alignray.metrics.METRICS``)."""
    direction: str = "max"
    """max or min."""

    @property
    def sign(self) -> int:
        """+1 for max, −1 for min: the metric times its sign is maximised either way."""
        return 1 if self.direction == "max" else -1

    @property
    def better(self) -> str:
        return "higher is better" if self.direction == "max" else "lower is better"

    @property
    def title(self) -> str:
        """The metric with its direction, as an axis or a heading shows it: "kl/ref (lower is better)"."""
        return f"{self.metric} ({self.better})"

    @property
    def spec(self) -> str:
        """How a config writes it: the metric alone when maximised, ``metric:min`` when minimised."""
        return self.metric if self.direction == "max" else f"{self.metric}:min"

    def best_first(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` sorted by the metric, the best first."""
        return rows.sort_values(self.metric, ascending=self.direction == "min")


def parse_objective(spec: str) -> Objective:
    """``metric``, ``metric:max`` or ``metric:min``; a ValueError naming the field ``objectives`` otherwise."""
    metric, _, direction = str(spec).partition(":")
    if metric not in METRICS:
        raise unknown_name("objectives", metric, METRICS)
    direction = direction or "max"
    if direction not in DIRECTIONS:
        raise ValueError(
            f"objectives: {spec!r} has the direction {direction!r}; expected {metric}:max or {metric}:min"
        )
    return Objective(metric, direction)


def parse_objectives(specs: Sequence[str]) -> tuple[Objective, Objective]:
    """Exactly two objectives of two different metrics: the first (a plot's y axis), then the second (its x axis)."""
    if len(specs) != 2:
        raise ValueError(f"objectives={tuple(specs)!r} gives {len(specs)}; expected exactly two objectives, e.g. "
                         "--objectives reward/mean diversity/word_entropy")  # fmt: skip
    first, second = (parse_objective(spec) for spec in specs)
    if first.metric == second.metric:
        raise ValueError(f"objectives={tuple(specs)!r} names {first.metric} twice; expected two different metrics")
    return first, second


def signed(values: Any, objectives: Iterable[Objective]) -> np.ndarray:
    """``values`` (n, 2), or one point (2,), with each column times its objective's sign: maximised either way."""
    return np.asarray(values, dtype=np.float64) * np.array([o.sign for o in objectives], dtype=np.float64)


def objective_points(rows: pd.DataFrame, objectives: Sequence[Objective], prefix: str = "") -> np.ndarray:
    """The rows' two objectives (n, 2), signed: maximised either way. ``prefix``: read ``<prefix><metric>`` (the
    confirmation's ``confirmed/`` columns)."""
    return signed(rows[[prefix + o.metric for o in objectives]].to_numpy(dtype=np.float64), objectives)


def with_objectives(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config (``sweep.json``) with ``objectives``: one saved before they were configurable holds
    ``reward_metric`` and ``diversity_metric`` instead, both maximised."""
    if "objectives" in config or "reward_metric" not in config:
        return config
    old = {k: v for k, v in config.items() if k not in ("reward_metric", "diversity_metric")}
    return {**old, "objectives": [config["reward_metric"], config["diversity_metric"]]}
