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
4. ``alignray.sweep.frontier.frontier_stage``: ``results.parquet``, ``pareto.csv``, the frontier's models under
   ``frontier/<trial>/`` and the hypervolume of the search's figures;
5. ``alignray.sweep.confirm.confirm_stage``: the feasible frontier and each divergence's best, retrained with fresh
   seeds and measured on held-out prompts; ``results.parquet`` gains the confirmed figures and ``pareto.csv`` becomes
   the confirmed frontier;
6. ``_report``: ``alignray.report`` (``report.md``, ``report.html``, PNGs, ``answer.csv``), then each divergence's
   answer and the frontier, printed.

Experiment directory: ``sweep.json`` (config, study name, summary), ``preferences/``, ``base/`` (metrics.json,
samples.parquet), ``study.db``, ``tune/``, ``results.parquet``, ``pareto.csv``, ``samples/<trial>.parquet`` (every
finished trial's evaluation samples, with ``completion_ids``), ``frontier/<trial>/`` (model and samples of each
configuration on the search's feasible frontier), ``confirmation.parquet`` and ``confirm/``, ``report.md``,
``report.html``, ``pareto.png``, ``reward_kl.png``, ``rewards.png``, ``hypervolume.png``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from alignray.metrics import METRICS
from alignray.sweep.checks import SWEEP_FILE, masked_url
from alignray.sweep.config import PARAMETERS, SweepConfig
from alignray.sweep.confirm import confirm_stage, confirmed_view, split_prompts
from alignray.sweep.constraints import Constraint, sweep_constraints
from alignray.sweep.frontier import frontier_stage
from alignray.sweep.plan import Plan, hash_of, say, write_atomic
from alignray.sweep.searcher import study_storage_url

__all__ = ["Plan", "SweepRefused", "run_sweep"]

log = logging.getLogger(__name__)

class SweepRefused(ValueError):
    """A sweep refused by what only the running cluster can tell (a trial that cannot fit); nothing was written."""


def _init_ray() -> None:
    """Join the running cluster (``ray start`` or ``ray job submit``) if there is one, else start a local one."""
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), logging_level=logging.WARNING)
        say(f"joined the Ray cluster: {ray.cluster_resources()}")
    except ConnectionError:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
        say(f"started a local Ray: {ray.cluster_resources()}")


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
            say(f"the cluster {cluster} holds no trial yet; waiting for the autoscaler to add nodes")
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
    from alignray.data.pipeline import load_prompts
    from alignray.data.prompts import imdb_prompt_reviews
    from alignray.metrics import evaluation_prompts
    from alignray.world import load_tokenizer

    config = _absolute(config)  # trials run in working directories of their own: relative paths would not resolve
    out = Path(config.output)
    saved = out / SWEEP_FILE
    record = json.loads(saved.read_text()) if saved.is_file() and not config.overwrite else {}
    fingerprint = _base_fingerprint(config, record.get("base_fingerprint"))
    tokenizer = load_tokenizer(config.policy, "policy")
    pool = len(imdb_prompt_reviews("eval"))
    preference = load_prompts(config.preference_config(str(out / "preferences")), tokenizer)
    prompts, confirmation, dropped = split_prompts(
        config, lambda n: evaluation_prompts(config.policy, min(n, pool), config.seed, tokenizer), preference
    )
    _init_ray()
    config = _resolve_gpus(config)
    try:
        resources, concurrent = _trial_resources(config)
        tune_storage = _tune_storage(config)
    except ValueError as err:
        raise SweepRefused(str(err)) from None
    _say_gpus(config, concurrent)
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    study = record.get("study") or f"alignray-{uuid.uuid4().hex[:8]}"
    plan = Plan(config, out, study, tokenizer, prompts, confirmation, dropped, resources, concurrent, tune_storage,
                fingerprint)  # fmt: skip
    write_atomic(saved, lambda p: p.write_text(json.dumps(_record(plan), indent=2) + "\n"))
    return plan


