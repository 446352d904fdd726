"""Each divergence's answer: its best confirmed candidate at the KL budget, and its reward–KL envelope.

A user asks "which divergence, at the KL I can afford?". ``divergence_answers`` gives one answer per divergence: its
confirmed feasible candidate best in the first objective (the KL budget is one of the constraints), with its
difference from the base policy and from the best divergence. The figures and verdicts come from the fresh seeds on
the confirmation prompts, and every verdict of the report is one Holm family (``confirmed_verdicts``). A divergence
without an answer says why: what its candidates broke, and how often.

``kl_envelopes`` asks the DPO paper's figure-2 question as a table. Each divergence's upper envelope of reward against
KL runs through its feasible trained candidates, from the base policy at KL 0. It is read by linear interpolation at
KLs that every compared divergence reaches. Its intervals come from one bootstrap over the search's prompts, shared
by every candidate. They are exploratory: these prompts also chose the candidates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from alignray.report.document import Block
from alignray.report.experiment import BASE, DERIVED, KL, Experiment, feasible_mask
from alignray.report.formatting import num, params
from alignray.report.judge import JUDGE, JudgeCheck
from alignray.report.stats import (
    CONFIDENCE,
    RESAMPLES,
    Interval,
    Paired,
    holm_adjusted,
    metric_intervals,
    paired_difference,
    seed_prompt_difference,
    seed_prompt_intervals,
)
from alignray.sweep.frontier import ANSWER

__all__ = ["Answer", "KLEnvelopes", "answer_blocks", "answer_table", "confirmed_verdicts", "divergence_answers",
           "envelope_corners", "envelope_table", "kl_envelopes", "upper_envelope"]  # fmt: skip

REWARD = "reward/mean"
"""The envelope's y axis: the DPO paper's figure 2 plots reward against KL."""


@dataclasses.dataclass(frozen=True)
class Answer:
    """One divergence's answer: ``row`` its candidate (a confirmed row when the sweep confirmed, else the search's
    best), or None with ``why`` (with a row: a note on how it was chosen)."""

    divergence: str
    row: pd.Series | None
    why: str | None = None
    intervals: dict[str, Interval] = dataclasses.field(default_factory=dict)
    versus_base: dict[str, Paired] = dataclasses.field(default_factory=dict)
    versus_best: dict[str, Paired] = dataclasses.field(default_factory=dict)
    confirmed: bool = False
    best: bool = False
    """Whether it is the best answer in the first objective, the one the others are compared with."""


def confirmed_verdicts(
    experiment: Experiment, pairs: Sequence[tuple[str, str]], resamples: int = RESAMPLES
) -> dict[tuple[str, str, str], Paired]:
    """The differences a − b of both objectives for each pair of confirmed candidates (``BASE``: the base policy),
    read from the fresh seeds on the confirmation prompts, Holm-adjusted as one family; keyed (a, b, metric)."""
    found: list[Paired] = []
    keys: list[tuple[str, str, str]] = []
    read: dict[str, list[pd.DataFrame]] = {}  # each candidate's fresh seeds, read once though it is in several pairs
    for a, b in dict.fromkeys(pairs):
        for trial in (a, b):
            if trial not in read:
                read[trial] = experiment.confirmation_samples(trial)
        mine, theirs = read[a], read[b]
        if not mine or not theirs:
            continue
        for metric in (o.metric for o in experiment.objectives):
            try:
                found.append(seed_prompt_difference(mine, theirs, metric, (a, b), resamples=resamples))
            except ValueError:  # a metric without an interval (samples saved without ids or text)
                continue
            keys.append((a, b, metric))
    return dict(zip(keys, holm_adjusted(found), strict=True))


def _why_none(experiment: Experiment, divergence: str) -> str:
    """Why a divergence has no answer: its candidates' errors and broken constraints, counted."""
    rows = experiment.results[(experiment.results["divergence"] == divergence)
                              & (experiment.results["kind"] != DERIVED)]  # fmt: skip
    if rows.empty:
        return "no trial"
    errored = int((rows["status"] != "ok").sum())
    finished = rows[rows["status"] == "ok"]
    broke = []
    for metric in experiment.constraints:
        column = f"constraint/{metric}"
        if column in finished.columns:
            count = int((finished[column] > 0).sum())
            if count:
                broke.append(f"{count} broke {metric}")
    parts = [f"{len(finished)} finished candidates"] + broke + ([f"{errored} errored"] if errored else [])
    confirmed = experiment.confirmed
    if confirmed is not None and feasible_mask(finished).any():
        tried = confirmed[(confirmed["divergence"] == divergence) & (confirmed["kind"] != DERIVED)]
        if tried.empty:
            return "its feasible candidates were not confirmed (a sweep recorded before each divergence's best was)"
        failed = "; ".join(f"`{r['trial']}`: {r['violations']}" for _, r in tried.iterrows())
        return f"no candidate held up on confirmation ({failed})"
    return f"no feasible candidate ({', '.join(parts)})"


