"""The sweep's report: Pareto plots, per-divergence tables, bootstrap intervals, paired comparisons, samples.

``write_report(experiment_dir)`` reads what ``alignray.sweep.driver`` left (``sweep.json``, ``results.parquet``,
``base/``, ``samples/<trial>.parquet``) and writes ``report.md`` with its PNGs beside it and ``report.html``, which
embeds the same images and an interactive plotly frontier and opens from disk with no network.
``write_comparison(a, b, out)`` puts two experiments' frontiers and search progress on one plot.

Confidence: the evaluation prompts are the unit of resampling. Every interval comes from one ``scipy.stats.bootstrap``
over prompts that recomputes the metric on the resampled prompts' samples, so pooled metrics (token entropy,
distinct-n) are resampled as the metric is defined, not averaged per prompt. Per-sample metrics (reward, KL,
predictive entropy, perplexity) get BCa intervals. A resample that repeats a prompt repeats its completions, which
lowers the pooled token metrics artificially (every resample falls below the estimate and BCa breaks down), so
those get the estimate ± z × the bootstrap standard error. A paired comparison resamples the prompts two policies
share jointly and recomputes the difference; an interval that covers 0 reads "no difference".
The intervals measure evaluation noise only: one training run per configuration (the sweep has no replicate seeds),
so training randomness is not in them. Token metrics need the samples' ``completion_ids``; samples saved without them
(sweeps before the ids were kept) give those metrics no interval, and the report says so.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from alignray.metrics import METRICS
from alignray.sweep.pareto import hypervolume, hypervolume_curve, pareto_mask

__all__ = [
    "CONFIDENCE",
    "RESAMPLES",
    "INTERVAL_METRICS",
    "TOKEN_METRICS",
    "Experiment",
    "Interval",
    "Paired",
    "PromptTable",
    "divergence_table",
    "hypervolume_figure",
    "interactive_pareto",
    "load_experiment",
    "metric_intervals",
    "paired_difference",
    "pareto_figure",
    "prompt_bootstrap",
    "reward_histograms",
    "write_comparison",
    "write_report",
]

INTERVAL_METRICS = tuple(m for m in METRICS if m not in ("reward/p10", "reward/p50", "reward/p90"))
"""Metrics given a bootstrap interval; reward percentiles (p10/p50/p90) are reported without one."""
TOKEN_METRICS = ("diversity/token_entropy", "diversity/distinct_1", "diversity/distinct_2")
"""Metrics computed from ``completion_ids``: no interval when the stored samples lack them."""
SAMPLE_COLUMNS = ("prompt_id", "reward", "positive", "logp", "entropy", "ref_logp", "tokens")
CONFIDENCE = 0.95
RESAMPLES = 2000
BASE = "base"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (5, 3)), "-", "--")


# --- statistics -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval (NaN bounds: no interval could be computed)."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        if not math.isfinite(self.low):
            return _num(self.estimate)
        return f"{_num(self.estimate)} [{_num(self.low)}, {_num(self.high)}]"


@dataclasses.dataclass(frozen=True)
class Paired:
    """A paired difference ``a − b`` of one metric over the prompts both policies were evaluated on."""

    a: str
    b: str
    metric: str
    difference: Interval
    prompts: int
    confidence: float

    @property
    def verdict(self) -> str:
        """ "a higher" / "b higher" when the interval excludes 0, else "no difference" (at the confidence level)."""
        if not math.isfinite(self.difference.low):
            return "no interval"
        if self.difference.low > 0:
            return f"{self.a} higher"
        if self.difference.high < 0:
            return f"{self.b} higher"
        return f"no difference at {self.confidence:.0%}"


def _grams(ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def _count_matrix(rows_per_prompt: list[list[Sequence[int]]], n: int) -> sparse.csr_matrix:
    """(prompts, distinct n-grams) counts of each n-gram in each prompt's completions."""
    index: dict[tuple[int, ...], int] = {}
    data, cols, indptr = [], [], [0]
    for rows in rows_per_prompt:
        counts: dict[int, int] = {}
        for ids in rows:
            for gram in _grams(list(ids), n):
                col = index.setdefault(gram, len(index))
                counts[col] = counts.get(col, 0) + 1
        cols.extend(counts)
        data.extend(counts.values())
        indptr.append(len(cols))
    shape = (len(rows_per_prompt), max(len(index), 1))
    return sparse.csr_matrix((np.asarray(data, float), np.asarray(cols, int), np.asarray(indptr)), shape=shape)


