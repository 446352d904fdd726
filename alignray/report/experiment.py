"""An experiment: what a sweep left in its directory (``sweep.json``, ``results.parquet``, ``base/``,
``samples/<trial>.parquet``), read once, and the views of it every part of the report shares: the groups of trials
(a divergence, and its loss type when the sweep had several), each group's own frontier, each group's representative at
a common KL cap, the hypervolume's reference point and the hypervolume after each trial.

Candidates: each row of ``results.parquet`` is a model, its ``kind`` one of ``KINDS``: "trial", a Tune trial's final
model (``trial`` its Tune id); "point", a model saved along a trial's training (``trial`` "<tune id>@<step>"); and
"derived", a model made by weight arithmetic on others after the search (``parents``, ``weights``, ``recipe``). Points
and trials carry ``tune_trial`` and ``step``. Every candidate counts for feasibility and every overall frontier; the
groups (by divergence, so per-divergence frontiers and the matched-KL comparison) hold trained candidates only,
trials and points: a soup of two divergences is no divergence. An experiment recorded before candidates has no
``kind``: ``load_experiment`` makes each row a "trial", its own ``tune_trial``.

Objectives: the sweep's two (``Experiment.objectives``), each maximised or minimised; "best" and every frontier
follow their directions. An experiment recorded before they were configurable maximised its ``reward_metric`` and
``diversity_metric``.

Feasibility: a sweep with constraints records ``feasible`` (and ``violations``) per trial and the bounds in its
summary's ``constraints``. Every frontier here, and so the hypervolume, "What to pick" and the comparisons, holds
feasible finished trials only; the plots still draw the others (hollow). An experiment recorded before constraints
has no ``feasible`` column: every finished trial counts as feasible."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alignray.sweep.confirm import CONFIRMED, confirmed_view
from alignray.sweep.derive import DERIVED
from alignray.sweep.frontier import CONFIRM
from alignray.sweep.objectives import Objective, objective_points, parse_objectives, signed, with_objectives
from alignray.sweep.pareto import hypervolume_curve, pareto_mask

__all__ = [
    "BASE",
    "DERIVED",
    "KINDS",
    "KL",
    "POINT",
    "TRIAL",
    "Experiment",
    "MatchedKL",
    "feasible_mask",
    "group_frontier",
    "group_rows",
    "groups",
    "hypervolume_history",
    "load_experiment",
    "matched_kl",
    "objective_points",
    "reference_point",
    "search_steps",
    "selected",
]

BASE = "base"
"""The base SFT policy's name where trials are named by id (``Experiment.samples``, intervals by trial)."""
KL = "kl/ref"
"""The KL to the reference (SFT) policy, nats per completion: the reward–KL panel's axis and the KL budget's metric."""
TRIAL = "trial"
"""The ``kind`` of a Tune trial's final model."""
POINT = "point"
"""The ``kind`` of a model saved along a trial's training, at ``step``."""
KINDS = (TRIAL, POINT, DERIVED)
"""The kinds of candidate, in the order the report names them."""


def feasible_mask(rows: pd.DataFrame) -> pd.Series:
    """Which rows are finished and feasible: ``status`` "ok" and ``feasible`` True, or every finished row of an
    experiment recorded before constraints (no ``feasible`` column)."""
    finished = rows["status"] == "ok"
    if "feasible" not in rows.columns:
        return finished
    return finished & rows["feasible"].eq(True)