def divergence_answers(
    experiment: Experiment,
    resamples: int = RESAMPLES,
    extra_pairs: Sequence[tuple[str, str]] = (),
    intervals: Mapping[str, dict[str, Interval]] | None = None,
) -> tuple[list[Answer], dict[tuple[str, str, str], Paired]]:
    """Each searched divergence's answer, in the sweep's order (see the module's docstring), and the verdicts of the
    report's one Holm family: each answer against the base policy and against the best answer, and ``extra_pairs``
    (the picks against the base policy). With a confirmation the candidates are the confirmed ones, their figures the
    fresh seeds' means and the verdicts ``confirmed_verdicts``'s; without one, the search's best on its own prompts,
    its differences exploratory (no verdicts: empty). ``intervals``: candidates' intervals already computed the same
    way (the report's), used instead of computing them again."""
    intervals = intervals or {}
    first = experiment.objectives[0]
    confirmed = experiment.confirmed
    divergences = list(experiment.config.get("divergences") or sorted(set(experiment.trained["divergence"])))
    chosen: dict[str, pd.Series] = {}
    notes: dict[str, str] = {}
    for divergence in divergences:
        if confirmed is None:
            rows = experiment.trained[experiment.trained["divergence"] == divergence]
            rows = rows[feasible_mask(rows)]
            if len(rows):
                chosen[divergence] = first.best_first(rows).iloc[0]
            continue
        rows = confirmed[(confirmed["divergence"] == divergence) & (confirmed["kind"] != DERIVED)]
        # the answer was chosen at the search's figures; choosing it again by the confirmed ones would be biased
        marked = rows[rows[ANSWER].astype(bool)] if ANSWER in rows.columns else rows.iloc[:0]
        if len(marked) and feasible_mask(marked).all():
            chosen[divergence] = marked.iloc[0]
            continue
        others = rows[feasible_mask(rows)]
        if len(others):
            chosen[divergence] = first.best_first(others).iloc[0]
            if len(marked):
                notes[divergence] = (f"the search's best `{marked.iloc[0]['trial']}` failed confirmation "
                                     f"({marked.iloc[0]['violations']}); the best other confirmed candidate instead")
    best = first.best_first(pd.DataFrame(list(chosen.values()))).iloc[0]["trial"] if chosen else None
    verdicts: dict[tuple[str, str, str], Paired] = {}
    if confirmed is not None:
        pairs = [*extra_pairs, *((row["trial"], BASE) for row in chosen.values())]
        pairs += [(row["trial"], best) for row in chosen.values() if row["trial"] != best]
        verdicts = confirmed_verdicts(experiment, pairs, resamples)
    answers = []
    for divergence in divergences:
        if divergence not in chosen:
            answers.append(Answer(divergence, None, _why_none(experiment, divergence)))
            continue
        row, trial = chosen[divergence], chosen[divergence]["trial"]
        metrics = [o.metric for o in experiment.objectives]
        if confirmed is not None:
            seeds = [] if trial in intervals else experiment.confirmation_samples(trial)
            found = intervals.get(trial) or (seed_prompt_intervals(seeds, resamples=resamples) if seeds else {})
            versus_base = {m: verdicts[(trial, BASE, m)] for m in metrics if (trial, BASE, m) in verdicts}
            versus_best = {m: verdicts[(trial, best, m)] for m in metrics if (trial, best, m) in verdicts}
        else:
            samples, base = experiment.samples(trial), experiment.samples(BASE)
            found = intervals.get(trial) or (metric_intervals(samples, resamples=resamples) if samples is not None
                                             else {})  # fmt: skip
            versus_base, versus_best = {}, {}
            top = experiment.samples(best) if best != trial else None
            for metric in metrics:
                for versus, other, name in ((versus_base, base, BASE), (versus_best, top, best)):
                    if samples is None or other is None:
                        continue
                    try:
                        versus[metric] = paired_difference(samples, other, metric, (trial, name), resamples=resamples)
                    except ValueError:  # a metric without an interval (samples saved without ids or text)
                        continue
        answers.append(Answer(divergence, row, notes.get(divergence), found, versus_base, versus_best,
                              confirmed is not None, trial == best))  # fmt: skip
    return answers, verdicts


