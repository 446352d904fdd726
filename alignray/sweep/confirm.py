"""Confirmation: the candidates the search chose, retrained with fresh seeds and measured on held-out prompts.

What selects never confirms. The search picks its frontier and each divergence's best with the same evaluation
prompts that measure them, from one training run each, so its figures flatter the winners. After the search, every
candidate to confirm (``to_confirm``: the feasible frontier and each divergence's best feasible candidate) is
retrained with ``replicates`` fresh seeds (``seed + 1``, ...) and evaluated on the **confirmation prompts**, which
share no text with the search's prompts or the preference data's. A point along training is taken at the same step
of each fresh run, and a derived candidate (``alignray.sweep.derive``) is rebuilt from each seed's parents;
candidates that share a trial's run share its training (``confirmation_units``). The search's own run is evaluated
on the same prompts and shown beside them, never averaged in: it is the run that won.

A candidate's confirmed metrics are the means over its fresh seeds (``confirmed/<metric>`` in ``results.parquet``).
It is confirmed feasible only when every fresh seed was evaluated within every constraint (the fluency bounds now
against the base policy on the confirmation prompts): a mean can hide a seed that broke the KL budget. A fresh seed
that failed is counted (``confirmed/failed_seeds``) and flagged by the report. The confirmed frontier is the Pareto
set of the confirmed feasible candidates.

Directory: ``confirm/base/`` and ``confirm/<trial>/seed-<s>/``, each with ``samples.parquet`` and ``metrics.json``
(or ``failure.json``: the unit failed, with its reason); a unit already done is reused, so a rerun or ``--resume``
trains nothing twice. ``confirmation.parquet``: one row per (candidate, seed), ``retrained`` true for a fresh seed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alignray.metrics import RECORDED
from alignray.sweep.config import PARAMETERS, SweepConfig
from alignray.sweep.constraints import Constraint, sweep_constraints, violations
from alignray.sweep.frontier import CONFIRM
from alignray.sweep.objectives import Objective, objective_points, signed
from alignray.sweep.plan import Plan, say, write_atomic

__all__ = ["CONFIRMED", "Candidate", "Unit", "confirmation_units", "confirmed_columns", "confirmed_view",
           "confirm_stage", "run_units", "split_prompts"]  # fmt: skip

CONFIRMED = "confirmed/"
"""Prefix of the confirmation's columns in ``results.parquet``: ``confirmed/<metric>`` (mean over fresh seeds),
``confirmed/seeds`` (fresh seeds evaluated), ``confirmed/failed_seeds``, ``confirmed/feasible``,
``confirmed/violations``, ``confirmed/pareto`` and ``confirmed/search_run/<metric>`` (the search's own run on the
confirmation prompts, shown beside, never averaged in)."""
SEARCH_RUN = CONFIRMED + "search_run/"
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
    fresh: bool = False
    """A fresh seed, not the search's: only these count in the confirmed figures."""

    @property
    def retrained(self) -> bool:
        """Whether the unit trains its runs (a fresh seed, or the search's seed when a checkpoint is missing)."""
        return bool(self.candidates) and self.checkpoints is None

    @property
    def names(self) -> list[str]:
        """The candidates' ids ("base" for the base policy), as ``confirmation.parquet`` names them."""
        return [c.id for c in self.candidates] or [BASE_UNIT]

    def directory(self, root: Path, name: str) -> Path:
        return root / BASE_UNIT if name == BASE_UNIT else root / name / f"seed-{self.seed}"