@dataclasses.dataclass
class Experiment:
    """What a sweep left in its directory, read once."""

    directory: Path
    study: str
    config: dict[str, Any]
    summary: dict[str, Any]
    results: pd.DataFrame
    base: dict[str, float]
    confirmed_base: dict[str, float] | None = None
    """The base policy's metrics on the confirmation prompts (None: no confirmation)."""
    seeds: pd.DataFrame | None = None
    """``confirmation.parquet``: one row per (candidate, seed), ``retrained`` true for a fresh seed (None: none)."""

    @property
    def objectives(self) -> tuple[Objective, Objective]:
        """The sweep's two objectives: the first (the plots' y axis, usually reward), then the second (x axis)."""
        return parse_objectives(self.config["objectives"])

    @property
    def finished(self) -> pd.DataFrame:
        """The candidates that finished (``status`` "ok"), of every kind."""
        return self.results[self.results["status"] == "ok"]

    @property
    def trained(self) -> pd.DataFrame:
        """The finished trained candidates: trials and the points along their training, not derived ones."""
        ok = self.finished
        return ok[ok["kind"] != DERIVED]

    @property
    def kinds(self) -> dict[str, int]:
        """How many candidates of each kind the experiment holds, in ``KINDS`` order (kinds it lacks: 0)."""
        return {kind: int((self.results["kind"] == kind).sum()) for kind in KINDS}

    @property
    def has_candidates(self) -> bool:
        """Whether the experiment holds candidates other than trials' final models (points or derived ones)."""
        return bool((self.results["kind"] != TRIAL).any())

    @property
    def feasible(self) -> pd.DataFrame:
        """The finished trials that met every constraint (all finished trials when the sweep had none)."""
        return self.results[feasible_mask(self.results)]

    @property
    def constraints(self) -> dict[str, float]:
        """The sweep's constraints, metric -> upper bound (a trial is feasible when each metric ≤ its bound); empty
        when the sweep had none."""
        return {str(k): float(v) for k, v in (self.summary.get("constraints") or {}).items()}

    @property
    def search_frontier(self) -> pd.DataFrame:
        """The feasible finished trials on the frontier of the two objectives at the search's own figures, computed
        by ``pareto_mask``, the best in the first objective first (so the best in the second last); empty when no
        finished trial is feasible."""
        ok = self.feasible
        return self.objectives[0].best_first(ok[pareto_mask(objective_points(ok, self.objectives))])

    @property
    def confirmed(self) -> pd.DataFrame | None:
        """The configurations the sweep confirmed (``alignray.sweep.confirm.confirmed_view``: metrics are means over
        seeds on the confirmation prompts, ``search/<metric>`` the search's figures, ``seeds`` how many), or None when
        the sweep confirmed nothing (none asked for, nothing feasible, or a sweep recorded before confirmation)."""
        if self.confirmed_base is None or CONFIRMED + "seeds" not in self.results.columns:
            return None
        rows = confirmed_view(self.results)
        return rows if len(rows) else None

    @property
    def frontier(self) -> pd.DataFrame:
        """The frontier the report recommends, the best in the first objective first: the confirmed one (the Pareto
        set of the confirmed feasible configurations, at their confirmed figures) when the sweep confirmed, else
        ``search_frontier``."""
        confirmed = self.confirmed
        if confirmed is None:
            return self.search_frontier
        ok = confirmed[feasible_mask(confirmed)]
        return self.objectives[0].best_first(ok[pareto_mask(objective_points(ok, self.objectives))])

    @property
    def frontier_base(self) -> dict[str, float]:
        """The base policy's metrics on the prompts ``frontier`` was measured on: the confirmation's when the sweep
        confirmed, else the search's."""
        return self.confirmed_base if self.confirmed is not None else self.base

    def confirmation_samples(self, trial: str, fresh: bool = True) -> list[pd.DataFrame]:
        """The confirmation samples of ``trial``, one frame per fresh seed evaluated (``fresh`` False: the search's
        own run, at most one frame), or of the base policy (``"base"``)."""
        directory = self.directory / "confirm"
        if trial == BASE:
            paths = [directory / BASE / "samples.parquet"]
        elif self.seeds is not None and "retrained" in self.seeds.columns:
            rows = self.seeds[(self.seeds["trial"] == trial) & (self.seeds["status"] == "ok")]
            rows = rows[rows["retrained"].astype(bool) == fresh]
            paths = [directory / trial / f"seed-{int(s)}" / "samples.parquet" for s in sorted(rows["seed"])]
        else:
            paths = sorted((directory / trial).glob("seed-*/samples.parquet")) if fresh else []
        return [pd.read_parquet(path) for path in paths if path.is_file()]

    def samples(self, trial: str) -> pd.DataFrame | None:
        """The evaluation samples of ``trial`` (or of the base policy, ``"base"``); None when none were kept."""
        paths = [self.directory / "base" / "samples.parquet"] if trial == BASE else [
            self.directory / "samples" / f"{trial}.parquet",
            self.directory / "frontier" / trial / "samples.parquet",
            self.directory / "derived" / trial / "samples.parquet",
        ]  # fmt: skip
        for path in paths:
            if path.is_file():
                return pd.read_parquet(path)
        return None


