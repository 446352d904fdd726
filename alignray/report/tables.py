"""The report's tables, as data frames of text ready for a document: per divergence (the seeds' table), every trial
(every candidate), the derived candidates, the points along training on a frontier, the paired comparisons, the
samples and a frontier model's reward-hacking watch."""

from __future__ import annotations

import math

import pandas as pd

from alignray.report.experiment import BASE, DERIVED, KL, POINT, Experiment, group_frontier, groups, selected
from alignray.report.formatting import kind, label, num, params
from alignray.report.stats import Interval, Paired
from alignray.report.watch import Watch

__all__ = ["confirmation_table", "derived_table", "divergence_table", "paired_table", "points_table", "samples_table",
           "trials_table", "watch_table"]  # fmt: skip


def _frontiers(experiment: Experiment) -> dict[str, set[str]]:
    """The candidates on each frontier, by the column that marks them: "search frontier" and, when the sweep
    confirmed, "confirmed frontier"."""
    found = {"search frontier": set(experiment.search_frontier["trial"])}
    if experiment.confirmed is not None:
        found["confirmed frontier"] = set(experiment.frontier["trial"])
    return found


def _on(frontiers: dict[str, set[str]], row: pd.Series) -> dict[str, str]:
    """A row's cells "yes" (or "") under each frontier's column of ``_frontiers``."""
    return {column: "yes" if row["trial"] in members else "" for column, members in frontiers.items()}


def _constraints(row: pd.Series) -> str:
    """A candidate's standing: "met" (the constraints), "broke <violations>" or "errored: <reason>"."""
    if row["status"] != "ok":
        return f"errored: {row.get('reason') or ''}".rstrip(": ")
    violations = row.get("violations")
    return f"broke {violations}" if isinstance(violations, str) and violations else "met"


def divergence_table(experiment: Experiment, intervals: dict[str, dict[str, Interval]]) -> pd.DataFrame:
    """The seeds' table: the base policy's row first, then per divergence (and loss type) the points on its own
    frontier of trained candidates, the best in the first objective first (with each one's kind, when the sweep had
    points along training or derived candidates); the objectives, KL and fluency with their intervals where
    ``intervals`` has them."""
    metrics = list(dict.fromkeys([*(o.metric for o in experiment.objectives), "kl/ref", "fluency/ref_perplexity"]))
    overall = set(experiment.frontier["trial"])
    candidates = experiment.has_candidates

    def cells(key: str, values: pd.Series | dict[str, float]) -> dict[str, str]:
        found = intervals.get(key, {})
        return {m: str(found[m]) if m in found else num(values.get(m)) for m in metrics}

    rows = [{"divergence": "base (SFT)", "loss": "", "parameters": "", "trial": "",
             **({"candidate": ""} if candidates else {}), "frontier": "", **cells(BASE, experiment.base)}]  # fmt: skip
    for group in groups(experiment):
        for _, row in group_frontier(experiment, group).iterrows():
            rows.append(
                {
                    "divergence": row["divergence"],
                    "loss": row["loss_type"],
                    "parameters": params(row, lr=True),
                    "trial": row["trial"],
                    **({"candidate": kind(row)} if candidates else {}),
                    "frontier": "yes" if row["trial"] in overall else "",
                    **cells(row["trial"], row),
                }
            )
    return pd.DataFrame(rows)


def confirmation_table(experiment: Experiment, intervals: dict[str, dict[str, Interval]]) -> pd.DataFrame:
    """One row per confirmed configuration (the search's feasible frontier), the best confirmed first: its kind (when
    the sweep had points or derived candidates), seeds measured, the search's figures, the confirmed ones (means over
    seeds, with ``intervals`` where given), KL and non-word rate, whether it met the constraints again and whether it
    is on the confirmed frontier."""
    confirmed = experiment.confirmed
    if confirmed is None:
        return pd.DataFrame()
    front = set(experiment.frontier["trial"])
    first, second = experiment.objectives
    reward, diversity = first.metric, second.metric
    rows = []
    for _, row in first.best_first(confirmed).iterrows():
        found = intervals.get(row["trial"], {})
        cells = {f"{m}": str(found[m]) if m in found else num(row[m])
                 for m in (reward, diversity, "kl/ref", "fluency/nonword_rate", "fluency/garbled_rate")
                 if m in row}  # fmt: skip
        run = row.get("search_run/" + reward)
        cells[f"search run {reward}"] = num(run) if run is not None and pd.notna(run) else ""
        failed = int(row.get("failed_seeds", 0) or 0)
        rows.append({"configuration": label(row, lr=True), "trial": row["trial"],
                     **({"candidate": kind(row)} if experiment.has_candidates else {}), "seeds": int(row["seeds"]),
                     **({"failed seeds": failed} if failed else {}),
                     f"search {reward}": num(row["search/" + reward]),
                     f"search {diversity}": num(row["search/" + diversity]), **cells,
                     "constraints": "met" if row["feasible"] else f"broke {row['violations']}",
                     "confirmed frontier": "yes" if row["trial"] in front else ""})  # fmt: skip
    return pd.DataFrame(rows)


