"""The report's tables, as data frames of text ready for a document: per divergence (the seeds' table), every trial,
the paired comparisons, the samples and a frontier model's reward-hacking watch."""

from __future__ import annotations

import math

import pandas as pd

from alignray.report.experiment import BASE, Experiment, group_frontier, groups, selected
from alignray.report.formatting import label, num, params
from alignray.report.stats import Interval, Paired
from alignray.report.watch import Watch

__all__ = ["confirmation_table", "divergence_table", "paired_table", "samples_table", "trials_table", "watch_table"]


def divergence_table(experiment: Experiment, intervals: dict[str, dict[str, Interval]]) -> pd.DataFrame:
    """The seeds' table: the base policy's row first, then per divergence (and loss type) the points on its own
    frontier, the best in the first objective first; the objectives, KL and fluency with their intervals where
    ``intervals`` has them."""
    metrics = list(dict.fromkeys([*(o.metric for o in experiment.objectives), "kl/ref", "fluency/ref_perplexity"]))
    overall = set(experiment.frontier["trial"])

    def cells(key: str, values: pd.Series | dict[str, float]) -> dict[str, str]:
        found = intervals.get(key, {})
        return {m: str(found[m]) if m in found else num(values.get(m)) for m in metrics}

    rows = [{"divergence": "base (SFT)", "loss": "", "parameters": "", "trial": "", "frontier": "",
             **cells(BASE, experiment.base)}]  # fmt: skip
    for group in groups(experiment):
        for _, row in group_frontier(experiment, group).iterrows():
            rows.append(
                {
                    "divergence": row["divergence"],
                    "loss": row["loss_type"],
                    "parameters": f"{params(row)} lr={row['learning_rate']:.2g}",
                    "trial": row["trial"],
                    "frontier": "yes" if row["trial"] in overall else "",
                    **cells(row["trial"], row),
                }
            )
    return pd.DataFrame(rows)


def confirmation_table(experiment: Experiment, intervals: dict[str, dict[str, Interval]]) -> pd.DataFrame:
    """One row per confirmed configuration (the search's feasible frontier), the best confirmed first: seeds measured,
    the search's figures, the confirmed ones (means over seeds, with ``intervals`` where given), KL and non-word rate,
    whether it met the constraints again and whether it is on the confirmed frontier."""
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
                 for m in (reward, diversity, "kl/ref", "fluency/nonword_rate") if m in row}  # fmt: skip
        rows.append({"configuration": label(row, lr=True), "trial": row["trial"], "seeds": int(row["seeds"]),
                     f"search {reward}": num(row["search/" + reward]),
                     f"search {diversity}": num(row["search/" + diversity]), **cells,
                     "constraints": "met" if row["feasible"] else f"broke {row['violations']}",
                     "confirmed frontier": "yes" if row["trial"] in front else ""})  # fmt: skip
    return pd.DataFrame(rows)


def trials_table(experiment: Experiment) -> pd.DataFrame:
    """Every trial in creation order: status, parameters, objectives, KL, fluency, frontier, feasibility and the
    constraints broken (when the sweep had constraints) and an error's reason."""
    metrics = [*(o.metric for o in experiment.objectives), "kl/ref", "fluency/ref_perplexity", "fluency/nonword_rate"]
    metrics = list(dict.fromkeys(metrics))  # an objective may be one of the others
    columns = ["trial", "index", "status", "divergence", "loss_type", "beta", "alpha", "learning_rate", *metrics,
               "pareto", "feasible", "violations", "reason"]  # fmt: skip
    table = experiment.results.sort_values("index")
    table = table[[c for c in columns if c in table.columns]].copy()
    for column in table.columns:
        if table[column].dtype.kind == "f":
            table[column] = table[column].map(num)
    return table


def paired_table(comparisons: list[Paired]) -> pd.DataFrame:
    """One row per paired comparison: the difference, its interval, the shared prompts, the verdict, the bootstrap
    p-value and, when the comparisons were corrected as a family, the Holm-adjusted p-value."""
    holm = any(math.isfinite(c.adjusted_p) for c in comparisons)
    return pd.DataFrame(
        [{"a": c.a, "b": c.b, "metric": c.metric, "a − b": num(c.difference.estimate),
          f"{c.confidence:.0%} interval": f"[{num(c.difference.low)}, {num(c.difference.high)}]",
          "prompts": c.prompts, "verdict": c.verdict, "p": num(c.p_value),
          **({"Holm p": num(c.adjusted_p)} if holm else {})} for c in comparisons]
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