class PromptTable:
    """One policy's evaluation samples reduced to per-prompt sums, so that any reweighting of the prompts (a
    bootstrap resample) gives every metric of ``alignray.metrics.metrics_from_samples`` as that function would
    compute it on the resampled rows.

    ``prompt_ids`` fixes the prompts and their order (shared prompts of a paired comparison); default: all, sorted.
    ``metrics(weights)`` takes weights of shape (..., prompts), how often each prompt is drawn, and returns each
    metric of ``names`` as an array of shape (...).
    """

    def __init__(self, samples: pd.DataFrame, prompt_ids: Sequence[int] | None = None) -> None:
        missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
        if missing:
            raise ValueError(f"samples lack columns {missing}; they have {list(samples.columns)}")
        ids = np.sort(samples["prompt_id"].unique()) if prompt_ids is None else np.asarray(prompt_ids)
        kept = samples[samples["prompt_id"].isin(ids)]
        absent = sorted(set(ids.tolist()) - set(kept["prompt_id"].tolist()))
        if absent:
            raise ValueError(f"samples have no rows for prompt_id {absent[:5]}")
        self.prompt_ids = ids
        frame = pd.DataFrame(
            {
                "prompt_id": kept["prompt_id"],
                "rows": 1.0,
                "reward": kept["reward"].astype(float),
                "reward2": kept["reward"].astype(float) ** 2,
                "positive": kept["positive"].astype(float),
                "logratio": kept["logp"] - kept["ref_logp"],
                "entropy": kept["entropy"],
                "ref_logp": kept["ref_logp"],
                "tokens": kept["tokens"].astype(float),
            }
        )
        sums = frame.groupby("prompt_id").sum().reindex(ids)
        self._sums = {c: sums[c].to_numpy(dtype=np.float64) for c in sums.columns}
        self._grams: dict[int, sparse.csr_matrix] = {}
        if "completion_ids" in kept.columns:
            grouped = kept.groupby("prompt_id")["completion_ids"].apply(list).reindex(ids)
            for n in (1, 2):
                self._grams[n] = _count_matrix(grouped.tolist(), n)
        self.names = tuple(m for m in INTERVAL_METRICS if m not in TOKEN_METRICS or self._grams)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def metrics(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        weights = np.asarray(weights, dtype=np.float64)
        s = {k: weights @ v for k, v in self._sums.items()}
        mean = s["reward"] / s["rows"]
        out = {
            "reward/mean": mean,
            "reward/std": np.sqrt(np.maximum(s["reward2"] / s["rows"] - mean**2, 0.0)),
            "reward/frac_positive": s["positive"] / s["rows"],
            "diversity/predictive_entropy": s["entropy"] / np.maximum(s["tokens"], 1.0),
            "kl/ref": s["logratio"] / s["rows"],
            "fluency/ref_perplexity": np.exp(-s["ref_logp"] / np.maximum(s["tokens"], 1.0)),
        }
        if self._grams:
            flat = weights.reshape(-1, weights.shape[-1])
            unigrams = np.asarray((self._grams[1].T @ flat.T).T)  # (resamples, vocabulary used)
            total = unigrams.sum(axis=1, keepdims=True)
            p = np.divide(unigrams, total, out=np.zeros_like(unigrams), where=total > 0)
            logp = np.log(p, out=np.zeros_like(p), where=p > 0)
            out["diversity/token_entropy"] = (-(p * logp).sum(axis=1)).reshape(weights.shape[:-1])
            for n in (1, 2):
                grams = self._grams[n]
                present = (grams > 0).astype(np.float64)
                distinct = (np.asarray((present.T @ flat.T).T) > 0).sum(axis=1)
                all_grams = flat @ np.asarray(grams.sum(axis=1)).ravel()
                value = np.divide(distinct, all_grams, out=np.zeros(len(flat)), where=all_grams > 0)
                out[f"diversity/distinct_{n}"] = value.reshape(weights.shape[:-1])
        return {k: out[k] for k in self.names}


def _weights(indices: np.ndarray, prompts: int) -> np.ndarray:
    """Prompt draw counts (..., prompts) from resampled prompt indices (..., m)."""
    indices = np.asarray(indices, dtype=np.int64)
    flat = indices.reshape(-1, indices.shape[-1])
    offsets = (np.arange(len(flat)) * prompts)[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=len(flat) * prompts).reshape(len(flat), prompts)
    return counts.reshape(*indices.shape[:-1], prompts)


def prompt_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    prompts: int,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
    normal: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates and bootstrap intervals of ``statistic`` over ``prompts`` resampled with replacement.

    ``statistic(weights)`` maps prompt weights (..., prompts) to k statistics, shape (k, ...). Returns the estimate
    at equal weights and the lower and upper bounds, each shape (k,): BCa intervals, or for the statistics flagged in
    ``normal`` the estimate ± z × bootstrap standard error. NaN bounds where BCa is undefined (every resample on one
    side of the estimate, or all equal)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie in (0, 1)")
    if prompts < 2:
        raise ValueError(f"a bootstrap over prompts needs at least 2 prompts, got {prompts}")
    estimate = np.asarray(statistic(np.ones(prompts)), dtype=np.float64).reshape(-1)

    def resampled(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(statistic(_weights(np.moveaxis(indices, axis, -1), prompts)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples: NaN bounds, reported as "no interval"
        result = stats.bootstrap(
            (np.arange(prompts),), resampled, vectorized=True, n_resamples=resamples, batch=200,
            confidence_level=confidence, method="BCa", rng=np.random.default_rng(seed),
        )  # fmt: skip
    low = np.asarray(result.confidence_interval.low, dtype=np.float64).reshape(-1)
    high = np.asarray(result.confidence_interval.high, dtype=np.float64).reshape(-1)
    if normal is not None and any(normal):
        flagged = np.asarray(normal, dtype=bool)
        half = stats.norm.ppf(0.5 + confidence / 2) * np.asarray(result.standard_error, dtype=np.float64).reshape(-1)
        low = np.where(flagged, estimate - half, low)
        high = np.where(flagged, estimate + half, high)
    return estimate, low, high


def metric_intervals(
    samples: pd.DataFrame, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Interval]:
    """Bootstrap intervals over prompts of each metric in ``INTERVAL_METRICS`` the samples allow."""
    table = PromptTable(samples)
    names = table.names

    def statistic(weights: np.ndarray) -> np.ndarray:
        values = table.metrics(weights)
        return np.stack([values[k] for k in names])

    normal = [k in TOKEN_METRICS for k in names]
    estimate, low, high = prompt_bootstrap(statistic, len(table), confidence, resamples, seed, normal)
    return {
        k: Interval(float(e), float(lo), float(hi)) for k, e, lo, hi in zip(names, estimate, low, high, strict=True)
    }


def paired_difference(
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str = "reward/mean",
    names: tuple[str, str] = ("a", "b"),
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Paired:
    """The difference ``metric(a) − metric(b)`` with a bootstrap interval that resamples the shared prompts jointly.

    Prompts are matched by ``prompt_id``; they must hold the same prompt text in both (the sweep evaluates every
    policy on the same prompts)."""
    shared = np.intersect1d(a["prompt_id"].unique(), b["prompt_id"].unique())
    if len(shared) < 2:
        raise ValueError(f"{names[0]} and {names[1]} share {len(shared)} evaluation prompts; a paired comparison "
                         "needs the same prompts (prompt_id) in both")  # fmt: skip
    if "prompt" in a.columns and "prompt" in b.columns:
        texts_a = a.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"].reindex(shared)
        texts_b = b.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"].reindex(shared)
        if not (texts_a == texts_b).all():
            raise ValueError(f"{names[0]} and {names[1]} hold different prompt texts under the same prompt_id; "
                             "they were not evaluated on the same prompts")  # fmt: skip
    table_a, table_b = PromptTable(a, shared), PromptTable(b, shared)
    if metric not in table_a.names or metric not in table_b.names:
        raise ValueError(f"metric={metric!r} has no interval here; choose one of {table_a.names}")

    def statistic(weights: np.ndarray) -> np.ndarray:
        return (table_a.metrics(weights)[metric] - table_b.metrics(weights)[metric])[None]

    estimate, low, high = prompt_bootstrap(
        statistic, len(shared), confidence, resamples, seed, [metric in TOKEN_METRICS]
    )
    difference = Interval(float(estimate[0]), float(low[0]), float(high[0]))
    return Paired(names[0], names[1], metric, difference, len(shared), confidence)


# --- the experiment ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Experiment:
    """What a sweep left in its directory, read once."""

    directory: Path
    study: str
    config: dict[str, Any]
    summary: dict[str, Any]
    results: pd.DataFrame
    base: dict[str, float]

    @property
    def reward(self) -> str:
        return self.config["reward_metric"]

    @property
    def diversity(self) -> str:
        return self.config["diversity_metric"]

    @property
    def finished(self) -> pd.DataFrame:
        return self.results[self.results["status"] == "ok"]

    @property
    def frontier(self) -> pd.DataFrame:
        """The finished trials on the reward–diversity frontier, computed by ``pareto_mask``, by reward descending."""
        ok = self.finished
        mask = pareto_mask(ok[[self.reward, self.diversity]].to_numpy())
        return ok[mask].sort_values(self.reward, ascending=False)

    def samples(self, trial: str) -> pd.DataFrame | None:
        """The evaluation samples of ``trial`` (or of the base policy, ``"base"``); None when none were kept."""
        paths = [self.directory / "base" / "samples.parquet"] if trial == BASE else [
            self.directory / "samples" / f"{trial}.parquet",
            self.directory / "frontier" / trial / "samples.parquet",
        ]  # fmt: skip
        for path in paths:
            if path.is_file():
                return pd.read_parquet(path)
        return None


def load_experiment(directory: str | Path) -> Experiment:
    """Read an experiment directory; a ValueError names what is missing and how to get it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"experiment_dir={str(directory)!r} is not a directory")
    for name in ("sweep.json", "results.parquet", "base/metrics.json"):
        if not (directory / name).is_file():
            raise ValueError(f"experiment_dir={str(directory)!r} has no {name}: it is not a finished sweep; run "
                             f"`python jobs/sweep.py --output {directory}` (or --resume it)")  # fmt: skip
    record = json.loads((directory / "sweep.json").read_text())
    results = pd.read_parquet(directory / "results.parquet")
    base = json.loads((directory / "base" / "metrics.json").read_text())["metrics"]
    config = record["config"]
    for key in ("reward_metric", "diversity_metric"):
        metric = config[key]
        if metric not in results.columns and (results["status"] == "ok").any():
            raise ValueError(f"results.parquet has no column {metric!r}, the sweep's {key}")
    return Experiment(directory, record["study"], config, record.get("summary", {}), results, base)


def _reference_point(experiment: Experiment) -> tuple[float, float]:
    saved = experiment.summary.get("reference_point")
    if saved is not None:
        return float(saved[0]), float(saved[1])
    return experiment.base[experiment.reward], 0.5 * experiment.base[experiment.diversity]


# --- tables -----------------------------------------------------------------------------------------------------


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def _params(row: pd.Series, loss: bool = False) -> str:
    """A trial's parameters as a short label: "β=0.27", "β=0.31 α=0.3" (and the loss type when asked)."""
    text = f"β={row['beta']:.3g}"
    if row.get("alpha") is not None and not pd.isna(row.get("alpha")):
        text += f" α={row['alpha']:.2g}"
    return text + (f" {row['loss_type']}" if loss else "")


def _groups(experiment: Experiment) -> list[tuple[str, ...]]:
    ok = experiment.finished
    keys = ["divergence", "loss_type"] if ok["loss_type"].nunique() > 1 else ["divergence"]
    order = [d for d in experiment.config.get("divergences", []) if d in set(ok["divergence"])]
    order += sorted(set(ok["divergence"]) - set(order))
    found = ok[keys].drop_duplicates().itertuples(index=False, name=None)
    return sorted(found, key=lambda g: (order.index(g[0]), g[1:]))


def _group_rows(experiment: Experiment, group: tuple[str, ...]) -> pd.DataFrame:
    ok = experiment.finished
    rows = ok[ok["divergence"] == group[0]]
    if len(group) > 1:
        rows = rows[rows["loss_type"] == group[1]]
    return rows


def _group_frontier(experiment: Experiment, group: tuple[str, ...]) -> pd.DataFrame:
    rows = _group_rows(experiment, group)
    return rows[pareto_mask(rows[[experiment.reward, experiment.diversity]].to_numpy())].sort_values(
        experiment.reward, ascending=False
    )


def divergence_table(experiment: Experiment, intervals: dict[str, dict[str, Interval]]) -> pd.DataFrame:
    """The seeds' table: the base policy's row first, then per divergence (and loss type) the points on its own
    frontier, by reward; reward, diversity, KL and fluency with their intervals where ``intervals`` has them."""
    metrics = [experiment.reward, experiment.diversity, "kl/ref", "fluency/ref_perplexity"]
    overall = set(experiment.frontier["trial"])

    def cells(key: str, values: pd.Series | dict[str, float]) -> dict[str, str]:
        found = intervals.get(key, {})
        return {m: str(found[m]) if m in found else _num(values.get(m)) for m in metrics}

    rows = [{"divergence": "base (SFT)", "loss": "", "parameters": "", "trial": "", "frontier": "",
             **cells(BASE, experiment.base)}]  # fmt: skip
    for group in _groups(experiment):
        for _, row in _group_frontier(experiment, group).iterrows():
            rows.append(
                {
                    "divergence": row["divergence"],
                    "loss": row["loss_type"],
                    "parameters": f"{_params(row)} lr={row['learning_rate']:.2g}",
                    "trial": row["trial"],
                    "frontier": "yes" if row["trial"] in overall else "",
                    **cells(row["trial"], row),
                }
            )
    return pd.DataFrame(rows)


def _comparisons(experiment: Experiment, loaded: dict[str, pd.DataFrame], resamples: int) -> list[Paired]:
    """The paired comparisons the report makes: the best frontier point against the base policy; the best point
    of each other divergence (and loss type) against the overall best; the best of each loss type against each
    other; each on both objectives."""
    if experiment.finished.empty:
        return []
    best = experiment.frontier.iloc[0]
    pairs: list[tuple[str, str, str, str]] = [(best["trial"], BASE, _label(best), "base")]
    for group in _groups(experiment):
        top = _group_frontier(experiment, group).iloc[0]
        if top["trial"] != best["trial"]:
            pairs.append((top["trial"], best["trial"], _label(top), _label(best)))
    ok = experiment.finished
    losses = sorted(ok["loss_type"].unique())
    tops = [ok[ok["loss_type"] == loss].sort_values(experiment.reward).iloc[-1] for loss in losses]
    for i in range(len(tops)):
        for j in range(i + 1, len(tops)):
            pairs.append((tops[i]["trial"], tops[j]["trial"], _label(tops[i], True), _label(tops[j], True)))
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


def _label(row: pd.Series, loss: bool = False) -> str:
    return f"{row['divergence']} {_params(row, loss)}"


# --- plots ------------------------------------------------------------------------------------------------------


def _styles(experiment: Experiment) -> dict[tuple[str, ...], dict[str, Any]]:
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    return {
        g: {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)], "color": colors[i % 10]}
        for i, g in enumerate(_groups(experiment))
    }


def _group_name(group: tuple[str, ...]) -> str:
    return " / ".join(group)


def pareto_figure(experiment: Experiment, intervals: dict[str, dict[str, Interval]] | None = None):
    """Two panels, diversity on x and reward on y. Left: every finished trial marked by divergence (shape and
    colour), the frontier drawn (its line has gid "frontier"), the base policy a star, frontier points labelled
    with β (and α), intervals as error bars where known. Right: each divergence's own frontier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intervals = intervals or {}
    x, y = experiment.diversity, experiment.reward
    styles = _styles(experiment)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=100, sharex=True, sharey=True)
    for ax in (left, right):
        ax.plot(experiment.base[x], experiment.base[y], marker="*", markersize=16, color="black", linestyle="none",
                label="base SFT policy", zorder=5)  # fmt: skip
        ax.set_xlabel(f"{x} (diversity, higher is better)")
        ax.grid(alpha=0.3)
    left.set_ylabel(f"{y} (reward, higher is better)")
    for group, style in styles.items():
        rows = _group_rows(experiment, group)
        left.plot(rows[x], rows[y], marker=style["marker"], color=style["color"], linestyle="none", markersize=7,
                  alpha=0.8, label=_group_name(group))  # fmt: skip
        front = _group_frontier(experiment, group).sort_values(x)
        right.plot(front[x], front[y], label=_group_name(group), markersize=8, **style)
    front = experiment.frontier.sort_values(x)
    (line,) = left.plot(front[x], front[y], color="black", linewidth=1.5, linestyle="-", label="frontier", zorder=4)
    line.set_gid("frontier")
    left.plot(front[x], front[y], marker="o", markersize=13, markerfacecolor="none", markeredgecolor="black",
              linestyle="none", zorder=4)  # fmt: skip
    several_losses = experiment.finished["loss_type"].nunique() > 1
    for _, row in front.iterrows():
        found = intervals.get(row["trial"], {})
        if x in found and y in found and math.isfinite(found[x].low) and math.isfinite(found[y].low):
            left.errorbar(row[x], row[y], xerr=[[row[x] - found[x].low], [found[x].high - row[x]]],
                          yerr=[[row[y] - found[y].low], [found[y].high - row[y]]], color="grey", alpha=0.5,
                          linewidth=1, zorder=2)  # fmt: skip
        left.annotate(_params(row, several_losses), (row[x], row[y]), textcoords="offset points", xytext=(7, 6),
                      fontsize=8)  # fmt: skip
    left.set_title("every trial and the frontier (circled); bars: 95% intervals")
    right.set_title("the frontier of each divergence")
    left.legend(fontsize=8, loc="best")
    right.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _selected(experiment: Experiment) -> pd.DataFrame:
    """Frontier models shown beside the base policy: highest reward, highest diversity, and one between."""
    front = experiment.frontier
    if len(front) <= 3:
        return front
    return front.iloc[[0, len(front) // 2, len(front) - 1]]


def reward_histograms(experiment: Experiment, loaded: dict[str, pd.DataFrame]):
    """One panel per selected frontier model: its sample rewards (outline) over the base policy's (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [row for _, row in _selected(experiment).iterrows() if row["trial"] in loaded]
    base = loaded.get(BASE)
    every = [loaded[r["trial"]]["reward"] for r in chosen] + ([base["reward"]] if base is not None else [])
    panels = max(len(chosen), 1)
    fig, axes = plt.subplots(panels, 1, figsize=(8, 2.4 * panels + 0.6), dpi=100, sharex=True, squeeze=False)
    bins = np.histogram_bin_edges(np.concatenate([np.asarray(v, float) for v in every]) if every else [0, 1], 30)
    for ax, row in zip(axes[:, 0], chosen or [None], strict=True):
        if base is not None:
            ax.hist(base["reward"], bins=bins, color="lightgrey", hatch="//", edgecolor="grey",
                    label=f"base SFT (mean {base['reward'].mean():.3g})")  # fmt: skip
            ax.axvline(base["reward"].mean(), color="grey", linestyle=":")
        if row is not None:
            rewards = loaded[row["trial"]]["reward"]
            ax.hist(rewards, bins=bins, histtype="step", color="black", linewidth=2,
                    label=f"{_label(row)} (mean {rewards.mean():.3g})")  # fmt: skip
            ax.axvline(rewards.mean(), color="black", linestyle="--")
        ax.set_ylabel("samples")
        ax.legend(fontsize=8, loc="upper left")
    axes[-1, 0].set_xlabel("reward of a sample")
    fig.suptitle("reward distributions: base policy vs frontier models (dashed/dotted: means)")
    fig.tight_layout()
    return fig


def _curve(experiment: Experiment, reference: tuple[float, float]) -> tuple[np.ndarray, list[float]]:
    """Hypervolume after each trial, in creation order; errored trials add nothing."""
    table = experiment.results.sort_values("index")
    points = table[[experiment.reward, experiment.diversity]].to_numpy(dtype=np.float64, copy=True)
    points[(table["status"] != "ok").to_numpy()] = np.nan
    return np.arange(1, len(table) + 1), hypervolume_curve(points, reference)


def hypervolume_figure(experiments: dict[str, Experiment], reference: tuple[float, float] | None = None):
    """Search progress: the hypervolume after each trial, one curve (distinct marker and line) per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    for i, (name, experiment) in enumerate(experiments.items()):
        point = reference or _reference_point(experiment)
        steps, curve = _curve(experiment, point)
        ax.step(steps, curve, where="post", marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i], label=name)
        errored = (experiment.results.sort_values("index")["status"] != "ok").to_numpy()
        if errored.any():
            ax.plot(steps[errored], np.asarray(curve)[errored], "x", color="red", markersize=10,
                    label=f"{name}: errored trial")  # fmt: skip
    ax.set_xlabel("trials finished (creation order)")
    ax.set_ylabel("hypervolume")
    ax.set_title("search progress: hypervolume of the frontier so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _hover(row: pd.Series) -> str:
    keys = ["trial", "divergence", "loss_type", "beta", "alpha", "learning_rate"]
    metrics = [c for c in row.index if "/" in c and not c.startswith(("train/", "time/"))]
    parts = [f"{k}: {_num(row[k])}" for k in keys + metrics if k in row.index and _num(row[k]) != ""]
    return "<br>".join(html.escape(p) for p in parts)


def interactive_pareto(experiments: dict[str, Experiment]):
    """A plotly frontier: every finished trial (symbol per divergence), each frontier as a line, the base policies;
    hovering a point shows the trial's full config and metrics."""
    import plotly.graph_objects as go

    symbols = ["circle", "square", "triangle-up", "diamond", "triangle-down", "cross", "x", "hexagon", "star-square"]
    fig = go.Figure()
    for k, (name, experiment) in enumerate(experiments.items()):
        prefix = f"{name}: " if len(experiments) > 1 else ""
        x, y = experiment.diversity, experiment.reward
        for i, group in enumerate(_groups(experiment)):
            rows = _group_rows(experiment, group)
            fig.add_trace(go.Scatter(
                x=rows[x], y=rows[y], mode="markers", name=prefix + _group_name(group),
                marker={"symbol": symbols[i % len(symbols)], "size": 10, "opacity": 0.85},
                hovertext=[_hover(r) for _, r in rows.iterrows()], hoverinfo="text",
            ))  # fmt: skip
        front = experiment.frontier.sort_values(x)
        fig.add_trace(
            go.Scatter(
                x=front[x],
                y=front[y],
                mode="lines",
                name=prefix + "frontier",
                line={"color": "black", "dash": ["solid", "dash", "dot"][k % 3]},
                hoverinfo="skip",
            )
        )
        base = experiment.base
        fig.add_trace(go.Scatter(
            x=[base[x]], y=[base[y]], mode="markers", name=prefix + "base SFT policy",
            marker={"symbol": "star", "size": 16, "color": "black"},
            hovertext=[_hover(pd.Series({"trial": "base SFT policy", **base}))], hoverinfo="text",
        ))  # fmt: skip
    first = next(iter(experiments.values()))
    fig.update_layout(
        xaxis_title=f"{first.diversity} (diversity)", yaxis_title=f"{first.reward} (reward)", height=560,
        title="reward vs diversity: hover a point for its trial's config", template="plotly_white",
    )  # fmt: skip
    return fig


# --- documents --------------------------------------------------------------------------------------------------


Block = tuple[str, Any]  # ("h1" | "h2" | "p" | "table" | "image" | "plotly" | "code", content)


def _inline_html(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            lines += [f"{'#' * int(kind[1])} {content}", ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "table":
            frame = content.astype(object).where(content.notna(), "")
            lines.append("| " + " | ".join(_md_cell(c) for c in frame.columns) + " |")
            lines.append("|" + "---|" * len(frame.columns))
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
            lines.append("")
        elif kind == "image":
            path, alt = content
            lines += [f"![{alt}]({path.name})", ""]
        elif kind == "code":
            lines += ["```", content, "```", ""]
    return "\n".join(lines)


def _html(blocks: list[Block], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}"
        "th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}</style>",
        "</head><body>",
    ]
    plotly_included = False
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_inline_html(content)}</p>")
        elif kind == "table":
            parts.append(content.to_html(index=False, na_rep="", escape=True, border=0))
        elif kind == "image":
            path, alt = content
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif kind == "plotly":
            parts.append(content.to_html(full_html=False, include_plotlyjs=not plotly_included))
            plotly_included = True
        elif kind == "code":
            parts.append(f"<pre>{html.escape(content)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _samples_table(experiment: Experiment, loaded: dict[str, pd.DataFrame], prompts: int = 3) -> pd.DataFrame:
    base = loaded.get(BASE)
    chosen = [row for _, row in _selected(experiment).iterrows() if row["trial"] in loaded]
    if base is None:
        return pd.DataFrame()
    rows = []
    for prompt_id in sorted(base["prompt_id"].unique())[:prompts]:
        sources = [("base SFT", base)] + [(_label(r), loaded[r["trial"]]) for r in chosen]
        for name, samples in sources:
            first = samples[samples["prompt_id"] == prompt_id].iloc[:1]
            for _, sample in first.iterrows():
                rows.append({"prompt": sample["prompt"], "policy": name, "reward": f"{sample['reward']:.3g}",
                             "completion": sample["completion"].strip()})  # fmt: skip
    return pd.DataFrame(rows)


def _paired_table(comparisons: list[Paired]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"a": c.a, "b": c.b, "metric": c.metric, "a − b": _num(c.difference.estimate),
          f"{c.confidence:.0%} interval": f"[{_num(c.difference.low)}, {_num(c.difference.high)}]",
          "prompts": c.prompts, "verdict": c.verdict} for c in comparisons]
    )  # fmt: skip


def _pick(experiment: Experiment, intervals: dict[str, dict[str, Interval]], comparisons: list[Paired]) -> list[str]:
    """The computed sentences of "What to pick"."""
    if experiment.finished.empty:
        return ["No trial finished: there is no frontier to pick from (see the errored trials below)."]
    reward, diversity = experiment.reward, experiment.diversity
    front = experiment.frontier

    def described(row: pd.Series) -> str:
        found = intervals.get(row["trial"], {})
        r = str(found[reward]) if reward in found else _num(row[reward])
        d = str(found[diversity]) if diversity in found else _num(row[diversity])
        return (f"**{row['divergence']}** ({row['loss_type']}) {_params(row)}, learning rate "
                f"{row['learning_rate']:.2g} (trial `{row['trial']}`): {reward} {r}, {diversity} {d}")  # fmt: skip

    base = intervals.get(BASE, {})
    base_text = ", ".join(f"{m} {base[m] if m in base else _num(experiment.base.get(m))}" for m in (reward, diversity))
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
                f"- {c.a} vs {c.b}: {reward} difference {_num(c.difference.estimate)} "
                f"[{_num(c.difference.low)}, {_num(c.difference.high)}] over {c.prompts} shared prompts: "
                f"**{c.verdict}**."
            )
    return text


def _load_samples(experiment: Experiment, trials: Sequence[str]) -> dict[str, pd.DataFrame]:
    loaded = {}
    for trial in [BASE, *trials]:
        samples = experiment.samples(trial)
        if samples is not None:
            loaded[trial] = samples
    return loaded


def write_report(experiment_dir: str | Path, resamples: int = RESAMPLES) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the PNGs (``pareto.png``, ``rewards.png``, ``hypervolume.png``) into
    ``experiment_dir``; returns the written paths by file name."""
    experiment = load_experiment(experiment_dir)
    out = experiment.directory
    shown = {r for g in _groups(experiment) for r in _group_frontier(experiment, g)["trial"]}
    loaded = _load_samples(experiment, sorted(shown))
    intervals = {trial: metric_intervals(samples, resamples=resamples) for trial, samples in loaded.items()}
    comparisons = _comparisons(experiment, loaded, resamples)
    written = {
        "pareto.png": _save(pareto_figure(experiment, intervals), out / "pareto.png"),
        "hypervolume.png": _save(hypervolume_figure({experiment.study: experiment}), out / "hypervolume.png"),
    }
    if loaded:
        written["rewards.png"] = _save(reward_histograms(experiment, loaded), out / "rewards.png")

    config, summary = experiment.config, experiment.summary
    reference = _reference_point(experiment)
    search = config.get("search", "?") + ("" if config.get("search") == "grid" else f" / {config.get('sampler')}")
    errors = experiment.results[experiment.results["status"] != "ok"]
    timing = f" in {summary['seconds']} s" if "seconds" in summary else ""
    if "search_seconds" in summary:
        timing += f" (search {summary['search_seconds']} s, {summary.get('concurrent_trials', '?')} trials at once)"
    _, curve = _curve(experiment, reference)
    volume = curve[-1] if curve else 0.0
    without = [m for m in TOKEN_METRICS if not all(m in found for found in intervals.values())]
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
        ("table", _paired_table(comparisons)),
    ]  # fmt: skip
    if "rewards.png" in written:
        blocks += [
            ("h2", "Reward distributions"),
            ("image", (written["rewards.png"], "reward histograms of the base policy and frontier models")),
            ("h2", "Samples"),
            ("p", "The first sample of the same prompts from the base policy and from frontier models."),
            ("table", _samples_table(experiment, loaded)),
        ]
    blocks += [
        ("h2", "Search progress"),
        ("p", f"Hypervolume {volume:.4g} against the reference point ({reference[0]:.4g}, {reference[1]:.4g}): the "
              "base policy's reward and half its diversity unless the sweep set hv_reward / hv_diversity."),
        ("image", (written["hypervolume.png"], "hypervolume after each trial")),
        ("h2", "Every trial"),
        ("table", _trials_table(experiment)),
        ("h2", "About the intervals"),
        ("p", f"Intervals: {', '.join(INTERVAL_METRICS)}, from {resamples} bootstrap resamples of the evaluation "
              "prompts (scipy.stats.bootstrap), each recomputing the metric on the resampled prompts' samples: BCa "
              f"intervals, except {', '.join(TOKEN_METRICS)}, pooled over all samples, which a resample with repeated "
              "prompts lowers artificially: for them the estimate ± z × bootstrap standard error. Reward percentiles "
              "have none. "
              + (f"No interval for {', '.join(without)}: these samples were saved without completion_ids. "
                 if without else "")
              + "They measure evaluation noise over prompts, not training randomness: each configuration was "
              "trained once (the sweep has no replicate seeds yet), so two close trials may swap places on a "
              "retrain."),
        ("h2", "Live views"),
        ("p", f"`tensorboard --logdir {experiment.config.get('tune_storage') or out / 'tune'}` (training curves "
              f"and metrics of every trial); `optuna-dashboard {_dashboard_storage(experiment)}` (the study"
              + (f"; its password is in ${experiment.config['storage_password_env']}"
                 if experiment.config.get("storage_password_env") else "") + ")."),
    ]  # fmt: skip
    written["report.md"] = _write(out / "report.md", _markdown(blocks))
    written["report.html"] = _write(out / "report.html", _html(blocks, f"alignray sweep {experiment.study}"))
    return written


def _dashboard_storage(experiment: Experiment) -> str:
    """The study's storage as optuna-dashboard takes it: ``--storage``, or the experiment's own SQLite file."""
    return experiment.config.get("storage") or f"sqlite:///{experiment.directory / 'study.db'}"


def _trials_table(experiment: Experiment) -> pd.DataFrame:
    metrics = [experiment.reward, experiment.diversity, "kl/ref", "fluency/ref_perplexity"]
    columns = ["trial", "index", "status", "divergence", "loss_type", "beta", "alpha", "learning_rate", *metrics,
               "pareto", "reason"]  # fmt: skip
    table = experiment.results.sort_values("index")
    table = table[[c for c in columns if c in table.columns]].copy()
    for column in table.columns:
        if table[column].dtype.kind == "f":
            table[column] = table[column].map(_num)
    return table


def write_comparison(
    experiment_a: str | Path, experiment_b: str | Path, out: str | Path, names: tuple[str, str] | None = None
) -> dict[str, Path]:
    """Two experiments' frontiers on one plot and each search's hypervolume curve against one reference point (the
    lower of the two in each objective), in ``out``: ``compare.png``, ``compare_hypervolume.png``, ``compare.md``,
    ``compare.html``. Their best points get a paired comparison when both evaluated the same prompts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = load_experiment(experiment_a), load_experiment(experiment_b)
    if (a.reward, a.diversity) != (b.reward, b.diversity):
        raise ValueError(f"the experiments have different objectives: {(a.reward, a.diversity)} and "
                         f"{(b.reward, b.diversity)}")  # fmt: skip
    names = names or (a.directory.name, b.directory.name)
    if names[0] == names[1]:
        names = (f"A {names[0]}", f"B {names[1]}")
    experiments = dict(zip(names, (a, b), strict=True))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ra, rb = _reference_point(a), _reference_point(b)
    reference = (min(ra[0], rb[0]), min(ra[1], rb[1]))

    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    rows = []
    for i, (name, experiment) in enumerate(experiments.items()):
        x, y = experiment.diversity, experiment.reward
        ok, front = experiment.finished, experiment.frontier.sort_values(experiment.diversity)
        marker, style = MARKERS[i], LINESTYLES[i]
        ax.plot(ok[x], ok[y], marker=marker, linestyle="none", alpha=0.35, color=f"C{i}", label=f"{name}: trials")
        ax.plot(front[x], front[y], marker=marker, linestyle=style, color=f"C{i}", markersize=9, linewidth=2,
                label=f"{name}: frontier")  # fmt: skip
        ax.plot(experiment.base[x], experiment.base[y], marker="*", markersize=16, color=f"C{i}",
                markeredgecolor="black", linestyle="none", label=f"{name}: base SFT")  # fmt: skip
        for _, row in front.iterrows():
            ax.annotate(_label(row), (row[x], row[y]), textcoords="offset points", xytext=(6, 5), fontsize=7)
        points = ok[[y, x]].to_numpy()
        rows.append({"experiment": name, "trials": len(experiment.results), "finished": len(ok),
                     "frontier": len(front), "hypervolume": _num(hypervolume(points, reference)),
                     "best reward": _label(experiment.frontier.iloc[0]) if len(front) else ""})  # fmt: skip
    ax.set_xlabel(f"{a.diversity} (diversity)")
    ax.set_ylabel(f"{a.reward} (reward)")
    ax.set_title("two experiments' frontiers")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written = {"compare.png": _save(fig, out / "compare.png")}
    written["compare_hypervolume.png"] = _save(
        hypervolume_figure(experiments, reference), out / "compare_hypervolume.png"
    )
    blocks: list[Block] = [
        ("h1", f"{names[0]} vs {names[1]}"),
        ("p", f"Hypervolumes against the common reference point ({reference[0]:.4g}, {reference[1]:.4g})."),
        ("table", pd.DataFrame(rows)),
        ("image", (written["compare.png"], "both frontiers")),
        ("plotly", interactive_pareto(experiments)),
        ("h2", "Search progress"),
        ("image", (written["compare_hypervolume.png"], "hypervolume after each trial, each search")),
    ]  # fmt: skip
    if len(a.finished) and len(b.finished):
        best_a, best_b = a.frontier.iloc[0], b.frontier.iloc[0]
        samples_a, samples_b = a.samples(best_a["trial"]), b.samples(best_b["trial"])
        paired = []
        if samples_a is not None and samples_b is not None:
            for metric in (a.reward, a.diversity):
                try:
                    paired.append(paired_difference(samples_a, samples_b, metric, names))
                except ValueError as err:
                    blocks.append(("p", f"No paired comparison of {metric}: {err}."))
        if paired:
            blocks += [("h2", "Best points, paired"),
                       ("p", f"{names[0]}: {_label(best_a)}; {names[1]}: {_label(best_b)}."),
                       ("table", _paired_table(paired))]  # fmt: skip
    written["compare.md"] = _write(out / "compare.md", _markdown(blocks))
    written["compare.html"] = _write(out / "compare.html", _html(blocks, f"alignray: {names[0]} vs {names[1]}"))
    return written