def split_prompts(
    config: SweepConfig, draw: Callable[[int], list[str]], preference: Sequence[str] = ()
) -> tuple[list[str], list[str], dict[str, int]]:
    """The search's evaluation prompts, the confirmation prompts and how many drawn prompts the confirmation dropped,
    from one seeded draw of evaluation prompts (``draw(n)``: the first ``n``; a longer draw begins with a shorter
    one). The first ``eval_prompts`` are the search's, the same prompts a sweep without confirmation draws. The
    confirmation takes the next ``confirmation_prompts`` whose text is no search prompt, no ``preference`` prompt (the
    preference data's) and no earlier confirmation prompt: openings of 2-8 tokens of different reviews coincide ("I
    am", "This is"). It draws further while the evaluation pool lasts. Dropped: ``{"search": n, "preference": m,
    "repeated": k}``."""
    wanted = config.eval_prompts + config.confirmation_prompts
    preference = set(preference)
    while True:
        drawn = draw(wanted)
        search, held_out = drawn[: config.eval_prompts], []
        seen, dropped = set(search), {"search": 0, "preference": 0, "repeated": 0}
        for prompt in drawn[config.eval_prompts :]:
            if len(held_out) == config.confirmation_prompts:
                break
            why = ("search" if prompt in search else "preference" if prompt in preference else
                   "repeated" if prompt in seen else None)  # fmt: skip
            if why:
                dropped[why] += 1
                continue
            held_out.append(prompt)
            seen.add(prompt)
        if len(held_out) == config.confirmation_prompts or len(drawn) < wanted:
            return search, held_out, dropped
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
        units += [search] + [Unit(config.seed + i, tuple(members), params, fresh=True)
                             for i in range(1, config.replicates + 1)]  # fmt: skip
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
        fresh = sum(u.fresh for u in waiting)
        say(f"5/6 confirmation: {sum(len(u.names) for u in waiting)} models in {len(waiting)} tasks on "
            f"{len(prompts)} held-out prompts ({fresh} tasks train fresh seeds), {concurrent} at once")
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
            record = {"metrics": {k: float(v) for k, v in metrics.items()}, "retrained": unit.fresh,
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
    row = {"trial": name, "seed": unit.seed, "retrained": unit.fresh}
    if (directory / "metrics.json").is_file():
        record = json.loads((directory / "metrics.json").read_text())
        return {**row, "status": "ok", "reason": None, **record["metrics"],
                **{k: v for k, v in record.items() if k.startswith("time/")}}  # fmt: skip
    if (directory / "failure.json").is_file():
        failed = json.loads((directory / "failure.json").read_text())["reason"]
    return {**row, "status": "error", "reason": (failed or "not run")[:500]}


def confirm_stage(
    plan: Plan, data: Path, grids: list, table: pd.DataFrame, summary: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, float], dict[str, Any]]:
    """Stage 5: the candidates ``to_confirm`` marks, each at ``replicates`` fresh seeds and at the search's own run,
    and the base policy, on the confirmation prompts; returns ``table`` with the confirmed columns, the base policy's
    confirmation metrics and the summary with ``confirmation``. ``results.parquet`` and ``pareto.csv`` (now the
    confirmed frontier) are written again. Nothing to confirm (no confirmation prompts, nothing feasible, the base
    policy's evaluation failed): the search's results stand, and the summary says why."""
    from alignray.sweep.frontier import checkpoints_by_trial, hypervolume_reference
    from alignray.sweep.pareto import hypervolume

    config, objectives = plan.config, plan.config.objective_pair
    chosen = table[table[CONFIRM]]
    if not plan.confirmation or chosen.empty:
        why = "confirmation_prompts=0" if not plan.confirmation else "no feasible candidate to confirm"
        say(f"5/6 confirmation: none ({why}); the search's figures stand")
        return table, {}, {**summary, "confirmation": {"skipped": why}}
    started = time.monotonic()
    units = confirmation_units(config, chosen, table, checkpoints_by_trial(grids))
    train_storage = f"{plan.tune_storage.rstrip('/')}/{plan.study}/train"
    seeds = run_units(units, config, pd.read_parquet(data), plan.confirmation, plan.out / "confirm", plan.resources,
                      plan.concurrent, train_storage, say, write_atomic)  # fmt: skip
    write_atomic(plan.out / "confirmation.parquet", lambda p: seeds.to_parquet(p, index=False))
    base_row = seeds[(seeds["trial"] == BASE_UNIT) & (seeds["status"] == "ok")]
    if base_row.empty:
        why = f"the base policy's confirmation failed: {seeds.loc[seeds['trial'] == BASE_UNIT, 'reason'].iloc[0]}"
        say(f"5/6 confirmation: none ({why}); the search's figures stand")
        return table, {}, {**summary, "confirmation": {"skipped": why}}
    base = {m: float(base_row.iloc[0][m]) for m in RECORDED if m in base_row}
    constraints = sweep_constraints(config, base)
    table = confirmed_columns(table, seeds, constraints, objectives)
    feasible = table[table[CONFIRMED + "feasible"]]
    reference = hypervolume_reference(config, base)
    volume = hypervolume(objective_points(feasible, objectives, CONFIRMED), signed(reference, objectives))
    write_atomic(plan.out / "results.parquet", lambda p: table.to_parquet(p, index=False))
    final = confirmed_view(table)  # the confirmed figures under the metric names, the search's as search/<metric>
    final = final[final["pareto"]].drop(columns="pareto")
    write_atomic(plan.out / "pareto.csv", lambda p: final.to_csv(p, index=False))
    seconds = round(time.monotonic() - started, 1)
    fresh = seeds[seeds["retrained"].astype(bool)]
    say(f"5/6 confirmation: {len(feasible)} of {len(chosen)} candidates confirmed feasible on "
        f"{len(plan.confirmation)} held-out prompts, {config.replicates} fresh seeds each, in {seconds} s")
    confirmation = {
        "prompts": len(plan.confirmation),
        "dropped_prompts": plan.dropped,
        "replicates": config.replicates,
        "configurations": len(chosen),
        "failed_seeds": int((fresh["status"] != "ok").sum()),
        "constraints": {c.metric: c.bound for c in constraints},
        "feasible": len(feasible),
        "frontier": final["trial"].tolist(),
        "hypervolume": volume,
        "reference_point": list(reference),
        "seconds": seconds,
    }
    return table, base, {**summary, "search_frontier": summary["frontier"], "frontier": final["trial"].tolist(),
                         "confirmation": confirmation}  # fmt: skip