def trials_table(experiment: Experiment) -> pd.DataFrame:
    """Every trial in creation order: status, parameters, objectives, KL, fluency, frontier, feasibility and the
    constraints broken (when the sweep had constraints) and an error's reason. With points along training or derived
    candidates, every candidate: each trial's points with it (by step), the derived ones last, with their kind, step
    and recipe."""
    metrics = [*(o.metric for o in experiment.objectives), "kl/ref", "fluency/ref_perplexity", "fluency/nonword_rate"]
    metrics = list(dict.fromkeys(metrics))  # an objective may be one of the others
    kinds = ["kind", "step"] if experiment.has_candidates else []
    columns = ["trial", "index", "status", *kinds, "divergence", "loss_type", "beta", "alpha", "learning_rate",
               *metrics, "pareto", "feasible", "violations", *(["recipe"] if kinds else []), "reason"]  # fmt: skip
    table = experiment.results.sort_values(["index", "step"], kind="stable")
    table = table[[c for c in columns if c in table.columns]].copy()
    for column in table.columns:
        if table[column].dtype.kind == "f":
            table[column] = table[column].map(num)
    return table


def derived_table(experiment: Experiment) -> pd.DataFrame:
    """One row per derived candidate, the best in the first objective first: its id, recipe, the objectives and KL
    at the search's figures, whether it met the constraints (or errored), and whether it is on the search's frontier
    and (when the sweep confirmed) on the confirmed one. Empty when the sweep derived none."""
    derived = experiment.results[experiment.results["kind"] == DERIVED]
    metrics = list(dict.fromkeys([*(o.metric for o in experiment.objectives), KL]))
    frontiers = _frontiers(experiment)
    rows = []
    for _, row in experiment.objectives[0].best_first(derived).iterrows():
        rows.append({"candidate": row["trial"], "recipe": row["recipe"],
                     **{m: num(row.get(m)) for m in metrics if m in row.index}, "constraints": _constraints(row),
                     **_on(frontiers, row)})  # fmt: skip
    return pd.DataFrame(rows)


def points_table(experiment: Experiment) -> pd.DataFrame:
    """One row per point along training on the search's frontier or the confirmed one, the best in the first objective
    first: its id, its trial and step, the configuration, the objectives and KL at the search's figures and which
    frontier holds it. Empty when no point reached a frontier."""
    frontiers = _frontiers(experiment)
    on = set().union(*frontiers.values())
    results = experiment.results
    points = results[(results["kind"] == POINT) & results["trial"].isin(on)]
    metrics = list(dict.fromkeys([*(o.metric for o in experiment.objectives), KL]))
    rows = []
    for _, row in experiment.objectives[0].best_first(points).iterrows():
        rows.append({"point": row["trial"], "trial": row["tune_trial"], "step": num(row["step"]),
                     "configuration": label(row, lr=True), **{m: num(row.get(m)) for m in metrics if m in row.index},
                     **_on(frontiers, row)})  # fmt: skip
    return pd.DataFrame(rows)


def paired_table(comparisons: list[Paired], exploratory: bool = False) -> pd.DataFrame:
    """One row per paired comparison: the difference, its interval, the shared prompts, the verdict (none when
    ``exploratory``: the prompts chose what is compared), the bootstrap p-value and, when the comparisons were
    corrected as a family, the Holm-adjusted p-value; and the resamples dropped as non-finite, when any was."""
    holm = any(math.isfinite(c.adjusted_p) for c in comparisons)
    dropped = any(c.dropped for c in comparisons)
    return pd.DataFrame(
        [{"a": c.a, "b": c.b, "metric": c.metric, "a − b": num(c.difference.estimate),
          f"{c.confidence:.0%} interval": f"[{num(c.difference.low)}, {num(c.difference.high)}]",
          "prompts": c.prompts, **({} if exploratory else {"verdict": c.verdict}), "p": num(c.p_value),
          **({"Holm p": num(c.adjusted_p)} if holm else {}),
          **({"non-finite resamples dropped": c.dropped} if dropped else {})} for c in comparisons]
    )  # fmt: skip


def samples_table(experiment: Experiment, loaded: dict[str, pd.DataFrame], prompts: int = 3) -> pd.DataFrame:
    """The first sample of the first ``prompts`` prompts from the base policy and from the selected frontier models
    (empty without the base policy's samples)."""
    base = loaded.get(BASE)
    chosen = [row for _, row in selected(experiment).iterrows() if row["trial"] in loaded]
    if base is None:
        return pd.DataFrame()
    rows = []
    for prompt_id in sorted(base["prompt_id"].unique())[:prompts]:
        sources = [("base SFT", base)] + [(label(r), loaded[r["trial"]]) for r in chosen]
        for name, samples in sources:
            first = samples[samples["prompt_id"] == prompt_id].iloc[:1]
            for _, sample in first.iterrows():
                rows.append({"prompt": sample["prompt"], "policy": name, "reward": f"{sample['reward']:.3g}",
                             "completion": sample["completion"].strip()})  # fmt: skip
    return pd.DataFrame(rows)


def watch_table(watch: Watch) -> pd.DataFrame:
    """A frontier model's most risen n-grams: the share of its texts holding each (and their number), the base
    policy's share and the rise, in percentage points."""
    return pd.DataFrame(
        [{"n-gram": r.ngram, "share of texts": f"{r.share:.0%} ({r.texts})", "base share": f"{r.base_share:.0%}",
          "rise": f"{100 * r.rise:+.0f} pt"} for r in watch.rises]
    )  # fmt: skip
