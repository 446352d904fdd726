"""What to pick: the report's recommendation in sentences, each pick with its figures and its difference from the
base policy, and the small pieces of wording the report shares (what finished, the bounds, why nothing was
confirmed).

After a confirmation the picks' differences from the base policy are read from the fresh seeds and belong to the
report's one Holm family (``alignray.report.answer``); without one they are the search's, exploratory, and carry no
verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from alignray.report.experiment import BASE, DERIVED, KINDS, POINT, TRIAL, Experiment
from alignray.report.formatting import label, num, params
from alignray.report.judge import JUDGE, JudgeCheck
from alignray.report.stats import CONFIDENCE, Interval, Paired, paired_difference
from alignray.sweep.objectives import Objective

__all__ = ["KIND_NAMES", "against_base", "bounds_text", "candidates_noun", "finished_text", "pick_lines",
           "unconfirmed"]  # fmt: skip


KIND_NAMES = {TRIAL: "trials", POINT: "points along training", DERIVED: "derived by weight arithmetic"}
"""Each kind of candidate in the report's words, for counts."""


def finished_text(experiment: Experiment) -> str:
    """How many candidates finished, in words: "10 finished trials" or, with points or derived candidates, "102
    finished candidates: 4 trials, 8 points along training, 90 derived by weight arithmetic"."""
    ok = experiment.finished
    if not experiment.has_candidates:
        return f"{len(ok)} finished trials"
    counts = [f"{int((ok['kind'] == kind).sum())} {KIND_NAMES[kind]}" for kind in KINDS]
    return f"{len(ok)} finished candidates: {', '.join(counts)}"


def candidates_noun(experiment: Experiment) -> str:
    """What the report calls the rows of ``results.parquet``: "trials", or "candidates" when some are not trials."""
    return "candidates" if experiment.has_candidates else "trials"


def bounds_text(experiment: Experiment) -> str:
    """The constraints as written in the report: "kl/ref ≤ 10, fluency/nonword_rate ≤ 0.163"."""
    return ", ".join(f"{metric} ≤ {num(bound)}" for metric, bound in experiment.constraints.items())


def unconfirmed(experiment: Experiment) -> str:
    """Why the sweep has no confirmation, in words."""
    skipped = experiment.summary.get("confirmation", {}).get("skipped")
    return skipped or "the sweep ran before confirmation existed"


def against_base(
    experiment: Experiment, loaded: dict[str, pd.DataFrame], trials: Sequence[str], resamples: int
) -> dict[str, dict[str, Paired]]:
    """Each trial's paired difference against the base policy in both objectives on the search's evaluation prompts
    (``loaded``), where both have samples and the metric an interval: exploratory, for a sweep that confirmed
    nothing (a confirmed sweep's come from ``alignray.report.answer.divergence_answers``, in its Holm family)."""
    out: dict[str, dict[str, Paired]] = {}
    for trial in trials:
        if trial not in loaded or BASE not in loaded:
            continue
        out[trial] = {}
        for metric in (o.metric for o in experiment.objectives):
            try:
                out[trial][metric] = paired_difference(loaded[trial], loaded[BASE], metric, (trial, BASE),
                                                       resamples=resamples)  # fmt: skip
            except ValueError:  # a metric without an interval (token metrics of samples saved without ids)
                continue
    return out


def _versus_base(experiment: Experiment, row: pd.Series, paired: dict[str, Paired]) -> str:
    """A pick's differences against the base policy in both objectives, each with its paired interval and whether
    it is better or worse in the objective's direction, and what the pick gives up."""
    parts, lost = [], []
    base = experiment.frontier_base
    for objective in experiment.objectives:
        metric = objective.metric
        if metric not in paired:
            parts.append(f"{metric} difference {num(row[metric] - base.get(metric, float('nan')))} "
                         "(no interval)")  # fmt: skip
            continue
        difference, adjusted = paired[metric].difference, paired[metric].adjusted_p
        if experiment.confirmed is None:  # the prompts that chose the pick: no verdict
            parts.append(f"{metric} difference {difference} (exploratory: the search's prompts)")
            continue
        decided = adjusted < 1 - CONFIDENCE if math.isfinite(adjusted) else difference.high < 0 or difference.low > 0
        if decided and difference.estimate != 0:
            higher = difference.estimate > 0
            worse = higher != (objective.direction == "max")
            verdict = f"{'higher' if higher else 'lower'} than the base: {'worse' if worse else 'better'}"
            verdict = f"**{verdict}**" if worse else verdict
            if worse:
                lost.append(objective)
        else:
            verdict = f"no difference at {CONFIDENCE:.0%}" + (" after Holm" if math.isfinite(adjusted) else "")
        held = f"; Holm p {num(adjusted)}" if math.isfinite(adjusted) else ""
        parts.append(f"{metric} difference {difference} ({verdict}{held})")
    text = "Against the base policy: " + ", ".join(parts) + "."
    for objective in reversed(lost):  # what it gives up in the second objective, usually diversity, first
        text += f" **This pick is worse than the base policy in {objective.metric} ({objective.better}).**"
    return text


