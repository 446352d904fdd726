"""Confirmation: the search's feasible frontier, retrained with new seeds and measured on held-out prompts.

The search picks its frontier with the same evaluation prompts that measure it, from one training run per
configuration, so its figures are optimistic: a configuration that won by luck of its seed or of those prompts looks
best exactly because it won. After the search, each configuration on its feasible frontier is

- evaluated again as trained (the search's seed; its saved model), and
- retrained with ``replicates`` new seeds (``seed + 1``, ..., ``seed + replicates``: the order of the preference
  data and the sampling of the evaluation both change) and evaluated,

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
from alignray.sweep.config import SweepConfig
from alignray.sweep.constraints import Constraint, violations
from alignray.sweep.objectives import Objective, objective_points

__all__ = ["CONFIRMED", "Unit", "confirmation_units", "confirmed_columns", "confirmed_view", "run_units",
           "split_prompts"]  # fmt: skip

CONFIRMED = "confirmed/"
"""Prefix of the confirmation's columns in ``results.parquet``: ``confirmed/<metric>`` (mean over seeds),
``confirmed/seeds``, ``confirmed/feasible``, ``confirmed/violations``, ``confirmed/pareto``."""
BASE_UNIT = "base"
NO_SEED = "no seed evaluated: every seed failed (confirmation.parquet holds the reasons)"
"""The confirmation's violation of a configuration whose every seed failed."""


@dataclasses.dataclass(frozen=True)
class Unit:
    """One model to evaluate on the confirmation prompts: a frontier trial at one seed (the search's own run,
    ``checkpoint`` set, or a new training run), or the base policy (``trial`` "base")."""

    trial: str
    seed: int
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: Any = None
    """The search's Tune checkpoint of this trial (its ``model/``), when the unit is the search's own run."""

    @property
    def retrained(self) -> bool:
        return self.trial != BASE_UNIT and self.checkpoint is None

    def directory(self, root: Path) -> Path:
        return root / BASE_UNIT if self.trial == BASE_UNIT else root / self.trial / f"seed-{self.seed}"


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


def confirmation_units(config: SweepConfig, front: pd.DataFrame, checkpoints: dict[str, Any]) -> list[Unit]:
    """The base policy, then per frontier trial its search run and ``replicates`` new seeds."""
    units = [Unit(BASE_UNIT, config.seed)]
    for _, row in front.iterrows():
        params = {k: row[k] for k in ("divergence", "beta", "learning_rate", "alpha", "loss_type")
                  if k in row and not _missing(row[k])}  # fmt: skip
        units.append(Unit(row["trial"], config.seed, params, checkpoints.get(row["trial"])))
        units += [Unit(row["trial"], config.seed + i, params) for i in range(1, config.replicates + 1)]
    return units


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _evaluate_unit(unit: Unit, config: SweepConfig, pairs: pd.DataFrame, prompts: list[str], train_storage: str):
    """Runs as a Ray task in a trial's resources: the unit's model (trained here on ``pairs`` at the unit's seed when
    ``retrained``) on the confirmation prompts; (metrics, samples, train seconds)."""
    import torch

    from alignray.sweep.trial import drop_train_run, evaluate_model, train_config
    from alignray.train import train
    from alignray.world import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(max(1, int(config.cpus_per_trial)))
    scratch = Path(tempfile.mkdtemp(prefix="alignray-confirm-"))
    run_name = f"confirm-{unit.trial}-seed-{unit.seed}"
    try:
        trained = 0.0
        if unit.trial == BASE_UNIT:
            model = config.policy
        elif unit.retrained:
            data = scratch / "preferences.parquet"
            pairs.to_parquet(data, index=False)
            run = train_config(unit.params, config, str(data), str(scratch / "run"))
            run = dataclasses.replace(run, seed=unit.seed)
            trained = train(run, run_name=run_name, storage_path=train_storage, quiet=True)["seconds"]
            model = str(scratch / "run" / "model")
        else:
            model = str(Path(unit.checkpoint.to_directory(str(scratch / "checkpoint"))) / "model")
        metrics, samples = evaluate_model(model, config, prompts, unit.seed)
        if unit.retrained and config.workers_per_trial > 1:
            drop_train_run(train_storage, run_name)
        return metrics, samples, trained
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_units(
    units: list[Unit], config: SweepConfig, pairs: pd.DataFrame, prompts: list[str], root: Path,
    resources: dict[str, float], concurrent: int, train_storage: str, say, write_atomic,
) -> pd.DataFrame:  # fmt: skip
    """Evaluate every unit not done yet under ``root`` as Ray tasks in ``resources`` each, ``concurrent`` at a time
    (the search's count: a multi-worker unit's Ray Train workers need room beside the tasks), saving each as it
    finishes; one row per unit: trial, seed, retrained, status, reason, metrics and training seconds.

    A unit that fails the same way whenever it runs (``alignray.sweep.trial.is_deterministic``: NaN, a bad value) is
    recorded in its ``failure.json`` and not run again; any other failure (Ray already retried a lost worker
    ``max_failures`` times) is reported and left to run again on ``--resume``."""
    import ray

    from alignray.sweep.trial import is_deterministic

    waiting = [unit for unit in units if not _done(unit.directory(root))]
    failed: dict[tuple[str, int], str] = {}  # (trial, seed) -> reason
    if waiting:
        retrained = sum(u.retrained for u in waiting)
        say(f"5/6 confirmation: {len(waiting)} models on {len(prompts)} held-out prompts ({retrained} retrained "
            f"with new seeds), {concurrent} at once")  # fmt: skip
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
        directory = unit.directory(root)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            metrics, samples, trained = ray.get(ready)
            broken = {k: v for k, v in metrics.items() if not math.isfinite(v)}
            if broken:
                raise FloatingPointError(f"non-finite metrics {broken}")
        except Exception as err:  # the configuration is confirmed with fewer seeds
            cause = getattr(err, "cause", None) or err  # a Ray task's error carries the task's own
            text = str(cause).strip()
            reason = f"{type(cause).__name__}: {text.splitlines()[-1] if text else ''}"
            failed[unit.trial, unit.seed] = reason
            if is_deterministic(err):
                failure = json.dumps({"reason": reason}) + "\n"
                write_atomic(directory / "failure.json", lambda p, f=failure: p.write_text(f))
            say(f"5/6 confirmation: {unit.trial} seed {unit.seed} failed ({reason[:300]})"
                + ("" if is_deterministic(err) else "; --resume runs it again"))  # fmt: skip
            continue
        write_atomic(directory / "samples.parquet", lambda p, s=samples: s.to_parquet(p, index=False))
        record = {"metrics": {k: float(v) for k, v in metrics.items()}, "retrained": unit.retrained,
                  "time/train_s": trained}  # fmt: skip
        write_atomic(directory / "metrics.json", lambda p, r=record: p.write_text(json.dumps(r, indent=2) + "\n"))
        shown = ", ".join(f"{m} {metrics[m]:.3g}" for m in dict.fromkeys([o.metric for o in config.objective_pair]
                                                                             + ["kl/ref"]))  # fmt: skip
        say(f"5/6 confirmation: {unit.trial} seed {unit.seed} done: {shown}")
    return pd.DataFrame([_row(u, u.directory(root), failed.get((u.trial, u.seed))) for u in units])


def _done(directory: Path) -> bool:
    return (directory / "metrics.json").is_file() or (directory / "failure.json").is_file()


def _row(unit: Unit, directory: Path, failed: str | None = None) -> dict[str, Any]:
    row = {"trial": unit.trial, "seed": unit.seed, "retrained": unit.retrained}
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
