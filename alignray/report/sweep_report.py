"""The sweep's report: ``write_report(experiment_dir)`` reads what ``alignray.sweep.driver`` left and writes
``report.md`` with its PNGs beside it (``pareto.png``, ``rewards.png``, ``hypervolume.png``) and ``report.html``,
which embeds the same images and an interactive plotly frontier and opens from disk with no network."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from alignray.report.document import Block, render_html, render_markdown, write_text
from alignray.report.experiment import (
    BASE,
    Experiment,
    group_frontier,
    groups,
    hypervolume_history,
    load_experiment,
    reference_point,
)
from alignray.report.figures import (
    hypervolume_figure,
    interactive_pareto,
    pareto_figure,
    reward_histograms,
    save_png,
)
from alignray.report.formatting import label, num, params
from alignray.report.stats import (
    CONFIDENCE,
    INTERVAL_METRICS,
    POOLED_METRICS,
    RESAMPLES,
    TOKEN_METRICS,
    WORD_METRICS,
    Interval,
    Paired,
    metric_intervals,
    paired_difference,
)
from alignray.report.tables import divergence_table, paired_table, samples_table, trials_table

__all__ = ["write_report"]


def _load_samples(experiment: Experiment, trials: Sequence[str]) -> dict[str, pd.DataFrame]:
    loaded = {}
    for trial in [BASE, *trials]:
        samples = experiment.samples(trial)
        if samples is not None:
            loaded[trial] = samples
    return loaded


def _comparisons(experiment: Experiment, loaded: dict[str, pd.DataFrame], resamples: int) -> list[Paired]:
    """The paired comparisons the report makes: the best frontier point against the base policy; the best point
    of each other divergence (and loss type) against the overall best; the best of each loss type against each
    other; each on both objectives."""
    if experiment.finished.empty:
        return []
    best = experiment.frontier.iloc[0]
    pairs: list[tuple[str, str, str, str]] = [(best["trial"], BASE, label(best), "base")]
    for group in groups(experiment):
        top = group_frontier(experiment, group).iloc[0]
        if top["trial"] != best["trial"]:
            pairs.append((top["trial"], best["trial"], label(top), label(best)))
    ok = experiment.finished
    losses = sorted(ok["loss_type"].unique())
    tops = [ok[ok["loss_type"] == loss].sort_values(experiment.reward).iloc[-1] for loss in losses]
    for i in range(len(tops)):
        for j in range(i + 1, len(tops)):
            pairs.append((tops[i]["trial"], tops[j]["trial"], label(tops[i], True), label(tops[j], True)))
    out = []
    for a, b, name_a, name_b in pairs:
        if a not in loaded or b not in loaded:
            continue
        for metric in (experiment.reward, experiment.diversity):
            try:
                out.append(paired_difference(loaded[a], loaded[b], metric, (name_a, name_b), resamples=resamples))
            except ValueError:  # a metric without an interval (token metrics of samples saved without ids)
                continue
    return out


def _pick(experiment: Experiment, intervals: dict[str, dict[str, Interval]], comparisons: list[Paired]) -> list[str]:
    """The computed sentences of "What to pick"."""
    if experiment.finished.empty:
        return ["No trial finished: there is no frontier to pick from (see the errored trials below)."]
    reward, diversity = experiment.reward, experiment.diversity
    front = experiment.frontier

    def described(row: pd.Series) -> str:
        found = intervals.get(row["trial"], {})
        r = str(found[reward]) if reward in found else num(row[reward])
        d = str(found[diversity]) if diversity in found else num(row[diversity])
        return (f"**{row['divergence']}** ({row['loss_type']}) {params(row)}, learning rate "
                f"{row['learning_rate']:.2g} (trial `{row['trial']}`): {reward} {r}, {diversity} {d}")  # fmt: skip

    base = intervals.get(BASE, {})
    base_text = ", ".join(f"{m} {base[m] if m in base else num(experiment.base.get(m))}" for m in (reward, diversity))
    text = [
        f"The frontier holds {len(front)} of {len(experiment.finished)} finished trials. Base SFT policy: "
        f"{base_text}. Brackets are {CONFIDENCE:.0%} bootstrap intervals over the evaluation prompts.",
        f"- Highest reward: {described(front.iloc[0])}.",
    ]
    if len(front) > 1:
        text.append(f"- Highest diversity on the frontier: {described(front.iloc[-1])}.")
    for c in comparisons:
        if c.metric == reward:
            text.append(
                f"- {c.a} vs {c.b}: {reward} difference {num(c.difference.estimate)} "
                f"[{num(c.difference.low)}, {num(c.difference.high)}] over {c.prompts} shared prompts: "
                f"**{c.verdict}**."
            )
    return text


def _dashboard_storage(experiment: Experiment) -> str:
    """The study's storage as optuna-dashboard takes it: ``--storage``, or the experiment's own SQLite file."""
    return experiment.config.get("storage") or f"sqlite:///{experiment.directory / 'study.db'}"


def write_report(experiment_dir: str | Path, resamples: int = RESAMPLES) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the PNGs (``pareto.png``, ``rewards.png``, ``hypervolume.png``) into
    ``experiment_dir``; returns the written paths by file name."""
    experiment = load_experiment(experiment_dir)
    out = experiment.directory
    shown = {r for g in groups(experiment) for r in group_frontier(experiment, g)["trial"]}
    loaded = _load_samples(experiment, sorted(shown))
    intervals = {trial: metric_intervals(samples, resamples=resamples) for trial, samples in loaded.items()}
    comparisons = _comparisons(experiment, loaded, resamples)
    written = {
        "pareto.png": save_png(pareto_figure(experiment, intervals), out / "pareto.png"),
        "hypervolume.png": save_png(hypervolume_figure({experiment.study: experiment}), out / "hypervolume.png"),
    }
    if loaded:
        written["rewards.png"] = save_png(reward_histograms(experiment, loaded), out / "rewards.png")

    config, summary = experiment.config, experiment.summary
    reference = reference_point(experiment)
    search = config.get("search", "?") + ("" if config.get("search") == "grid" else f" / {config.get('sampler')}")
    errors = experiment.results[experiment.results["status"] != "ok"]
    timing = f" in {summary['seconds']} s" if "seconds" in summary else ""
    if "search_seconds" in summary:
        timing += f" (search {summary['search_seconds']} s, {summary.get('concurrent_trials', '?')} trials at once)"
    _, curve = hypervolume_history(experiment, reference)
    volume = curve[-1] if curve else 0.0
    without = [m for m in TOKEN_METRICS if not all(m in found for found in intervals.values())]
    textless = [m for m in WORD_METRICS if not all(m in found for found in intervals.values())]
    blocks: list[Block] = [
        ("h1", f"Sweep {experiment.study}"),
        ("p", f"{len(experiment.results)} trials ({len(errors)} errored), search {search}{timing}; objectives "
              f"`{experiment.reward}` and `{experiment.diversity}`, both maximised; policy `{config.get('policy')}`, "
              f"reward `{config.get('reward')}`, {config.get('eval_prompts', '?')} evaluation prompts x "
              f"{config.get('eval_samples_per_prompt', '?')} samples."),  # fmt: skip
        ("h2", "What to pick"),
        *[("p", line) for line in _pick(experiment, intervals, comparisons)],
        ("h2", "Pareto frontier"),
        ("image", (written["pareto.png"], "reward vs diversity: every trial, the frontier, each divergence's own")),
        ("plotly", interactive_pareto({experiment.study: experiment})),
        ("h2", "Per divergence and loss type"),
        ("p", "Each divergence's own frontier points, by reward (frontier = on the overall frontier); the base policy "
              f"first. Brackets: {CONFIDENCE:.0%} bootstrap intervals over evaluation prompts."),
        ("table", divergence_table(experiment, intervals)),
        ("h2", "Paired comparisons"),
        ("p", "Differences a − b on the evaluation prompts both were scored on, the prompts resampled jointly; "
              "'no difference' means the interval covers 0."),
        ("table", paired_table(comparisons)),
    ]  # fmt: skip
    if "rewards.png" in written:
        blocks += [
            ("h2", "Reward distributions"),
            ("image", (written["rewards.png"], "reward histograms of the base policy and frontier models")),
            ("h2", "Samples"),
            ("p", "The first sample of the same prompts from the base policy and from frontier models."),
            ("table", samples_table(experiment, loaded)),
        ]
    blocks += [
        ("h2", "Search progress"),
        ("p", f"Hypervolume {volume:.4g} against the reference point ({reference[0]:.4g}, {reference[1]:.4g}): the "
              "base policy's reward and half its diversity unless the sweep set hv_reward / hv_diversity."),
        ("image", (written["hypervolume.png"], "hypervolume after each trial")),
        ("h2", "Every trial"),
        ("table", trials_table(experiment)),
        ("h2", "About the intervals"),
        ("p", f"Intervals: {', '.join(INTERVAL_METRICS)}, from {resamples} bootstrap resamples of the evaluation "
              "prompts (scipy.stats.bootstrap), each recomputing the metric on the resampled prompts' samples: BCa "
              f"intervals, except {', '.join(POOLED_METRICS)}, pooled over all samples, which a resample with "
              "repeated prompts lowers artificially: for them the estimate ± z × bootstrap standard error. Reward "
              "percentiles have none. "
              + (f"No interval for {', '.join(without)}: these samples were saved without completion_ids. "
                 if without else "")
              + (f"No interval for {', '.join(textless)}: these samples were saved without completion text. "
                 if textless else "")
              + "They measure evaluation noise over prompts, not training randomness: each configuration was "
              "trained once (the sweep has no replicate seeds yet), so two close trials may swap places on a "
              "retrain."),
        ("h2", "Live views"),
        ("p", f"`tensorboard --logdir {experiment.config.get('tune_storage') or out / 'tune'}` (training curves "
              f"and metrics of every trial); `optuna-dashboard {_dashboard_storage(experiment)}` (the study"
              + (f"; its password is in ${experiment.config['storage_password_env']}"
                 if experiment.config.get("storage_password_env") else "") + ")."),
    ]  # fmt: skip
    written["report.md"] = write_text(out / "report.md", render_markdown(blocks))
    written["report.html"] = write_text(out / "report.html", render_html(blocks, f"alignray sweep {experiment.study}"))
    return written
