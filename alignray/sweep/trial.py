"""One sweep trial, run by Ray Tune in the trial's own resources: train with FDPOTrainer, evaluate, report once.

The trial trains in its own process (``workers_per_trial > 1``: a Ray Train ``TorchTrainer`` started from here, the
Train V2 pattern, its run named by the trial id), then evaluates with the same batched generation and scoring code
the Ray Data actors run, in this process: Ray Data actors would run outside the trial's placement group and can hang
when trials hold every CPU or GPU. It reports the fixed metric names once, with a checkpoint holding the model
(``model/``) and the evaluation samples (``samples.parquet``).

**Trajectories.** With ``eval_points`` k > 1 the run also keeps its model every ceil(steps / k) steps, and the trial
evaluates each of them the same way: the checkpoint holds ``points/step-<n>/`` (``model/``, ``samples.parquet``) and
``points.json`` (each point's step and metrics), and every point is a frontier candidate of its own. Optuna is told
the final point only, whichever point turns out best: the sampler models what a configuration gives after the
whole training budget, the one thing a trial's parameters decide. Telling it the best point instead would mix that
with how long to train, which no parameter of the study controls, and a point picked for being best on the search
prompts would tell the sampler a selection-biased value. With ``reuse_workers`` a worker process runs one trial
after another (``worker/pid`` names it): each trial frees its memory when it ends.

A trial that raises, or whose objectives are not finite, ends as an errored Tune trial: OptunaSearch then marks
its Optuna trial FAIL. Reporting NaN instead would make Optuna drop the trial with only a warning. A deterministic
failure (``DETERMINISTIC``: a non-finite loss or metric, a bad value; in a multi-worker trial, when every failed Ray
Train worker raised one) is recorded as ``<experiment>/failures/<trial id>.json`` (``Failures``) so that Tune's retry
(``max_failures``) does not train the same failure again. Any other error (a dead worker or node, CUDA out of memory)
is retried.

The trial works in a scratch directory outside the trial's directories: Tune syncs them to storage, and the scratch
holds a full model and the preference data while the trial runs. Its training curves (TensorBoard events) travel
in its checkpoint (``tensorboard/``), which reaches the trial's directory in storage whether the worker is fresh or
reused; ``tensorboard --logdir <tune storage>`` finds them there.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from alignray.sweep.config import SweepConfig
from alignray.train_config import POINTS, TrainConfig

__all__ = ["DETERMINISTIC", "FAULT_VARIABLE", "Failures", "TrialFailed", "delete_storage", "drop_train_run",
           "evaluate_model", "evaluate_points", "failure_reason", "is_deterministic", "run_trial",
           "train_config"]  # fmt: skip

log = logging.getLogger(__name__)

FAULT_VARIABLE = "ALIGNRAY_INJECT_FAULT"
"""Fault injection for the tests of the failure paths: ``raise:<divergence>`` makes trials of that divergence raise
(a crash, retried), ``nan:<divergence>`` makes their first objective NaN (deterministic, recorded, not retried).
Ray workers inherit it from the environment that starts the cluster."""


class TrialFailed(RuntimeError):
    """A trial that fails the same way whenever it runs (recorded, not retried)."""


DETERMINISTIC = (FloatingPointError, ValueError, TrialFailed)
"""Errors that the same parameters meet again on a retry."""


def is_deterministic(err: BaseException) -> bool:
    """Whether ``err`` fails the same way whenever the trial runs: one of ``DETERMINISTIC``, raised here, in a Ray
    task (``RayTaskError.cause``) or by every failed worker of a Ray Train run (``WorkerGroupError``)."""
    failures = getattr(err, "worker_failures", None)
    if failures:
        return all(is_deterministic(failure) for failure in failures.values())
    cause = getattr(err, "cause", None)
    return isinstance(err, DETERMINISTIC) or isinstance(cause, DETERMINISTIC)


def failure_reason(err: BaseException) -> str:
    """``err`` in one line, "<type>: <last line of its message>", the cause's when ``err`` is a Ray task's error
    (``RayTaskError.cause``)."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[-1] if text else ''}"


def train_config(params: dict[str, Any], config: SweepConfig, data: str, out: str) -> TrainConfig:
    """The training run of a trial's parameters under the sweep's fixed settings."""
    gpus = config.gpus_per_trial or 0
    return TrainConfig(
        data=data,
        out=out,
        policy=config.policy,
        divergence=params["divergence"],
        alpha=params.get("alpha"),
        beta=params["beta"],
        loss_type=params.get("loss_type", config.loss_types[0]),
        learning_rate=params["learning_rate"],
        epochs=config.epochs,
        batch_size=config.batch_size,
        max_length=config.max_length,
        seed=config.seed,
        workers=config.workers_per_trial,
        use_gpu=gpus > 0 and config.workers_per_trial > 1,
    )


