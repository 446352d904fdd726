"""Confirmation: the candidates the search chose, retrained with fresh seeds and measured on held-out prompts.

What selects never confirms. The search picks its frontier and each divergence's best with the same evaluation
prompts that measure them, from one training run each, so its figures flatter the winners. After the search, every
candidate to confirm (``to_confirm``: the feasible frontier and each divergence's best feasible candidate) is
retrained with ``replicates`` fresh seeds (``seed + 1``, ...) and evaluated on the **confirmation prompts**, which
share no text with the search's prompts or the preference data's. A point along training is taken at the same step
of each fresh run, and a derived candidate (``alignray.sweep.derive``) is rebuilt from each seed's parents. Each
trial's run is trained once per seed, in a Ray task of its own that evaluates every candidate taken from it and
stores the models derived candidates need; each derived candidate and seed is then a task of its own, built from
the stored models (``confirmation_units``). So one failed run loses only what was made from it. The search's own run
is evaluated on the same prompts and shown beside them, never averaged in: it is the run that won.

A candidate's confirmed metrics are the means over its fresh seeds (``confirmed/<metric>`` in ``results.parquet``).
It is confirmed feasible only when every fresh seed was evaluated within every constraint (the fluency bounds now
against the base policy on the confirmation prompts): a mean can hide a seed that broke the KL budget. A fresh seed
that failed is counted (``confirmed/failed_seeds``) and flagged by the report. The confirmed frontier is the Pareto
set of the confirmed feasible candidates.

Directory: ``confirm/base/`` and ``confirm/<trial>/seed-<s>/``, each with ``samples.parquet`` and ``metrics.json``
(or ``failure.json``: the unit failed, with its reason); a unit already done is reused, so a rerun or ``--resume``
trains nothing twice. The stored models lie in Tune's storage (``<study>/confirm-models/<run>/seed-<s>/``, where
every node reaches them) until every derived candidate is done. ``confirmation.parquet``: one row per (candidate,
seed), ``retrained`` true for a fresh seed.
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
    """One Ray task of the confirmation, at one seed. Either the base policy (no ``run``, no ``candidates``); or one
    trial's ``run``, trained anew at ``seed`` (``params``, its parameters) or the search's own (``checkpoint``), its
    trained ``candidates`` evaluated and the models of it that derived candidates are made from (``keeps``, paths in
    the run) stored for them; or one derived candidate (no ``run``, ``candidates`` its only member), built from its
    parents' models at this seed, which the run units made (the search's seed with every checkpoint kept: the
    checkpoints themselves)."""

    seed: int
    candidates: tuple[Candidate, ...] = ()
    run: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: Any | None = None
    fresh: bool = False
    """A fresh seed, not the search's: only these count in the confirmed figures."""
    keeps: tuple[str, ...] = ()

    @property
    def derived(self) -> bool:
        """Whether the unit builds a derived candidate from other units' models."""
        return self.run is None and bool(self.candidates)

    @property
    def retrained(self) -> bool:
        """Whether the unit trains its run (a fresh seed, or the search's seed when its checkpoint is missing)."""
        return self.run is not None and self.checkpoint is None

    @property
    def parents(self) -> list[str]:
        """The trials' runs a derived unit's candidate is made from."""
        return list(dict.fromkeys(run for run, _ in self.candidates[0].models)) if self.derived else []

    @property
    def names(self) -> list[str]:
        """The candidates' ids ("base" for the base policy), as ``confirmation.parquet`` names them; a run unit
        that only makes derived candidates' parents has none."""
        if self.run is None and not self.candidates:
            return [BASE_UNIT]
        return [c.id for c in self.candidates]

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
    """The base policy; then, for each trial's run that a candidate of ``front`` comes from (a trial's final model, its
    points, the parents of the derived ones), one unit at the search's seed from its checkpoint (retrained when it
    is missing) and one per new seed (``replicates``), each evaluating the run's trained candidates and keeping the
    models derived candidates need; then one unit per derived candidate and seed. A run is trained once per seed
    however many candidates share it, and a failed run loses its own candidates and the derived ones made from it,
    nothing else. ``table``: the results, where derived candidates' parents are found."""
    from alignray.sweep.derive import DERIVED, model_path

    trained = table[table["kind"] != DERIVED].set_index("trial", drop=False)
    runs: dict[str, list[Candidate]] = {}  # each run and its trained candidates, in the frontier's order
    keeps: dict[str, set[str]] = {}
    derived = []
    for _, row in front.iterrows():
        if row["kind"] == DERIVED:
            parents = [trained.loc[p] for p in row["parents"]]
            models = tuple((p["tune_trial"], model_path(p)) for p in parents)
            derived.append(Candidate(row["trial"], models, tuple(float(w) for w in row["weights"])))
            for run, path in models:
                runs.setdefault(run, [])
                keeps.setdefault(run, set()).add(path)
        else:
            runs.setdefault(row["tune_trial"], []).append(Candidate(row["trial"], ((row["tune_trial"],
                                                                                    model_path(row)),)))  # fmt: skip
    seeds = [(config.seed, False)] + [(config.seed + i, True) for i in range(1, config.replicates + 1)]
    units = [Unit(config.seed)]
    for run, members in runs.items():
        params, kept = _params(trained.loc[run]), checkpoints.get(run)
        units += [Unit(seed, tuple(members), run, params, None if fresh else kept, fresh, tuple(sorted(keeps.get(run,
                  ())))) for seed, fresh in seeds]  # fmt: skip
    units += [Unit(seed, (candidate,), fresh=fresh) for candidate in derived for seed, fresh in seeds]
    return units