def _best(objective: Objective) -> str:
    """How "What to pick" titles the pick best in ``objective``: "Highest reward", "Lowest kl/ref"."""
    family = objective.metric.split("/")[0]
    name = family if family in ("reward", "diversity") else objective.metric
    return f"{'Highest' if objective.direction == 'max' else 'Lowest'} {name}"


def pick_lines(
    experiment: Experiment,
    intervals: dict[str, dict[str, Interval]],
    comparisons: list[Paired],
    against: dict[str, dict[str, Paired]],
    checks: Mapping[str, JudgeCheck] | None = None,
) -> list[str]:
    """The computed sentences of "What to pick" (``checks``: the picks' judge checks, ``alignray.report.judge``)."""
    checks = checks or {}
    if experiment.finished.empty:
        return ["No trial finished: there is no frontier to pick from (see the errored trials below)."]
    if experiment.frontier.empty and experiment.confirmed is not None:
        broken = "; ".join(f"{label(row, lr=True)} `{row['trial']}`: {row['violations']}"
                           for _, row in experiment.confirmed.iterrows())  # fmt: skip
        return [f"**None of the {len(experiment.confirmed)} confirmed candidates (the search's feasible frontier and "
                f"each divergence's best) held up on confirmation: there is no frontier to recommend.** {broken}. The "
                "search's figures were luck of its seed or prompts, or the bounds sit at the edge of what these "
                "configurations reach; see the Confirmation table, and run more trials or raise --replicates."]
    if experiment.frontier.empty:
        bounds = f" ({bounds_text(experiment)})" if experiment.constraints else ""
        return [f"**No trial met the constraints{bounds}: there is no frontier to recommend.** The table of every "
                "trial names what each broke; loosen the bounds (max_kl, max_nonword_increase, max_garbled_increase) "
                "or search lower learning rates and larger β, and run the sweep again."]  # fmt: skip
    (first, second), front = experiment.objectives, experiment.frontier
    reward, diversity = first.metric, second.metric
    confirmed = experiment.confirmed

    def described(row: pd.Series) -> str:
        found = intervals.get(row["trial"], {})
        r = str(found[reward]) if reward in found else num(row[reward])
        d = str(found[diversity]) if diversity in found else num(row[diversity])
        search = (f" (search: {num(row['search/' + reward])}, {num(row['search/' + diversity])})"
                  if confirmed is not None else "")  # fmt: skip
        if confirmed is not None and pd.notna(row.get("search_run/" + reward)):
            search += f" (search run on these prompts: {num(row['search_run/' + reward])})"
        failed = int(row.get("failed_seeds", 0) or 0) if confirmed is not None else 0
        flag = f" **{failed} fresh seed(s) failed: confirmed on fewer seeds.**" if failed else ""
        judged = ""
        if JUDGE in found or pd.notna(row.get(JUDGE)):
            judged = f", {JUDGE} {found[JUDGE] if JUDGE in found else num(row.get(JUDGE))}"
        check = checks.get(row["trial"])
        verdict = f" Judge: {check.text()}." if check is not None else ""
        return (f"{_named(row)}: {reward} {r}, {diversity} {d}{judged}{search}.{flag} "
                f"{_versus_base(experiment, row, against.get(row['trial'], {}))}{verdict}")  # fmt: skip

    base = intervals.get(BASE, {})
    base_values = experiment.frontier_base
    base_text = ", ".join(f"{m} {base[m] if m in base else num(base_values.get(m))}" for m in (reward, diversity))
    if confirmed is None:
        text = [
            f"The frontier holds {len(front)} of {finished_text(experiment)}. Base SFT policy: "
            f"{base_text}. Brackets are {CONFIDENCE:.0%} bootstrap intervals over the evaluation prompts; differences "
            "against the base policy are paired over the prompts both were scored on. **Not confirmed**: "
            f"{unconfirmed(experiment)}, so these figures come from the prompts that chose the frontier and from one "
            "training run each.",
        ]
    else:
        seeds = int(confirmed["seeds"].max())
        prompts = experiment.summary.get("confirmation", {}).get("prompts", "the")
        text = [
            f"The confirmed frontier holds {len(front)} of the {len(confirmed)} confirmed candidates (the search's "
            f"feasible frontier and each divergence's best, of {finished_text(experiment)}), each retrained"
            + (" (a derived one rebuilt from its parents' retrained weights)" if experiment.kinds[DERIVED] else "")
            + f" with up to {seeds} fresh seeds and measured on {prompts} confirmation prompts that share no text "
            f"with the search's or the preference data's. Base SFT policy on the same prompts: {base_text}. Figures "
            "are means over the fresh seeds only; the search's own run, the one that won, is measured beside them "
            f"(\"search run\") and never averaged in. Brackets are {CONFIDENCE:.0%} intervals that add the spread "
            "between seeds (a t quantile, few seeds) to the prompts' (bootstrap); differences against the base "
            "policy and between divergences are one Holm family, read from these seeds. \"search:\" gives the "
            "figures that chose each candidate.",
        ]
    text.append(f"- {_best(first)}: {described(front.iloc[0])}")
    if len(front) > 1:
        text.append(f"- {_best(second)} on the frontier: {described(front.iloc[-1])}")
    best = front.iloc[0]["search/" + reward] if confirmed is not None else front.iloc[0][reward]
    if "violations" in experiment.finished:
        left_out = experiment.finished[experiment.finished["violations"].notna()]
        left_out = first.best_first(left_out[first.sign * left_out[reward] > first.sign * best])
        if not left_out.empty:
            shown = "; ".join(f"{label(row)} `{row['trial']}`, {reward} {num(row[reward])} ({row['violations']})"
                              for _, row in left_out.head(3).iterrows())  # fmt: skip
            text.append(f"- Left out by the constraints, better in {reward} in the search than any pick: {shown}.")
    if confirmed is not None:
        dropped = confirmed[~confirmed["trial"].isin(front["trial"])]
        if not dropped.empty:
            why = "; ".join(f"{label(row)} `{row['trial']}` (" + (
                f"{row['violations']}" if row["seeds"] == 0 else f"{reward} {num(row[reward])}, search "
                f"{num(row['search/' + reward])}; " + (f"broke {row['violations']}" if pd.notna(row["violations"])
                                                       else "dominated")) + ")"
                for _, row in dropped.iterrows())  # fmt: skip
            text.append(f"- Confirmed but off the confirmed frontier: {why}.")
    if confirmed is None:
        for c in comparisons:
            if c.metric == reward:
                text.append(
                    f"- {c.a} vs {c.b}, exploratory (the search's prompts, which chose them; no verdict): {reward} "
                    f"difference {c.difference} over {c.prompts} shared prompts."
                )
    return text


def _named(row: pd.Series) -> str:
    """A pick as "What to pick" names it, with its kind: a trial by its divergence, loss type, parameters and id; a
    point along training also by its trial and step; a derived candidate by its recipe."""
    if row["kind"] == DERIVED:
        return f"**derived by weight arithmetic**, {label(row)} (candidate `{row['trial']}`: {row['recipe']})"
    text = f"**{row['divergence']}** ({row['loss_type']}) {params(row)}, learning rate {row['learning_rate']:.2g}"
    if row["kind"] == POINT:
        return (f"{text} (point `{row['trial']}`: trial `{row['tune_trial']}` at step {int(row['step'])}, a model "
                "saved along its training)")  # fmt: skip
    return f"{text} (trial `{row['trial']}`)"
