"""The config of a reward–diversity sweep (``alignray.sweep.driver``), its presets, and the names a sweep searches."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from alignray.config import check_learning_rates, check_positive, coerce_fields
from alignray.data.config import PreferenceConfig
from alignray.data.pairing import check_strategy
from alignray.divergences import get_divergence
from alignray.losses import check_loss_type
from alignray.registry import unknown_name
from alignray.sweep.objectives import Objective, parse_objectives
from alignray.train_config import TrainConfig

__all__ = ["PARAMETERS", "SAMPLERS", "SWEEP_PRESETS", "SweepConfig", "check_share", "storage_password_refusal"]

PARAMETERS = ("divergence", "beta", "learning_rate", "alpha", "loss_type")
"""The names a trial's parameters (and a point to evaluate) may use."""
SAMPLERS = ("tpe", "nsga2", "random")
"""Optuna samplers by name: TPE (default), NSGA-II, random search."""


@dataclass(frozen=True)
class SweepConfig:
    """A reward–diversity sweep: preference data on Ray Data, f-DPO trials searched by Optuna on Ray Tune, and the
    Pareto frontier. Defaults are the tiny-imdb preset: 8 trials (2 per divergence) of ~285 pairs each, 2 at a time,
    each divergence's answer confirmed with 2 fresh seeds, in about 6 minutes on 2 CPU cores."""

    output: str = "runs/sweep"
    """Experiment directory: preferences, study, Tune experiment, results, frontier models, report."""
    policy: str = "tiny-imdb"
    """SFT policy every trial starts from and stays near: a preset, a local path or a hub id."""
    reward: str = "tiny-imdb"
    """Reward model (its POSITIVE logit): a preset, a local path or a hub id."""
    judge: str = "tiny-imdb"
    """A second sentiment classifier that scores every evaluation (``judge/mean``, ``judge/frac_positive``) and is
    never optimised, never an objective, never a constraint: a pick whose reward rose while the judge's did not is
    flagged as reward hacking. A preset (tiny-imdb: its larger judge/, built apart from the reward; lvwerra-imdb:
    siebert/sentiment-roberta-large-english), a local path or a hub id of a sequence classifier with a POSITIVE
    label; none for no judge."""
    num_prompts: int = 96
    """Preference data: prompts (openings of held-out IMDB reviews kept for preference data). 96 prompts give ~285
    pairs, 18 steps, a trial's training in ~15 s on one CPU core: the size that lets make sweep confirm every
    divergence's answer with fresh seeds within 6 minutes on 2 cores."""
    samples_per_prompt: int = 4
    """Preference data: completions sampled per prompt."""
    strategy: str = "top_vs_bottom"
    """Preference data: pairing strategy (best_vs_worst, top_vs_bottom, random_pairs, threshold)."""
    k: int = 2
    """Preference data: top_vs_bottom's k (k=2 of 4 samples: best against the two worst, second best against the
    worst; 3 pairs a prompt, seed 004's recipe)."""
    max_new_tokens: int = 48
    """Tokens sampled per completion, for preference data and evaluation alike."""
    search: str = "optuna"
    """optuna (the sampler below over the space) or grid (the seeds' hand grid: β ∈ {0.1, 0.5, 1, 10} × reverse_kl,
    forward_kl, js_divergence, alpha_divergence α=0.5; num_trials is then the grid's 16)."""
    sampler: str = "tpe"
    """Optuna sampler: tpe, nsga2 or random. Each divergence has its own β, learning rate and α in the study, which
    TPE models from that divergence's trials; NSGA-II crosses over only the parameters every trial shares, so with
    them it draws β, the learning rate and α at random."""
    num_trials: int = 8
    """Trials to run (search=optuna), at least 2 per divergence: each divergence gets an equal share (±1)."""
    startup_trials: int = 4
    """Finished trials before TPE models the space, counted over all divergences (the start points, one per
    divergence, are the first of them); NSGA-II: its population size."""
    divergences: tuple[str, ...] = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
    """Divergences to search over (alignray.divergences.DIVERGENCES)."""
    loss_types: tuple[str, ...] = ("sigmoid",)
    """Loss shapes to search over (sigmoid, hinge, ipo); one fixes it."""
    beta_min: float = 0.05
    """Smallest β (log-uniform)."""
    beta_max: float = 2.0
    """Largest β."""
    learning_rate_min: float = 1e-4
    """Smallest learning rate (log-uniform). Each divergence's first trial draws from the lower half of the range
    (log scale), where every divergence can be feasible."""
    learning_rate_max: float = 1e-3
    """Largest learning rate: past the edge of the KL budget on tiny-imdb, so that the search learns where the edge
    lies. In the sweep measured under max_kl the trials at lr 6.9e-4-1.4e-3 ended at KL 11.8-28.4 nats, while every
    trial at lr <= 5.5e-4 stayed below 4.7 nats; the policy's own pretraining peak rate is 2e-3."""
    alpha_min: float = 0.1
    """Smallest α of alpha_divergence (the paper's α; uniform)."""
    alpha_max: float = 0.9
    """Largest α."""
    grid_learning_rate: float = 5e-4
    """Learning rate of every grid trial."""
    points_to_evaluate: tuple[str, ...] = ()
    """Trials to run first, each a JSON mapping, e.g. '{"divergence": "reverse_kl", "beta": 0.1,
    "learning_rate": 5e-4}' (YAML: a list of mappings); default: one per divergence in the cautious corner of the
    space (β in the upper half of its range, the learning rate in the lower half), so that every divergence is tried
    first where it can be feasible."""
    objectives: tuple[str, ...] = ("reward/mean", "diversity/word_entropy")
    """The two objectives, each a recorded metric (alignray.metrics.METRICS) written metric, metric:max or metric:min
    (default max); the first is the plots' y axis, the second their x axis. Default: reward against
    diversity/word_entropy, the entropy of the real words the policy writes (non-words are left out of it, while
    diversity/token_entropy, the seeds', rises with them; diversity/predictive_entropy is the f-DPO paper's).
    --objectives reward/mean kl/ref:min is the DPO paper's reward–KL frontier (its figure 2): most reward for least
    KL to the reference policy."""
    max_kl: float | None = 10.0
    """KL budget: a trial whose kl/ref (nats per completion, the DPO paper's KL axis) exceeds it is infeasible (kept in
    results.parquet, left out of the frontier, the hypervolume and the picks; Optuna is told). None: no budget.
    Measured on tiny-imdb, its policy trained without dropout and its reward fine-tuned from that policy (`python
    jobs/sweep.py --config docs/calibrate_bounds.yaml`: 12 random trials without bounds, lr 1e-4 to 2e-3, 96 evaluation
    prompts x 2, seed 0; 24 candidates with their points; base: non-word rate 0.073, garbled 0.010, word entropy
    6.09). Below KL 4.7 (lr <= 5.5e-4) every candidate kept the base's text: non-words 0.075-0.105, garbled 0-2.1%,
    word entropy 5.94-6.13. No candidate fell between 4.7 and 11.8 nats. An α trial (lr 1.4e-3) ended at 11.8 nats
    with the base's text (0.068 non-words) but its point at 14.3 nats wrote 0.117 non-words and 4.7% garbled, both
    for less reward than trials at lr ~2e-4; past 17 nats the text changed: reverse KL (lr 8.5e-4) at 17.2-18.4
    nats and JS (lr 6.9e-4) at 17.6-20.4 wrote 0.135-0.161 non-words with 5.75-5.84 nats of word entropy, reverse KL
    at 27.4-28.4 nats (lr 1.1e-3) 0.151-0.186 non-words and 5.2-9.4% garbled. (The worlds before it, with a policy
    trained with dropout, gave the same picture nearer the budget: KL below 3 at lr <= 5.5e-4, 7.6-16 from lr
    6.9e-4.)"""
    max_nonword_increase: float | None = 0.05
    """Fluency bound: a trial whose fluency/nonword_rate (share of words outside the reference vocabulary) exceeds the
    base policy's by more than this is infeasible. None: no bound. In the sweep measured under max_kl every candidate
    below 4.7 nats lay within +0.032 of the base's 0.073, and the α trial at 11.8-14.3 nats within +0.044; this bound
    catches the reverse-KL and JS trials at 17.2-20.4 nats (+0.061 to +0.088) and reverse KL at 27.4-28.4 nats
    (+0.078 to +0.113), all also past max_kl. (With the policy before, trained with dropout: candidates below 3 nats
    within +0.027 of 0.081, a JS trial caught from +0.055 at 7.6 nats.)"""
    max_garbled_increase: float | None = 0.04
    """Fluency bound on the tail: a candidate whose fluency/garbled_rate (the share of its completions at least 40%
    of whose words are non-words: gibberish on tiny-imdb) exceeds the base policy's by more than this is infeasible.
    The mean bound above misses a policy that writes normal text and, now and then, gibberish. None: no bound.
    Calibrated on two default sweeps of the first world (seed 0, 96 evaluation prompts x 2, samples read): the base
    wrote 0 of 192 such completions; candidates below KL 5 wrote 0-4.7%, most under 3%; candidates past KL 5.8 wrote
    2.1-12.5%, most above 5%. Measured again on today's world (the sweep under max_kl): the base wrote 1.0%, every
    candidate below 4.7 nats 0-2.1%, the α trial at 11.8-14.3 nats 2.1-4.7%, reverse KL and JS at 17.2-20.4 nats
    1.0-3.1%, reverse KL at 27.4-28.4 nats 5.2-9.4%, which this bound leaves out."""
    hv_reward: float | None = None
    """The first objective's value at the hypervolume reference point (default: the base policy's)."""
    hv_diversity: float | None = None
    """The second objective's value at the hypervolume reference point. Default, maximised: the base policy's less
    5% (a trial counts only while it keeps 95% of the base's diversity, and a frontier more diverse by a few
    hundredths of a nat gains visibly; half the base's diversity, the old default, made the hypervolume a
    reward-only score); minimised: the sweep's bound on the metric (max_kl for kl/ref) if it has one, else the base
    policy's plus 5%."""
    epochs: float = 1.0
    """Each trial: passes over the preference data."""
    batch_size: int = 16
    """Each trial: pairs per optimizer step and worker."""
    max_length: int = 96
    """Each trial: tokens of prompt + completion kept per pair."""
    eval_prompts: int = 64
    """Each trial: held-out evaluation prompts (disjoint from the preference prompts)."""
    eval_samples_per_prompt: int = 2
    """Each trial: completions sampled per evaluation prompt."""
    confirmation_prompts: int = 80
    """Confirmation: evaluation prompts held out from the search's (other reviews of the evaluation pool, drawn after
    the search's eval_prompts, none sharing its text with a search or preference-data prompt) on which the confirmed
    candidates are measured again, every seed of them; the report's answers, frontier, intervals and verdicts come
    from them. 0: no confirmation (the search's figures stand, labelled as such)."""
    replicates: int = 2
    """Confirmation: fresh training seeds (seed + 1, ...) per confirmed candidate. The confirmed figures, intervals
    and verdicts come from these seeds alone; the search's own run is measured beside them and never averaged in (it
    is the run that won the search). At least 1 while confirmation_prompts is set."""
    eval_points: int = 2
    """Each trial: models evaluated along its training, at each multiple of ceil(steps / eval_points) and at the end
    (2 on tiny-imdb's 18 steps: steps 9 and 18); every one is a frontier candidate (``<trial>@<step>`` in
    results.parquet, the final one the trial id), and Optuna is told the final one. Each costs an evaluation (~7 s
    on tiny-imdb). 1: the final model only."""
    derive_lambdas: tuple[float, ...] = ()
    """Derived candidates, after the search: each model on the feasible search frontier moved along its line from the
    base policy, θ_base + λ(θ − θ_base), for each λ (λ < 1 interpolates towards the base, λ > 1 extrapolates away
    from it: ExPO, Zheng et al. 2024). Each costs an evaluation, and one per fresh seed when it is confirmed; () for
    none (the default: make sweep spends its time confirming every divergence's answer with fresh seeds; in one
    default run ExPO at 1.5 reached the search frontier and broke the KL budget on a fresh seed, 13.7 nats)."""
    soups: bool = False
    """Derived candidates: the weight average of each two neighbours along the feasible search frontier that come
    from different trials (rewarded soups, Ramé et al. 2023: every trial starts from the same policy, so their
    weights average). Off by default: a confirmed soup trains both parents' runs one after another in one task per
    seed, which cost make sweep's confirmation more than a minute on 2 cores."""
    workers_per_trial: int = 1
    """Each trial: data-parallel workers; more than 1 runs the trial's training on Ray Train."""
    cpus_per_trial: float = 1.0
    """Each trial: CPUs it holds, at least 1 (its torch threads: the whole part; a fraction would let Tune run more
    trials than there are cores)."""
    gpus_per_trial: float | None = None
    """Each trial: GPUs it holds (default: 1 when the cluster has GPUs, else 0)."""
    max_concurrent_trials: int | None = None
    """Trials at once (default: what the cluster's CPUs and GPUs hold)."""
    reuse_workers: bool = True
    """Run each trial in the worker process an earlier trial left (Tune's reuse_actors): Python, torch and the
    libraries load once per worker instead of once per trial, which was most of a trial slot's time spent neither
    training nor evaluating (bench/overhead.py measures both). Off: a fresh process per trial."""
    max_failures: int = 1
    """Retries of a trial that crashed: its worker or node died, or it raised (e.g. CUDA out of memory). A trial
    that meets NaN or a bad value fails the same way again: it is recorded and never retried."""
    seed: int = 0
    """Seed of prompts, sampling, pairing, the sampler and every trial's training."""
    storage: str | None = None
    """Optuna study storage, any SQLAlchemy URL without a password (default: sqlite:///<output>/study.db)."""
    storage_password_env: str | None = None
    """Environment variable holding the storage's password, e.g. ALIGNRAY_STORAGE_PASSWORD; the password is joined
    to the URL in memory only, never written to sweep.json or Tune's state."""
    tune_storage: str | None = None
    """Where Tune keeps trials and checkpoints (default: <output>/tune; on several nodes a shared or cloud path)."""
    keep_all_models: bool = False
    """Keep every trial's model, not only the frontier's."""
    resume: bool = False
    """Continue the sweep in output with its saved config (finished trials are kept, not repeated); only
    num_trials (more trials), max_failures, max_concurrent_trials and reuse_workers may be given anew, and the last
    three apply to the added trials only (Tune restores its own settings for the trials it had)."""
    overwrite: bool = False
    """Delete an existing experiment in output and start again."""

    def __post_init__(self) -> None:
        for name in ("output", "tune_storage"):  # a path the shell did not expand (YAML, a quoted flag)
            if isinstance(getattr(self, name), str) and getattr(self, name).startswith("~"):
                object.__setattr__(self, name, os.path.expanduser(getattr(self, name)))
        points = self.points_to_evaluate  # YAML gives mappings: each becomes its canonical JSON text first
        if isinstance(points, list | tuple):
            object.__setattr__(self, "points_to_evaluate", tuple(_point(p, PARAMETERS) for p in points))
        coerce_fields(self)
        if self.search not in ("optuna", "grid"):
            raise unknown_name("search", self.search, ("optuna", "grid"))
        if self.sampler not in SAMPLERS:
            raise unknown_name("sampler", self.sampler, SAMPLERS)
        check_strategy(self.strategy)
        if not self.divergences:
            raise ValueError("divergences=() is empty; name at least one divergence to search")
        for name in self.divergences:
            params = {"alpha": 0.5} if name == "alpha_divergence" else {}
            try:
                get_divergence(name, **params).check_trainable()
            except ValueError as err:
                raise ValueError(f"divergences: {err}") from None
        if not self.loss_types:
            raise ValueError("loss_types=() is empty; name at least one of sigmoid, hinge, ipo")
        for loss_type in self.loss_types:
            check_loss_type(loss_type)
        check_positive(
            self,
            floats=("beta_min", "beta_max", "learning_rate_min", "learning_rate_max", "grid_learning_rate", "epochs"),
            ints=("num_prompts", "samples_per_prompt", "k", "max_new_tokens", "num_trials", "startup_trials",
                  "batch_size", "max_length", "eval_prompts", "eval_samples_per_prompt", "workers_per_trial",
                  "max_concurrent_trials", "eval_points"),
        )  # fmt: skip
        for low, high in (("beta_min", "beta_max"), ("learning_rate_min", "learning_rate_max")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low}={getattr(self, low)!r} exceeds {high}={getattr(self, high)!r}")
        if not 0 < self.alpha_min <= self.alpha_max < 1:
            raise ValueError(f"need 0 < alpha_min <= alpha_max < 1, got {self.alpha_min!r}, {self.alpha_max!r}")
        check_learning_rates(self, "learning_rate_max", "grid_learning_rate")
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt={self.samples_per_prompt} must be >= 2 to make pairs")
        _check_objectives(self)
        if self.cpus_per_trial < 1:
            raise ValueError(
                f"cpus_per_trial={self.cpus_per_trial!r} must be >= 1: a trial runs at least one thread, and a "
                "fraction would let Tune start more trials than there are cores"
            )
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial={self.gpus_per_trial!r} must be >= 0")
        for name in ("confirmation_prompts", "replicates"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0")
        if self.confirmation_prompts and not self.replicates:
            raise ValueError(
                "replicates=0 with confirmation_prompts set would call the search's own runs, the ones that won the "
                "search, confirmed; give --replicates 1 or more (fresh seeds), or --confirmation-prompts 0"
            )
        if not self.resume:  # a resumed sweep searches its saved divergences: load_resumed checks it against them
            check_share(self)
        if self.confirmation_prompts == 1:
            raise ValueError("confirmation_prompts=1 gives no interval; use at least 2, or 0 for no confirmation")
        if self.eval_points > 10:
            raise ValueError(f"eval_points={self.eval_points} must be <= 10: each costs a trial an evaluation")
        for value in self.derive_lambdas:
            if not (math.isfinite(value) and 0 < value <= 4 and value != 1):
                raise ValueError(
                    f"derive_lambdas: {value!r} must lie in (0, 4] and not be 1 (λ=1 is the trial's own model; "
                    "beyond 4 the extrapolation leaves the region where the base's neighbourhood says anything)"
                )
        shown = [f"{value:g}" for value in self.derive_lambdas]  # as the derived candidates' ids write them
        if len(set(shown)) < len(shown):
            raise ValueError(f"derive_lambdas={list(self.derive_lambdas)} repeats a value ({', '.join(shown)})")
        if self.max_failures < 0:
            raise ValueError(f"max_failures={self.max_failures!r} must be >= 0")
        for name in ("max_kl", "max_nonword_increase", "max_garbled_increase"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0, or None for no constraint")
        if self.resume and self.overwrite:
            raise ValueError("resume=True and overwrite=True contradict each other; pick one")
        _check_points(self)
        _check_storage_url(self)

    @property
    def judge_model(self) -> str | None:
        """The judge to score with, or None when it is off."""
        from alignray.world import JUDGE_OFF

        return None if self.judge == JUDGE_OFF else self.judge

    @property
    def objective_pair(self) -> tuple[Objective, Objective]:
        """The two objectives, parsed: the first, then the second."""
        return parse_objectives(self.objectives)

    def preference_config(self, out: str) -> PreferenceConfig:
        """The preference data set of this sweep, written to ``out``."""
        return PreferenceConfig(
            out=out,
            policy=self.policy,
            reward=self.reward,
            num_prompts=self.num_prompts,
            samples_per_prompt=self.samples_per_prompt,
            max_new_tokens=self.max_new_tokens,
            strategy=self.strategy,
            k=self.k,
            seed=self.seed,
        )


def check_share(config: SweepConfig) -> None:
    """At least two trials per divergence, so that each one's share holds a start point and a sampled trial."""
    if config.search == "optuna" and config.num_trials < 2 * len(config.divergences):
        raise ValueError(
            f"num_trials={config.num_trials} is fewer than 2 per divergence ({len(config.divergences)} divergences: "
            f"{', '.join(config.divergences)}); give --num-trials {2 * len(config.divergences)} or more, or search "
            "fewer --divergences"
        )


def _check_objectives(config: SweepConfig) -> None:
    """Two objectives of two recorded metrics, written in one spelling (``metric`` when maximised, ``metric:min``),
    each with a usable hypervolume reference: the base policy's KL to itself is 0, so a minimised kl/ref needs a
    reference given, or (second) the KL budget."""
    pair = parse_objectives(config.objectives)
    object.__setattr__(config, "objectives", tuple(o.spec for o in pair))
    first, second = pair
    if first == Objective("kl/ref", "min") and config.hv_reward is None:
        raise ValueError("objectives: kl/ref:min first needs hv_reward, its hypervolume reference: the default, the "
                         "base policy's kl/ref, is 0 (its KL to itself), which no trial beats")  # fmt: skip
    if second == Objective("kl/ref", "min") and config.hv_diversity is None and config.max_kl is None:
        raise ValueError("objectives: kl/ref:min needs a hypervolume reference: give max_kl (the KL budget is the "
                         "reference) or hv_diversity; the base policy's kl/ref is 0 (its KL to itself)")  # fmt: skip


def _check_points(config: SweepConfig) -> None:
    """Points to evaluate lie in the searched space (Optuna would record them outside it, or refuse them inside the
    search, after the data stage), and there are no more of them than trials."""
    if config.search == "grid" or not config.points_to_evaluate:
        return
    if len(config.points_to_evaluate) > config.num_trials:
        raise ValueError(
            f"points_to_evaluate holds {len(config.points_to_evaluate)} points but num_trials={config.num_trials}; "
            "raise num_trials or give fewer points"
        )
    ranges = {
        "beta": (config.beta_min, config.beta_max),
        "learning_rate": (config.learning_rate_min, config.learning_rate_max),
        "alpha": (config.alpha_min, config.alpha_max),
    }
    for point in map(json.loads, config.points_to_evaluate):
        for name, allowed in (("divergence", config.divergences), ("loss_type", config.loss_types)):
            if name in point and point[name] not in allowed:
                raise ValueError(
                    f"points_to_evaluate: {name}={point[name]!r} is outside the searched {name}s {list(allowed)}"
                )
        for name, (low, high) in ranges.items():
            if name in point and not low <= point[name] <= high:
                raise ValueError(
                    f"points_to_evaluate: {name}={point[name]!r} is outside the searched range [{low:g}, {high:g}] "
                    f"({name}_min, {name}_max)"
                )


def storage_password_refusal(storage: str | None) -> str | None:
    """Why a ``storage`` URL that holds a password is refused (the password hidden), or None: the URL would be saved
    in sweep.json and Tune's state, and shown and kept in a Ray job's command line. Not a URL at all: None
    (``check_storage`` names it, without printing any of it)."""
    if storage is None:
        return None
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
    except Exception:
        return None
    if not url.password:
        return None
    return (
        f"storage={url.render_as_string(hide_password=True)!r} holds a password, which would be saved in sweep.json, "
        "Tune's state and the job's command line; remove it from the URL, export it (export "
        "ALIGNRAY_STORAGE_PASSWORD=...) and pass --storage-password-env ALIGNRAY_STORAGE_PASSWORD"
    )


def _check_storage_url(config: SweepConfig) -> None:
    """A storage URL that holds a password is refused (``storage_password_refusal``), and so is a password variable
    that is no variable's name."""
    if config.storage_password_env is not None and not config.storage_password_env.isidentifier():
        raise ValueError(f"storage_password_env={config.storage_password_env!r} is not an environment variable's name")
    refusal = storage_password_refusal(config.storage)
    if refusal:
        raise ValueError(refusal)


def _point(point: str | dict, allowed: tuple[str, ...]) -> str:
    """A point to evaluate as canonical JSON, after checking its names and values (a trial config must build)."""

    try:
        values = json.loads(point) if isinstance(point, str) else dict(point)
    except (ValueError, TypeError) as err:
        raise ValueError(f"points_to_evaluate: {point!r} is not a JSON mapping ({err})") from None
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"points_to_evaluate: {point!r} has unknown names {unknown}; allowed: {', '.join(allowed)}")
    missing = [name for name in ("divergence", "beta", "learning_rate") if name not in values]
    if missing:
        raise ValueError(f"points_to_evaluate: {point!r} lacks {missing}")
    try:
        run = TrainConfig(data="-", **values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"points_to_evaluate: {point!r}: {err}") from None
    # the values as TrainConfig read them: YAML's 5e-4 is the string "5e-4" until then
    return json.dumps({name: getattr(run, name) for name in values if values[name] is not None}, sort_keys=True)


SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "tiny-imdb": {},
    "gpt2-imdb": {
        "policy": "lvwerra-imdb",
        "reward": "lvwerra-imdb",
        "judge": "lvwerra-imdb",
        "num_prompts": 600,
        "samples_per_prompt": 6,
        "k": 3,
        "num_trials": 32,
        "startup_trials": 8,
        "beta_min": 0.05,
        "beta_max": 10.0,
        "learning_rate_min": 1e-6,
        "learning_rate_max": 1e-4,
        "grid_learning_rate": 1e-5,
        "epochs": 1.0,
        "batch_size": 16,
        "max_length": 128,
        "eval_prompts": 500,
        "eval_samples_per_prompt": 2,
        "gpus_per_trial": 1.0,
        "cpus_per_trial": 2.0,
    },
}
"""Sweep presets: ``tiny-imdb`` (the defaults; 2 CPU cores) and ``gpt2-imdb`` (the hub models at the seeds' sizes,
~600 prompts x 6 samples, one GPU per trial)."""
