"""The sweep driver: preference data, a shared reference, the Tune + Optuna search, and the Pareto frontier.

``run_sweep(config)`` first makes a ``Plan`` (what every stage shares, decided once, before anything is written),
then runs the README's six stages in order, each a function of the plan, each reusing what an earlier run of the
same experiment left:

1. ``_preference_data``: preference data on Ray Data (``alignray.data.pipeline``), reused when its config matches;
2. ``_reference``: the reference once, its log-probs on the preference data (``ref_chosen_logps`` /
   ``ref_rejected_logps``, so no trial runs a reference forward pass), and the base policy's evaluation, the
   frontier's anchor;
3. ``_search``: Ray Tune with ``StudySearch`` (Optuna, multi-objective, define-by-run, study in RDB storage), each
   trial ``alignray.sweep.trial.run_trial``;
4. ``_frontier``: ``results.parquet``, ``pareto.csv``, the frontier's models under ``frontier/<trial>/`` and the
   hypervolume of the search's figures;
5. ``_confirm``: the feasible frontier retrained with new seeds and measured on held-out prompts
   (``alignray.sweep.confirm``); ``results.parquet`` gains the confirmed figures and ``pareto.csv`` becomes the
   confirmed frontier;
6. ``_report``: ``alignray.report`` (``report.md``, ``report.html``, PNGs).

Experiment directory: ``sweep.json`` (config, study name, summary), ``preferences/``, ``base/`` (metrics.json,
samples.parquet), ``study.db``, ``tune/``, ``results.parquet``, ``pareto.csv``, ``samples/<trial>.parquet`` (every
finished trial's evaluation samples, with ``completion_ids``), ``frontier/<trial>/`` (model and samples of each
configuration on the search's feasible frontier), ``confirmation.parquet`` and ``confirm/``, ``report.md``,
``report.html``, ``pareto.png``, ``reward_kl.png``, ``rewards.png``, ``hypervolume.png``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alignray.metrics import METRICS
from alignray.sweep.checks import SWEEP_FILE, masked_url
from alignray.sweep.config import PARAMETERS, SweepConfig
from alignray.sweep.confirm import (
    CONFIRMED,
    confirmation_units,
    confirmed_columns,
    confirmed_view,
    run_units,
    split_prompts,
)
from alignray.sweep.constraints import Constraint, sweep_constraints, violations
from alignray.sweep.derive import DERIVED
from alignray.sweep.objectives import objective_points, signed
from alignray.sweep.pareto import hypervolume, pareto_mask
from alignray.sweep.searcher import TUNE_TRIAL_ATTR, study_storage_url

__all__ = ["HV_DIVERSITY_SLACK", "Plan", "SweepRefused", "collect_results", "feasibility", "frontier",
           "hypervolume_reference", "run_sweep"]  # fmt: skip

log = logging.getLogger(__name__)

PARAM_COLUMNS = PARAMETERS


class SweepRefused(ValueError):
    """A sweep refused by what only the running cluster can tell (a trial that cannot fit); nothing was written."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the stages share, decided once by ``_plan``."""

    config: SweepConfig
    """The sweep's config: its output and local model paths absolute, ``gpus_per_trial`` resolved."""
    out: Path
    """The experiment directory."""
    study: str
    """The Optuna study's name, which also names the Tune experiment."""
    tokenizer: Any
    """The policy's tokenizer, loaded once."""
    prompts: list[str]
    """The evaluation prompts every trial and the base policy are evaluated on."""
    confirmation: list[str]
    """The confirmation prompts, held out from ``prompts`` (empty: no confirmation)."""
    resources: dict[str, float]
    """One trial's Ray resources (the reference task takes the same)."""
    concurrent: int
    """Trials at once."""
    tune_storage: str
    """Where Tune keeps the trials."""


def _say(message: str) -> None:
    print(f"[alignray] {message}", flush=True)


