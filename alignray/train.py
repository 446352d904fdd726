"""One f-DPO training run from a preference file: in this process, or data-parallel on Ray Train workers.

``train(config)`` is the whole run: load the data and the policy, train with ``FDPOTrainer``, save the policy
(``<out>/model``, safetensors) and ``<out>/metrics.json``. With ``config.workers > 1`` the same trainer runs in each
worker of a ``TorchTrainer`` (gloo on CPUs, NCCL on GPUs), wrapped by Ray's ``prepare_trainer`` and reporting with
``RayTrainReportCallback``; the last checkpoint becomes ``<out>/model``.

``save_points > 1`` keeps the model at evenly spaced steps along the run as well (the Trainer's own ``save_steps``,
as a fraction of the run, with ``save_only_model``): ``<out>/points/step-<n>/``, each a ``save_pretrained`` policy
like ``<out>/model``, whose step the returned ``points`` list.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, load_dataset
from transformers import PrinterCallback, TrainerCallback
from transformers.integrations import TensorBoardCallback

from alignray.train_config import POINTS, TrainConfig
from alignray.trainer import REFERENCE_COLUMNS, FDPOConfig, FDPOTrainer
from alignray.world import load_policy, policy_context

log = logging.getLogger(__name__)

__all__ = ["PREFERENCE_COLUMNS", "build_trainer", "check_against_policy", "load_preferences", "train"]


def check_against_policy(config: TrainConfig) -> None:
    """Refuse a ``max_length`` beyond the policy's context (its config.json), before any model loads or Ray starts;
    a ValueError naming the field, its value and the limit."""
    context = policy_context(config.policy)
    if config.max_length > context:
        raise ValueError(
            f"max_length={config.max_length} exceeds the {context}-token context of policy={config.policy!r}; "
            f"use max_length <= {context}"
        )

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


def load_preferences(path: str | Path) -> Dataset:
    """A preference parquet file (or a directory of them) as a ``datasets.Dataset`` with prompt/chosen/rejected,
    and the reference log-probs ``REFERENCE_COLUMNS`` when the file has them."""
    path = Path(path)
    files = sorted(str(p) for p in path.glob("*.parquet")) if path.is_dir() else [str(path)]
    if not files:
        raise ValueError(f"data={str(path)!r} holds no parquet files")
    data = load_dataset("parquet", data_files=files, split="train")
    missing = [c for c in PREFERENCE_COLUMNS if c not in data.column_names]
    if missing:
        raise ValueError(f"data={str(path)!r} lacks columns {missing}; it has {data.column_names}")
    if len(data) == 0:
        raise ValueError(f"data={str(path)!r} has no rows")
    shared_reference = all(c in data.column_names for c in REFERENCE_COLUMNS)
    return data.select_columns(list(PREFERENCE_COLUMNS) + (list(REFERENCE_COLUMNS) if shared_reference else []))


def _fdpo_args(config: TrainConfig, output_dir: str, **overrides: Any) -> FDPOConfig:
    settings: dict[str, Any] = {
        "output_dir": output_dir,
        "divergence": config.divergence,
        "divergence_params": config.divergence_params,
        "beta": config.beta,
        "loss_type": config.loss_type,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.epochs,
        "per_device_train_batch_size": config.batch_size,
        "max_length": config.max_length,
        "seed": config.seed,
        "precompute_ref_log_probs": config.precompute_ref,
        "use_cpu": not torch.cuda.is_available(),
        "report_to": "none",
        "logging_steps": 5,
        "save_strategy": "no",
        "dataloader_num_workers": 0,
    }
    if config.save_points > 1:  # a checkpoint (the model only) after each save_points-th of the steps
        settings |= {"save_strategy": "steps", "save_steps": 1 / config.save_points, "save_only_model": True}
    return FDPOConfig(**(settings | overrides))


def build_trainer(config: TrainConfig, data: Dataset, output_dir: str, **overrides: Any) -> FDPOTrainer:
    """An FDPOTrainer for ``config`` on ``data``; ``overrides`` go to ``FDPOConfig``."""
    model, tokenizer = load_policy(config.policy)
    tokenizer.padding_side = "left"
    return FDPOTrainer(
        model=model.train(),
        args=_fdpo_args(config, output_dir, **overrides),
        train_dataset=data,
        processing_class=tokenizer,
    )


def _summary(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The last logged value of each numeric metric (``train_loss`` is the Trainer's mean over the run)."""
    merged: dict[str, float] = {}
    for entry in log_history:
        merged.update({k: float(v) for k, v in entry.items() if isinstance(v, int | float)})
    return merged