def _base_fingerprint(config: SweepConfig, recorded: str | None) -> str:
    """The base policy's ``weights_fingerprint``; refused (``SweepRefused``, before Ray starts) when it is not the
    one a resumed sweep recorded: its trials were fine-tuned from other weights (a rebuilt world, a moved hub
    revision), so no model could be derived from them and its figures would not compare."""
    from alignray.world import load_policy, weights_fingerprint

    model, _ = load_policy(config.policy, device="cpu")
    fingerprint = weights_fingerprint(model)
    if recorded is not None and recorded != fingerprint:
        raise SweepRefused(
            f"policy={config.policy!r} now has weights fingerprint {fingerprint}, but the sweep in {config.output} "
            f"was started from weights with fingerprint {recorded} (sweep.json): the base policy changed since. "
            "Resume with the policy it started from, or start a new sweep (--overwrite, or another --output)"
        )
    return fingerprint


def _record(plan: Plan, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``sweep.json`` holds: the study, the base policy's weights fingerprint, the config (no secret: a storage
    password is refused in the URL) and, once the frontier is known, the summary."""
    record = {"study": plan.study, "base_fingerprint": plan.base_fingerprint,
              "config": dataclasses.asdict(plan.config)}  # fmt: skip
    return record if summary is None else {**record, "summary": summary}


def _preference_data(plan: Plan) -> Path:
    """Stage 1: the preference data, reused when the directory holds the same config's data."""
    from alignray.data.pipeline import build_preferences

    config, directory = plan.config, plan.out / "preferences"
    prefs = config.preference_config(str(directory))
    key = hash_of({k: v for k, v in dataclasses.asdict(prefs).items() if k != "out"})
    card_path = directory / "card.json"
    if card_path.is_file() and json.loads(card_path.read_text()).get("config_hash") == key:
        card = json.loads(card_path.read_text())
        say(f"1/6 preference data: reusing {card['counts']['pairs']} pairs in {directory}")
        return directory / "preferences.parquet"
    say(f"1/6 preference data: {config.num_prompts} prompts x {config.samples_per_prompt} samples on Ray Data")
    pairs, card = build_preferences(prefs, plan.tokenizer)
    if pairs.empty:
        raise ValueError(f"the preference data has no pairs ({card['counts']}); try another strategy or more samples")
    card["config_hash"] = key
    write_atomic(card_path, lambda p: p.write_text(json.dumps(card, indent=2) + "\n"))
    say(f"1/6 preference data: {len(pairs)} pairs in {card['seconds']} s")
    return directory / "preferences.parquet"