def _hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_atomic(path: Path, write) -> None:
    """Write through a temporary file and rename, so a crash or a full disk never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(f"could not write {path}: {err}; earlier results are untouched") from err


def _init_ray() -> None:
    """Join the running cluster (``ray start`` or ``ray job submit``) if there is one, else start a local one."""
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), logging_level=logging.WARNING)
        _say(f"joined the Ray cluster: {ray.cluster_resources()}")
    except ConnectionError:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
        _say(f"started a local Ray: {ray.cluster_resources()}")


def _trial_resources(config: SweepConfig) -> tuple[dict[str, float], int]:
    """A trial's Ray resources and how many trials the cluster holds at once.

    A cluster that cannot hold one trial yet (an autoscaling one, before its GPU nodes start) is refused unless
    ``max_concurrent_trials`` says how many to run; otherwise the user's number is capped at what fits.
    """
    import ray

    cluster = ray.cluster_resources()
    gpus = config.gpus_per_trial if config.gpus_per_trial is not None else (1.0 if cluster.get("GPU") else 0.0)
    resources = {"cpu": config.cpus_per_trial, "gpu": gpus}
    # Ray Train workers of a multi-worker trial hold their own CPU (and one GPU each) beside the trial's.
    workers = config.workers_per_trial if config.workers_per_trial > 1 else 0
    cpus_each = config.cpus_per_trial + workers
    gpus_each = gpus + (workers if gpus else 0)
    fits = int(cluster.get("CPU", 0) // cpus_each)
    if gpus_each:
        fits = min(fits, int(cluster.get("GPU", 0) // gpus_each))
    if fits < 1:
        if config.max_concurrent_trials:
            _say(f"the cluster {cluster} holds no trial yet; waiting for the autoscaler to add nodes")
            return resources, config.max_concurrent_trials
        raise ValueError(
            f"one trial needs {cpus_each} CPUs and {gpus_each} GPUs; the cluster has {cluster}. On an autoscaling "
            "cluster, give --max-concurrent-trials so that trials wait for new nodes"
        )
    return resources, min(config.max_concurrent_trials or fits, fits)


def _tune_storage(config: SweepConfig) -> str:
    import ray

    storage = config.tune_storage or str(Path(config.output).resolve() / "tune")
    alive = [node for node in ray.nodes() if node.get("Alive")]
    if len(alive) > 1 and config.tune_storage is None:
        raise ValueError(
            f"the cluster has {len(alive)} nodes but tune_storage defaults to the local path {storage}; give "
            "--tune-storage a shared file system path or a cloud URI (s3://, gs://) that every node reaches"
        )
    return storage


def _plan(config: SweepConfig) -> Plan:
    """Decide what the stages share. Ray starts here; what only the cluster can tell (a trial that does not fit,
    local Tune storage on several nodes) is refused as ``SweepRefused`` before the experiment directory is made."""
    from alignray.data.prompts import imdb_prompt_reviews
    from alignray.metrics import evaluation_prompts
    from alignray.world import load_tokenizer

    config = _absolute(config)  # trials run in working directories of their own: relative paths would not resolve
    out = Path(config.output)
    tokenizer = load_tokenizer(config.policy, "policy")
    pool = len(imdb_prompt_reviews("eval"))
    prompts, confirmation = split_prompts(
        config, lambda n: evaluation_prompts(config.policy, min(n, pool), config.seed, tokenizer)
    )
    _init_ray()
    config = _resolve_gpus(config)
    try:
        resources, concurrent = _trial_resources(config)
        tune_storage = _tune_storage(config)
    except ValueError as err:
        raise SweepRefused(str(err)) from None
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / SWEEP_FILE
    study = json.loads(saved.read_text())["study"] if saved.is_file() else f"alignray-{uuid.uuid4().hex[:8]}"
    plan = Plan(config, out, study, tokenizer, prompts, confirmation, resources, concurrent, tune_storage)
    _write_atomic(saved, lambda p: p.write_text(json.dumps(_record(plan), indent=2) + "\n"))
    return plan


def _record(plan: Plan, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``sweep.json`` holds: the study, the config (no secret: a storage password is refused in the URL) and,
    once the frontier is known, the summary."""
    record = {"study": plan.study, "config": dataclasses.asdict(plan.config)}
    return record if summary is None else {**record, "summary": summary}


