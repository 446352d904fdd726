"""The sweep's searcher: Ray Tune's ``OptunaSearch``, with the study joined to Tune's trials, told each trial's
constraints, and no secret pickled.

Four differences from ``OptunaSearch``, nothing else:

- each divergence gets an equal share of the trials (±1): before a trial is asked for, the divergence with the
  fewest trials in the study so far (the configured order breaks ties) is enqueued for it, unless a point to evaluate
  is waiting. The share is counted from the study itself, so ``--resume`` and ``--resume --num-trials`` keep it. The
  sampler then draws the divergence's own parameters (``alignray.sweep.space``) from its own history;
- each Optuna trial records the Tune trial id it runs as (user attribute ``tune_trial_id``), so the study and
  ``results.parquet`` (which records each trial's ``optuna_trial`` number) join both ways;
- each finished trial's constraint values (``alignray.sweep.constraints``: the metric minus its bound) are set on
  its Optuna trial (``Trial.set_constraint``) before the study is told its values, so that the sampler steers away
  from infeasible regions and ``study.best_trials`` holds feasible trials only;
- the study's storage is never pickled. Tune pickles its searcher into ``tuner.pkl`` and the searcher's state; an
  ``RDBStorage`` would take its URL, password included, with it. The storage is reopened from the sweep's config
  (the password read again from the environment variable it names) when Tune restores the searcher.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from alignray.sweep.space import trial_params

if TYPE_CHECKING:
    from alignray.sweep.config import SweepConfig
    from alignray.sweep.constraints import Constraint

__all__ = ["TUNE_TRIAL_ATTR", "StudySearch", "divergence_counts", "next_divergence", "open_storage",
           "study_storage_url"]  # fmt: skip

TUNE_TRIAL_ATTR = "tune_trial_id"
"""The Optuna user attribute that names a study trial's Tune trial."""


def study_storage_url(config: SweepConfig) -> str:
    """The Optuna storage URL: ``config.storage`` (with the password from ``storage_password_env``, in memory only)
    or a SQLite file in the experiment directory."""
    import os
    from pathlib import Path

    if config.storage is None:
        return f"sqlite:///{Path(config.output).resolve() / 'study.db'}"
    if config.storage_password_env is None:
        return config.storage
    from sqlalchemy.engine import make_url

    password = os.environ.get(config.storage_password_env)
    if password is None:
        raise ValueError(
            f"storage_password_env={config.storage_password_env!r} names an environment variable that is not set; "
            f"export {config.storage_password_env}=<the storage password>"
        )
    return make_url(config.storage).set(password=password).render_as_string(hide_password=False)


def open_storage(config: SweepConfig) -> optuna.storages.RDBStorage:
    """The sweep's Optuna storage, opened."""
    return optuna.storages.RDBStorage(study_storage_url(config))


def divergence_counts(study: optuna.Study, running: Collection[int] | None = None) -> Counter[str]:
    """How many of the study's trials each divergence has: finished or failed, running, and waiting ones (enqueued
    points) by the divergence they fix. ``running``: the numbers of the running trials that count; a trial left
    RUNNING by a driver that died before Tune saved its searcher never finishes and takes no share (None: all)."""
    counts: Counter[str] = Counter()
    for trial in study.get_trials(deepcopy=False):
        if running is not None and trial.state == optuna.trial.TrialState.RUNNING and trial.number not in running:
            continue
        divergence = trial.params.get("divergence") or trial.system_attrs.get("fixed_params", {}).get("divergence")
        if divergence is not None:
            counts[divergence] += 1
    return counts


def next_divergence(study: optuna.Study, divergences: Sequence[str], running: Collection[int] | None = None) -> str:
    """The divergence the next trial goes to: the one with the fewest trials so far (``divergence_counts``), the
    first configured on a tie."""
    counts = divergence_counts(study, running)
    return min(divergences, key=lambda name: (counts[name], list(divergences).index(name)))


class StudySearch(OptunaSearch):
    """``OptunaSearch`` over the sweep's study (see the module docstring for what differs)."""

    def __init__(
        self, config: SweepConfig, study_name: str, constraints: Sequence[Constraint] = (), **kwargs: Any
    ) -> None:
        self._sweep_config = config
        self._constraints = list(constraints)
        super().__init__(study_name=study_name, storage=open_storage(config), **kwargs)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if result and not error and ot_trial is not None and trial_id not in self._completed_trials:
            for constraint in getattr(self, "_constraints", ()):  # a searcher pickled before constraints had none
                ot_trial.set_constraint(constraint.metric, constraint.value(result))
        super().on_trial_complete(trial_id, result, error)

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and self._sweep_config.search != "grid":
            waiting = self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
            if not waiting:  # a waiting point keeps its divergence; otherwise the one with the fewest trials
                mine = {trial.number for trial in self._ot_trials.values()}  # Tune's own, this run's or restored
                divergence = next_divergence(self._ot_study, self._sweep_config.divergences, mine)
                self._ot_study.enqueue_trial({"divergence": divergence})
        params = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return trial_params(params)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, **self._without_storage()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reopen()

    def save(self, checkpoint_path: str) -> None:
        """Tune's own save (it pickles the attributes), with the storage left out."""
        kept = {name: self.__dict__[name] for name in ("_storage", "_ot_study", "_ot_trials")}
        self.__dict__.update(self._without_storage())
        try:
            super().save(checkpoint_path)
        finally:
            self.__dict__.update(kept)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's own restore, then the storage opened again."""
        super().restore(checkpoint_path)
        self._reopen()

    def _without_storage(self) -> dict[str, Any]:
        """The attributes that hold the storage, replaced: none, and each trial as its number."""
        numbers = {tune_id: trial.number for tune_id, trial in self._ot_trials.items()}
        return {"_storage": None, "_ot_study": None, "_ot_trials": numbers}

    def _reopen(self) -> None:
        self._storage = open_storage(self._sweep_config)
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage, sampler=self._sampler)
        ids = {trial.number: trial._trial_id for trial in self._ot_study.get_trials(deepcopy=False)}
        self._ot_trials = {t: optuna.Trial(self._ot_study, ids[number]) for t, number in self._ot_trials.items()}