def load_experiment(directory: str | Path) -> Experiment:
    """Read an experiment directory; a ValueError names what is missing and how to get it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"experiment_dir={str(directory)!r} is not a directory")
    for name in ("sweep.json", "results.parquet", "base/metrics.json"):
        if not (directory / name).is_file():
            raise ValueError(f"experiment_dir={str(directory)!r} has no {name}: it is not a finished sweep; run "
                             f"`python jobs/sweep.py --output {directory}` (or --resume it)")  # fmt: skip
    record = json.loads((directory / "sweep.json").read_text())
    results = _with_kinds(pd.read_parquet(directory / "results.parquet"))
    base = json.loads((directory / "base" / "metrics.json").read_text())["metrics"]
    config = with_objectives(record["config"])
    for objective in parse_objectives(config["objectives"]):
        if objective.metric not in results.columns and (results["status"] == "ok").any():
            raise ValueError(f"results.parquet has no column {objective.metric!r}, one of the sweep's objectives")
    confirmed = directory / "confirm" / BASE / "metrics.json"
    confirmed_base = json.loads(confirmed.read_text())["metrics"] if confirmed.is_file() else None
    seeds_path = directory / "confirmation.parquet"
    seeds = pd.read_parquet(seeds_path) if seeds_path.is_file() else None
    if seeds is not None and "retrained" in seeds and CONFIRM not in results and CONFIRMED + "seeds" in results:
        results = _fresh_seeds_only(results, seeds, record.get("summary", {}), config)
    return Experiment(directory, record["study"], config, record.get("summary", {}), results, base, confirmed_base,
                      seeds)  # fmt: skip


def _fresh_seeds_only(
    results: pd.DataFrame, seeds: pd.DataFrame, summary: dict[str, Any], config: dict[str, Any]
) -> pd.DataFrame:
    """An experiment confirmed before the search's own run was kept out of the confirmed figures: its confirmed
    columns computed again from the fresh seeds (``retrained``) alone, under the constraints it recorded."""
    from alignray.sweep.confirm import confirmed_columns
    from alignray.sweep.constraints import Constraint

    bounds = (summary.get("confirmation") or {}).get("constraints") or {}
    constraints = [Constraint(metric, float(bound)) for metric, bound in bounds.items()]
    results = results.drop(columns=[c for c in results.columns if c.startswith(CONFIRMED)])
    results = confirmed_columns(results, seeds, constraints, parse_objectives(config["objectives"]))
    results[CONFIRM] = results["trial"].isin(set(seeds["trial"]))
    return results


def _with_kinds(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with the candidates' columns: a table recorded before candidates gets ``kind`` "trial",
    ``tune_trial`` its ``trial`` and ``step`` NaN; a table without derived candidates, empty ``parents`` and
    ``recipe``."""
    results = results.copy()
    if "kind" not in results.columns:
        results["kind"] = TRIAL
    if "tune_trial" not in results.columns:
        results["tune_trial"] = results["trial"].where(results["kind"] != DERIVED)
    for column in ("step", "lambda"):
        if column not in results.columns:
            results[column] = np.nan
    for column in ("parents", "weights", "recipe"):
        if column not in results.columns:
            results[column] = None
    return results


def reference_point(experiment: Experiment) -> tuple[float, float]:
    """The hypervolume's reference point, in the objectives' own units: the sweep's own, else (a sweep recorded
    before it saved one) the base policy's first objective and its second made worse by half."""
    saved = experiment.summary.get("reference_point")
    if saved is not None:
        return float(saved[0]), float(saved[1])
    first, second = experiment.objectives
    worse = experiment.base[second.metric] - second.sign * 0.5 * abs(experiment.base[second.metric])
    return experiment.base[first.metric], worse


def search_steps(experiment: Experiment) -> list[pd.DataFrame]:
    """The candidates in the order the sweep made them, one frame per step: each Tune trial in creation order
    (``index``) with the points along its training, which arrive with it (by ``step``, the final model last); then,
    when the sweep derived any, all derived candidates together, made after the search."""
    results = experiment.results
    trained = results[results["kind"] != DERIVED].sort_values(["index", "step"], kind="stable")
    steps = [rows for _, rows in trained.groupby("tune_trial", sort=False, dropna=False)]
    derived = results[results["kind"] == DERIVED]
    return steps + ([derived] if len(derived) else [])