def run_trial(
    params: dict[str, Any], config: SweepConfig, pairs: pd.DataFrame, prompts: list[str], train_storage: str,
    failure_storage: str,
) -> None:  # fmt: skip
    """The Tune function trainable: train, evaluate, check, report (see the module docstring). A multi-worker
    trial's Ray Train run is named by the trial id under ``train_storage``, and a deterministic failure is recorded
    as ``<trial id>.json`` under ``failure_storage``; every node reaches both."""
    import ray
    import torch
    from ray import tune

    from alignray.world import quiet_libraries

    started = time.monotonic()
    quiet_libraries()  # the job log shows the sweep's progress, not each trial's warnings and loading bars
    context = tune.get_context()
    failure = Failures(failure_storage, context.get_trial_id())
    recorded = failure.read()
    if recorded is not None:
        raise TrialFailed(recorded)
    finished = tune.get_checkpoint()
    if finished is not None:  # restored after its report (the driver died): report it again, do not retrain
        with finished.as_directory() as directory:
            report = json.loads((Path(directory) / "metrics.json").read_text())
        tune.report(report, checkpoint=finished)
        return
    torch.set_num_threads(max(1, int(config.cpus_per_trial)))
    scratch = Path(tempfile.mkdtemp(prefix="alignray-trial-"))  # never in the trial's directories, which Tune syncs
    try:
        data = scratch / "preferences.parquet"  # this node only: multi-node Ray Train would need shared storage
        pairs.to_parquet(data, index=False)
        report = _train_and_evaluate(params, config, str(data), prompts, scratch, train_storage, failure)
        report.pop("points")  # in points.json: Tune's results keep the final point's flat metrics
        report["worker/pid"] = os.getpid()  # the process that ran it: reused workers run several trials
        report["worker/gpus"] = float(len(ray.get_gpu_ids()))  # the GPUs Ray gave it (declared ones count too)
        report["time/total_s"] = time.monotonic() - started
        report["time/other_s"] = report["time/total_s"] - report["time/train_s"] - report["time/eval_s"]
        report["time/ended_unix"] = time.time()  # when its slot freed: the benchmarks' tail idle time
        (scratch / "checkpoint" / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(scratch / "checkpoint")))
    finally:
        if config.workers_per_trial > 1:  # its model is in the trial's checkpoint now, or the trial failed: a retry
            try:  # trains again, so the run's k + 1 models are waste; a storage error must not hide the trial's own
                drop_train_run(train_storage, context.get_trial_id())
            except Exception as err:
                log.warning("could not delete the Ray Train run of trial %s: %s", context.get_trial_id(), err)
        shutil.rmtree(scratch, ignore_errors=True)
        gc.collect()  # the worker may run the next trial (reuse_workers): it starts with this one's memory freed
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def drop_train_run(train_storage: str, run_name: str) -> None:
    """Delete a multi-worker trial's Ray Train run under ``train_storage`` (a local path or a cloud URI): it holds a
    full model for each checkpoint, which the frontier's bookkeeping would otherwise never delete."""
    delete_storage(f"{train_storage.rstrip('/')}/{run_name}")


def delete_storage(storage: str) -> None:
    """Delete the directory ``storage`` (a local path or a cloud URI) with all it holds; nothing when it is gone."""
    from pyarrow import fs

    filesystem, path = _filesystem(storage)
    if filesystem.get_file_info(path).type != fs.FileType.NotFound:
        filesystem.delete_dir(path)


def _filesystem(storage: str):
    """``storage`` (a local path or a cloud URI) as a pyarrow file system and the path on it, without a final /."""
    from pyarrow import fs

    if "://" in storage:
        filesystem, root = fs.FileSystem.from_uri(storage)
    else:
        filesystem, root = fs.LocalFileSystem(), storage
    return filesystem, root.rstrip("/")


class Failures:
    """A trial's deterministic failure, recorded as ``<trial id>.json`` under ``storage`` (a local path or a cloud
    URI), where a retry finds it on any node and in any worker: not in the trial's directory, which Tune places
    differently for a fresh worker and a reused one."""

    def __init__(self, storage: str, trial_id: str) -> None:
        self.filesystem, self.root = _filesystem(storage)
        self.path = f"{self.root}/{trial_id}.json"

    def read(self) -> str | None:
        """The recorded reason, or None."""
        from pyarrow import fs

        if self.filesystem.get_file_info(self.path).type == fs.FileType.NotFound:
            return None
        with self.filesystem.open_input_stream(self.path) as source:
            return json.loads(source.read())["reason"]

    def record(self, reason: str, params: dict[str, Any]) -> None:
        self.filesystem.create_dir(self.root, recursive=True)
        with self.filesystem.open_output_stream(self.path) as sink:
            sink.write((json.dumps({"reason": reason, "params": params}) + "\n").encode())


