"""The search's frontier: every candidate's row in ``results.parquet``, its feasibility, the Pareto frontier of the
feasible ones, the hypervolume, and the models the frontier keeps.

``frontier_stage`` is the sweep's stage 4. It collects a row per trained candidate from Tune's result grids (each
trial's final model and the points along its training), adds the derived candidates of their feasible frontier
(``alignray.sweep.derive``), marks what each broke (``feasibility``) and the frontier (``frontier``), keeps the
frontier's models and deletes the rest (``keep_models``), and writes ``results.parquet`` and ``pareto.csv``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alignray.sweep.config import PARAMETERS, SweepConfig
from alignray.sweep.constraints import Constraint, sweep_constraints, violations
from alignray.sweep.derive import DERIVED
from alignray.sweep.objectives import Objective, objective_points, signed
from alignray.sweep.pareto import hypervolume, pareto_mask
from alignray.sweep.plan import Plan, say, write_atomic
from alignray.sweep.searcher import TUNE_TRIAL_ATTR, study_storage_url

CONFIRM = "confirm"
"""The results column that marks the candidates the confirmation measures (``to_confirm``)."""
ANSWER = "answer"
"""The results column that marks each divergence's answer, chosen at the search's figures (``divergence_best``)."""

__all__ = ["ANSWER", "CONFIRM", "HV_DIVERSITY_SLACK", "checkpoints_by_trial", "collect_results", "divergence_best",
           "feasibility", "frontier", "frontier_stage", "hypervolume_reference", "keep_models", "reference_rule",
           "study_numbers", "to_confirm"]  # fmt: skip


def _trial_id(result) -> tuple[str, int]:
    """A trial's id and its creation index, from its directory name (``run_trial_<id>_<index>_<params>``)."""
    match = re.match(r"\w+?_([0-9a-f]{5,})_(\d+)_", Path(result.path).name)
    if match:
        return match.group(1), int(match.group(2))
    return str(result.metrics.get("trial_id") or Path(result.path).name), 0


def checkpoints_by_trial(grids: list) -> dict[str, Any]:
    """Each trial's Tune checkpoint (None when it has none), by trial id."""
    return {_trial_id(result)[0]: result.checkpoint for grid in grids for result in grid}


def _reason(result) -> str:
    text = str(result.error).strip().splitlines()
    lines = [line for line in text if re.match(r"^\w*(Error|Exception|TrialFailed)\b", line)]
    return (lines[-1] if lines else text[-1])[:500] if text else "unknown error"


def _config(result) -> dict[str, Any]:
    """A trial's parameters; a restored experiment's errored trials have them only in ``params.json``."""
    if result.config:
        return result.config
    with result.filesystem.open_input_stream(f"{result.path}/params.json") as file:
        return json.loads(file.read())


