"""Confidence over evaluation prompts (and training seeds): the prompt bootstrap, metric intervals, paired differences.

The evaluation prompts are the unit of resampling. Every interval comes from one ``scipy.stats.bootstrap`` over
prompts that recomputes the metric on the resampled prompts' samples, so pooled metrics (token entropy, distinct-n)
are resampled as the metric is defined, not averaged per prompt. Per-sample metrics and ratios of sums (reward, KL,
predictive entropy, perplexity, the non-word rate) get BCa intervals. A resample that repeats a prompt repeats its
completions, which lowers the pooled metrics of distinct tokens and words artificially (every resample falls below the
estimate and BCa breaks down), so those (``POOLED_METRICS``) get the estimate ± z × the bootstrap standard error.
A paired comparison resamples the prompts two policies share jointly and recomputes the difference; an interval that
covers 0 reads "no difference". Its interval and its two-sided p-value come from one method, so they never disagree:
the percentile interval and twice the smaller share of resampled differences on either side of 0 (at least
1/(resamples + 1)), or for the pooled metrics the estimate ± z × bootstrap SE and the normal p-value of estimate / SE.
A resample whose difference is not finite (a ratio over no words, say) is dropped from both and counted
(``Paired.dropped``); a family of comparisons is corrected by Holm's step-down (``holm``, ``holm_adjusted``), and the
verdict then reads the adjusted p-value instead of the interval.
The search's intervals measure evaluation noise only: one training run per trial, so training randomness is not in
them. The confirmation (``alignray.sweep.confirm``), which retrains a configuration with several seeds and evaluates
every seed on the same held-out prompts, gets intervals that carry it from ``seed_prompt_intervals`` and
``seed_prompt_difference``. The estimate is the mean over the S seeds of each seed's metric. Its variance has two
parts: the seeds', s²/S (s² the sample variance of the seeds' metrics), and the prompts', V_p (the variance of the
mean over seeds under a bootstrap over prompts; one draw shared by every seed, since prompts are crossed with seeds;
seeds not drawn). The half-width is √((t × √(s²/S))² + (z × √V_p)²): a t quantile with S − 1 degrees of freedom
(Welch's for a difference) on the seed part, the normal one on the prompt part, and the p-value is where that
interval reaches 0. Drawing 2 seeds with replacement would see half their variance (53–65% coverage measured at a
nominal 95%); one t over the pooled variance (Welch–Satterthwaite) covered 88–92% with 2 seeds, because its degrees
of freedom rest on a variance with one. ``tests/test_confirmation_stats.py`` measures the coverage. One seed has no
seed part: the interval is over prompts only (``Interval.seed_part`` is False).
Token metrics need the samples' ``completion_ids`` and word metrics their ``completion`` text; samples saved without
them (sweeps before the ids were kept) give those metrics no interval, and the report says so.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Collection, Hashable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse, stats

from alignray.metrics import GARBLED, JUDGE_METRICS, RECORDED
from alignray.report.formatting import num
from alignray.vocabulary import load_vocabulary, words

__all__ = [
    "CONFIDENCE",
    "INTERVAL_METRICS",
    "POOLED_METRICS",
    "RESAMPLES",
    "SAMPLE_COLUMNS",
    "TOKEN_METRICS",
    "WORD_METRICS",
    "Interval",
    "Paired",
    "PromptTable",
    "bootstrap_p_value",
    "holm",
    "holm_adjusted",
    "metric_intervals",
    "paired_difference",
    "prompt_bootstrap",
    "seed_prompt_difference",
    "seed_prompt_intervals",
]

INTERVAL_METRICS = tuple(m for m in RECORDED if m not in ("reward/p10", "reward/p50", "reward/p90"))
"""Metrics given a bootstrap interval; reward percentiles (p10/p50/p90) are reported without one; the judge's only
when the samples were judged."""
TOKEN_METRICS = ("diversity/token_entropy", "diversity/distinct_1", "diversity/distinct_2")
"""Metrics computed from ``completion_ids``: no interval when the stored samples lack them."""
WORD_METRICS = ("diversity/word_entropy", "fluency/nonword_rate", "fluency/garbled_rate")
"""Metrics computed from the ``completion`` text: no interval when the stored samples lack it."""
POOLED_METRICS = (*TOKEN_METRICS, "diversity/word_entropy")
"""Metrics a resample with repeated prompts lowers artificially: their interval is the estimate ± z × bootstrap SE."""
SAMPLE_COLUMNS = ("prompt_id", "reward", "positive", "logp", "entropy", "ref_logp", "tokens")
"""The columns of evaluation samples a ``PromptTable`` needs."""
CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its interval (NaN bounds: no interval could be computed). ``seed_part`` is False for an
    interval over seeds and prompts that had fewer than 2 seeds: it carries no training-seed variation."""

    estimate: float
    low: float
    high: float
    seed_part: bool = True

    def __str__(self) -> str:
        if not math.isfinite(self.low):
            return num(self.estimate)
        return f"{num(self.estimate)} [{num(self.low)}, {num(self.high)}]"