def hypervolume_history(experiment: Experiment, reference: tuple[float, float]) -> tuple[np.ndarray, list[float]]:
    """Hypervolume after each step of ``search_steps`` against ``reference`` (the objectives' own units): after each
    trial in creation order (with its points), then, when the sweep derived candidates, once more after all of them
    (the last step), so the last value is the hypervolume of every feasible candidate; errored and infeasible
    candidates add nothing."""
    steps = search_steps(experiment)
    if not steps:
        return np.arange(1, 1), []
    table = pd.concat(steps)
    points = objective_points(table, experiment.objectives)
    points[~feasible_mask(table).to_numpy()] = np.nan
    curve = hypervolume_curve(points, signed(reference, experiment.objectives))
    ends = np.cumsum([len(rows) for rows in steps]) - 1
    return np.arange(1, len(steps) + 1), [curve[i] for i in ends]


def groups(experiment: Experiment) -> list[tuple[str, ...]]:
    """The groups of finished trained candidates (trials and their points; derived ones belong to no divergence):
    (divergence,), or (divergence, loss type) when the sweep had several loss types; in the sweep's order of
    divergences."""
    ok = experiment.trained
    keys = ["divergence", "loss_type"] if ok["loss_type"].nunique() > 1 else ["divergence"]
    order = [d for d in experiment.config.get("divergences", []) if d in set(ok["divergence"])]
    order += sorted(set(ok["divergence"]) - set(order))
    found = ok[keys].drop_duplicates().itertuples(index=False, name=None)
    return sorted(found, key=lambda g: (order.index(g[0]), g[1:]))


def group_rows(experiment: Experiment, group: tuple[str, ...]) -> pd.DataFrame:
    """The finished trained candidates (trials and points) of one group."""
    ok = experiment.trained
    rows = ok[ok["divergence"] == group[0]]
    if len(group) > 1:
        rows = rows[rows["loss_type"] == group[1]]
    return rows


def group_frontier(experiment: Experiment, group: tuple[str, ...]) -> pd.DataFrame:
    """The group's own frontier (``pareto_mask`` over its feasible trials alone), the best in the first objective
    first; empty when none of its trials is feasible."""
    rows = group_rows(experiment, group)
    rows = rows[feasible_mask(rows)]
    return experiment.objectives[0].best_first(rows[pareto_mask(objective_points(rows, experiment.objectives))])


def selected(experiment: Experiment) -> pd.DataFrame:
    """Frontier models shown beside the base policy: the best in the first objective, the best in the second, and
    one between."""
    front = experiment.frontier
    if len(front) <= 3:
        return front
    return front.iloc[[0, len(front) // 2, len(front) - 1]]


@dataclasses.dataclass(frozen=True)
class MatchedKL:
    """The groups compared under a common KL cap: each group's feasible trial best in the first objective (usually
    the highest reward) with ``kl/ref`` ≤ ``band``.

    ``band``: the smallest, over the groups with a feasible trial, of each group's largest feasible ``kl/ref``, so
    that no group is compared at a KL another cannot reach (None when no group has one). ``chosen``: group ->
    its trial's row, in the order of ``groups``. ``excluded``: group -> its lowest feasible ``kl/ref`` when all its
    feasible trials lie above the band, or None when it has no feasible finished trial with a ``kl/ref``."""

    band: float | None
    chosen: dict[tuple[str, ...], pd.Series]
    excluded: dict[tuple[str, ...], float | None]


def matched_kl(experiment: Experiment) -> MatchedKL:
    """Each group's representative under a common KL cap (see ``MatchedKL``)."""
    feasible: dict[tuple[str, ...], pd.DataFrame] = {}
    excluded: dict[tuple[str, ...], float | None] = {}
    for group in groups(experiment):
        rows = group_rows(experiment, group)
        rows = rows[feasible_mask(rows)]
        rows = rows[rows[KL].notna()] if KL in rows.columns else rows.iloc[:0]
        if rows.empty:
            excluded[group] = None
        else:
            feasible[group] = rows
    if not feasible:
        return MatchedKL(None, {}, excluded)
    band = float(min(rows[KL].max() for rows in feasible.values()))
    chosen = {}
    for group, rows in feasible.items():
        inside = rows[rows[KL] <= band]
        if inside.empty:
            excluded[group] = float(rows[KL].min())
        else:
            chosen[group] = experiment.objectives[0].best_first(inside).iloc[0]
    return MatchedKL(band, chosen, excluded)