def evaluate_model(model: str, config: SweepConfig, prompts: list[str], seed: int) -> tuple[dict[str, float], Any]:
    """``model`` evaluated as every policy of the sweep is, in this process: ``eval_samples_per_prompt`` samples of
    ``max_new_tokens`` per prompt, sampled at ``seed``, scored by the reward and the judge, KL to the sweep's policy;
    the metrics and the samples."""
    from alignray.metrics import evaluate_here

    return evaluate_here(
        model, config.policy, config.reward, prompts, samples_per_prompt=config.eval_samples_per_prompt,
        max_new_tokens=config.max_new_tokens, seed=seed, threads=max(1, int(config.cpus_per_trial)),
        judge=config.judge_model,
    )  # fmt: skip


def evaluate_points(
    root: Path, steps: list[int], config: SweepConfig, prompts: list[str]
) -> tuple[list[tuple[int, dict[str, float], Any]], list[tuple[int, str]]]:
    """Each point saved along training (``root/step-<step>``) evaluated as the final model is: the evaluated points
    (step, metrics, samples) and the errored ones (step, reason). A point meeting a deterministic error (one the same
    model meets again) is only that point's error, its trial's final model stands; any other error fails the trial,
    which Tune then retries."""
    evaluated, errored = [], []
    for step in steps:
        try:
            evaluated.append((step, *evaluate_model(str(root / f"step-{step}"), config, prompts, config.seed)))
        except Exception as err:
            if not is_deterministic(err):
                raise
            errored.append((step, failure_reason(err)))
    return evaluated, errored


def _train_and_evaluate(
    params: dict[str, Any], config: SweepConfig, data: str, prompts: list[str], scratch: Path, train_storage: str,
    failure: Failures,
) -> dict[str, float]:  # fmt: skip
    """Train and evaluate into ``scratch/checkpoint`` (model/, samples.parquet); the metrics and timings to report.
    A deterministic failure is recorded in ``failure`` before it is raised."""
    from ray import tune

    from alignray.train import train

    try:
        run = dataclasses.replace(train_config(params, config, data, str(scratch / "run")),
                                  save_points=config.eval_points)  # fmt: skip
        trained = train(
            run, run_name=tune.get_context().get_trial_id(), storage_path=train_storage, quiet=True,
            logging_dir=str(scratch / "tensorboard"),  # kept with the checkpoint: Ray 2.60 gives a reused worker
            # another trial directory (working_dirs/, never synced) than a fresh one (driver_artifacts/)
        )  # fmt: skip
        evaluated = time.monotonic()
        metrics, samples = evaluate_model(str(scratch / "run" / "model"), config, prompts, config.seed)
        points, errored = evaluate_points(scratch / "run" / POINTS, trained["points"], config, prompts)
        eval_seconds = time.monotonic() - evaluated
        fault, _, target = os.environ.get(FAULT_VARIABLE, "").partition(":")
        if target == params["divergence"] and fault == "raise":
            raise RuntimeError(f"{FAULT_VARIABLE}: injected crash for {target}")
        if target == params["divergence"] and fault == "nan":
            metrics[config.objective_pair[0].metric] = float("nan")
        broken = {o.metric: metrics[o.metric] for o in config.objective_pair if not math.isfinite(metrics[o.metric])}
        if broken:
            raise FloatingPointError(f"non-finite objectives {broken}")
    except Exception as err:
        if is_deterministic(err):  # the same parameters would fail the same way again: recorded, not retried
            failure.record(f"{type(err).__name__}: {err}", params)
        raise

    checkpoint = scratch / "checkpoint"
    checkpoint.mkdir()
    shutil.move(str(scratch / "run" / "model"), checkpoint / "model")
    if (scratch / "tensorboard").is_dir():  # a multi-worker trial's curves go through Ray Train instead
        shutil.move(str(scratch / "tensorboard"), checkpoint / "tensorboard")
    samples.to_parquet(checkpoint / "samples.parquet", index=False)  # ids: the report's token-metric intervals
    for step, _, point_samples in points:
        where = checkpoint / POINTS / f"step-{step}"
        where.mkdir(parents=True)
        shutil.move(str(scratch / "run" / POINTS / f"step-{step}"), where / "model")
        point_samples.to_parquet(where / "samples.parquet", index=False)
    trajectory = [{"step": step, "metrics": {k: float(v) for k, v in m.items()}} for step, m, _ in points]
    trajectory = sorted([*trajectory, *({"step": step, "metrics": {}, "reason": why} for step, why in errored)],
                        key=lambda point: point["step"])  # fmt: skip
    (checkpoint / "points.json").write_text(json.dumps(trajectory, indent=2) + "\n")
    return {
        "points": trajectory,
        **{k: float(v) for k, v in metrics.items()},
        **{f"train/{k}": v for k, v in trained["metrics"].items()},
        "train/pairs": trained["pairs"],
        "train/step": trained["metrics"].get("global_step", math.nan),
        "time/train_s": trained["seconds"],
        "time/eval_s": eval_seconds,
    }