def _params(row: pd.Series) -> dict[str, Any]:
    """A trial's parameters, from its results row."""
    return {k: row[k] for k in PARAMETERS if k in row and not _missing(row[k])}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _stored(store: str, run: str, seed: int) -> str:
    """Where a run unit stores, under ``store`` (a local path or a cloud URI every node reaches), the models of its
    run that derived candidates are built from."""
    return f"{store.rstrip('/')}/{run}/seed-{seed}"


STORED = "stored.json"
"""The file a run unit writes beside its stored models once all of them are copied: their paths in the run."""


def _evaluate_unit(unit: Unit, config: SweepConfig, pairs: pd.DataFrame, prompts: list[str], train_storage: str,
                   store: str, sources: dict[str, Any], fingerprint: str | None):  # fmt: skip
    """Runs as a Ray task in a trial's resources, on the confirmation prompts: the base policy; a run unit's run
    (trained here on ``pairs`` at the unit's seed when ``retrained``, else its checkpoint) with its candidates
    evaluated and its ``keeps`` stored under ``store``; or a derived unit's candidate, combined from its parents'
    models (``sources``: run to the checkpoint, or stored run, that holds them) against the base's ``fingerprint``.
    ([(name, metrics, samples)], train seconds)."""
    import torch
    from pyarrow import fs

    from alignray.sweep.derive import combine, fetch_model
    from alignray.sweep.trial import _filesystem, drop_train_run, evaluate_model, train_config
    from alignray.train import train
    from alignray.world import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(max(1, int(config.cpus_per_trial)))
    if unit.names == [BASE_UNIT]:
        return [(BASE_UNIT, *evaluate_model(config.policy, config, prompts, unit.seed))], 0.0
    scratch = Path(tempfile.mkdtemp(prefix="alignray-confirm-"))
    try:
        if unit.derived:
            [candidate] = unit.candidates
            parents = [(fetch_model(sources[run], path, scratch / f"parent-{i}"), w)
                       for i, ((run, path), w) in enumerate(zip(candidate.models, candidate.weights, strict=True))]
            model = combine(config.policy, parents, scratch / "derived", fingerprint)  # fmt: skip
            return [(candidate.id, *evaluate_model(str(model), config, prompts, unit.seed))], 0.0
        trained, out = 0.0, scratch / "run"
        if unit.retrained:
            data = scratch / "preferences.parquet"
            pairs.to_parquet(data, index=False)
            name = f"confirm-{unit.run}-seed-{unit.seed}"
            train_run = dataclasses.replace(train_config(unit.params, config, str(data), str(out)), seed=unit.seed,
                                            save_points=config.eval_points)  # fmt: skip
            try:
                trained = train(train_run, run_name=name, storage_path=train_storage, quiet=True)["seconds"]
            finally:
                if config.workers_per_trial > 1:
                    drop_train_run(train_storage, name)

        def model(path: str) -> Path:
            """The model at ``path`` of the run, as a Tune checkpoint lays it out (``model`` or
            ``points/step-<n>/model``); a training run of its own holds it at ``model/`` or ``points/step-<n>/``."""
            if unit.retrained:
                return out / path.removesuffix("/model")
            target = out / path
            return target if target.is_dir() else fetch_model(unit.checkpoint, path, target)

        if unit.retrained and unit.keeps:  # first: an error evaluating this run's own candidates spares those
            filesystem, root = _filesystem(_stored(store, unit.run, unit.seed))
            if filesystem.get_file_info(f"{root}/{STORED}").type != fs.FileType.NotFound:
                filesystem.delete_file(f"{root}/{STORED}")  # an earlier store is not vouched for while overwritten
            for path in unit.keeps:
                filesystem.create_dir(f"{root}/{path}")
                fs.copy_files(str(model(path)), f"{root}/{path}", source_filesystem=fs.LocalFileSystem(),
                              destination_filesystem=filesystem)  # fmt: skip
            with filesystem.open_output_stream(f"{root}/.{STORED}.tmp") as marker:  # last, whole or not at all
                marker.write(json.dumps(list(unit.keeps)).encode())
            filesystem.move(f"{root}/.{STORED}.tmp", f"{root}/{STORED}")
        evaluated = [(c.id, *evaluate_model(str(model(c.models[0][1])), config, prompts, unit.seed))
                     for c in unit.candidates]  # fmt: skip
        return evaluated, trained
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_units(
    units: list[Unit], config: SweepConfig, pairs: pd.DataFrame, prompts: list[str], root: Path,
    resources: dict[str, float], concurrent: int, train_storage: str, say, write_atomic, store: str = "",
    fingerprint: str | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Evaluate every unit not done yet under ``root`` as Ray tasks in ``resources`` each, ``concurrent`` at a time
    (the search's count: a multi-worker unit's Ray Train workers need room beside the tasks), saving each candidate
    as it finishes; one row per candidate and seed: trial (the candidate's id), seed, retrained, status, reason,
    metrics and training seconds. A derived unit starts once the run units of its parents at its seed have stored
    their models under ``store`` (``_stored``; none needed at the search's seed from kept checkpoints), and fails
    with the reason when one of them failed; the stored models are deleted once every derived unit is done.

    A unit that fails the same way whenever it runs (``alignray.sweep.trial.is_deterministic``: NaN, a bad value) is
    recorded in each of its candidates' ``failure.json`` and not run again, as is a candidate whose metrics are not
    finite; any other failure (Ray already retried a lost worker ``max_failures`` times) is reported and left to run
    again on ``--resume``."""
    import ray

    from alignray.sweep.derive import is_done
    from alignray.sweep.trial import delete_storage

    by_run = {(u.run, u.seed): u for u in units if u.run is not None}
    derived = [u for u in units if u.derived]
    if not store and any(u.retrained and u.keeps for u in units):
        raise ValueError("run_units: derived candidates need a store for their parents' models; none was given")

    def awaited(unit: Unit) -> list[str]:
        """The parents of a derived unit that its seed's run units train anew: it starts once they stored their
        models (a parent read from the search's checkpoint is there already)."""
        return [run for run in unit.parents if by_run[run, unit.seed].retrained]

    def needed(unit: Unit) -> bool:
        """Whether a run unit must run for a derived unit still to do at its seed: its stored models are missing."""
        if not unit.retrained or not unit.keeps:
            return False
        waits = [d for d in derived if d.seed == unit.seed and unit.run in awaited(d)
                 and not is_done(d.directory(root, d.names[0]))]  # fmt: skip
        return bool(waits) and not _is_stored(store, unit.run, unit.seed, unit.keeps)

    waiting = []
    for unit in units:
        todo = [c for c in unit.candidates if not is_done(unit.directory(root, c.id))]
        if unit.names == [BASE_UNIT]:
            waiting += [] if is_done(unit.directory(root, BASE_UNIT)) else [unit]
        elif unit.derived:
            waiting += [unit] if todo else []
        else:  # a run unit redone only to store its models evaluates nothing twice, and one redone for its own
            store_again = needed(unit)  # candidates stores nothing no derived model still needs
            if todo or store_again:
                waiting.append(dataclasses.replace(unit, candidates=tuple(todo), keeps=unit.keeps if store_again
                                                   else ()))  # fmt: skip
    failed: dict[tuple[str, int], str] = {}  # (candidate, seed) -> reason
    lost: dict[tuple[str, int], str] = {}  # (run, seed) -> why its unit failed
    if waiting:
        fresh = sum(u.fresh for u in waiting)
        models = sum(len(u.names) for u in waiting)
        say(f"5/6 confirmation: {models} models in {len(waiting)} tasks on {len(prompts)} held-out prompts ({fresh} "
            f"tasks at fresh seeds; one task per trial's run and seed, one per derived model and seed), "
            f"{concurrent} at once")  # fmt: skip
        task = ray.remote(num_cpus=resources["cpu"], num_gpus=resources["gpu"], max_retries=config.max_failures)(
            _evaluate_unit
        )
        shared = ray.put(pairs)  # once, for every task
    pending: dict[Any, Unit] = {}
    while waiting or pending:
        for unit in [u for u in waiting if u.derived]:
            gone = [lost[r, unit.seed] for r in awaited(unit) if (r, unit.seed) in lost]
            if gone:  # a parent's run failed at this seed: so does the model made from it
                waiting.remove(unit)
                deterministic = all(not why.endswith("--resume") for why in gone)
                _failed(unit, unit.names[0], f"its parent run failed at this seed: {gone[0]}", deterministic, root,
                        failed, say, write_atomic)  # fmt: skip
        active = {(u.run, u.seed) for u in [*waiting, *pending.values()] if u.run is not None}
        ready = [u for u in waiting if not any((r, u.seed) in active for r in awaited(u))]
        for unit in ready[: max(0, concurrent - len(pending))]:
            waiting.remove(unit)
            sources = {}
            for run in unit.parents:
                parent = by_run[run, unit.seed]
                sources[run] = parent.checkpoint if not parent.retrained else _stored_checkpoint(store, run, unit.seed)
            pending[task.remote(unit, config, shared, prompts, train_storage, store, sources, fingerprint)] = unit
        if not pending:
            break
        [done], _ = ray.wait(list(pending), num_returns=1)
        unit = pending.pop(done)
        try:
            evaluated, trained = ray.get(done)
        except Exception as err:  # its candidates are confirmed with fewer seeds
            from alignray.sweep.trial import failure_reason, is_deterministic

            reason, deterministic = failure_reason(err), is_deterministic(err)
            if unit.run is not None:
                lost[unit.run, unit.seed] = reason + ("" if deterministic else "; --resume")
            for name in unit.names:
                _failed(unit, name, reason, deterministic, root, failed, say, write_atomic)
            if not unit.names:
                say(f"5/6 confirmation: run {unit.run} seed {unit.seed} failed ({reason[:300]})")
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
    if store and all(is_done(d.directory(root, d.names[0])) for d in derived):
        try:  # every derived model they were kept for is done
            delete_storage(store)
        except OSError as err:  # the figures are all in; only disk space is at stake
            say(f"5/6 confirmation: could not delete the stored models under {store} ({err})")
    return pd.DataFrame([_row(u, n, u.directory(root, n), failed.get((n, u.seed))) for u in units for n in u.names])


def _stored_checkpoint(store: str, run: str, seed: int):
    """The models a run unit stored, as a Tune checkpoint, which ``fetch_model`` reads on any node."""
    from ray.tune import Checkpoint

    return Checkpoint(_stored(store, run, seed))


def _is_stored(store: str, run: str, seed: int, keeps: Sequence[str]) -> bool:
    """Whether the run unit of ``run`` at ``seed`` stored every model of ``keeps`` (an earlier run of the sweep,
    resumed; a frontier that moved since may need other ones)."""
    from pyarrow import fs

    from alignray.sweep.trial import _filesystem

    filesystem, root = _filesystem(_stored(store, run, seed))
    if filesystem.get_file_info(f"{root}/{STORED}").type != fs.FileType.File:
        return False
    with filesystem.open_input_stream(f"{root}/{STORED}") as marker:
        try:
            return set(keeps) <= set(json.loads(marker.read()))
        except ValueError:  # not one this code wrote whole: store again
            return False


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
    store = f"{plan.tune_storage.rstrip('/')}/{plan.study}/confirm-models"
    seeds = run_units(units, config, pd.read_parquet(data), plan.confirmation, plan.out / "confirm", plan.resources,
                      plan.concurrent, train_storage, say, write_atomic, store, plan.base_fingerprint)  # fmt: skip
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
