"""What the sweep searches: a define-by-run Optuna space, the seeds' hand grid, and the samplers.

A trial's parameters: ``divergence`` (categorical over the configured set), ``beta`` and ``learning_rate``
(log-uniform), ``alpha`` (uniform, only when the divergence is ``alpha_divergence``; the paper's α, see
``alignray.divergences``) and ``loss_type`` (categorical, only when more than one is configured).

Each divergence has parameters of its own in the study: ``reverse_kl.beta``, ``reverse_kl.learning_rate``, ... (see
``study_name``). TPE with ``group=True`` models each group of parameters that occur together on its own, so β, the
learning rate and α of a divergence are modelled from that divergence's trials alone: a good β for forward KL says
nothing about reverse KL. Trials see the plain names (``trial_params``). Which divergence a trial gets is not
sampled: ``alignray.sweep.searcher`` gives each its share.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from alignray.sweep.config import SweepConfig

__all__ = [
    "GRID_BETAS",
    "GRID_DIVERGENCES",
    "SearchSpace",
    "grid_points",
    "make_sampler",
    "seed_points",
    "study_name",
    "study_point",
    "trial_params",
]

SHARED = ("divergence", "loss_type")
"""Parameters every divergence shares in the study; the others are named per divergence (``study_name``)."""


def study_name(divergence: str, name: str) -> str:
    """The study's name of a trial parameter: ``reverse_kl.beta`` for β of a reverse-KL trial."""
    return name if name in SHARED else f"{divergence}.{name}"


def study_point(point: dict[str, Any]) -> dict[str, Any]:
    """A point given in plain names (``points_to_evaluate``, the grid, the start points) in the study's names."""
    return {study_name(point["divergence"], name): value for name, value in point.items()}


def trial_params(params: dict[str, Any]) -> dict[str, Any]:
    """A study trial's parameters in the plain names a trial reads (``beta``, not ``reverse_kl.beta``)."""
    return {name.split(".", 1)[-1]: value for name, value in params.items()}

GRID_BETAS = (0.1, 0.5, 1.0, 10.0)
"""The seeds' hand-picked β values."""
GRID_DIVERGENCES: tuple[tuple[str, float | None], ...] = (
    ("reverse_kl", None),
    ("forward_kl", None),
    ("js_divergence", None),
    ("alpha_divergence", 0.5),
)
"""The seeds' divergences (with α) for ``search='grid'``."""


def _ranges(config: SweepConfig) -> dict[str, tuple[float, float]]:
    ranges = {
        "beta": (config.beta_min, config.beta_max),
        "learning_rate": (config.learning_rate_min, config.learning_rate_max),
        "alpha": (config.alpha_min, config.alpha_max),
    }
    if config.search == "grid":  # the grid's values lie inside the space Optuna records them in
        ranges["beta"] = (min(config.beta_min, *GRID_BETAS), max(config.beta_max, *GRID_BETAS))
        lr = config.grid_learning_rate
        ranges["learning_rate"] = (min(config.learning_rate_min, lr), max(config.learning_rate_max, lr))
    return ranges


class SearchSpace:
    """The define-by-run space of a sweep for ``OptunaSearch``; called with an Optuna trial, it suggests the
    parameters and returns the constant ones. A class, not a closure, so Tune can save it with the searcher."""

    def __init__(self, config: SweepConfig) -> None:
        self.ranges = _ranges(config)
        grid = config.search == "grid"
        self.divergences = [name for name, _ in GRID_DIVERGENCES] if grid else list(config.divergences)
        self.loss_types = list(config.loss_types)

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        divergence = trial.suggest_categorical("divergence", self.divergences)
        trial.suggest_float(study_name(divergence, "beta"), *self.ranges["beta"], log=True)
        trial.suggest_float(study_name(divergence, "learning_rate"), *self.ranges["learning_rate"], log=True)
        if divergence == "alpha_divergence":
            trial.suggest_float(study_name(divergence, "alpha"), *self.ranges["alpha"])
        if len(self.loss_types) > 1:
            trial.suggest_categorical("loss_type", self.loss_types)
            return {}
        return {"loss_type": self.loss_types[0]}


def grid_points(config: SweepConfig) -> list[dict[str, Any]]:
    """The seeds' grid: β ∈ GRID_BETAS × GRID_DIVERGENCES at ``grid_learning_rate`` and the first loss type."""
    points, learning_rate = [], config.grid_learning_rate
    for beta in GRID_BETAS:
        for divergence, alpha in GRID_DIVERGENCES:
            point: dict[str, Any] = {"divergence": divergence, "beta": beta, "learning_rate": learning_rate}
            if alpha is not None:
                point["alpha"] = alpha
            if len(config.loss_types) > 1:
                point["loss_type"] = config.loss_types[0]
            points.append(point)
    return points


def seed_points(config: SweepConfig) -> list[dict[str, Any]]:
    """The trials to run first, in plain names: the grid's points for ``search='grid'``; else ``points_to_evaluate``
    and then one start point for each divergence they leave out (all of them by default), at most ``num_trials`` in
    all. The start points lie in the cautious corner of the space, where every divergence can be feasible: β in the
    upper half of its range and the learning rate in the lower half (log scale), spread by a Latin hypercube
    (scipy.stats.qmc, seeded by ``seed``) so that no two share a β or a learning-rate stratum. A divergence's first
    trial at a high learning rate and low β drifts past the KL budget whatever the divergence (on tiny-imdb, reverse
    KL at lr 9e-4 reached KL 11.6 and 14.3), and then says nothing about where it is feasible."""
    if config.search == "grid":
        points = grid_points(config)
    else:
        from scipy.stats import qmc

        points = [json.loads(point) for point in config.points_to_evaluate]
        covered = {point["divergence"] for point in points}
        names = [name for name in config.divergences if name not in covered][: config.num_trials - len(points)]
        draws = qmc.LatinHypercube(d=3, seed=config.seed).random(len(names)) if names else []
        for name, (u_beta, u_lr, u_alpha) in zip(names, draws, strict=True):
            point = {
                "divergence": name,
                "beta": _log_scale(0.5 + u_beta / 2, config.beta_min, config.beta_max),
                "learning_rate": _log_scale(u_lr / 2, config.learning_rate_min, config.learning_rate_max),
            }
            if name == "alpha_divergence":
                point["alpha"] = float(config.alpha_min + u_alpha * (config.alpha_max - config.alpha_min))
            points.append(point)
    if len(config.loss_types) == 1:  # a single loss type is a constant, not a searched parameter
        points = [{k: v for k, v in point.items() if k != "loss_type"} for point in points]
    return points


def _log_scale(u: float, low: float, high: float) -> float:
    """``u`` in [0, 1) mapped log-uniformly onto [low, high]."""
    return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))


def make_sampler(config: SweepConfig) -> optuna.samplers.BaseSampler:
    """The configured Optuna sampler, seeded; TPE and NSGA-II start with ``startup_trials`` random trials."""
    import optuna

    if config.sampler == "random" or config.search == "grid":
        return optuna.samplers.RandomSampler(seed=config.seed)
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(2, config.startup_trials), seed=config.seed)
    with warnings.catch_warnings():  # multivariate/group/constant_liar are marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=config.startup_trials,
            multivariate=True,
            group=True,  # α exists only for alpha_divergence: TPE models each group of parameters on its own
            constant_liar=True,  # concurrent trials are not all sent to the same region
            seed=config.seed,
        )