def _preference_data(plan: Plan) -> Path:
    """Stage 1: the preference data, reused when the directory holds the same config's data."""
    from alignray.data.pipeline import build_preferences

    config, directory = plan.config, plan.out / "preferences"
    prefs = config.preference_config(str(directory))
    key = _hash({k: v for k, v in dataclasses.asdict(prefs).items() if k != "out"})
    card_path = directory / "card.json"
    if card_path.is_file() and json.loads(card_path.read_text()).get("config_hash") == key:
        card = json.loads(card_path.read_text())
        _say(f"1/6 preference data: reusing {card['counts']['pairs']} pairs in {directory}")
        return directory / "preferences.parquet"
    _say(f"1/6 preference data: {config.num_prompts} prompts x {config.samples_per_prompt} samples on Ray Data")
    pairs, card = build_preferences(prefs, plan.tokenizer)
    if pairs.empty:
        raise ValueError(f"the preference data has no pairs ({card['counts']}); try another strategy or more samples")
    card["config_hash"] = key
    _write_atomic(card_path, lambda p: p.write_text(json.dumps(card, indent=2) + "\n"))
    _say(f"1/6 preference data: {len(pairs)} pairs in {card['seconds']} s")
    return directory / "preferences.parquet"


def _reference(plan: Plan, data: Path) -> tuple[Path, dict[str, float]]:
    """Stage 2, in a trial's resources: reference log-probs on the data, once (the pairs with them:
    ``with_reference.parquet``), and the base policy's metrics."""
    import ray

    config, prompts = plan.config, plan.prompts
    target = data.with_name("with_reference.parquet")
    base = plan.out / "base"
    key = _hash({"data": json.loads((data.parent / "card.json").read_text())["config_hash"], "max_length":
                 config.max_length, "policy": config.policy, "eval": [prompts, config.eval_samples_per_prompt,
                 config.max_new_tokens, config.reward, config.seed]})  # fmt: skip
    done = base / "metrics.json"
    saved = json.loads(done.read_text()) if done.is_file() else {}
    if target.is_file() and saved.get("key") == key and set(METRICS) <= set(saved.get("metrics", {})):
        _say("2/6 reference log-probs and base policy: reusing")
        return target, saved["metrics"]
    _say(f"2/6 reference log-probs on the preference data, and the base policy on {len(prompts)} evaluation prompts")
    task = ray.remote(num_cpus=plan.resources["cpu"], num_gpus=plan.resources["gpu"])(_score_reference)
    started = time.monotonic()
    # Data travel through the object store both ways: the task may run on another node than this driver.
    scored, samples, metrics = ray.get(task.remote(config, pd.read_parquet(data), prompts))
    _write_atomic(target, lambda p: scored.to_parquet(p, index=False))
    base.mkdir(parents=True, exist_ok=True)
    _write_atomic(base / "samples.parquet", lambda p: samples.to_parquet(p, index=False))
    _write_atomic(done, lambda p: p.write_text(json.dumps({"key": key, "metrics": metrics}, indent=2) + "\n"))
    shown = ", ".join(f"{o.metric} {metrics[o.metric]:.3f}" for o in config.objective_pair)
    _say(f"2/6 done in {time.monotonic() - started:.1f} s: base {shown}")
    return target, metrics


def _score_reference(
    config: SweepConfig, pairs: pd.DataFrame, prompts: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Runs as a Ray task: TRL's own reference precompute, kept as columns (the pairs TRL kept, with the eos it
    appended), then the base policy's evaluation samples and metrics."""
    import torch

    from alignray.sweep.trial import evaluate_model
    from alignray.train import PREFERENCE_COLUMNS, build_trainer, load_preferences
    from alignray.train_config import TrainConfig
    from alignray.trainer import REFERENCE_COLUMNS
    from alignray.world import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(max(1, int(config.cpus_per_trial)))
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "preferences.parquet"
        pairs.to_parquet(data, index=False)
        run = TrainConfig(data=str(data), policy=config.policy, max_length=config.max_length)
        trainer = build_trainer(run, load_preferences(data), scratch)
        scored = trainer.train_dataset.select_columns([*PREFERENCE_COLUMNS, *REFERENCE_COLUMNS]).to_pandas()
    metrics, samples = evaluate_model(config.policy, config, prompts, config.seed)
    return scored, samples, metrics


def _searcher(config: SweepConfig, study: str, seeded: bool = True, constraints: list[Constraint] = ()):
    """The study's searcher; ``seeded``: run the seed points first (not when extending a sweep, which ran them);
    ``constraints``: set on each finished trial's Optuna trial."""
    from alignray.sweep.searcher import StudySearch
    from alignray.sweep.space import SearchSpace, make_sampler, seed_points

    points = seed_points(config) if seeded else []
    return StudySearch(
        config,
        study,
        constraints,
        space=SearchSpace(config),
        metric=[o.metric for o in config.objective_pair],
        mode=[o.direction for o in config.objective_pair],
        points_to_evaluate=points or None,
        sampler=make_sampler(config),
    )