@dataclasses.dataclass(frozen=True)
class Paired:
    """A paired difference ``a − b`` of one metric over the prompts both policies were evaluated on, with its
    two-sided ``p_value`` and, once its family was corrected (``holm_adjusted``), ``adjusted_p``."""

    a: str
    b: str
    metric: str
    difference: Interval
    prompts: int
    confidence: float
    p_value: float = math.nan
    adjusted_p: float = math.nan
    dropped: int = 0
    """Resamples left out of the interval and the p-value because their difference was not finite."""

    @property
    def verdict(self) -> str:
        """ "a higher" / "b higher" when the Holm-adjusted p-value is below 1 − confidence (or, before any correction,
        when the interval excludes 0), else "no difference" at the confidence level."""
        if math.isfinite(self.adjusted_p):
            if self.adjusted_p < 1 - self.confidence and self.difference.estimate != 0:
                return f"{self.a if self.difference.estimate > 0 else self.b} higher"
            return f"no difference at {self.confidence:.0%} after Holm"
        if not math.isfinite(self.difference.low):
            return "no interval"
        if self.difference.low > 0:
            return f"{self.a} higher"
        if self.difference.high < 0:
            return f"{self.b} higher"
        return f"no difference at {self.confidence:.0%}"


def _grams(ids: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def _count_matrix(rows_per_prompt: list[list[Sequence[Hashable]]], n: int) -> sparse.csr_matrix:
    """(prompts, distinct n-grams) counts of each n-gram (of tokens or words) in each prompt's completions."""
    index: dict[tuple[Hashable, ...], int] = {}
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


def _pooled_entropy(counts: sparse.csr_matrix, weights: np.ndarray) -> np.ndarray:
    """Entropy (nats) of the frequency distribution of the columns of ``counts`` (prompts, items) pooled over the
    prompts drawn as ``weights`` (..., prompts); shape (...), 0 where nothing was drawn."""
    flat = weights.reshape(-1, weights.shape[-1])
    pooled = np.asarray((counts.T @ flat.T).T)  # (resamples, items)
    total = pooled.sum(axis=1, keepdims=True)
    p = np.divide(pooled, total, out=np.zeros_like(pooled), where=total > 0)
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    return (-(p * logp).sum(axis=1)).reshape(weights.shape[:-1])


class PromptTable:
    """One policy's evaluation samples reduced to per-prompt sums, so that any reweighting of the prompts (a
    bootstrap resample) gives every metric of ``alignray.metrics.metrics_from_samples`` as that function would
    compute it on the resampled rows.

    ``prompt_ids`` fixes the prompts and their order (shared prompts of a paired comparison); default: all, sorted.
    ``vocabulary``: the word metrics' reference vocabulary (default: ``alignray.vocabulary.load_vocabulary()``).
    ``metrics(weights)`` takes weights of shape (..., prompts), how often each prompt is drawn, and returns each
    metric of ``names`` as an array of shape (...).
    """

    def __init__(
        self, samples: pd.DataFrame, prompt_ids: Sequence[int] | None = None, vocabulary: Collection[str] | None = None
    ) -> None:
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
        if "judge" in kept.columns:
            frame["judge"] = kept["judge"].astype(float)
            frame["judge_positive"] = kept["judge_positive"].astype(float)
        self._words: sparse.csr_matrix | None = None
        if "completion" in kept.columns:
            vocabulary = load_vocabulary() if vocabulary is None else vocabulary
            found = kept["completion"].map(words)
            known = found.map(lambda cut: [w for w in cut if w in vocabulary])
            frame["words"] = found.map(len).astype(float)
            frame["nonwords"] = frame["words"] - known.map(len).astype(float)
            frame["garbled"] = ((frame["words"] > 0) & (frame["nonwords"] >= GARBLED * frame["words"])).astype(float)
            self._words = _count_matrix(known.groupby(kept["prompt_id"]).apply(list).reindex(ids).tolist(), 1)
        sums = frame.groupby("prompt_id").sum().reindex(ids)
        self._sums = {c: sums[c].to_numpy(dtype=np.float64) for c in sums.columns}
        self._grams: dict[int, sparse.csr_matrix] = {}
        if "completion_ids" in kept.columns:
            grouped = kept.groupby("prompt_id")["completion_ids"].apply(list).reindex(ids)
            for n in (1, 2):
                self._grams[n] = _count_matrix(grouped.tolist(), n)
        self.names = tuple(
            m
            for m in INTERVAL_METRICS
            if (m not in TOKEN_METRICS or self._grams)
            and (m not in WORD_METRICS or self._words is not None)
            and (m not in JUDGE_METRICS or "judge" in frame.columns)
        )

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
        if "judge" in s:
            out["judge/mean"] = s["judge"] / s["rows"]
            out["judge/frac_positive"] = s["judge_positive"] / s["rows"]
        if self._words is not None:
            out["fluency/nonword_rate"] = s["nonwords"] / np.maximum(s["words"], 1.0)
            out["fluency/garbled_rate"] = s["garbled"] / s["rows"]
            out["diversity/word_entropy"] = _pooled_entropy(self._words, weights)
        if self._grams:
            flat = weights.reshape(-1, weights.shape[-1])
            out["diversity/token_entropy"] = _pooled_entropy(self._grams[1], weights)
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
    estimate, low, high, _ = _bootstrap(statistic, prompts, confidence, resamples, seed, normal)
    return estimate, low, high


def _bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    prompts: int,
    confidence: float,
    resamples: int,
    seed: int,
    normal: Sequence[bool] | None,
    method: str = "BCa",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``prompt_bootstrap``'s estimate, bounds and the resampled statistics themselves, shape (k, resamples);
    ``method``: scipy's interval method (``paired_difference`` reads only the resamples, so it skips BCa's
    jackknife with "percentile")."""
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
            confidence_level=confidence, method=method, rng=np.random.default_rng(seed),
        )  # fmt: skip
    low = np.asarray(result.confidence_interval.low, dtype=np.float64).reshape(-1)
    high = np.asarray(result.confidence_interval.high, dtype=np.float64).reshape(-1)
    if normal is not None and any(normal):
        flagged = np.asarray(normal, dtype=bool)
        half = stats.norm.ppf(0.5 + confidence / 2) * np.asarray(result.standard_error, dtype=np.float64).reshape(-1)
        low = np.where(flagged, estimate - half, low)
        high = np.where(flagged, estimate + half, high)
    distribution = np.asarray(result.bootstrap_distribution, dtype=np.float64).reshape(len(estimate), -1)
    return estimate, low, high, distribution


def bootstrap_p_value(resampled: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0" from resampled differences: 2 × min(share ≤ 0,
    share ≥ 0), at least 1/(resamples + 1) (no resample can show a smaller p) and at most 1. Non-finite resamples
    are left out (``paired_difference`` counts them); NaN when none is finite."""
    resampled = np.asarray(resampled, dtype=np.float64)
    resampled = resampled[np.isfinite(resampled)]
    if resampled.size == 0:
        return math.nan
    share = min(float(np.mean(resampled <= 0)), float(np.mean(resampled >= 0)))
    return float(min(1.0, max(2 * share, 1 / (len(resampled) + 1))))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the given order: the i-th smallest of m is multiplied by m − i + 1
    (i from 1), kept at least as large as every smaller one's and at most 1. NaN entries stay NaN and leave the
    family (m counts the others)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def holm_adjusted(comparisons: Sequence[Paired]) -> list[Paired]:
    """The comparisons, one family, each with its Holm-adjusted p-value (see ``holm``) in ``adjusted_p``."""
    adjusted = holm([c.p_value for c in comparisons])
    return [dataclasses.replace(c, adjusted_p=float(q)) for c, q in zip(comparisons, adjusted, strict=True)]