def _reference(plan: Plan, data: Path) -> tuple[Path, dict[str, float]]:
    """Stage 2, in a trial's resources: reference log-probs on the data, once (the pairs with them:
    ``with_reference.parquet``), and the base policy's metrics."""
    import ray

    config, prompts = plan.config, plan.prompts
    target = data.with_name("with_reference.parquet")
    base = plan.out / "base"
    key = hash_of({"data": json.loads((data.parent / "card.json").read_text())["config_hash"], "max_length":
                 config.max_length, "policy": config.policy, "eval": [prompts, config.eval_samples_per_prompt,
                 config.max_new_tokens, config.reward, config.judge, config.seed]})  # fmt: skip
    done = base / "metrics.json"
    saved = json.loads(done.read_text()) if done.is_file() else {}
    if target.is_file() and saved.get("key") == key and set(METRICS) <= set(saved.get("metrics", {})):
        say("2/6 reference log-probs and base policy: reusing")
        return target, saved["metrics"]
    say(f"2/6 reference log-probs on the preference data, and the base policy on {len(prompts)} evaluation prompts")
    task = ray.remote(num_cpus=plan.resources["cpu"], num_gpus=plan.resources["gpu"])(_score_reference)
    started = time.monotonic()
    # Data travel through the object store both ways: the task may run on another node than this driver.
    scored, samples, metrics = ray.get(task.remote(config, pd.read_parquet(data), prompts))
    write_atomic(target, lambda p: scored.to_parquet(p, index=False))
    base.mkdir(parents=True, exist_ok=True)
    write_atomic(base / "samples.parquet", lambda p: samples.to_parquet(p, index=False))
    write_atomic(done, lambda p: p.write_text(json.dumps({"key": key, "metrics": metrics}, indent=2) + "\n"))
    shown = ", ".join(f"{o.metric} {metrics[o.metric]:.3f}" for o in config.objective_pair)
    say(f"2/6 done in {time.monotonic() - started:.1f} s: base {shown}")
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
    from alignray.sweep.space import SearchSpace, make_sampler, seed_points, study_point

    points = [study_point(point) for point in seed_points(config)] if seeded else []
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
            say(f"3/6 search: resuming {name}")
            grids.append(tune.Tuner.restore(name, trainable, resume_unfinished=True, resume_errored=False).fit())
    wanted = len(grid_points(config)) if config.search == "grid" else config.num_trials
    trials = wanted - sum(len(grid) for grid in grids)
    if trials <= 0:
        return grids
    say(
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
        parameter_columns=list(PARAMETERS[:4]),
        max_report_frequency=30,
        sort_by_metric=False,
    )


def _format_table(table: pd.DataFrame, config: SweepConfig, base: dict[str, float]) -> str:
    first, second = config.objective_pair
    metrics = [first.metric, second.metric, "kl/ref", "fluency/nonword_rate", "fluency/garbled_rate"]
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

    for name in ("answer.csv", "answer_kl.csv"):  # an earlier run's answer is never printed as this one's
        (out / name).unlink(missing_ok=True)
    try:
        written = write_report(out)
    except Exception as err:  # the sweep's results are already on disk; a broken plot must not fail the sweep
        log.exception("report failed")
        say(f"the report failed ({type(err).__name__}: {err}); results are saved; retry with "
             f"`python analysis/report.py {out}`")  # fmt: skip
        return
    say(f"report: {', '.join(str(p) for p in written.values())}")


def _absolute(config: SweepConfig) -> SweepConfig:
    """``config`` with its output and any local model paths made absolute."""
    names = {"policy": config.policy, "reward": config.reward, "judge": config.judge_model}  # judge None: off
    local = {k: str(Path(v).resolve()) for k, v in names.items() if v and Path(v).exists()}
    return dataclasses.replace(config, output=str(Path(config.output).resolve()), **local)


def _resolve_gpus(config: SweepConfig) -> SweepConfig:
    """``gpus_per_trial`` decided once (default: 1 when the cluster has GPUs), so trials see the value Tune gave."""
    import ray

    if config.gpus_per_trial is not None:
        return config
    return dataclasses.replace(config, gpus_per_trial=1.0 if ray.cluster_resources().get("GPU") else 0.0)