def _experiments(storage: str, study: str) -> list[str]:
    """The sweep's Tune experiments, in order: ``<study>`` and each extension ``<study>-2``, ``<study>-3``, ... that
    a resumed sweep with more trials added."""
    from ray import tune

    names = [f"{storage.rstrip('/')}/{study}"]
    while tune.Tuner.can_restore(f"{names[0]}-{len(names) + 1}"):
        names.append(f"{names[0]}-{len(names) + 1}")
    return names


def _search(plan: Plan, data: Path, constraints: list[Constraint]) -> list:
    """Stage 3: the Tune experiments of the sweep, fitted; their result grids in order.

    A resumed sweep first finishes the experiments it has (``Tuner.restore``); if ``num_trials`` grew, a new
    experiment over the same study runs the extra trials (Tune cannot add samples to a restored experiment), its
    searcher seeing every earlier trial through the study."""
    from ray import tune

    from alignray.sweep.space import grid_points
    from alignray.sweep.trial import run_trial

    config, study, storage = plan.config, plan.study, plan.tune_storage
    experiment = f"{storage.rstrip('/')}/{study}"
    trainable = tune.with_resources(  # the pairs travel in the object store: trials may run on other nodes
        tune.with_parameters(
            run_trial, config=config, pairs=pd.read_parquet(data), prompts=plan.prompts,
            train_storage=f"{experiment}/train", failure_storage=f"{experiment}/failures",
        ),
        plan.resources,
    )  # fmt: skip
    grids = []
    if config.resume and tune.Tuner.can_restore(experiment):
        for name in _experiments(storage, study):
            _say(f"3/6 search: resuming {name}")
            grids.append(tune.Tuner.restore(name, trainable, resume_unfinished=True, resume_errored=False).fit())
    wanted = len(grid_points(config)) if config.search == "grid" else config.num_trials
    trials = wanted - sum(len(grid) for grid in grids)
    if trials <= 0:
        return grids
    _say(
        f"3/6 search: {trials} {'more ' if grids else ''}trials ({config.search}"
        f"{'' if config.search == 'grid' else ', ' + config.sampler}), {plan.concurrent} at once, each "
        f"{plan.resources}; study {study!r} in {masked_url(study_storage_url(config))}"
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_searcher(config, study, seeded=not grids, constraints=constraints), num_samples=trials,
            max_concurrent_trials=plan.concurrent, reuse_actors=config.reuse_workers,
        ),
        run_config=tune.RunConfig(
            name=study if not grids else f"{study}-{len(grids) + 1}",
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            progress_reporter=_reporter(config),
            verbose=1,
        ),
    )  # fmt: skip
    return [*grids, tuner.fit()]


def _reporter(config: SweepConfig):
    """Tune's status table with the sweep's parameters and objectives (Tune's newer output shows neither)."""
    from ray import tune

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # read by Tune at fit time; the older output takes a reporter
    metrics = {o.metric: o.metric for o in config.objective_pair} | {"kl/ref": "kl/ref"}
    return tune.CLIReporter(
        metric_columns=metrics,
        parameter_columns=list(PARAM_COLUMNS[:4]),
        max_report_frequency=30,
        sort_by_metric=False,
    )


def _trial_id(result) -> tuple[str, int]:
    """A trial's id and its creation index, from its directory name (``run_trial_<id>_<index>_<params>``)."""
    match = re.match(r"\w+?_([0-9a-f]{5,})_(\d+)_", Path(result.path).name)
    if match:
        return match.group(1), int(match.group(2))
    return str(result.metrics.get("trial_id") or Path(result.path).name), 0