def metric_intervals(
    samples: pd.DataFrame,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
    vocabulary: Collection[str] | None = None,
) -> dict[str, Interval]:
    """Bootstrap intervals over prompts of each metric in ``INTERVAL_METRICS`` the samples allow (``vocabulary``: the
    word metrics', as in ``PromptTable``)."""
    table = PromptTable(samples, vocabulary=vocabulary)
    names = table.names

    def statistic(weights: np.ndarray) -> np.ndarray:
        values = table.metrics(weights)
        return np.stack([values[k] for k in names])

    normal = [k in POOLED_METRICS for k in names]
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
    vocabulary: Collection[str] | None = None,
) -> Paired:
    """The difference ``metric(a) − metric(b)`` with a bootstrap interval that resamples the shared prompts jointly,
    and the two-sided p-value of no difference from the same resamples and the same method (not yet corrected for a
    family): the percentile interval and ``bootstrap_p_value``, or for ``POOLED_METRICS`` the estimate ± z × SE and
    the normal p-value. Non-finite resamples are dropped from both and counted in ``Paired.dropped``.

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
    table_a, table_b = PromptTable(a, shared, vocabulary), PromptTable(b, shared, vocabulary)
    if metric not in table_a.names or metric not in table_b.names:
        raise ValueError(f"metric={metric!r} has no interval here; choose one of {table_a.names}")

    def statistic(weights: np.ndarray) -> np.ndarray:
        return (table_a.metrics(weights)[metric] - table_b.metrics(weights)[metric])[None]

    estimate, _, _, resampled = _bootstrap(statistic, len(shared), confidence, resamples, seed, None, "percentile")
    value, finite = float(estimate[0]), resampled[0][np.isfinite(resampled[0])]
    dropped = int(resampled[0].size - finite.size)
    if finite.size < 2 or not math.isfinite(value):
        return Paired(names[0], names[1], metric, Interval(value, math.nan, math.nan), len(shared), confidence,
                      dropped=dropped)  # fmt: skip
    if metric in POOLED_METRICS:  # resamples sit below the estimate (see the module's note): their spread only
        error = float(finite.std(ddof=1))
        half = stats.norm.ppf(0.5 + confidence / 2) * error
        p_value = float(2 * stats.norm.sf(abs(value) / error)) if error > 0 else float(value == 0)
        p_value = max(p_value, 1 / (finite.size + 1))  # the resamples' resolution, as bootstrap_p_value's floor
        difference = Interval(value, value - half, value + half)
    else:
        low, high = np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2])
        difference, p_value = Interval(value, float(low), float(high)), bootstrap_p_value(finite)
    return Paired(names[0], names[1], metric, difference, len(shared), confidence, p_value, dropped=dropped)


def _shared_prompts(frames: Sequence[pd.DataFrame], labels: Sequence[str]) -> np.ndarray:
    """The prompt ids every frame holds, sorted; a ``ValueError`` when fewer than 2, or when two frames hold
    different prompt texts under one prompt_id."""
    shared = np.sort(frames[0]["prompt_id"].unique())
    for frame in frames[1:]:
        shared = np.intersect1d(shared, frame["prompt_id"].unique())
    if len(shared) < 2:
        raise ValueError(f"{', '.join(labels)} share {len(shared)} evaluation prompts; an interval over seeds and "
                         "prompts needs the same prompts (prompt_id) in every frame, at least 2")  # fmt: skip
    texts = [(label, f.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"].reindex(shared))
             for label, f in zip(labels, frames, strict=True) if "prompt" in f.columns]  # fmt: skip
    for label, other in texts[1:]:
        if not (other == texts[0][1]).all():
            raise ValueError(f"{texts[0][0]} and {label} hold different prompt texts under the same prompt_id; they "
                             "were not evaluated on the same prompts")  # fmt: skip
    return shared


def _prompt_replicates(
    sides: Sequence[Sequence[PromptTable]], names: Sequence[str], resamples: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each side's (a configuration's seeds, as tables over the same prompts in the same order) per-seed metrics of
    ``names`` at equal prompt weights, shape (seeds, k), and the prompt bootstrap of its mean over seeds, shape
    (sides, k, resamples).

    Replicate b draws the prompts once for every side and seed (prompt weights w_b) and averages every seed's metric
    under w_b; the seeds are not drawn."""
    if resamples < 2:
        raise ValueError(f"resamples={resamples} must be at least 2")
    rng = np.random.default_rng(seed)
    prompts = len(sides[0][0])
    weights = _weights(rng.integers(0, prompts, (resamples, prompts)), prompts)
    per_seed, replicates = [], []
    for tables in sides:
        at_equal = [table.metrics(np.ones(prompts)) for table in tables]
        per_seed.append(np.array([[values[k] for k in names] for values in at_equal], dtype=np.float64))
        mean = np.zeros((resamples, len(names)))
        for table in tables:
            for start in range(0, resamples, 200):  # batches bound the pooled metrics' (resamples, items) arrays
                values = table.metrics(weights[start : start + 200])
                mean[start : start + 200] += np.stack([values[k] for k in names], axis=-1) / len(tables)
        replicates.append(mean.T)
    return per_seed, np.asarray(replicates, dtype=np.float64)