def _difference(paired: Paired | None, confirmed: bool) -> str:
    """A difference with its interval and, when confirmed, its Holm verdict ("better"/"worse" is the reader's)."""
    if paired is None:
        return ""
    if not confirmed:
        return f"{paired.difference} (exploratory)"
    p = paired.adjusted_p
    shown = f"Holm p {p:.3g}" if math.isfinite(p) else "no test"
    return f"{paired.difference} ({shown})"


def answer_table(
    experiment: Experiment, answers: Sequence[Answer], checks: Mapping[str, JudgeCheck] | None = None
) -> pd.DataFrame:
    """The answers as text cells, one row per divergence: candidate and configuration, both objectives with their
    intervals, the judge's score, KL and fluency, fresh seeds, the differences from the base policy (the judge's
    too, from ``checks``) and from the best divergence, and the flags (a reward-hacking verdict among them)."""
    checks = checks or {}
    first, second = experiment.objectives
    fluency = [m for m in ("fluency/nonword_rate", "fluency/garbled_rate") if m in experiment.results.columns]
    rows = []
    for answer in answers:
        cell = {"divergence": answer.divergence}
        if answer.row is None:
            rows.append({**cell, "answer": f"none: {answer.why}"})
            continue
        row = answer.row
        cell["answer"] = f"`{row['trial']}` ({row.get('kind', 'trial')})"
        cell["configuration"] = params(row, lr=True)
        for metric in (first.metric, second.metric):
            found = answer.intervals.get(metric)
            cell[metric] = str(found) if found is not None else num(row.get(metric))
        if JUDGE in answer.intervals or pd.notna(row.get(JUDGE)):
            found = answer.intervals.get(JUDGE)
            cell[JUDGE] = str(found) if found is not None else num(row.get(JUDGE))
        for metric in dict.fromkeys([KL, *fluency]):
            cell[metric] = num(row.get(metric))
        check = checks.get(row["trial"])
        hacking = [check.flag] if check is not None and check.hacking else []
        if not answer.confirmed and hacking:
            cell["flags"] = hacking[0] + " (exploratory)"
        if answer.confirmed:
            cell["fresh seeds"] = str(int(row.get("seeds", 0) or 0))
            failed = int(row.get("failed_seeds", 0) or 0)
            flags = [f"{failed} fresh seed(s) failed"] if failed else []
            if any(not i.seed_part for i in answer.intervals.values()):
                flags.append("one fresh seed: intervals over prompts only")
            cell["flags"] = "; ".join([*hacking, *flags, *([answer.why] if answer.why else [])])
        for metric in (first.metric, second.metric):
            cell[f"vs base: {metric}"] = _difference(answer.versus_base.get(metric), answer.confirmed)
        if check is not None and check.judge is not None:
            cell[f"vs base: {JUDGE}"] = f"{check.judge.difference}" + ("" if answer.confirmed else " (exploratory)")
        for metric in (first.metric, second.metric):
            cell[f"vs best: {metric}"] = "the best" if answer.best else _difference(
                answer.versus_best.get(metric), answer.confirmed)
        rows.append(cell)
    return pd.DataFrame(rows).fillna("")


