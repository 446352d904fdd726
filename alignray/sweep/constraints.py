"""What makes a trial feasible: upper bounds on recorded metrics, a KL budget and a fluency bound.

A sweep maximises what it measures, so a model that writes non-words or drifts far from its reference can top the
reward–diversity frontier (see the README's "What the frontier must not celebrate"). Each ``Constraint`` bounds one
metric a trial reports; its value is the metric minus the bound, feasible at 0 or less, as Optuna's
``Trial.set_constraint`` takes it. Infeasible trials stay in ``results.parquet`` with the constraint they broke, and
are left out of the frontier, the hypervolume and the report's picks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alignray.sweep.config import SweepConfig

__all__ = ["Constraint", "sweep_constraints", "violations"]


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound``."""

    metric: str
    """A metric every trial reports (``alignray.metrics.METRICS``)."""
    bound: float
    """Its largest feasible value."""

    @property
    def column(self) -> str:
        """The results column that holds the constraint's value."""
        return f"constraint/{self.metric}"

    def value(self, metrics: Mapping[str, float]) -> float:
        """The metric minus its bound: feasible at <= 0; +inf when the metric is missing or not finite."""
        metric = metrics.get(self.metric)
        if metric is None or not math.isfinite(float(metric)):
            return math.inf
        return float(metric) - self.bound


def sweep_constraints(config: SweepConfig, base: Mapping[str, float]) -> list[Constraint]:
    """The sweep's constraints: ``kl/ref <= max_kl`` and ``fluency/nonword_rate <=`` the base policy's rate plus
    ``max_nonword_increase``, and ``fluency/garbled_rate <=`` the base policy's share plus ``max_garbled_increase``,
    each when set. A bound that is not finite (a base metric missing or NaN) is refused: it would make every trial
    feasible or none."""
    constraints = []
    if config.max_kl is not None:
        constraints.append(Constraint("kl/ref", config.max_kl))
    if config.max_nonword_increase is not None:
        constraints.append(Constraint("fluency/nonword_rate", _bound(base, "fluency/nonword_rate",
                                                                     config.max_nonword_increase)))
    if config.max_garbled_increase is not None:
        constraints.append(Constraint("fluency/garbled_rate", _bound(base, "fluency/garbled_rate",
                                                                     config.max_garbled_increase)))
    return constraints


def _bound(base: Mapping[str, float], metric: str, increase: float) -> float:
    """The base policy's ``metric`` plus ``increase``; a ValueError when the base has no finite value of it."""
    value = float(base.get(metric, math.nan))
    if not math.isfinite(value):
        raise ValueError(f"the base policy's {metric} is {value}: no fluency bound can be set from it; evaluate the "
                         "base policy again (delete base/metrics.json) or turn the bound off")  # fmt: skip
    return value + increase


def violations(metrics: Mapping[str, float], constraints: list[Constraint]) -> str | None:
    """The constraints ``metrics`` breaks, as text ("kl/ref 32.3 > 10; ..."), or None when it breaks none."""
    broken = [f"{c.metric} {metrics.get(c.metric, math.nan):.4g} > {c.bound:.4g}" for c in constraints
              if c.value(metrics) > 0]  # fmt: skip
    return "; ".join(broken) or None