def _seed_prompt_interval(
    estimate: float, per_seed: Sequence[np.ndarray], replicates: np.ndarray, confidence: float
) -> tuple[Interval, float]:
    """The interval and two-sided p-value of an estimate that sums or subtracts sides' means over seeds.

    ``per_seed``: each side's per-seed values at equal prompt weights; ``replicates``: the prompt bootstrap of the
    estimate. The seed part V_s = Σ s²/S over the sides with S ≥ 2 seeds (s²: their sample variance) gets a t
    quantile with Welch's ν_s = V_s² / Σ (s²/S)² / (S − 1) degrees of freedom, the prompt part V_p (the replicates'
    variance) the normal one, and the half-width is √((t × √V_s)² + (z × √V_p)²). With two seeds s² has one degree
    of freedom, so the seed part widens by t(1) (12.7 at 95%): a single t over the pooled variance (Satterthwaite)
    covered 88-92% at a nominal 95%, this covers at least nominal. The p-value is the one 1 − confidence at which
    the interval reaches 0, so p < 1 − confidence exactly when the interval excludes 0. NaN bounds when a part is
    not finite; NaN p when both parts are 0."""
    seed_part, denominator = 0.0, 0.0
    for values in per_seed:
        if len(values) >= 2:
            part = float(np.var(values, ddof=1)) / len(values)
            seed_part += part
            denominator += part**2 / (len(values) - 1)
    has_seed_part = any(len(values) >= 2 for values in per_seed)
    prompt_part = float(np.var(replicates, ddof=1))
    if not (math.isfinite(seed_part) and math.isfinite(prompt_part)):
        return Interval(estimate, math.nan, math.nan, has_seed_part), math.nan
    df = seed_part**2 / denominator if denominator > 0 else math.inf

    def half(level: float) -> float:
        t = float(stats.t.ppf(0.5 + level / 2, df)) if math.isfinite(df) else float(stats.norm.ppf(0.5 + level / 2))
        return math.hypot(t * math.sqrt(seed_part), float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt(prompt_part))

    width = half(confidence)
    if seed_part + prompt_part == 0:
        p_value = math.nan
    elif abs(estimate) >= half(1 - 1e-12):
        p_value = 1e-12
    elif abs(estimate) <= half(1e-12):  # 0, or nearer 0 than any interval reaches
        p_value = 1.0
    else:
        from scipy.optimize import brentq

        p_value = 1 - brentq(lambda level: half(level) - abs(estimate), 1e-12, 1 - 1e-12, xtol=1e-10)
    return Interval(estimate, estimate - width, estimate + width, has_seed_part), float(p_value)