def _checkpoints(grids: list) -> dict[str, Any]:
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
            params = {k: _config(result).get(k) for k in PARAM_COLUMNS}
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
                rows.append({
                    **{k: v for k, v in final.items() if k not in metrics and k != "optuna_trial"},
                    "trial": f"{trial}@{point['step']}", "kind": "point", "step": point["step"],
                    "status": "ok" if finite else "error", "reason": None if finite else "non-finite objectives",
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


def _study_numbers(config: SweepConfig, study: str) -> dict[str, int]:
    """Tune trial id to the study trial's number, from the ids ``StudySearch`` recorded."""
    import optuna

    loaded = optuna.load_study(study_name=study, storage=study_storage_url(config))
    return {t.user_attrs[TUNE_TRIAL_ATTR]: t.number for t in loaded.trials if TUNE_TRIAL_ATTR in t.user_attrs}


def _keep_models(plan: Plan, grids: list, table: pd.DataFrame) -> None:
    """Copy every finished candidate's samples to ``samples/<id>.parquet`` and each frontier model with its samples
    to ``frontier/<id>/`` (a derived one rebuilt from its parents and saved there); delete the trials' other models
    unless ``keep_all_models``, keeping the models derived candidates are made from (``trained_pareto``: a resumed
    sweep derives from them again) and the parents of derived frontier models, which confirmation rebuilds them
    from."""
    from pyarrow.fs import FileType

    from alignray.sweep.derive import build, fetch_model, model_path, recipe_of

    out = plan.out
    target = out / "frontier"
    shutil.rmtree(target, ignore_errors=True)
    (out / "samples").mkdir(exist_ok=True)
    checkpoints = _checkpoints(grids)
    trained = table[table["kind"] != DERIVED].set_index("trial", drop=False)
    needed = {(p["tune_trial"], model_path(p)) for _, p in trained[trained["trained_pareto"]].iterrows()}
    for _, row in table[table["pareto"] & (table["kind"] == DERIVED)].iterrows():  # parents of the frontier's
        needed |= {(p["tune_trial"], model_path(p)) for _, p in trained.loc[list(row["parents"])].iterrows()}
    for _, row in table.iterrows():
        samples = out / "samples" / f"{row['trial']}.parquet"
        if row["kind"] == DERIVED and row["status"] == "ok":
            shutil.copyfile(out / DERIVED / row["trial"] / "samples.parquet", samples)
            if row["pareto"]:
                sources = {p: (checkpoints[trained.loc[p, "tune_trial"]], model_path(trained.loc[p]))
                           for p in row["parents"]}  # fmt: skip
                build(recipe_of(row), sources, plan.config.policy, target / row["trial"] / "model")
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


def _format_table(table: pd.DataFrame, config: SweepConfig, base: dict[str, float]) -> str:
    first, second = config.objective_pair
    metrics = [first.metric, second.metric, "kl/ref", "fluency/ref_perplexity", "fluency/nonword_rate"]
    columns = ["trial", "kind", "divergence", "alpha", "beta", "learning_rate", *metrics]
    columns = [c for c in dict.fromkeys(columns) if c in table]  # kl/ref may be an objective
    shown = first.best_first(table.loc[table["pareto"], columns])
    base_row = {"trial": "base (SFT)", **{k: base.get(k) for k in metrics}}
    shown = pd.concat([pd.DataFrame([base_row]), shown], ignore_index=True)[columns]
    return shown.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")


def _report(out: Path) -> None:
    """The report (``alignray.report``), after every result is saved: a failure here loses nothing, it is printed
    with the command that retries it."""
    from alignray.report import write_report

    try:
        written = write_report(out)
    except Exception as err:  # the sweep's results are already on disk; a broken plot must not fail the sweep
        log.exception("report failed")
        _say(f"the report failed ({type(err).__name__}: {err}); results are saved; retry with "
             f"`python analysis/report.py {out}`")  # fmt: skip
        return
    _say(f"report: {', '.join(str(p) for p in written.values())}")


def _absolute(config: SweepConfig) -> SweepConfig:
    """``config`` with its output and any local model paths made absolute."""
    local = {k: str(Path(v).resolve()) for k in ("policy", "reward") if Path(v := getattr(config, k)).exists()}
    return dataclasses.replace(config, output=str(Path(config.output).resolve()), **local)


def _resolve_gpus(config: SweepConfig) -> SweepConfig:
    """``gpus_per_trial`` decided once (default: 1 when the cluster has GPUs), so trials see the value Tune gave."""
    import ray

    if config.gpus_per_trial is not None:
        return config
    return dataclasses.replace(config, gpus_per_trial=1.0 if ray.cluster_resources().get("GPU") else 0.0)


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


def _reference_rule(config: SweepConfig) -> str:
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


def _frontier(
    plan: Plan, grids: list, base: dict[str, float], constraints: list[Constraint]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stage 4: the results table of every candidate (each trial's final model and the points along its training,
    then the derived candidates of their feasible frontier, ``alignray.sweep.derive``) with its feasibility and
    frontier (feasible candidates only), the frontier's models, ``results.parquet``, ``pareto.csv`` and the
    hypervolume of the feasible candidates; the summary, also written to ``sweep.json``."""
    from alignray.sweep.derive import derive, model_path

    config = plan.config
    table = feasibility(collect_results(grids, config, _study_numbers(config, plan.study)), constraints)
    table["pareto"] = frontier(table, config)
    table["trained_pareto"] = table["pareto"]  # the frontier of the trained candidates, derived ones come from
    if (config.derive_lambdas or config.soups) and table["pareto"].any():
        checkpoints = _checkpoints(grids)
        sources = {row["trial"]: (checkpoints[row["tune_trial"]], model_path(row))
                   for _, row in table[table["pareto"]].iterrows()}  # fmt: skip
        derived = derive(table, config, plan.prompts, plan.out / DERIVED, plan.resources, sources, _say,
                         _write_atomic)  # fmt: skip
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
        _say(f"4/6 frontier: none of the {finished} evaluated candidates met the constraints ({bounds}): there is "
             "no frontier to recommend; results.parquet says what each broke")  # fmt: skip
    else:
        front = table[table["pareto"]]
        names = {"trial": "trials' final models", "point": "points", DERIVED: "derived"}
        shown = ", ".join(f"{(front['kind'] == k).sum()} {names[k]}" for k in kinds if (front["kind"] == k).any())
        _say(f"4/6 frontier: {len(feasible)} of {finished} evaluated candidates ({kinds['trial']} trials' final "
             f"models, {kinds['point']} points along them, {kinds[DERIVED]} derived) within the constraints; "
             f"frontier: {shown}; saving models, results.parquet, pareto.csv")  # fmt: skip
    _keep_models(plan, grids, table)
    _write_atomic(plan.out / "results.parquet", lambda p: table.to_parquet(p, index=False))
    front = table[table["pareto"]].drop(columns="pareto")
    _write_atomic(plan.out / "pareto.csv", lambda p: front.to_csv(p, index=False))
    summary = {
        "study": plan.study,
        "trials": kinds["trial"],
        "candidates": kinds,
        "errors": int((table.loc[table["kind"] == "trial", "status"] != "ok").sum()),
        "frontier": table.loc[table["pareto"], "trial"].tolist(),
        "hypervolume": volume,
        "reference_point": list(reference),
        "reference_rule": _reference_rule(config),
        "constraints": {c.metric: c.bound for c in constraints},
        "feasible": len(feasible),
        "concurrent_trials": plan.concurrent,
    }
    return table, summary


def _confirm(
    plan: Plan, data: Path, grids: list, table: pd.DataFrame, summary: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, float], dict[str, Any]]:
    """Stage 5 (``alignray.sweep.confirm``): the feasible frontier's configurations, each at the search's seed and
    ``replicates`` new ones, and the base policy, on the confirmation prompts; ``table`` with the confirmed columns,
    the base policy's confirmation metrics and the summary with ``confirmation``. ``results.parquet`` and
    ``pareto.csv`` (now the confirmed frontier) are written again. Nothing to confirm (no confirmation prompts, no
    feasible frontier, the base policy's evaluation failed): the search's results stand, and the summary says why."""
    config = plan.config
    front = table[table["pareto"]]
    if not plan.confirmation or front.empty:
        why = "confirmation_prompts=0" if not plan.confirmation else "no feasible frontier to confirm"
        _say(f"5/6 confirmation: none ({why}); the search's figures stand")
        return table, {}, {**summary, "confirmation": {"skipped": why}}
    started = time.monotonic()
    checkpoints = _checkpoints(grids)
    units = confirmation_units(config, front, table, checkpoints)
    train_storage = f"{plan.tune_storage.rstrip('/')}/{plan.study}/train"
    seeds = run_units(units, config, pd.read_parquet(data), plan.confirmation, plan.out / "confirm", plan.resources,
                      plan.concurrent, train_storage, _say, _write_atomic)  # fmt: skip
    _write_atomic(plan.out / "confirmation.parquet", lambda p: seeds.to_parquet(p, index=False))
    base_row = seeds[(seeds["trial"] == "base") & (seeds["status"] == "ok")]
    if base_row.empty:
        why = f"the base policy's confirmation failed: {seeds.loc[seeds['trial'] == 'base', 'reason'].iloc[0]}"
        _say(f"5/6 confirmation: none ({why}); the search's figures stand")
        return table, {}, {**summary, "confirmation": {"skipped": why}}
    base = {m: float(base_row.iloc[0][m]) for m in METRICS if m in base_row}
    constraints = sweep_constraints(config, base)
    objectives = config.objective_pair
    table = confirmed_columns(table, seeds, constraints, objectives)
    feasible = table[table[CONFIRMED + "feasible"]]
    reference = hypervolume_reference(config, base)
    volume = hypervolume(objective_points(feasible, objectives, CONFIRMED), signed(reference, objectives))
    _write_atomic(plan.out / "results.parquet", lambda p: table.to_parquet(p, index=False))
    final = confirmed_view(table)  # the confirmed figures under the metric names, the search's as search/<metric>
    final = final[final["pareto"]].drop(columns="pareto")
    _write_atomic(plan.out / "pareto.csv", lambda p: final.to_csv(p, index=False))
    seconds = round(time.monotonic() - started, 1)
    _say(f"5/6 confirmation: {len(feasible)} of {len(front)} frontier candidates confirmed feasible on "
         f"{len(plan.confirmation)} held-out prompts, {1 + config.replicates} seeds each, in {seconds} s")  # fmt: skip
    confirmation = {
        "prompts": len(plan.confirmation),
        "replicates": config.replicates,
        "configurations": len(front),
        "failed_seeds": int((seeds["status"] != "ok").sum()),
        "constraints": {c.metric: c.bound for c in constraints},
        "feasible": len(feasible),
        "frontier": final["trial"].tolist(),
        "hypervolume": volume,
        "reference_point": list(reference),
        "seconds": seconds,
    }
    return table, base, {**summary, "search_frontier": summary["frontier"], "frontier": final["trial"].tolist(),
                         "confirmation": confirmation}  # fmt: skip


def run_sweep(config: SweepConfig) -> dict[str, Any]:
    """Run (or resume) the sweep of ``config``: the plan, then the five stages; returns the summary that
    ``sweep.json`` also records."""
    from alignray.world import quiet_libraries

    quiet_libraries()  # the job log shows the sweep's stages, not the libraries' warnings
    started = time.monotonic()
    plan = _plan(config)
    data = _preference_data(plan)
    data, base = _reference(plan, data)
    constraints = sweep_constraints(plan.config, base)
    searching = time.monotonic()
    grids = _search(plan, data, constraints)
    search_seconds = time.monotonic() - searching
    table, summary = _frontier(plan, grids, base, constraints)
    table, confirmed_base, summary = _confirm(plan, data, grids, table, summary)
    summary = {**summary, "seconds": round(time.monotonic() - started, 1), "search_seconds": round(search_seconds, 1)}
    _write_atomic(plan.out / SWEEP_FILE, lambda p: p.write_text(json.dumps(_record(plan, summary), indent=2) + "\n"))
    _say("6/6 report")
    _report(plan.out)
    _print_frontier(plan, table, confirmed_base or base, summary)
    return summary


def _print_frontier(plan: Plan, table: pd.DataFrame, base: dict[str, float], summary: dict[str, Any]) -> None:
    """The frontier the report recommends: the confirmed one (means over seeds on the confirmation prompts, the base
    policy on the same prompts) when the sweep confirmed, else the search's."""
    config, out = plan.config, plan.out
    confirmation = summary.get("confirmation", {})
    where = "confirmed: the mean over {} seeds on {} held-out prompts".format(
        1 + confirmation.get("replicates", 0), confirmation.get("prompts")
    ) if "hypervolume" in confirmation else "the search's evaluation; not confirmed"  # fmt: skip
    first, second = config.objective_pair
    print(f"\nPareto frontier ({first.title} vs {second.title}; {where}), {summary['seconds']} s:")
    print(_format_table(confirmed_view(table) if "hypervolume" in confirmation else table, config, base))
    volume = confirmation if "hypervolume" in confirmation else summary
    reference = tuple(round(v, 4) for v in volume["reference_point"])
    print(f"hypervolume {volume['hypervolume']:.4f} against {reference}; {summary['errors']} errored")
    print(f"results: {out / 'results.parquet'}, {out / 'pareto.csv'}, {out / 'report.html'}, {out / 'frontier'}")