def _cuda_on_gpu_nodes() -> str | None:
    """Runs as a Ray task holding one GPU: the CUDA device torch sees there, or None (GPUs declared as resources that
    torch cannot use)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _say_gpus(config: SweepConfig, concurrent: int) -> None:
    """Say once, in the job log, what a trial's GPU share is: a CUDA device, or GPUs torch cannot see, in which case
    trials train and generate on CPU (and Ray Train workers use gloo, ``alignray.train.process_group_backend``).
    Asked of a task on a GPU node; skipped when none has started within a minute (an autoscaling cluster)."""
    import ray

    if not config.gpus_per_trial:
        return
    probe = ray.remote(num_gpus=min(1.0, config.gpus_per_trial), num_cpus=0)(_cuda_on_gpu_nodes).remote()
    ready, _ = ray.wait([probe], timeout=60)
    if not ready:
        ray.cancel(probe, force=True)
        return
    device = ray.get(probe)
    share = f"{config.gpus_per_trial:g} GPU a trial, {concurrent} trials at once"
    cpu = "but torch sees no CUDA device on the GPU nodes: trials train and generate on CPU"
    say(f"GPUs: {share}, on {device}" if device else f"GPUs: {share}, {cpu}")


def run_sweep(config: SweepConfig) -> dict[str, Any]:
    """Run (or resume) the sweep of ``config``: the plan, then the five stages; returns the summary that
    ``sweep.json`` also records."""
    from alignray.world import quiet_libraries, quiet_ray_data

    quiet_libraries()  # the job log shows the sweep's stages, not the libraries' warnings
    quiet_ray_data()
    started = clock = time.monotonic()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        stages[stage] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    plan = _plan(config)
    lap("plan")
    data = _preference_data(plan)
    lap("preference data")
    data, base = _reference(plan, data)
    lap("reference and base")
    constraints = sweep_constraints(plan.config, base)
    grids = _search(plan, data, constraints)
    lap("search")
    table, summary = frontier_stage(plan, grids, base, constraints)
    lap("frontier")
    table, confirmed_base, summary = confirm_stage(plan, data, grids, table, summary)
    lap("confirmation")
    def record() -> dict[str, Any]:
        """The summary with the seconds spent so far, saved in sweep.json (the report reads it from there)."""
        done = {**summary, "seconds": round(time.monotonic() - started, 1), "search_seconds": stages["search"],
                "stages": dict(stages)}  # fmt: skip
        write_atomic(plan.out / SWEEP_FILE, lambda p: p.write_text(json.dumps(_record(plan, done), indent=2) + "\n"))
        return done

    record()
    say("6/6 report")
    _report(plan.out)
    lap("report")
    summary = record()  # again, with the report's seconds
    _print_frontier(plan, table, confirmed_base or base, summary)
    return summary


def _print_frontier(plan: Plan, table: pd.DataFrame, base: dict[str, float], summary: dict[str, Any]) -> None:
    """The frontier the report recommends: the confirmed one (means over seeds on the confirmation prompts, the base
    policy on the same prompts) when the sweep confirmed, else the search's."""
    config, out = plan.config, plan.out
    confirmation = summary.get("confirmation", {})
    where = "confirmed: the mean over {} fresh seeds on {} held-out prompts".format(
        confirmation.get("replicates", 0), confirmation.get("prompts")
    ) if "hypervolume" in confirmation else "the search's evaluation; not confirmed"  # fmt: skip
    first, second = config.objective_pair
    if (out / "answer.csv").is_file():
        print(f"\nThe answer per divergence ({where}; the search's figures when not confirmed):")
        for _, row in pd.read_csv(out / "answer.csv", dtype=str).fillna("").iterrows():
            print(f"  {row['divergence']}: " + "; ".join(f"{k} {v}" for k, v in row.items()
                                                       if k != "divergence" and v))  # fmt: skip
    if (out / "answer_kl.csv").is_file():
        kl = pd.read_csv(out / "answer_kl.csv", dtype=str).fillna("")
        print("\nReward at common KLs, read off each divergence's reward-KL envelope (the search's prompts, "
              f"exploratory):\n{kl.to_string(index=False)}")
    print(f"\nPareto frontier ({first.title} vs {second.title}; {where}), {summary['seconds']} s:")
    print(_format_table(confirmed_view(table) if "hypervolume" in confirmation else table, config, base))
    volume = confirmation if "hypervolume" in confirmation else summary
    reference = tuple(round(v, 4) for v in volume["reference_point"])
    print(f"hypervolume {volume['hypervolume']:.4f} against {reference}; {summary['errors']} errored")
    print(f"results: {out / 'results.parquet'}, {out / 'pareto.csv'}, {out / 'report.html'}, {out / 'frontier'}")
    print("seconds by stage: " + ", ".join(f"{stage} {seconds:g}" for stage, seconds in summary["stages"].items()))