def seed_prompt_intervals(
    seeds: Sequence[pd.DataFrame],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
    vocabulary: Collection[str] | None = None,
) -> dict[str, Interval]:
    """Intervals over training seeds and prompts of one configuration's metrics: ``seeds`` holds one frame of
    evaluation samples per training seed, all on the same prompts (same prompt_id, same text).

    The estimate is the mean over the S seeds of each seed's metric. The interval adds a seed part, s²/S (s² the
    variance of the seeds' metrics) under a t quantile with S − 1 degrees of freedom, to a prompt part, V_p (the
    variance of the mean over seeds under a bootstrap over prompts: one draw for every seed, seeds not drawn) under
    the normal one (see ``_seed_prompt_interval``). With one seed there is no seed part: the interval is the
    estimate ± z × √V_p, flagged ``seed_part=False``. Metrics: those every seed's samples allow."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie in (0, 1)")
    if len(seeds) < 1:
        raise ValueError("seeds is empty: pass one frame of evaluation samples per training seed")
    labels = [f"seed {i}" for i in range(len(seeds))]
    shared = _shared_prompts(seeds, labels)
    for label, frame in zip(labels, seeds, strict=True):
        extra = sorted(set(frame["prompt_id"].unique().tolist()) - set(shared.tolist()))
        if extra:
            raise ValueError(f"{label} has prompt_id {extra[:5]} that another seed lacks; every seed must be "
                             "evaluated on the same confirmation prompts")  # fmt: skip
    tables = [PromptTable(frame, shared, vocabulary) for frame in seeds]
    names = [k for k in tables[0].names if all(k in table.names for table in tables)]
    per_seed, replicates = _prompt_replicates([tables], names, resamples, seed)
    return {
        k: _seed_prompt_interval(float(per_seed[0][:, i].mean()), [per_seed[0][:, i]], replicates[0, i], confidence)[0]
        for i, k in enumerate(names)
    }


def seed_prompt_difference(
    a: Sequence[pd.DataFrame],
    b: Sequence[pd.DataFrame],
    metric: str = "reward/mean",
    names: tuple[str, str] = ("a", "b"),
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
    vocabulary: Collection[str] | None = None,
) -> Paired:
    """The difference of the mean over seeds of ``metric`` between configurations ``a`` and ``b`` (one frame of
    samples per training seed each; ``b`` may hold one, the base policy's), on the prompts every frame shares.

    Interval and two-sided p-value come from one construction (``_seed_prompt_interval``): the seed part
    s_a²/S_a + s_b²/S_b, a side with one seed adding nothing, under a t quantile, and V_p, the variance of the
    difference under a bootstrap over prompts (one draw for both sides and every seed), under the normal one. So
    p < 1 − confidence exactly when the interval excludes 0. ``seed_part=False`` when neither side has 2 seeds."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie in (0, 1)")
    for name, side in zip(names, (a, b), strict=True):
        if len(side) < 1:
            raise ValueError(f"{name} holds no seeds: pass one frame of evaluation samples per training seed")
    labels = [f"{name} seed {i}" for name, side in zip(names, (a, b), strict=True) for i in range(len(side))]
    shared = _shared_prompts([*a, *b], labels)
    sides = [[PromptTable(frame, shared, vocabulary) for frame in side] for side in (a, b)]
    if any(metric not in table.names for side in sides for table in side):
        raise ValueError(f"metric={metric!r} has no interval here; choose one of {sides[0][0].names}")
    per_seed, replicates = _prompt_replicates(sides, [metric], resamples, seed)
    estimate = float(per_seed[0][:, 0].mean() - per_seed[1][:, 0].mean())
    difference, p_value = _seed_prompt_interval(
        estimate, [values[:, 0] for values in per_seed], replicates[0, 0] - replicates[1, 0], confidence
    )
    return Paired(names[0], names[1], metric, difference, len(shared), confidence, p_value)
