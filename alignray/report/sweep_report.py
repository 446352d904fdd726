"""The sweep's report: ``write_report(experiment_dir)`` reads what ``alignray.sweep.driver`` left and writes
``report.md`` with its PNGs beside it (``pareto.png``, ``reward_kl.png``, ``rewards.png``, ``hypervolume.png``) and
``report.html``, which embeds the same images and an interactive plotly frontier and opens from disk with no network.

When the sweep had constraints, the report states them and how many trials met them; frontier, hypervolume, "What
to pick" and comparisons hold feasible trials only, and when none is feasible it says so first and writes the rest.
Divergences are compared under a common KL cap (``matched_kl``), and the paired comparisons are one family,
Holm-corrected.

A sweep that evaluated points along training and derived candidates (``alignray.report.experiment``) gets a section
"Candidates beyond the trials": how many of each kind, how many reached each frontier, the derived candidates with
their recipes, the points on a frontier; "What to pick" and the frontier tables name each row's kind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from alignray.report.answer import answer_blocks, answer_table, divergence_answers, envelope_table, kl_envelopes
from alignray.report.document import Block, render_html, render_markdown, write_text
from alignray.report.experiment import (
    BASE,
    DERIVED,
    KL,
    POINT,
    TRIAL,
    Experiment,
    MatchedKL,
    group_frontier,
    groups,
    hypervolume_history,
    load_experiment,
    matched_kl,
    reference_point,
)
from alignray.report.figures import (
    draw_reward_kl,
    hypervolume_figure,
    pareto_figure,
    reward_histograms,
    reward_kl_info,
    save_png,
)
from alignray.report.formatting import group_name, label, num
from alignray.report.interactive import interactive_pareto
from alignray.report.judge import judge_checks, judge_note
from alignray.report.picks import KIND_NAMES, against_base, candidates_noun, pick_lines, unconfirmed
from alignray.report.stats import (
    CONFIDENCE,
    INTERVAL_METRICS,
    POOLED_METRICS,
    RESAMPLES,
    TOKEN_METRICS,
    WORD_METRICS,
    Interval,
    Paired,
    holm_adjusted,
    metric_intervals,
    paired_difference,
    seed_prompt_intervals,
)
from alignray.report.tables import (
    confirmation_table,
    derived_table,
    divergence_table,
    paired_table,
    points_table,
    samples_table,
    trials_table,
    watch_table,
)
from alignray.report.watch import NONWORD, NONWORD_RISE, watch_info, watched_reward

__all__ = ["write_report"]

def _load_samples(experiment: Experiment, trials: Sequence[str]) -> dict[str, pd.DataFrame]:
    loaded = {}
    for trial in [BASE, *trials]:
        samples = experiment.samples(trial)
        if samples is not None:
            loaded[trial] = samples
    return loaded


def _comparisons(
    experiment: Experiment, loaded: dict[str, pd.DataFrame], matched: MatchedKL, resamples: int
) -> list[Paired]:
    """The paired comparisons the report makes, one Holm-corrected family: the best frontier point against the base
    policy; every two groups (divergences, and loss types when several) under a common KL cap, each by its
    representative in ``matched``, the better in the first objective first; the best of each loss type against each
    other; each on both objectives, on the search's evaluation prompts. Feasible trials only: none without a feasible
    trial."""
    if experiment.search_frontier.empty:
        return []
    several = experiment.finished["loss_type"].nunique() > 1
    best = experiment.search_frontier.iloc[0]
    pairs: list[tuple[str, str, str, str]] = [(best["trial"], BASE, label(best, lr=True), "base")]
    objective = experiment.objectives[0]
    matched_rows = sorted(matched.chosen.values(), key=lambda row: -objective.sign * row[objective.metric])
    for i, first in enumerate(matched_rows):
        for second in matched_rows[i + 1 :]:
            pairs.append((first["trial"], second["trial"], label(first, several, True), label(second, several, True)))
    ok = experiment.feasible
    ok = ok[ok["kind"] != DERIVED]  # a loss type is a way of training: derived candidates have none of their own
    losses = sorted(ok["loss_type"].unique())
    tops = [objective.best_first(ok[ok["loss_type"] == loss]).iloc[0] for loss in losses]
    for i in range(len(tops)):
        for j in range(i + 1, len(tops)):
            pairs.append((tops[i]["trial"], tops[j]["trial"], label(tops[i], True, True), label(tops[j], True, True)))
    out, seen = [], set()
    for a, b, name_a, name_b in pairs:
        if a not in loaded or b not in loaded or frozenset((a, b)) in seen:
            continue
        seen.add(frozenset((a, b)))
        for metric in (o.metric for o in experiment.objectives):
            try:
                out.append(paired_difference(loaded[a], loaded[b], metric, (name_a, name_b), resamples=resamples))
            except ValueError:  # a metric without an interval (token metrics of samples saved without ids)
                continue
    return holm_adjusted(out)


def _matched_text(experiment: Experiment, matched: MatchedKL) -> str:
    """The paragraph that says at which KL the divergences are compared, by which trials, and which are not."""
    if matched.band is None:
        return f"No divergence is compared under a common KL cap: no feasible finished trial has a `{KL}`."
    several = experiment.finished["loss_type"].nunique() > 1
    chosen = [f"{label(row, several, True)} ({KL} {num(float(row[KL]))}, trial `{row['trial']}`)"
              for row in matched.chosen.values()]  # fmt: skip
    text = (
        f"Divergences are compared under a common KL cap, {KL} ≤ {num(matched.band)} nats: the smallest over "
        f"divergences of each one's largest feasible {KL}, so none is compared at a KL another cannot reach. Each is "
        f"represented by its feasible trial best in {experiment.objectives[0].metric} under the cap (their KLs still "
        f"differ: read them here): {'; '.join(chosen)}."
    )
    if len(matched.chosen) < 2:
        text += " With fewer than two divergences in the band there is no divergence comparison."
    if matched.excluded:
        why = [f"{group_name(group)} (" + ("no feasible finished trial" if lowest is None else
               f"every feasible trial lies above the band; its lowest {KL} is {num(lowest)}") + ")"
               for group, lowest in matched.excluded.items()]  # fmt: skip
        text += f" Not comparable: {'; '.join(why)}."
    return text


def _constraints(experiment: Experiment) -> str | None:
    """The "Constraints" paragraph: each bound, where it came from, and how many finished trials met them all; None
    when the sweep had no constraints."""
    if not experiment.constraints:  # none recorded, or the sweep ran without any
        return None
    config, base = experiment.config, experiment.base
    stated = []
    for metric, bound in experiment.constraints.items():
        source = ""
        if metric == "kl/ref" and config.get("max_kl") is not None:
            source = " (max_kl)"
        elif metric == NONWORD and config.get("max_nonword_increase") is not None and metric in base:
            increase = num(config["max_nonword_increase"])
            source = f" (the base policy's {num(base[metric])} + max_nonword_increase {increase})"
        elif metric == "fluency/garbled_rate" and config.get("max_garbled_increase") is not None and metric in base:
            increase = num(config["max_garbled_increase"])
            source = f" (the base policy's {num(base[metric])} + max_garbled_increase {increase})"
        stated.append(f"`{metric}` ≤ {num(bound)}{source}")
    feasible, finished, noun = len(experiment.feasible), len(experiment.finished), candidates_noun(experiment)
    return (f"Constraints: {', '.join(stated) or 'not recorded in sweep.json'}. {feasible} of {finished} finished "
            f"{noun} are feasible. Only feasible {noun} enter the frontier, the hypervolume, \"What to pick\" and the "
            f"comparisons; the plots draw the others hollow, and the table of every {noun[:-1]} names the constraints "
            "each broke.")  # fmt: skip


def _confirmed_intervals(experiment: Experiment, resamples: int) -> dict[str, dict[str, Interval]]:
    """Intervals of the confirmed configurations and of the base policy on the confirmation prompts, seeds and
    prompts resampled together; empty when the sweep confirmed nothing."""
    confirmed = experiment.confirmed
    if confirmed is None:
        return {}
    out = {}
    for trial in [BASE, *confirmed["trial"]]:
        seeds = experiment.confirmation_samples(trial)
        if seeds:
            out[trial] = seed_prompt_intervals(seeds, resamples=resamples)
    return out


def _candidates_blocks(experiment: Experiment) -> list[Block]:
    """The section "Candidates beyond the trials", for a sweep that evaluated points along training or derived
    candidates (none otherwise): each kind's count and how many of it reached the search's frontier and the confirmed
    one, the derived candidates with their recipes, the points on a frontier."""
    if not experiment.has_candidates:
        return []
    results, confirmed = experiment.results, experiment.confirmed is not None
    search, front = set(experiment.search_frontier["trial"]), set(experiment.frontier["trial"])
    counts = []
    for kind, count in experiment.kinds.items():
        ids = set(results.loc[results["kind"] == kind, "trial"])
        reached = f"{len(ids & search)} on the search's frontier"
        if confirmed:
            reached += f", {len(ids & front)} on the confirmed one"
        counts.append(f"{count} {KIND_NAMES[kind]} ({reached})")
    blocks: list[Block] = [
        ("h2", "Candidates beyond the trials"),
        ("p", "Besides each trial's final model, the sweep evaluated the models saved along the trials' training "
              "(points, `<trial>@<step>`) and models derived after the search by weight arithmetic on the search's "
              "frontier (`base + λ·(model − base)`: λ < 1 interpolates towards the base, λ > 1 extrapolates from it, "
              "ExPO; a soup averages two models). Every candidate is held to the same constraints, frontier"
              f"{' and confirmation' if confirmed else ''} as the trials' final models. Candidates: "
              f"{'; '.join(counts)}."),
    ]  # fmt: skip
    derived = derived_table(experiment)
    if len(derived):
        blocks += [("p", "**Derived candidates**, the best in "
                         f"{experiment.objectives[0].metric} first, at the search's figures:"),
                   ("table", derived)]  # fmt: skip
    points = points_table(experiment)
    if len(points):
        blocks += [("p", "**Points along training on a frontier**: the trial, the step its model was saved at "
                         "and which frontier holds it. Each trial's path through its points is the thin line of "
                         "the Pareto figure."),
                   ("table", points)]  # fmt: skip
    elif experiment.kinds[POINT]:
        blocks.append(("p", "No point along training reached a frontier."))
    return blocks


def _confirmation_blocks(experiment: Experiment, intervals: dict[str, dict[str, Interval]]) -> list[Block]:
    """The "Confirmation" section: each configuration of the search's feasible frontier, its search figures and its
    confirmed ones with seed-and-prompt intervals, feasibility and place on the confirmed frontier."""
    confirmed = experiment.confirmed
    if confirmed is None:
        return [("h2", "Confirmation"), ("p", f"None: {unconfirmed(experiment)}.")]
    info = experiment.summary.get("confirmation", {})
    dropped = info.get("dropped_prompts") or {}
    text = (f"The {len(confirmed)} confirmed candidates (the search's feasible frontier and each divergence's best), "
            f"each retrained with {info.get('replicates', '?')} fresh seed(s) and measured on "
            f"{info.get('prompts', '?')} held-out prompts; drawn prompts left out because their text was a search "
            f"prompt: {dropped.get('search', '?')}, a preference-data prompt: {dropped.get('preference', '?')}, "
            f"repeated: {dropped.get('repeated', '?')}. Constraints applied again to every fresh seed "
            f"({', '.join(f'`{m}` ≤ {num(b)}' for m, b in info.get('constraints', {}).items()) or 'none'}): a "
            "candidate is confirmed feasible only when each of its seeds is. Confirmed hypervolume "
            f"{num(info.get('hypervolume'))} against ({', '.join(num(v) for v in info.get('reference_point', []))}), "
            f"the base policy on the confirmation prompts. Failed fresh seeds: {info.get('failed_seeds', 0)}.")
    return [("h2", "Confirmation"), ("p", text), ("table", confirmation_table(experiment, intervals))]


def _watch_blocks(experiment: Experiment, loaded: dict[str, pd.DataFrame]) -> list[Block]:
    """The reward-hacking watch: per frontier model, its most risen n-grams and whether reward rose with the
    non-word rate."""
    if experiment.frontier.empty:
        return [("p", "No frontier model to watch.")]
    if BASE not in loaded:
        return [("p", "No watch: the base policy's samples were not kept (base/samples.parquet).")]
    blocks: list[Block] = [
        ("p", "For each frontier model, the 1- and 2-grams of lowercase tokens (words, and symbols with their digits "
              "such as /10) whose share of completions rose most against the base policy's, ranked by lift (the "
              "ratio of the two shares, 5 texts added to each), among those in at least 2 of its completions. A "
              "string the reward model pays for, not the reviews it was trained on, shows up here first.")
    ]  # fmt: skip
    for watch in watch_info(experiment, loaded):
        line = f"**{watch.label}** (trial `{watch.trial}`)."
        (base_reward, reward), (base_nonword, nonword) = watch.reward, watch.nonword
        if watch.fluency_warning:
            line += (f" **Reward rose together with `{NONWORD}`** (by more than {NONWORD_RISE}) against the base "
                     f"policy ({watched_reward(experiment)} "
                     f"{num(base_reward)} → {num(reward)}, {NONWORD} {num(base_nonword)} → {num(nonword)}): part of "
                     "the gain may be non-words the reward model does not penalise; read its samples.")  # fmt: skip
        elif NONWORD in experiment.base and pd.notna(nonword):
            line += f" `{NONWORD}` {num(base_nonword)} → {num(nonword)} against the base policy."
        blocks.append(("p", line))
        if watch.rises:
            blocks.append(("table", watch_table(watch)))
        else:
            blocks.append(("p", "No n-gram is in a larger share of its completions than of the base policy's."))
    return blocks


def _dashboard_storage(experiment: Experiment) -> str:
    """The study's storage as optuna-dashboard takes it: ``--storage``, or the experiment's own SQLite file."""
    return experiment.config.get("storage") or f"sqlite:///{experiment.directory / 'study.db'}"


def write_report(experiment_dir: str | Path, resamples: int = RESAMPLES) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the PNGs (``pareto.png``, ``reward_kl.png``, ``rewards.png``,
    ``hypervolume.png``) into ``experiment_dir``; returns the written paths by file name."""
    experiment = load_experiment(experiment_dir)
    out = experiment.directory
    picks = [] if experiment.frontier.empty else sorted({experiment.frontier.iloc[i]["trial"] for i in (0, -1)})
    shown = {r for g in groups(experiment) for r in group_frontier(experiment, g)["trial"]} | set(picks)
    shown |= set(experiment.search_frontier["trial"][:1])  # the best compared with the base (a derived one, maybe)
    matched = matched_kl(experiment)
    loaded = _load_samples(experiment, sorted(shown | {row["trial"] for row in matched.chosen.values()}))
    intervals = {trial: metric_intervals(samples, resamples=resamples) for trial, samples in loaded.items()
                 if trial in shown or trial == BASE}  # fmt: skip
    confirmed = _confirmed_intervals(experiment, resamples)
    comparisons = _comparisons(experiment, loaded, matched, resamples)
    answers, verdicts = divergence_answers(experiment, resamples, [(pick, BASE) for pick in picks],
                                           confirmed if experiment.confirmed is not None else intervals)  # fmt: skip
    if experiment.confirmed is not None:  # the picks' lines belong to the one Holm family of confirmed verdicts
        against = {p: {m: v for (a, b, m), v in verdicts.items() if a == p and b == BASE} for p in picks}
    else:
        against = against_base(experiment, loaded, picks, resamples)
    envelopes = kl_envelopes(experiment, resamples)
    judged = [*picks, *(a.row["trial"] for a in answers if a.row is not None)]
    searched = dict(loaded)  # the search's samples; a confirmed sweep's checks read the fresh seeds instead
    if experiment.confirmed is None:
        searched |= {t: found for t in judged if t not in loaded and (found := experiment.samples(t)) is not None}
    checks = judge_checks(experiment, judged, searched, resamples)
    answers_shown, kl_shown = answer_table(experiment, answers, checks), envelope_table(envelopes)
    written = {"answer.csv": out / "answer.csv", "answer_kl.csv": out / "answer_kl.csv"}
    answers_shown.to_csv(written["answer.csv"], index=False)
    kl_shown.to_csv(written["answer_kl.csv"], index=False)
    kl_panel = reward_kl_info(experiment)
    written |= {
        "pareto.png": save_png(pareto_figure(experiment, {**intervals, **confirmed}), out / "pareto.png"),
        "reward_kl.png": save_png(draw_reward_kl(kl_panel), out / "reward_kl.png"),
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
    constraints = _constraints(experiment)
    first, second = experiment.objectives
    kinds = experiment.kinds
    counted = (f"{len(experiment.results)} trials ({len(errors)} errored)" if not experiment.has_candidates else
               f"{len(experiment.results)} candidates ({len(errors)} errored): {kinds[TRIAL]} trials, "
               f"{kinds[POINT]} points along their training, {kinds[DERIVED]} derived by weight "
               "arithmetic")  # fmt: skip
    noun = candidates_noun(experiment)
    blocks: list[Block] = [
        ("h1", f"Sweep {experiment.study}"),
        ("p", f"{counted}, search {search}{timing}; objectives "
              f"`{first.metric}` ({first.better}) and `{second.metric}` ({second.better}); policy "
              f"`{config.get('policy')}`, reward `{config.get('reward')}`, judge `{config.get('judge', 'none')}` "
              f"(never optimised), {config.get('eval_prompts', '?')} "
              f"evaluation prompts x {config.get('eval_samples_per_prompt', '?')} samples."),  # fmt: skip
        *([("p", constraints)] if constraints else []),
        *([("p", note)] if (note := judge_note(experiment)) else []),
        *answer_blocks(experiment, answers_shown, envelopes, kl_shown),
        ("h2", "What to pick"),
        *[("p", line) for line in pick_lines(experiment, confirmed or intervals, comparisons, against, checks)],
        *_confirmation_blocks(experiment, confirmed),
        ("h2", "Pareto frontier"),
        ("p", f"Every {noun[:-1]} at its search figures (the search's evaluation prompts, one training run); "
              + ("the frontier line and its bars at the confirmed figures, a dotted line from each confirmed "
                 "configuration's search figure to its confirmed one." if experiment.confirmed is not None
                 else "the frontier among them.")
              + (" Each trial's path runs through the points saved along its training (smaller markers) to its "
                 "final model, in step order (thin lines); derived candidates are grey crosses, a dotted line from "
                 "each one-parent recipe's parent." if experiment.has_candidates else "")),
        ("image", (written["pareto.png"], f"{first.metric} vs {second.metric}: every trial, the frontier, each "
                                          "divergence's own")),
        ("plotly", interactive_pareto({experiment.study: experiment})),
        *_candidates_blocks(experiment),
        ("h2", "Reward and KL"),
        ("p", f"`{kl_panel.y.metric}` against `kl/ref`, the KL to the reference (SFT) policy in nats per completion, "
              f"for every finished {noun[:-1]}; the base policy sits at KL 0"
              + (f", the KL budget ({num(experiment.constraints['kl/ref'])}) is the dashed line"
                 if "kl/ref" in experiment.constraints else "")
              + ". A trial far to the right bought its reward by moving far from the base policy."),
        ("image", (written["reward_kl.png"], f"{kl_panel.y.metric} vs KL to the reference policy")),
        ("h2", "Per divergence and loss type"),
        ("p", f"Each divergence's own frontier points at their search figures, the best in {first.metric} first "
              f"(frontier = on the frontier above); the base policy first. Brackets: {CONFIDENCE:.0%} bootstrap "
              "intervals over the search's evaluation prompts."
              + (" Trials and the points along their training only: a derived candidate belongs to no divergence "
                 "(see Candidates beyond the trials)." if experiment.kinds[DERIVED] else "")),
        ("table", divergence_table(experiment, intervals)),
        ("h2", "Paired comparisons"),
        ("p", "Exploratory: differences a − b on the search's evaluation prompts both were scored on, the prompts "
              "resampled jointly, one training run each. These prompts chose the candidates, so the table carries "
              "no verdict"
              + ("; the verdicts are the confirmation's (the answer per divergence and What to pick)."
                 if experiment.confirmed is not None else "; nothing was confirmed.")
              + " p: the two-sided bootstrap p-value of no difference (twice the smaller share of resampled "
              f"differences on either side of 0, at least 1/({resamples} + 1)), Holm-adjusted over the "
              f"{len(comparisons)} rows."),
        ("p", _matched_text(experiment, matched)),
        ("table", paired_table(comparisons, exploratory=True)) if comparisons
        else ("p", "No comparison: there is no feasible finished trial with samples to compare."),
    ]  # fmt: skip
    if "rewards.png" in written:
        blocks += [
            ("h2", "Reward distributions"),
            ("image", (written["rewards.png"], "reward histograms of the base policy and frontier models")),
            ("h2", "Samples"),
            ("p", "The first sample of the same prompts from the base policy and from frontier models."),
            ("table", samples_table(experiment, loaded)),
        ]
    blocks += [("h2", "Reward-hacking watch"), *_watch_blocks(experiment, loaded)]
    blocks += [
        ("h2", "Search progress"),
        ("p", f"Hypervolume {volume:.4g} against the reference point ({reference[0]:.4g}, {reference[1]:.4g}): "
              + experiment.summary.get("reference_rule", "the base policy's reward and half its diversity unless the "
                                       "sweep set hv_reward / hv_diversity") + "."
              + (f" Infeasible {noun} add nothing to it." if constraints else "")
              + (" Each trial's points along training count with it; the last step adds the derived candidates."
                 if experiment.kinds[DERIVED] else
                 " Each trial's points along training count with it." if experiment.kinds[POINT] else "")),
        ("image", (written["hypervolume.png"], "hypervolume after each trial")),
        ("h2", "Every candidate" if experiment.has_candidates else "Every trial"),
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
              + ("These search intervals measure evaluation noise over prompts, not training randomness (one run "
                 "per trial). The confirmed figures' intervals resample the seeds and the confirmation prompts "
                 "together (each resample draws the prompts once for every seed, and the seeds with replacement): "
                 "percentile intervals, or the estimate ± z × bootstrap standard error for the pooled metrics. A "
                 "bootstrap over S seeds sees about (S − 1)/S of their variance, so with the few seeds of a default "
                 "run (--replicates) the seed part of these intervals is rough and errs narrow."
                 if experiment.confirmed is not None else
                 "They measure evaluation noise over prompts, not training randomness: each configuration was "
                 f"trained once and not confirmed ({unconfirmed(experiment)}), so two close trials may swap places "
                 "on a retrain.")),
        ("h2", "Live views"),
        ("p", f"`tensorboard --logdir {experiment.config.get('tune_storage') or out / 'tune'}` (training curves "
              f"and metrics of every trial); `optuna-dashboard {_dashboard_storage(experiment)}` (the study"
              + (f"; its password is in ${experiment.config['storage_password_env']}"
                 if experiment.config.get("storage_password_env") else "") + ")."),
    ]  # fmt: skip
    written["report.md"] = write_text(out / "report.md", render_markdown(blocks))
    written["report.html"] = write_text(out / "report.html", render_html(blocks, f"alignray sweep {experiment.study}"))
    return written