def train(
    config: TrainConfig,
    run_name: str = "fdpo",
    storage_path: str | None = None,
    quiet: bool = False,
    logging_dir: str | None = None,
) -> dict[str, Any]:
    """Train, save ``<out>/model`` and ``<out>/metrics.json``; returns the metrics. ``workers > 1`` uses Ray Train,
    whose run is ``run_name`` under ``storage_path`` (default: a temporary directory, removed afterwards).
    ``quiet`` prints no progress bar or log line (many concurrent sweep trials would interleave them).
    ``logging_dir``: write the training logs (loss, rewards/margins, f-margins, ...) as TensorBoard events there
    (in-process runs; Ray Train runs report through Ray).

    ``check_against_policy`` runs first: a ``max_length`` beyond the policy's context fails before anything loads."""
    check_against_policy(config)
    data = load_preferences(config.validate_data())
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for earlier in (out / POINTS, out / "trainer"):  # an earlier run's points and checkpoints here are not ours
        shutil.rmtree(earlier, ignore_errors=True)
    started = time.monotonic()
    if config.workers > 1:
        metrics = _train_on_ray(config, out, run_name, storage_path)
    else:
        trainer = build_trainer(config, data, str(out / "trainer"), disable_tqdm=quiet)
        if quiet:
            trainer.remove_callback(PrinterCallback)
        if logging_dir is not None:
            # transformers 5 has no TrainingArguments.logging_dir: report_to="tensorboard" would write under the
            # trainer's output_dir, which is deleted below, so the callback gets its own writer.
            from tensorboardX import SummaryWriter

            trainer.add_callback(TensorBoardCallback(SummaryWriter(logdir=logging_dir)))
        trainer.train()
        trainer.save_model(str(out / "model"))
        _drop_pickles(out / "model")
        metrics = _summary(trainer.state.log_history)
        metrics["global_step"] = float(trainer.state.global_step)
        for checkpoint in (out / "trainer").glob("checkpoint-*"):
            _keep_point(checkpoint, out, int(trainer.state.global_step))
        shutil.rmtree(out / "trainer", ignore_errors=True)
    seconds = time.monotonic() - started
    points = sorted(int(p.name.removeprefix("step-")) for p in (out / POINTS).glob("step-*"))
    result = {
        "config": dataclasses.asdict(config),
        "points": points,
        "pairs": len(data),
        "seconds": round(seconds, 2),
        "pairs_per_second": round(len(data) * config.epochs / seconds, 2),
        "metrics": metrics,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: the same trainer, prepared for Ray and reporting each epoch's checkpoint."""
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    config = TrainConfig(**loop_config["config"])
    if not torch.cuda.is_available() and os.environ.get("ACCELERATE_TORCH_DEVICE", "").startswith("cuda"):
        os.environ["ACCELERATE_TORCH_DEVICE"] = "cpu"  # Ray names the GPU it gave this worker, which torch cannot use
    data = load_preferences(config.data)
    with tempfile.TemporaryDirectory() as scratch:
        saves = {} if config.save_points > 1 else {"save_strategy": "epoch"}  # else save_points' steps
        trainer = build_trainer(config, data, scratch, logging_strategy="epoch", save_only_model=True, **saves)
        if config.save_points > 1:  # the last save comes before the epoch's log: log the final step first
            trainer.add_callback(_LogTheLastStep())
        trainer.add_callback(RayTrainReportCallback())
        prepare_trainer(trainer).train()


class _LogTheLastStep(TrainerCallback):
    """Log at the last step, before its checkpoint is saved: ``RayTrainReportCallback`` reports the logged metrics
    with each save, and a step-based save at the end of an epoch comes before the epoch's own log."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True
        return control


def _train_on_ray(config: TrainConfig, out: Path, run_name: str, storage_path: str | None) -> dict[str, float]:
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.huggingface.transformers import RayTrainReportCallback
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    storage = storage_path or tempfile.mkdtemp(prefix="alignray-train-")  # a str: cloud URIs stay URIs
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": dataclasses.asdict(config)},
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=config.use_gpu),
        torch_config=TorchConfig(backend=process_group_backend(config.use_gpu)),
        # A fixed name (no timestamp): a restored sweep trial finds its own Train run again.
        run_config=RunConfig(name=run_name, storage_path=storage, failure_config=FailureConfig(max_failures=1)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run finished without a checkpoint (error: {result.error})")
    with result.checkpoint.as_directory() as directory:
        shutil.rmtree(out / "model", ignore_errors=True)
        shutil.copytree(Path(directory) / RayTrainReportCallback.CHECKPOINT_NAME, out / "model")
    _drop_pickles(out / "model")
    final = _step(out / "model")
    for checkpoint, _ in result.best_checkpoints if config.save_points > 1 else ():  # every one is kept
        with checkpoint.as_directory() as directory:
            _keep_point(Path(directory) / RayTrainReportCallback.CHECKPOINT_NAME, out, final, copy=True)
    (out / "model" / "trainer_state.json").unlink(missing_ok=True)
    if storage_path is None:
        shutil.rmtree(storage, ignore_errors=True)
    metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
    return {**metrics, "global_step": float(final)}


def process_group_backend(use_gpu: bool) -> str:
    """The Ray Train workers' torch.distributed backend: NCCL when they hold GPUs that torch can use, else gloo.

    Ray picks NCCL whenever GPUs are requested, but a node whose GPUs torch cannot see (no CUDA build, no driver, or
    GPUs only declared as resources) has no NCCL: the workers then train on CPU with gloo, and this says so once
    per run. Decided here, in the process that holds the trial's own GPU share, on the kind of node the workers get
    (a cluster whose GPU nodes differ in that would need the backend per node)."""
    if use_gpu and not torch.cuda.is_available():
        log.warning("Ray Train workers hold GPUs, but torch sees no CUDA device: they train on CPU (gloo)")
        return "gloo"
    return "nccl" if use_gpu else "gloo"


def _step(checkpoint: Path) -> int:
    """The optimizer step at which the Trainer saved ``checkpoint`` (its ``trainer_state.json``)."""
    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


def _keep_point(checkpoint: Path, out: Path, final: int, copy: bool = False) -> None:
    """Keep a Trainer checkpoint saved before the ``final`` step as ``<out>/points/step-<n>/`` (moved, or copied)."""
    step = _step(checkpoint)
    if step >= final:
        return
    target = out / POINTS / f"step-{step}"
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if copy else shutil.move)(str(checkpoint), str(target))
    _drop_pickles(target)
    for state in ("trainer_state.json", "rng_state.pth"):
        (target / state).unlink(missing_ok=True)


def _drop_pickles(directory: Path) -> None:
    """Remove the Trainer's pickled ``training_args.bin``: weights are safetensors and nothing here unpickles."""
    for path in directory.glob("*.bin"):
        path.unlink()