@dataclasses.dataclass(frozen=True)
class KLEnvelopes:
    """Each divergence's reward at common KLs, read off its own upper envelope: ``kls`` the KLs, ``values`` the
    divergence's value at each, ``reach`` its largest feasible KL, ``left_out`` what was not compared, and why."""

    kls: tuple[float, ...]
    values: dict[str, list[Interval]]
    reach: dict[str, float]
    left_out: dict[str, str]


def envelope_corners(kl: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The corners of the upper envelope of reward against KL through the points (``kl``, ``reward``): the points
    that no other point beats with less KL and more reward, by KL."""
    kl, reward = np.asarray(kl, dtype=np.float64), np.asarray(reward, dtype=np.float64)
    order = np.lexsort((-reward, kl))
    kl, reward = kl[order], reward[order]
    keep = reward > np.maximum.accumulate(np.concatenate([[-np.inf], reward[:-1]]))
    return kl[keep], reward[keep]


def upper_envelope(kl: np.ndarray, reward: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The upper envelope of reward against KL through the points (``kl``, ``reward``), read at ``at``: the corners
    (no point has less KL and more reward) joined by straight lines, flat after the last; NaN before the first."""
    corners_kl, corners_reward = envelope_corners(kl, reward)
    values = np.interp(at, corners_kl, corners_reward)
    return np.where(at < corners_kl[0], np.nan, values)


def _prompt_sums(samples: pd.DataFrame, prompt_ids: np.ndarray) -> np.ndarray:
    """Per prompt, in ``prompt_ids`` order: samples, reward sum and log-ratio sum; shape (3, prompts)."""
    frame = pd.DataFrame({"prompt_id": samples["prompt_id"], "n": 1.0, "reward": samples["reward"].astype(float),
                          "logratio": samples["logp"] - samples["ref_logp"]})  # fmt: skip
    sums = frame.groupby("prompt_id").sum().reindex(prompt_ids).fillna(0.0)
    return sums[["n", "reward", "logratio"]].to_numpy(dtype=np.float64).T


def _common_kls(cap: float, count: int = 3) -> tuple[float, ...]:
    """``count`` KLs spread up to ``cap``, each rounded down to two significant digits (so none passes the cap)."""
    kls = []
    for share in np.linspace(1 / count, 1, count):
        value = share * cap
        scale = 10 ** (math.floor(math.log10(value)) - 1) if value > 0 else 1
        kls.append(math.floor(value / scale) * scale)
    return tuple(dict.fromkeys(round(k, 12) for k in kls if k > 0))


def kl_envelopes(experiment: Experiment, resamples: int = RESAMPLES, seed: int = 0) -> KLEnvelopes:
    """Each divergence's reward read off its own upper envelope (``upper_envelope``, through the base policy at KL
    0 and its feasible trained candidates at their search figures) at common KLs: three up to the smallest of the
    divergences' largest feasible KLs. Percentile intervals from one bootstrap of the search's prompts shared by
    every candidate and the base policy."""
    from alignray.report.stats import _weights

    base = experiment.samples(BASE)
    trained = experiment.trained
    divergences = list(experiment.config.get("divergences") or sorted(set(trained["divergence"])))
    members: dict[str, pd.DataFrame] = {}
    left_out: dict[str, str] = {}
    loaded: dict[str, pd.DataFrame] = {}  # each candidate's samples, read once
    for divergence in divergences:
        rows = trained[(trained["divergence"] == divergence)]
        rows = rows[feasible_mask(rows) & rows[KL].notna()] if KL in rows.columns else rows.iloc[:0]
        loaded |= {t: found for t in rows["trial"] if (found := experiment.samples(t)) is not None}
        rows = rows[rows["trial"].isin(loaded)]
        if rows.empty:
            left_out[divergence] = "no feasible candidate with samples"
        else:
            members[divergence] = rows
    reach = {d: float(rows[KL].max()) for d, rows in members.items()}
    if base is None or not members or min(reach.values()) <= 0:
        for divergence in members:
            left_out.setdefault(divergence, "no common KL above 0" if base is not None else "no base samples")
        return KLEnvelopes((), {}, reach, left_out)
    kls = np.asarray(_common_kls(min(reach.values())))
    prompt_ids = np.sort(base["prompt_id"].unique())
    rng = np.random.default_rng(seed)
    weights = np.vstack([np.ones(len(prompt_ids)),
                         _weights(rng.integers(0, len(prompt_ids), (resamples, len(prompt_ids))), len(prompt_ids))])
    base_sums = _prompt_sums(base, prompt_ids)
    base_reward = (weights @ base_sums[1]) / (weights @ base_sums[0])
    values: dict[str, list[Interval]] = {}
    for divergence, rows in members.items():
        sums = np.stack([_prompt_sums(loaded[t], prompt_ids) for t in rows["trial"]])  # (c, 3, P)
        n = weights @ sums[:, 0].T  # (1 + resamples, c)
        reward = (weights @ sums[:, 1].T) / np.maximum(n, 1.0)
        kl = (weights @ sums[:, 2].T) / np.maximum(n, 1.0)
        curve = np.array([upper_envelope(np.concatenate([[0.0], kl[b]]), np.concatenate([[base_reward[b]], reward[b]]),
                                         kls) for b in range(len(weights))])  # fmt: skip
        low, high = np.nanquantile(curve[1:], [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], axis=0)
        values[divergence] = [Interval(float(e), float(lo), float(hi)) for e, lo, hi in zip(curve[0], low, high,
                                                                                             strict=True)]  # fmt: skip
    return KLEnvelopes(tuple(float(k) for k in kls), values, reach, left_out)


def envelope_table(envelopes: KLEnvelopes) -> pd.DataFrame:
    """The envelopes as text cells: a row per compared divergence, its reach and its reward at each common KL."""
    rows = [{"divergence": d, "largest feasible KL": num(envelopes.reach[d]),
             **{f"reward at KL {k:g}": str(v) for k, v in zip(envelopes.kls, values, strict=True)}}
            for d, values in envelopes.values.items()]  # fmt: skip
    rows += [{"divergence": d, "largest feasible KL": "", "note": why} for d, why in envelopes.left_out.items()]
    return pd.DataFrame(rows).fillna("")


def answer_blocks(
    experiment: Experiment, answers: pd.DataFrame, envelopes: KLEnvelopes, kl_shown: pd.DataFrame
) -> list[Block]:
    """The report's first section: each divergence's answer at the KL budget, then the reward–KL envelopes read at
    common KLs."""
    first = experiment.objectives[0]
    budget = experiment.constraints.get(KL)
    within = f"within the KL budget ({KL} ≤ {num(budget)}) and the fluency bounds" if budget else "within the bounds"
    confirmed = experiment.confirmed is not None
    text = (f"For each divergence, its candidate best in `{first.metric}` {within}"
            + (", confirmed on fresh seeds and held-out prompts (means over the fresh seeds; brackets: "
               f"{CONFIDENCE:.0%} intervals over seeds and prompts). \"vs base\" and \"vs best\" are differences "
               "with their interval and Holm-adjusted p over the report's one family of confirmed comparisons; a "
               f"divergence whose difference from the best has Holm p ≥ {1 - CONFIDENCE:.2g} is not shown to be "
               "worse." if confirmed else
               ": **not confirmed**, search figures on the prompts that chose them; differences exploratory.")
            + (" One divergence was searched: there is no comparison between divergences."
               if len(answers) == 1 else ""))  # fmt: skip
    blocks: list[Block] = [("h2", "The answer per divergence"), ("p", text), ("table", answers)]
    if envelopes.kls:
        read = "; ".join(f"{d} {', '.join(str(v) for v in values)}" for d, values in envelopes.values.items())
        kls = ", ".join(f"{k:g}" for k in envelopes.kls)
        blocks += [
            ("p", f"Reward against KL, each divergence's upper envelope over its feasible candidates (trials and "
                  f"points along training, at their search figures) from the base policy at KL 0, read by "
                  f"interpolation at KLs every compared divergence reaches ({kls} nats): {read}. Exploratory: the "
                  f"search's prompts, which chose these candidates, with {CONFIDENCE:.0%} bootstrap intervals over "
                  "them."),
            ("table", kl_shown),
        ]  # fmt: skip
    elif envelopes.left_out:
        blocks.append(("p", "No reward–KL comparison: " + "; ".join(f"{d}: {why}" for d, why in
                                                                    envelopes.left_out.items()) + "."))
    return blocks