def collect_results(grids: list, config: SweepConfig, numbers: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per trained candidate of the sweep's experiments (``grids``, in order), in the order trials were
    created: each trial's final model (``kind`` "trial", ``trial`` its Tune id), then the points along its training
    (``kind`` "point", ``trial`` ``<id>@<step>``; ``alignray.sweep.trial``), each with ``tune_trial`` and ``step``:
    parameters, status, reason, metrics, timings, and ``optuna_trial``, the study trial's number (``numbers``: Tune
    trial id to number; the final model's row only, the one Optuna was told)."""
    rows, offset = [], 0
    for grid in grids:
        for result in grid:
            params = {k: _config(result).get(k) for k in PARAMETERS}
            ok = result.error is None and config.objective_pair[0].metric in result.metrics
            metrics = {k: v for k, v in result.metrics.items() if "/" in k} if ok else {}
            trial, index = _trial_id(result)
            final = {
                "trial": trial,
                "kind": "trial",
                "tune_trial": trial,
                "step": metrics.get("train/step", np.nan),
                "index": offset + index,
                "optuna_trial": (numbers or {}).get(trial),
                "status": "ok" if ok else "error",
                "reason": None if ok else _reason(result),
                **params,
                **metrics,
                "checkpoint": result.checkpoint.path if ok and result.checkpoint else None,
            }
            rows.append(final)
            for point in _points(result) if ok else []:
                finite = all(math.isfinite(point["metrics"].get(o.metric, np.nan)) for o in config.objective_pair)
                why = point.get("reason") or "non-finite objectives"  # an errored point says why
                rows.append({
                    **{k: v for k, v in final.items() if k not in metrics and k != "optuna_trial"},
                    "trial": f"{trial}@{point['step']}", "kind": "point", "step": point["step"],
                    "status": "ok" if finite else "error", "reason": None if finite else why,
                    **point["metrics"],
                })  # fmt: skip
        offset += len(grid)
    table = pd.DataFrame(rows).sort_values(["index", "step"], kind="stable").reset_index(drop=True)
    table["optuna_trial"] = table["optuna_trial"].astype("Int64")
    for column in (*(o.metric for o in config.objective_pair), "kl/ref", "fluency/ref_perplexity"):
        if column not in table:  # every trial errored: the columns the frontier and the report read stay, empty
            table[column] = np.nan
    return table


def _points(result) -> list[dict[str, Any]]:
    """The points along a finished trial's training (its checkpoint's ``points.json``; none before trajectories)."""
    if result.checkpoint is None:
        return []
    fs, path = result.checkpoint.filesystem, f"{result.checkpoint.path}/points.json"
    from pyarrow.fs import FileType

    if fs.get_file_info(path).type == FileType.NotFound:
        return []
    with fs.open_input_stream(path) as source:
        return json.loads(source.read())


def divergence_best(table: pd.DataFrame, objective: Objective) -> pd.Series:
    """Each divergence's feasible trained candidate best in ``objective`` at the search's figures: the candidate the
    confirmation confirms as its answer, chosen before the confirmation measures it (a derived candidate belongs to
    no divergence)."""
    chosen = pd.Series(False, index=table.index)
    feasible = table[table["feasible"].astype(bool) & (table["kind"] != DERIVED)]
    for _, rows in feasible.groupby("divergence", sort=False):
        chosen[objective.best_first(rows).index[0]] = True
    return chosen


def to_confirm(table: pd.DataFrame) -> pd.Series:
    """Which candidates the confirmation measures: those on the feasible search frontier (``pareto``) and each
    divergence's answer (``ANSWER``, marked by ``divergence_best``)."""
    return table["pareto"].astype(bool) | table[ANSWER].astype(bool)


def feasibility(table: pd.DataFrame, constraints: list[Constraint]) -> pd.DataFrame:
    """``table`` with each constraint's value (``constraint/<metric>``: the metric minus its bound), ``feasible``
    (finished and within every constraint) and ``violations`` (what it broke, as text)."""
    table = table.copy()
    rows = table.to_dict("records")
    for constraint in constraints:
        table[constraint.column] = [constraint.value(row) if row["status"] == "ok" else np.nan for row in rows]
    table["violations"] = [violations(row, constraints) if row["status"] == "ok" else None for row in rows]
    table["feasible"] = (table["status"] == "ok") & table["violations"].isna()
    return table


def frontier(table: pd.DataFrame, config: SweepConfig) -> pd.Series:
    """Which rows are on the frontier of the two objectives, each in its direction: finished trials within the
    constraints (``feasible``, when the table has it) only."""
    mask = np.zeros(len(table), dtype=bool)
    ok = (table["status"] == "ok").to_numpy()
    if "feasible" in table:
        ok = ok & table["feasible"].to_numpy(dtype=bool)
    if ok.any():
        objectives = config.objective_pair
        mask[ok] = pareto_mask(objective_points(table.loc[ok], objectives))
    return pd.Series(mask, index=table.index)


def study_numbers(config: SweepConfig, study: str) -> dict[str, int]:
    """Tune trial id to the study trial's number, from the ids ``StudySearch`` recorded."""
    import optuna

    loaded = optuna.load_study(study_name=study, storage=study_storage_url(config))
    return {t.user_attrs[TUNE_TRIAL_ATTR]: t.number for t in loaded.trials if TUNE_TRIAL_ATTR in t.user_attrs}


def keep_models(plan: Plan, grids: list, table: pd.DataFrame) -> None:
    """Copy every finished candidate's samples to ``samples/<id>.parquet`` and each frontier model with its samples
    to ``frontier/<id>/`` (a derived one: kept there from an earlier call, else moved from ``derived/<id>/model``,
    where its derive task's model lies, else rebuilt in a Ray task); drop what an earlier frontier left there; delete
    the other models unless ``keep_all_models``: derived ones off the frontier (any status), and the trials' ones
    except the models derived candidates are made from (``trained_pareto``: a resumed sweep derives from them again),
    the candidates to confirm (``CONFIRM``: the confirmation evaluates the search's own run of each) and the parents
    of derived frontier models, which confirmation rebuilds them from."""
    from pyarrow.fs import FileType

    from alignray.sweep.derive import MODEL, fetch_model, model_path, write_model

    out = plan.out
    target = out / "frontier"
    target.mkdir(exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    derived_front = set(table.loc[table["pareto"] & (table["kind"] == DERIVED), "trial"])
    for stale in target.iterdir():  # a trained member is copied again below; a derived one's model is kept
        if stale.name not in derived_front or not (stale / MODEL / "config.json").is_file():
            if plan.config.keep_all_models and (out / DERIVED / stale.name).is_dir() and (stale / MODEL).is_dir():
                shutil.rmtree(out / DERIVED / stale.name / MODEL, ignore_errors=True)
                shutil.move(stale / MODEL, out / DERIVED / stale.name / MODEL)  # a derived model off the frontier
            shutil.rmtree(stale)
    checkpoints = checkpoints_by_trial(grids)
    trained = table[table["kind"] != DERIVED].set_index("trial", drop=False)
    kept = trained["trained_pareto"] | (trained[CONFIRM] if CONFIRM in trained else False)
    needed = {(p["tune_trial"], model_path(p)) for _, p in trained[kept].iterrows()}
    for _, row in table[table["pareto"] & (table["kind"] == DERIVED)].iterrows():  # parents of the frontier's
        needed |= {(p["tune_trial"], model_path(p)) for _, p in trained.loc[list(row["parents"])].iterrows()}
    rebuilt = _rebuild_derived(plan, table[table["trial"].isin(derived_front)], trained, checkpoints)
    for _, row in table.iterrows():
        samples = out / "samples" / f"{row['trial']}.parquet"
        if row["kind"] == DERIVED and row["status"] == "ok":
            shutil.copyfile(out / DERIVED / row["trial"] / "samples.parquet", samples)
            if row["pareto"]:
                saved = target / row["trial"] / MODEL
                saved.parent.mkdir(exist_ok=True)
                if rebuilt.get(row["trial"]) is not None:
                    write_model(saved, rebuilt[row["trial"]])
                elif not (saved / "config.json").is_file() and row["trial"] not in rebuilt:
                    shutil.move(out / DERIVED / row["trial"] / MODEL, saved)
                shutil.copyfile(samples, target / row["trial"] / "samples.parquet")
        checkpoint = checkpoints.get(row["tune_trial"])
        if row["kind"] == DERIVED or checkpoint is None:
            continue
        fs, model = checkpoint.filesystem, model_path(row)
        beside = model.removesuffix("model")  # the model's samples lie beside it: "" or "points/step-<n>/"
        if row["status"] == "ok":
            with fs.open_input_stream(f"{checkpoint.path}/{beside}samples.parquet") as source:
                samples.write_bytes(source.read())
        if row["pareto"]:
            fetch_model(checkpoint, model, target / row["trial"] / "model")
            shutil.copyfile(samples, target / row["trial"] / "samples.parquet")
        elif (not plan.config.keep_all_models and (row["tune_trial"], model) not in needed
              and fs.get_file_info(f"{checkpoint.path}/{model}").type != FileType.NotFound):  # fmt: skip
            fs.delete_dir(f"{checkpoint.path}/{model}")  # gone already on a rerun
    if not plan.config.keep_all_models:  # the derive tasks' models off the frontier, errored ones and earlier ones too
        for built in [*(out / DERIVED).glob(f"*/{MODEL}"), *(out / DERIVED).glob(f"*/.{MODEL}.tmp")]:
            shutil.rmtree(built)


def _rebuild_derived(plan: Plan, front: pd.DataFrame, trained: pd.DataFrame, checkpoints: dict[str, Any]) -> dict:
    """The models of the derived frontier candidates ``front`` that are neither saved under ``frontier/`` nor left by
    their derive task (deleted while they were off the frontier, or built by an older version), rebuilt from their
    parents in Ray tasks with a trial's resources; candidate id to its files by name (None: the rebuild failed)."""
    from alignray.sweep.derive import MODEL, model_files, model_path, recipe_of

    def kept(trial: str) -> bool:
        return any((root / trial / MODEL / "config.json").is_file() for root in (plan.out / "frontier", plan.out /
                                                                                  DERIVED))  # fmt: skip

    missing = front[[not kept(t) for t in front["trial"]]]
    if missing.empty:
        return {}
    import ray

    say(f"4/6 frontier: rebuilding {len(missing)} derived frontier models from their parents")
    task = ray.remote(num_cpus=plan.resources["cpu"], num_gpus=plan.resources["gpu"])(model_files)
    pending = {}
    for _, row in missing.iterrows():
        sources = {p: (checkpoints[trained.loc[p, "tune_trial"]], model_path(trained.loc[p])) for p in row["parents"]}
        pending[row["trial"]] = task.remote(recipe_of(row), sources, plan.config.policy, plan.base_fingerprint)
    rebuilt = {}
    for trial, ref in pending.items():
        try:
            rebuilt[trial] = ray.get(ref)
        except Exception as err:  # the candidate's figures stand; only its saved model is missing
            from alignray.sweep.trial import failure_reason

            say(f"4/6 frontier: the model of {trial} could not be rebuilt, frontier/{trial}/ holds only its samples "
                f"({failure_reason(err)[:300]})")  # fmt: skip
            rebuilt[trial] = None
    return rebuilt


HV_DIVERSITY_SLACK = 0.05
"""The share of the base policy's value of the second objective a trial may lose and still count in the
hypervolume."""


def _bound(config: SweepConfig, metric: str, base: dict[str, float]) -> float | None:
    """The sweep's upper bound on ``metric`` (``max_kl`` for kl/ref), or None when it has none."""
    return next((c.bound for c in sweep_constraints(config, base) if c.metric == metric), None)


def hypervolume_reference(config: SweepConfig, base: dict[str, float]) -> tuple[float, float]:
    """The hypervolume's reference point, in the objectives' own units: the worst value of each that still counts
    (``_reference_rule`` says it in words). The first objective's: ``hv_reward``, else the base policy's. The
    second's: ``hv_diversity``, else, maximised, the base's less ``HV_DIVERSITY_SLACK`` of it; minimised, the sweep's
    bound on it (``max_kl`` for kl/ref) when it has one, else the base's plus that slack. Both objectives count: a
    trial adds area only while it beats the base's first objective and keeps 95% of its diversity, and the diversity
    span is a few tenths of a nat, like the gains."""
    first, second = config.objective_pair
    reward = config.hv_reward if config.hv_reward is not None else base[first.metric]
    if config.hv_diversity is not None:
        return reward, config.hv_diversity
    bound = _bound(config, second.metric, base) if second.direction == "min" else None
    if bound is not None:
        return reward, bound
    return reward, base[second.metric] - second.sign * HV_DIVERSITY_SLACK * abs(base[second.metric])


def reference_rule(config: SweepConfig) -> str:
    """The hypervolume reference point in words, for the report."""
    first, second = config.objective_pair
    reward = "hv_reward" if config.hv_reward is not None else f"the base policy's {first.metric}"
    if config.hv_diversity is not None:
        diversity = "hv_diversity"
    elif second.direction == "max":
        diversity = (
            f"{1 - HV_DIVERSITY_SLACK:.0%} of its {second.metric} (a trial counts only while it beats the "
            f"base's {first.metric} and keeps that much of its {second.metric}, so both objectives count)"
        )
    elif second.metric == "kl/ref" and config.max_kl is not None:
        diversity = f"the KL budget, {second.metric} {config.max_kl:g} (max_kl; {second.metric} is minimised)"
    elif second.metric == "fluency/nonword_rate" and config.max_nonword_increase is not None:
        diversity = f"the fluency bound on {second.metric} (the base policy's + max_nonword_increase; minimised)"
    else:
        diversity = (
            f"{1 + HV_DIVERSITY_SLACK:.0%} of its {second.metric}, which is minimised (a trial counts only "
            f"while it beats the base's {first.metric} and exceeds its {second.metric} by no more than that)"
        )
    return f"{reward} and {diversity}"


def frontier_stage(
    plan: Plan, grids: list, base: dict[str, float], constraints: list[Constraint]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stage 4: the results table of every candidate (each trial's final model and the points along its training,
    then the derived candidates of their feasible frontier, ``alignray.sweep.derive``) with its feasibility and
    frontier (feasible candidates only), the frontier's models, ``results.parquet``, ``pareto.csv`` and the
    hypervolume of the feasible candidates; the summary, also written to ``sweep.json``."""
    from alignray.sweep.derive import derive, model_path

    config = plan.config
    table = feasibility(collect_results(grids, config, study_numbers(config, plan.study)), constraints)
    table["pareto"] = frontier(table, config)
    table["trained_pareto"] = table["pareto"]  # the frontier of the trained candidates, derived ones come from
    if (config.derive_lambdas or config.soups) and table["pareto"].any():
        checkpoints = checkpoints_by_trial(grids)
        sources = {row["trial"]: (checkpoints[row["tune_trial"]], model_path(row))
                   for _, row in table[table["pareto"]].iterrows()}  # fmt: skip
        derived = derive(table, config, plan.prompts, plan.out / DERIVED, plan.resources, sources, say,
                         write_atomic, plan.base_fingerprint)  # fmt: skip
        if not derived.empty:
            derived["trained_pareto"] = False
            table = feasibility(pd.concat([table, derived], ignore_index=True), constraints)
            table["pareto"] = frontier(table, config)
    reference = hypervolume_reference(config, base)
    feasible = table[table["feasible"]]
    objectives = config.objective_pair
    volume = hypervolume(objective_points(feasible, objectives), signed(reference, objectives))
    finished = int((table["status"] == "ok").sum())
    kinds = {kind: int((table["kind"] == kind).sum()) for kind in ("trial", "point", DERIVED)}
    if finished and feasible.empty:
        bounds = "; ".join(f"{c.metric} <= {c.bound:.4g}" for c in constraints)
        say(f"4/6 frontier: none of the {finished} evaluated candidates met the constraints ({bounds}): there is "
             "no frontier to recommend; results.parquet says what each broke")  # fmt: skip
    else:
        front = table[table["pareto"]]
        names = {"trial": "trials' final models", "point": "points", DERIVED: "derived"}
        shown = ", ".join(f"{(front['kind'] == k).sum()} {names[k]}" for k in kinds if (front["kind"] == k).any())
        say(f"4/6 frontier: {len(feasible)} of {finished} evaluated candidates ({kinds['trial']} trials' final "
             f"models, {kinds['point']} points along them, {kinds[DERIVED]} derived) within the constraints; "
             f"frontier: {shown}; saving models, results.parquet, pareto.csv")  # fmt: skip
    table[ANSWER] = divergence_best(table, config.objective_pair[0])
    table[CONFIRM] = to_confirm(table)
    keep_models(plan, grids, table)
    write_atomic(plan.out / "results.parquet", lambda p: table.to_parquet(p, index=False))
    front = table[table["pareto"]].drop(columns="pareto")
    write_atomic(plan.out / "pareto.csv", lambda p: front.to_csv(p, index=False))
    summary = {
        "study": plan.study,
        "trials": kinds["trial"],
        "candidates": kinds,
        "errors": int((table.loc[table["kind"] == "trial", "status"] != "ok").sum()),
        "frontier": table.loc[table["pareto"], "trial"].tolist(),
        "hypervolume": volume,
        "reference_point": list(reference),
        "reference_rule": reference_rule(config),
        "constraints": {c.metric: c.bound for c in constraints},
        "feasible": len(feasible),
        "concurrent_trials": plan.concurrent,
    }
    return table, summary
