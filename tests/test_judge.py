"""The judge: a second classifier that scores every evaluation and is never optimised (``alignray.report.judge``,
``alignray.world.check_judge``). Its hacking verdict fires on a planted case, where the reward pays for a token and
the judge does not, and stays silent on a genuine improvement; bad judges are refused before Ray starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alignray.report.answer import answer_table, divergence_answers
from alignray.report.experiment import BASE, Experiment
from alignray.report.judge import JudgeCheck, judge_checks, judge_note
from alignray.report.stats import seed_prompt_difference

PROMPTS = 24
CONFIG = {"objectives": ["reward/mean", "diversity/word_entropy"], "divergences": ["reverse_kl", "forward_kl"],
          "reward": "tiny-imdb", "judge": "tiny-imdb/judge"}  # fmt: skip


def _samples(completion: str, reward_shift: float, judge_shift: float, seed: int = 0) -> pd.DataFrame:
    """Two samples per prompt; the reward and the judge read the same texts with their own noise (``seed``: the
    evaluation's), shifted by what the candidate changed."""
    rng = np.random.default_rng(seed)
    n = 2 * PROMPTS
    text_effect = np.random.default_rng(99).normal(0.0, 0.5, n)  # what both classifiers see in the base's texts
    reward = text_effect + rng.normal(0.0, 0.2, n) + reward_shift
    judge = text_effect + rng.normal(0.0, 0.2, n) + judge_shift
    return pd.DataFrame({
        "prompt_id": np.repeat(np.arange(PROMPTS), 2), "prompt": np.repeat([f"p{i}" for i in range(PROMPTS)], 2),
        "completion": [completion] * n, "completion_ids": [[1, 2, 3]] * n, "reward": reward, "positive": reward > 0,
        "judge": judge, "judge_positive": judge > 0, "logp": -0.5, "ref_logp": -1.0, "entropy": 3.0, "tokens": 3,
    })  # fmt: skip


BASE_SAMPLES = _samples("a film about a man", 0.0, 0.0, seed=1)
HACKED = _samples("a film about a man 10/10", 1.0, 0.0, seed=2)  # the reward pays for "/10"; the judge does not
GENUINE = _samples("a wonderful film about a man", 1.0, 1.0, seed=3)  # both see a more positive review


def _row(trial: str, divergence: str, frame: pd.DataFrame) -> dict:
    return {"trial": trial, "kind": "trial", "tune_trial": trial, "step": np.nan, "divergence": divergence,
            "beta": 0.5, "learning_rate": 3e-4, "alpha": np.nan, "loss_type": "sigmoid", "status": "ok",
            "reward/mean": frame["reward"].mean(), "judge/mean": frame["judge"].mean(),
            "diversity/word_entropy": 5.0, "kl/ref": 0.5, "feasible": True, "constraint/kl/ref": -9.5,
            "violations": None, "pareto": False}  # fmt: skip


def _experiment(directory) -> Experiment:
    (directory / "samples").mkdir(parents=True)
    (directory / "base").mkdir()
    BASE_SAMPLES.to_parquet(directory / "base" / "samples.parquet", index=False)
    HACKED.to_parquet(directory / "samples" / "hacked.parquet", index=False)
    GENUINE.to_parquet(directory / "samples" / "genuine.parquet", index=False)
    rows = [_row("hacked", "reverse_kl", HACKED), _row("genuine", "forward_kl", GENUINE)]
    return Experiment(directory, "alignray-00000000", CONFIG, {"constraints": {"kl/ref": 10.0}}, pd.DataFrame(rows),
                      {"reward/mean": BASE_SAMPLES["reward"].mean(), "diversity/word_entropy": 5.0})  # fmt: skip


def test_the_hacking_flag_fires_when_the_reward_pays_for_a_token_and_the_judge_does_not(tmp_path):
    experiment = _experiment(tmp_path)
    loaded = {BASE: BASE_SAMPLES, "hacked": HACKED, "genuine": GENUINE}
    checks = judge_checks(experiment, ["hacked", "genuine"], loaded, resamples=500)
    hacked, genuine = checks["hacked"], checks["genuine"]
    assert hacked.reward.difference.low > 0 and hacked.judge.difference.low <= 0 <= hacked.judge.difference.high
    assert hacked.hacking and hacked.flag in hacked.text()
    assert genuine.reward.difference.low > 0 and genuine.judge.difference.low > 0
    assert not genuine.hacking and "judge agrees" in genuine.text()
    # the answer per divergence carries the judge and the flag, on the hacked divergence only
    answers, _ = divergence_answers(experiment, resamples=200)
    table = answer_table(experiment, answers, checks).set_index("divergence")
    assert hacked.flag in table.loc["reverse_kl", "flags"]
    assert "judge" not in str(table.loc["forward_kl"].get("flags", ""))
    assert float(table.loc["forward_kl", "judge/mean"].split()[0]) == pytest.approx(GENUINE["judge"].mean(), rel=1e-3)
    assert table.loc["reverse_kl", "vs base: judge/mean"]


def test_the_flag_reads_the_fresh_seeds_after_a_confirmation():
    """Confirmed: seeds and prompts resampled together (``seed_prompt_difference``), the construction
    ``judge_checks`` uses after a confirmation; a falling judge is flagged too, a judge that rose is not."""
    base = [BASE_SAMPLES]
    hacked = [_samples("10/10", 1.0, 0.0, seed=s) for s in (4, 5)]
    worse = [_samples("10/10", 1.0, -0.6, seed=s) for s in (6, 7)]
    genuine = [_samples("great", 1.0, 0.9, seed=s) for s in (8, 9)]
    for seeds, flagged in ((hacked, True), (worse, True), (genuine, False)):
        pairs = [seed_prompt_difference(seeds, base, m, ("x", BASE), resamples=400) for m in
                 ("reward/mean", "judge/mean")]  # fmt: skip
        assert JudgeCheck("x", *pairs, True).hacking is flagged
        if seeds is worse:  # the judge fell: the strong wording
            assert JudgeCheck("x", *pairs, True).flag.startswith("reward hacking?")
    # a judge that rose but not clear of 0 (two seeds far apart): flagged, in the weaker words
    rose = [_samples("good", 1.0, shift, seed=s) for s, shift in ((10, -0.4), (11, 1.6))]
    pairs = [seed_prompt_difference(rose, base, m, ("x", BASE), resamples=400) for m in ("reward/mean", "judge/mean")]
    check = JudgeCheck("x", *pairs, True)
    assert check.judge.difference.estimate > 0 and check.hacking and check.flag.startswith("not confirmed")
    # no judge score (samples scored without one): no verdict either way
    assert not JudgeCheck("x", pairs[0], None, True).hacking


def test_the_report_says_plainly_when_nothing_independent_checked_the_reward(tmp_path):
    experiment = _experiment(tmp_path)
    assert judge_note(experiment) is None
    # the preset names the reward and the judge apart: tiny-imdb for both is an independent judge
    assert judge_note(Experiment(tmp_path, "s", {**CONFIG, "judge": "tiny-imdb"}, {}, experiment.results, {})) is None
    reward = Path(__file__).parents[1] / "alignray" / "assets" / "tiny-imdb" / "reward"
    same = Experiment(tmp_path, "s", {**CONFIG, "judge": str(reward)}, {}, experiment.results, {})
    assert "no independent check was made" in judge_note(same)
    off = Experiment(tmp_path, "s", {**CONFIG, "judge": "none"}, {}, experiment.results, {})
    assert "No judge" in judge_note(off)


def test_bad_judges_are_refused_before_ray_starts(micro_world, tmp_path):
    from alignray.sweep.checks import check_sweep
    from alignray.sweep.config import SweepConfig
    from alignray.world import check_judge

    world, _ = micro_world
    reward = str(world / "reward")
    assert check_judge(str(world / "judge"), reward) is False  # independent
    assert check_judge(reward, reward) is True  # allowed: the report says no independent check was made
    assert check_judge("none", reward) is False
    with pytest.raises(ValueError, match="judge=.* is not a sequence classifier"):
        check_judge(str(world / "policy"), reward)
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(world / "judge", unlabelled)
    config = json.loads((unlabelled / "config.json").read_text())
    config.update(id2label={"0": "BAD", "1": "GOOD"}, label2id={"BAD": 0, "GOOD": 1})
    (unlabelled / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has no POSITIVE label"):
        check_judge(str(unlabelled), reward)
    with pytest.raises(ValueError, match="judge='/no/such/judge'"):
        check_judge("/no/such/judge", reward)
    # the sweep's own checks, before Ray: the field is named
    sweep = SweepConfig(output=str(tmp_path / "exp"), policy=str(world / "policy"), reward=reward,
                        judge=str(world / "policy"), eval_prompts=8, confirmation_prompts=8)  # fmt: skip
    with pytest.raises(ValueError, match="judge="):
        check_sweep(sweep)
