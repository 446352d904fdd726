"""Each divergence's answer (``alignray.report.answer``) on planted experiments: the reward–KL envelopes read at
common KLs, a divergence without an answer named with what it broke, and the confirmed verdicts, read from the fresh
seeds on the confirmation prompts, as one Holm family with the against-base lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alignray.report.answer import answer_table, divergence_answers, kl_envelopes, upper_envelope
from alignray.report.experiment import BASE, Experiment
from alignray.report.stats import holm

DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence")
CONFIG = {"objectives": ["reward/mean", "diversity/word_entropy"], "divergences": list(DIVERGENCES)}
PROMPTS = 16


def _samples(reward: float, kl: float, prompts: int = PROMPTS, spread: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Two samples per prompt with the given mean reward (``spread``: noise around it) and log-ratio."""
    rng = np.random.default_rng(seed)
    n = 2 * prompts
    return pd.DataFrame({
        "prompt_id": np.repeat(np.arange(prompts), 2), "prompt": np.repeat([f"p{i}" for i in range(prompts)], 2),
        "completion": ["a fine film"] * n, "completion_ids": [[1, 2, 3]] * n,
        "reward": reward + spread * rng.standard_normal(n), "positive": True, "logp": kl - 1.0, "ref_logp": -1.0,
        "entropy": 3.0, "tokens": 3,
    })  # fmt: skip


def _row(trial: str, divergence: str, reward: float, kl: float, feasible: bool = True, **extra) -> dict:
    return {"trial": trial, "kind": "trial", "tune_trial": trial, "step": np.nan, "divergence": divergence,
            "beta": 0.5, "learning_rate": 3e-4, "alpha": np.nan, "loss_type": "sigmoid", "status": "ok",
            "reward/mean": reward, "diversity/word_entropy": 5.0, "kl/ref": kl, "feasible": feasible,
            "constraint/kl/ref": kl - 10.0, "violations": None if feasible else f"kl/ref {kl} > 10",
            "pareto": False, **extra}  # fmt: skip


def _experiment(directory: Path, rows: list[dict], samples: dict[str, pd.DataFrame]) -> Experiment:
    (directory / "samples").mkdir(parents=True, exist_ok=True)
    (directory / "base").mkdir(exist_ok=True)
    for trial, frame in samples.items():
        path = directory / "base" / "samples.parquet" if trial == BASE else directory / "samples" / f"{trial}.parquet"
        frame.to_parquet(path, index=False)
    return Experiment(directory, "alignray-00000000", CONFIG, {"constraints": {"kl/ref": 10.0}},
                      pd.DataFrame(rows), {"reward/mean": 0.0, "diversity/word_entropy": 5.0})  # fmt: skip


def test_the_upper_envelope_joins_its_corners_and_is_flat_after_the_last():
    kl, reward = np.array([0.0, 2.0, 4.0, 3.0]), np.array([0.0, 1.0, 1.5, 0.5])  # (3, 0.5) lies below
    assert upper_envelope(kl, reward, np.array([1.0, 3.0, 4.0, 5.0])) == pytest.approx([0.5, 1.25, 1.5, 1.5])
    assert np.isnan(upper_envelope(np.array([1.0]), np.array([1.0]), np.array([0.5])))[0]


def test_envelopes_are_read_by_interpolation_at_kls_every_divergence_reaches(tmp_path):
    rows = [_row("a1", "reverse_kl", 1.0, 2.0), _row("a2", "reverse_kl", 1.5, 4.0),
            _row("b1", "forward_kl", 0.6, 3.0), _row("b2", "forward_kl", 2.0, 12.0, feasible=False),
            _row("c1", "js_divergence", 3.0, 11.0, feasible=False)]  # fmt: skip
    samples = {BASE: _samples(0.0, 0.0), **{r["trial"]: _samples(r["reward/mean"], r["kl/ref"]) for r in rows}}
    found = kl_envelopes(_experiment(tmp_path, rows, samples), resamples=50)
    # reverse_kl reaches KL 4, forward_kl 3 (its KL-12 trial broke the budget): compared up to 3
    assert found.reach == {"reverse_kl": 4.0, "forward_kl": 3.0}
    assert found.kls == (1.0, 2.0, 3.0)
    # read off each envelope, not the nearest trial: reverse_kl's at 3 lies between its trials at 2 and 4
    assert [v.estimate for v in found.values["reverse_kl"]] == pytest.approx([0.5, 1.0, 1.25])
    assert [v.estimate for v in found.values["forward_kl"]] == pytest.approx([0.2, 0.4, 0.6])
    assert found.left_out == {"js_divergence": "no feasible candidate with samples"}


def test_a_divergence_without_an_answer_is_named_with_what_it_broke(tmp_path):
    rows = [_row("a1", "reverse_kl", 1.0, 2.0), _row("b1", "forward_kl", 0.6, 3.0),
            _row("c1", "js_divergence", 3.0, 11.0, feasible=False),
            _row("c2", "js_divergence", 2.0, 14.0, feasible=False)]  # fmt: skip
    samples = {BASE: _samples(0.0, 0.0), **{r["trial"]: _samples(r["reward/mean"], r["kl/ref"]) for r in rows}}
    experiment = _experiment(tmp_path, rows, samples)
    answers, verdicts = divergence_answers(experiment, resamples=50)
    by = {a.divergence: a for a in answers}
    assert by["reverse_kl"].row["trial"] == "a1" and by["forward_kl"].row["trial"] == "b1"
    assert by["js_divergence"].row is None and "2 broke kl/ref" in by["js_divergence"].why
    assert verdicts == {}  # not confirmed: the search's differences are exploratory, no verdict
    table = answer_table(experiment, answers).set_index("divergence")
    assert table.loc["js_divergence", "answer"].startswith("none: no feasible candidate")
    assert "exploratory" in table.loc["forward_kl", "vs best: reward/mean"]