def confirmed_columns(
    table: pd.DataFrame, seeds: pd.DataFrame, constraints: list[Constraint], objectives: Sequence[Objective]
) -> pd.DataFrame:
    """``table`` (the search's results) with the confirmation's columns (``CONFIRMED``) for every candidate ``seeds``
    names: each metric's mean over its evaluated fresh seeds (``retrained``), their number, the failed fresh seeds,
    the search's own run on the confirmation prompts (``SEARCH_RUN``, beside, not averaged in), feasibility (every
    evaluated fresh seed within every constraint, at least one evaluated: else ``NO_SEED``) with what each seed broke,
    and the confirmed frontier (Pareto over ``objectives`` among the confirmed feasible); NaN / False elsewhere."""
    from alignray.sweep.pareto import pareto_mask

    table = table.copy()
    named = seeds[seeds["trial"] != BASE_UNIT]
    fresh = named[named["retrained"].astype(bool)]
    ok = fresh[fresh["status"] == "ok"]
    metrics = [m for m in RECORDED if m in ok.columns]
    means = ok.groupby("trial")[metrics].mean()
    for metric in metrics:
        table[CONFIRMED + metric] = table["trial"].map(means[metric]).astype(float)
    search_run = named[~named["retrained"].astype(bool) & (named["status"] == "ok")].set_index("trial")
    for metric in dict.fromkeys([*(o.metric for o in objectives), "kl/ref"]):
        values = search_run[metric] if metric in search_run.columns else pd.Series(dtype=float)
        table[SEARCH_RUN + metric] = table["trial"].map(values).astype(float)
    table[CONFIRMED + "seeds"] = table["trial"].map(ok.groupby("trial").size()).fillna(0).astype(int)
    failed = fresh[fresh["status"] != "ok"].groupby("trial").size()
    table[CONFIRMED + "failed_seeds"] = table["trial"].map(failed).fillna(0).astype(int)
    broken: dict[str, list[str]] = {}
    for _, row in ok.iterrows():
        found = violations(row.to_dict(), constraints)
        if found:
            broken.setdefault(row["trial"], []).append(f"seed {row['seed']}: {found}")
    candidates = set(named["trial"])
    confirmed = table[CONFIRMED + "seeds"] > 0
    table[CONFIRMED + "violations"] = [
        ("; ".join(broken[t]) if t in broken else None) if c else (NO_SEED if t in candidates else None)
        for c, t in zip(confirmed, table["trial"], strict=True)
    ]
    table[CONFIRMED + "feasible"] = confirmed & table[CONFIRMED + "violations"].isna()
    mask = np.zeros(len(table), dtype=bool)
    feasible = table[CONFIRMED + "feasible"].to_numpy(dtype=bool)
    if feasible.any():
        mask[feasible] = pareto_mask(objective_points(table.loc[feasible], objectives, CONFIRMED))
    table[CONFIRMED + "pareto"] = mask
    return table


def confirmed_view(table: pd.DataFrame) -> pd.DataFrame:
    """The candidates ``table`` sent to confirmation (``CONFIRM``; a sweep recorded before it: its search frontier)
    as results rows: each metric column holds its confirmed value (the mean over fresh seeds on the confirmation
    prompts; NaN when every seed failed), ``feasible``, ``violations`` and ``pareto`` the confirmation's, ``seeds``
    how many fresh seeds were evaluated, ``search/<metric>`` the search's figure it replaced and
    ``search_run/<metric>`` the search's run on the confirmation prompts. Empty when the table has no confirmation."""
    if CONFIRMED + "seeds" not in table.columns:
        return table.iloc[:0]
    sent = table[CONFIRM] if CONFIRM in table.columns else table["pareto"]
    rows = table[sent.astype(bool)].copy()
    for column in [c for c in table.columns if c.startswith(CONFIRMED)]:
        name = column[len(CONFIRMED) :]
        if name in RECORDED and name in rows.columns:
            rows[f"search/{name}"] = rows[name]
        rows[name] = rows[column]
    return rows.drop(columns=[c for c in rows.columns if c.startswith(CONFIRMED)])
