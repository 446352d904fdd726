"""Confirmation: the search's feasible frontier, retrained with new seeds and measured on held-out prompts.

The search picks its frontier with the same evaluation prompts that measure it, from one training run per
configuration, so its figures are optimistic: a configuration that won by luck of its seed or of those prompts looks
best exactly because it won. After the search, each configuration on its feasible frontier is

- evaluated again as trained (the search's seed; its saved model), and
- retrained with ``replicates`` new seeds (``seed + 1``, ..., ``seed + replicates``: the order of the preference
  data and the sampling of the evaluation both change) and evaluated,

a point along a trial's training taken at the same step of each seed's run, and a derived candidate
(``alignray.sweep.derive``) rebuilt from each seed's parents, so that it is confirmed as the recipe it is; candidates
that share a trial's run share its training (``confirmation_units``),

every seed on the **confirmation prompts**: ``confirmation_prompts`` evaluation prompts held out from the search's
(the continuation of the same seeded draw of evaluation reviews: other reviews, never seen by the search). The base
policy is evaluated on them too, once. A configuration's confirmed metrics are the means over its seeds
(``confirmed/<metric>`` in ``results.parquet``, beside the search's figures under the metric names themselves); the
constraints are applied again to them (the fluency bound now against the base policy on the confirmation prompts),
and the confirmed frontier is the Pareto set of the confirmed feasible configurations. The report takes its frontier,
its intervals (seeds and prompts resampled together, ``alignray.report.stats.seed_prompt_intervals``) and "What to
pick" from here.

Directory: ``confirm/base/`` and ``confirm/<trial>/seed-<s>/``, each with ``samples.parquet`` and ``metrics.json``
(or ``failure.json``: the unit failed, with its reason); a unit already done is reused, so a rerun or ``--resume``
trains nothing twice. ``confirmation.parquet``: one row per (trial, seed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alignray.metrics import METRICS
from alignray.sweep.config import PARAMETERS, SweepConfig
from alignray.sweep.constraints import Constraint, violations
from alignray.sweep.objectives import Objective, objective_points

__all__ = ["CONFIRMED", "Candidate", "Unit", "confirmation_units", "confirmed_columns", "confirmed_view",
           "run_units", "split_prompts"]  # fmt: skip

CONFIRMED = "confirmed/"
"""Prefix of the confirmation's columns in ``results.parquet``: ``confirmed/<metric>`` (mean over seeds),
``confirmed/seeds``, ``confirmed/feasible``, ``confirmed/violations``, ``confirmed/pareto``."""
BASE_UNIT = "base"
NO_SEED = "no seed evaluated: every seed failed (confirmation.parquet holds the reasons)"
"""The confirmation's violation of a configuration whose every seed failed."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A frontier candidate as confirmation rebuilds it at each seed: the model at ``models[0]`` of a trial's run
    (``weights`` None: a trained candidate, a trial's final model or a point along its training), or the weight
    arithmetic of ``alignray.sweep.derive`` over ``models`` with ``weights`` (a derived one). Each model is a Tune
    trial id and the model's path in its run (``alignray.sweep.derive.model_path``)."""

    id: str
    models: tuple[tuple[str, str], ...]
    weights: tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Unit:
    """One Ray task of the confirmation: the ``candidates`` that share trials' runs, evaluated at one seed, each
    trial's run the search's own (``checkpoints``: Tune trial id to its checkpoint) or trained anew at ``seed``
    (``checkpoints`` None, ``params``: Tune trial id to its parameters); no candidates: the base policy."""

    seed: int
    candidates: tuple[Candidate, ...] = ()
    params: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    checkpoints: dict[str, Any] | None = None

    @property
    def retrained(self) -> bool:
        return bool(self.candidates) and self.checkpoints is None

    @property
    def names(self) -> list[str]:
        """The candidates' ids ("base" for the base policy), as ``confirmation.parquet`` names them."""
        return [c.id for c in self.candidates] or [BASE_UNIT]

    def directory(self, root: Path, name: str) -> Path:
        return root / BASE_UNIT if name == BASE_UNIT else root / name / f"seed-{self.seed}"


def split_prompts(config: SweepConfig, draw: Callable[[int], list[str]]) -> tuple[list[str], list[str]]:
    """The search's evaluation prompts and the confirmation prompts from one seeded draw of evaluation prompts
    (``draw(n)``: the first ``n``; a longer draw begins with a shorter one). The first ``eval_prompts`` are the
    search's, the same prompts a sweep without confirmation draws; the confirmation takes the next
    ``confirmation_prompts`` whose text is neither a search prompt nor an earlier confirmation prompt (openings of
    2-8 tokens of different reviews can coincide, "This is"), drawing further while the evaluation pool lasts."""
    wanted = config.eval_prompts + config.confirmation_prompts
    while True:
        drawn = draw(wanted)
        search, held_out = drawn[: config.eval_prompts], []
        seen = set(search)
        for prompt in drawn[config.eval_prompts :]:
            if prompt not in seen and len(held_out) < config.confirmation_prompts:
                held_out.append(prompt)
                seen.add(prompt)
        if len(held_out) == config.confirmation_prompts or len(drawn) < wanted:
            return search, held_out
        wanted += config.confirmation_prompts - len(held_out)


def confirmation_units(config: SweepConfig, front: pd.DataFrame, table: pd.DataFrame,
                       checkpoints: dict[str, Any]) -> list[Unit]:  # fmt: skip
    """The base policy, then, for each group of frontier candidates (``front``) built from the same trials' runs (a
    trial's final model, its points, the models derived from them; a soup joins its parents' groups), one unit at
    the search's seed from the trials' ``checkpoints`` (retrained when one is missing) and one per new seed
    (``replicates``) that trains each run of the group once. ``table``: the results, where derived candidates' parents
    are found."""
    from alignray.sweep.derive import DERIVED, model_path

    trained = table[table["kind"] != DERIVED].set_index("trial", drop=False)
    candidates = []
    for _, row in front.iterrows():
        if row["kind"] == DERIVED:
            parents = [trained.loc[p] for p in row["parents"]]
            models = tuple((p["tune_trial"], model_path(p)) for p in parents)
            candidates.append(Candidate(row["trial"], models, tuple(float(w) for w in row["weights"])))
        else:
            candidates.append(Candidate(row["trial"], ((row["tune_trial"], model_path(row)),)))
    groups: list[tuple[set[str], list[Candidate]]] = []  # trials' runs and the candidates built from them
    for candidate in candidates:
        runs = {run for run, _ in candidate.models}
        joined = [g for g in groups if g[0] & runs]
        groups = [g for g in groups if not g[0] & runs]
        groups.append((runs.union(*(g[0] for g in joined)), [c for g in joined for c in g[1]] + [candidate]))
    units = [Unit(config.seed)]
    for runs, members in groups:
        params = {run: _params(trained.loc[run]) for run in sorted(runs)}
        kept = {run: checkpoints[run] for run in runs if checkpoints.get(run) is not None}
        search = Unit(config.seed, tuple(members), params, kept if len(kept) == len(runs) else None)
        units += [search] + [Unit(config.seed + i, tuple(members), params) for i in range(1, config.replicates + 1)]
    return units


def _params(row: pd.Series) -> dict[str, Any]:
    """A trial's parameters, from its results row."""
    return {k: row[k] for k in PARAMETERS if k in row and not _missing(row[k])}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _evaluate_unit(unit: Unit, config: SweepConfig, pairs: pd.DataFrame, prompts: list[str], train_storage: str):
    """Runs as a Ray task in a trial's resources: each of the unit's candidates (its trials' runs trained here on
    ``pairs`` at the unit's seed when ``retrained``, derived ones rebuilt from them) on the confirmation prompts;
    ([(name, metrics, samples)], train seconds)."""
    import torch

    from alignray.sweep.derive import combine, fetch_model
    from alignray.sweep.trial import drop_train_run, evaluate_model, train_config
    from alignray.train import train
    from alignray.world import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(max(1, int(config.cpus_per_trial)))
    if not unit.candidates:
        return [(BASE_UNIT, *evaluate_model(config.policy, config, prompts, unit.seed))], 0.0
    scratch = Path(tempfile.mkdtemp(prefix="alignray-confirm-"))
    try:
        trained, runs = 0.0, {}
        if unit.retrained:
            data = scratch / "preferences.parquet"
            pairs.to_parquet(data, index=False)
            for run, params in unit.params.items():
                name = f"confirm-{run}-seed-{unit.seed}"
                out = scratch / "runs" / run
                train_run = dataclasses.replace(train_config(params, config, str(data), str(out)), seed=unit.seed,
                                                save_points=config.eval_points)  # fmt: skip
                trained += train(train_run, run_name=name, storage_path=train_storage, quiet=True)["seconds"]
                if config.workers_per_trial > 1:
                    drop_train_run(train_storage, name)
                runs[run] = out

        def model(run: str, path: str) -> Path:
            """The model at ``path`` of a trial's run, as a Tune checkpoint lays it out (``model`` or
            ``points/step-<n>/model``); a training run of its own holds it at ``model/`` or ``points/step-<n>/``."""
            if unit.retrained:
                return runs[run] / path.removesuffix("/model")
            target = scratch / "runs" / run / path
            return target if target.is_dir() else fetch_model(unit.checkpoints[run], path, target)

        evaluated = []
        for i, candidate in enumerate(unit.candidates):
            if candidate.weights is None:
                path = model(*candidate.models[0])
            else:
                parents = [(model(*m), w) for m, w in zip(candidate.models, candidate.weights, strict=True)]
                path = combine(config.policy, parents, scratch / f"derived-{i}")
            evaluated.append((candidate.id, *evaluate_model(str(path), config, prompts, unit.seed)))
        return evaluated, trained
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_units(
    units: list[Unit], config: SweepConfig, pairs: pd.DataFrame, prompts: list[str], root: Path,
    resources: dict[str, float], concurrent: int, train_storage: str, say, write_atomic,
) -> pd.DataFrame:  # fmt: skip
    """Evaluate every unit not done yet under ``root`` as Ray tasks in ``resources`` each, ``concurrent`` at a time
    (the search's count: a multi-worker unit's Ray Train workers need room beside the tasks), saving each candidate
    as it finishes; one row per candidate and seed: trial (the candidate's id), seed, retrained, status, reason,
    metrics and training seconds.

    A unit that fails the same way whenever it runs (``alignray.sweep.trial.is_deterministic``: NaN, a bad value) is
    recorded in each of its candidates' ``failure.json`` and not run again, as is a candidate whose metrics are not
    finite; any other failure (Ray already retried a lost worker ``max_failures`` times) is reported and left to run
    again on ``--resume``."""
    import ray

    from alignray.sweep.derive import is_done
    from alignray.sweep.trial import failure_reason, is_deterministic

    waiting = [unit for unit in units if not all(is_done(unit.directory(root, n)) for n in unit.names)]
    failed: dict[tuple[str, int], str] = {}  # (candidate, seed) -> reason
    if waiting:
        retrained = sum(u.retrained for u in waiting)
        say(f"5/6 confirmation: {sum(len(u.names) for u in waiting)} models in {len(waiting)} tasks on "
            f"{len(prompts)} held-out prompts ({retrained} tasks train with new seeds), {concurrent} at once")
        task = ray.remote(num_cpus=resources["cpu"], num_gpus=resources["gpu"], max_retries=config.max_failures)(
            _evaluate_unit
        )
        shared = ray.put(pairs)  # once, for every task
    pending: dict[Any, Unit] = {}
    while waiting or pending:
        while waiting and len(pending) < concurrent:
            unit = waiting.pop(0)
            pending[task.remote(unit, config, shared, prompts, train_storage)] = unit
        [ready], _ = ray.wait(list(pending), num_returns=1)
        unit = pending.pop(ready)
        try:
            evaluated, trained = ray.get(ready)
        except Exception as err:  # its candidates are confirmed with fewer seeds
            reason = failure_reason(err)
            for name in unit.names:
                _failed(unit, name, reason, is_deterministic(err), root, failed, say, write_atomic)
            continue
        for name, metrics, samples in evaluated:
            broken = {k: v for k, v in metrics.items() if not math.isfinite(v)}
            if broken:
                _failed(unit, name, f"FloatingPointError: non-finite metrics {broken}", True, root, failed, say,
                        write_atomic)  # fmt: skip
                continue
            directory = unit.directory(root, name)
            directory.mkdir(parents=True, exist_ok=True)
            write_atomic(directory / "samples.parquet", lambda p, s=samples: s.to_parquet(p, index=False))
            record = {"metrics": {k: float(v) for k, v in metrics.items()}, "retrained": unit.retrained,
                      "time/train_s": trained}  # fmt: skip
            write_atomic(directory / "metrics.json", lambda p, r=record: p.write_text(json.dumps(r, indent=2) + "\n"))
            shown = ", ".join(f"{m} {metrics[m]:.3g}" for m in dict.fromkeys(
                [o.metric for o in config.objective_pair] + ["kl/ref"]))  # fmt: skip
            say(f"5/6 confirmation: {name} seed {unit.seed} done: {shown}")
    return pd.DataFrame([_row(u, n, u.directory(root, n), failed.get((n, u.seed))) for u in units for n in u.names])


def _failed(
    unit: Unit, name: str, reason: str, deterministic: bool, root: Path, failed: dict[tuple[str, int], str],
    say: Callable[[str], None], write_atomic: Callable[[Path, Callable[[Path], None]], None],
) -> None:  # fmt: skip
    """Note a candidate's failure at the unit's seed; a deterministic one is recorded in its ``failure.json``."""
    failed[name, unit.seed] = reason
    if deterministic:
        directory = unit.directory(root, name)
        directory.mkdir(parents=True, exist_ok=True)
        failure = json.dumps({"reason": reason}) + "\n"
        write_atomic(directory / "failure.json", lambda p: p.write_text(failure))
    say(f"5/6 confirmation: {name} seed {unit.seed} failed ({reason[:300]})"
        + ("" if deterministic else "; --resume runs it again"))  # fmt: skip


def _row(unit: Unit, name: str, directory: Path, failed: str | None = None) -> dict[str, Any]:
    row = {"trial": name, "seed": unit.seed, "retrained": unit.retrained}
    if (directory / "metrics.json").is_file():
        record = json.loads((directory / "metrics.json").read_text())
        return {**row, "status": "ok", "reason": None, **record["metrics"],
                **{k: v for k, v in record.items() if k.startswith("time/")}}  # fmt: skip
    if (directory / "failure.json").is_file():
        failed = json.loads((directory / "failure.json").read_text())["reason"]
    return {**row, "status": "error", "reason": (failed or "not run")[:500]}


def confirmed_columns(
    table: pd.DataFrame, seeds: pd.DataFrame, constraints: list[Constraint], objectives: Sequence[Objective]
) -> pd.DataFrame:
    """``table`` (the search's results) with the confirmation's columns (``CONFIRMED``) for every trial ``seeds``
    names: each metric's mean over its evaluated seeds, their number, feasibility under ``constraints`` (a trial none
    of whose seeds was evaluated is infeasible: ``NO_SEED``) and
    whether it is on the confirmed frontier (Pareto over ``objectives``, each in its direction, among the confirmed
    feasible trials); NaN / False elsewhere."""
    from alignray.sweep.pareto import pareto_mask

    table = table.copy()
    ok = seeds[(seeds["status"] == "ok") & (seeds["trial"] != BASE_UNIT)]
    metrics = [m for m in METRICS if m in ok.columns]
    means = ok.groupby("trial")[metrics].mean()
    for metric in metrics:
        table[CONFIRMED + metric] = table["trial"].map(means[metric]).astype(float)
    table[CONFIRMED + "seeds"] = table["trial"].map(ok.groupby("trial").size()).fillna(0).astype(int)
    confirmed = table[CONFIRMED + "seeds"] > 0
    candidates = set(seeds.loc[seeds["trial"] != BASE_UNIT, "trial"])
    values = [{m: row[CONFIRMED + m] for m in metrics} for _, row in table.iterrows()]
    table[CONFIRMED + "violations"] = [
        violations(v, constraints) if c else (NO_SEED if t in candidates else None)
        for v, c, t in zip(values, confirmed, table["trial"], strict=True)
    ]
    table[CONFIRMED + "feasible"] = confirmed & table[CONFIRMED + "violations"].isna()
    mask = np.zeros(len(table), dtype=bool)
    feasible = table[CONFIRMED + "feasible"].to_numpy(dtype=bool)
    if feasible.any():
        mask[feasible] = pareto_mask(objective_points(table.loc[feasible], objectives, CONFIRMED))
    table[CONFIRMED + "pareto"] = mask
    return table


def confirmed_view(table: pd.DataFrame) -> pd.DataFrame:
    """The configurations ``table`` sent to confirmation (its search frontier, ``pareto``) as results rows: each
    metric column holds its confirmed value (the mean over seeds on the confirmation prompts; NaN when every seed
    failed), ``feasible``, ``violations`` and ``pareto`` the confirmation's, ``seeds`` how many were evaluated, and
    ``search/<metric>`` the search's figure it replaced. Empty when the table has no confirmation."""
    if CONFIRMED + "seeds" not in table.columns:
        return table.iloc[:0]
    rows = table[table["pareto"].astype(bool)].copy()
    for column in [c for c in table.columns if c.startswith(CONFIRMED)]:
        name = column[len(CONFIRMED) :]
        if name in METRICS and name in rows.columns:
            rows[f"search/{name}"] = rows[name]
        rows[name] = rows[column]
    return rows.drop(columns=[c for c in rows.columns if c.startswith(CONFIRMED)])