def _confirmed(directory: Path) -> Experiment:
    """Two divergences confirmed with two fresh seeds each beside the search's run, whose figures are far off, on
    confirmation prompts other than the search's."""
    rows = [_row("a1", "reverse_kl", 9.0, 2.0, pareto=True), _row("b1", "forward_kl", 9.0, 3.0, pareto=True)]
    samples = {BASE: _samples(-5.0, 0.0), "a1": _samples(9.0, 2.0), "b1": _samples(9.0, 3.0)}
    experiment = _experiment(directory, rows, samples)
    planted = {"a1": (0.8, 0.9), "b1": (0.3, 0.35)}  # each fresh seed's mean reward
    seeds = [{"trial": BASE, "seed": 0, "retrained": False, "status": "ok"}]
    confirm = directory / "confirm"
    (confirm / BASE).mkdir(parents=True)
    _samples(0.0, 0.0, 24, 0.5, seed=1).to_parquet(confirm / BASE / "samples.parquet", index=False)
    for trial, rewards in planted.items():
        for seed, reward in enumerate((5.0, *rewards)):  # seed 0: the search's own run
            path = confirm / trial / f"seed-{seed}"
            path.mkdir(parents=True)
            _samples(reward, 1.0, 24, 0.5, seed=10 + seed).to_parquet(path / "samples.parquet", index=False)
            seeds.append({"trial": trial, "seed": seed, "retrained": seed > 0, "status": "ok"})
    results = experiment.results.copy()
    for trial, rewards in planted.items():
        index = results["trial"] == trial
        results.loc[index, "confirmed/reward/mean"] = np.mean(rewards)
        results.loc[index, "confirmed/diversity/word_entropy"] = 5.0
        results.loc[index, "confirmed/kl/ref"] = 1.0
        results.loc[index, ["confirmed/seeds", "confirmed/failed_seeds"]] = [2, 0]
        results.loc[index, ["confirmed/feasible", "confirmed/pareto", "confirm"]] = True
    results["confirmed/violations"] = None
    experiment.results, experiment.seeds = results, pd.DataFrame(seeds)
    experiment.confirmed_base = {"reward/mean": 0.0, "diversity/word_entropy": 5.0}
    return experiment


def test_confirmed_verdicts_read_the_fresh_seeds_as_one_holm_family_with_the_against_base_lines(tmp_path):
    experiment = _confirmed(tmp_path)
    answers, verdicts = divergence_answers(experiment, resamples=200, extra_pairs=[("a1", BASE)])
    # the family, written out independently: each answer against the base, the second against the best, and the
    # pick's against-base line (already there, once); both objectives each
    family = {(a, b, m) for a, b in [("a1", BASE), ("b1", BASE), ("b1", "a1")]
              for m in ("reward/mean", "diversity/word_entropy")}  # fmt: skip
    assert set(verdicts) == family
    raw = [verdicts[key].p_value for key in sorted(family)]  # word entropy never differs here: p NaN, left out
    assert sum(np.isfinite(raw)) == 3
    assert [verdicts[key].adjusted_p for key in sorted(family)] == pytest.approx(list(holm(raw)), nan_ok=True)
    # read from the fresh seeds on the confirmation prompts: not the search's samples (reward 9 against -5), and not
    # the search's own run on the confirmation prompts (seed 0, reward 5)
    fresh = [pd.read_parquet(tmp_path / "confirm" / "a1" / f"seed-{s}" / "samples.parquet") for s in (1, 2)]
    base = pd.read_parquet(tmp_path / "confirm" / BASE / "samples.parquet")
    expected = np.mean([f["reward"].mean() for f in fresh]) - base["reward"].mean()
    assert verdicts[("a1", BASE, "reward/mean")].difference.estimate == pytest.approx(expected)
    by = {a.divergence: a for a in answers}
    assert by["reverse_kl"].versus_base["reward/mean"] is verdicts[("a1", BASE, "reward/mean")]
    assert by["forward_kl"].versus_best["reward/mean"].difference.estimate == pytest.approx(
        np.mean([pd.read_parquet(tmp_path / "confirm" / "b1" / f"seed-{s}" / "samples.parquet")["reward"].mean()
                 for s in (1, 2)]) - np.mean([f["reward"].mean() for f in fresh]))  # fmt: skip


def test_a_single_divergence_gets_its_row_and_no_comparison_said_plainly(tmp_path):
    from alignray.report.answer import answer_blocks

    rows = [_row("a1", "reverse_kl", 1.0, 2.0), _row("a2", "reverse_kl", 1.5, 4.0)]
    samples = {BASE: _samples(0.0, 0.0), **{r["trial"]: _samples(r["reward/mean"], r["kl/ref"]) for r in rows}}
    experiment = _experiment(tmp_path, rows, samples)
    experiment.config = {**CONFIG, "divergences": ["reverse_kl"]}
    answers, _ = divergence_answers(experiment, resamples=50)
    assert [a.divergence for a in answers] == ["reverse_kl"] and answers[0].row["trial"] == "a2"
    assert answers[0].versus_best == {} and set(answers[0].versus_base) == {"reward/mean", "diversity/word_entropy"}
    blocks = answer_blocks(experiment, answer_table(experiment, answers), kl_envelopes(experiment, 50),
                            pd.DataFrame())  # fmt: skip
    text = " ".join(str(content) for kind, content in blocks if kind == "p")
    assert "One divergence was searched: there is no comparison between divergences." in text
