"""The searcher (``alignray.sweep.searcher``) without Tune running: each divergence's share of the trials, kept on an
extended study, and the divergence's own parameters in the study."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest

from alignray.sweep.config import SweepConfig
from alignray.sweep.constraints import Constraint
from alignray.sweep.searcher import divergence_counts


def _searcher(config: SweepConfig, study: str, seeded: bool = True):
    from alignray.sweep.driver import _searcher as make

    return make(config, study, seeded=seeded, constraints=[Constraint("kl/ref", 10.0)])


def _run(searcher, first: int, count: int, kl: float = 1.0) -> list[dict]:
    """Ask for ``count`` trials and tell each its result, as Tune does; their configs."""
    configs = []
    for i in range(first, first + count):
        config = searcher.suggest(f"t{i}")
        result = {"reward/mean": config["beta"], "diversity/word_entropy": config["learning_rate"] * 1e3, "kl/ref": kl}
        searcher.on_trial_complete(f"t{i}", result)
        configs.append(config)
    return configs


@pytest.mark.parametrize(
    ("divergences", "trials", "shares"),
    [
        (("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"), 8, [2, 2, 2, 2]),
        (("reverse_kl", "forward_kl", "js_divergence"), 10, [4, 3, 3]),
    ],
)
def test_each_divergence_gets_an_equal_share_of_the_trials(tmp_path, divergences, trials, shares):
    config = SweepConfig(output=str(tmp_path), divergences=divergences, num_trials=trials, startup_trials=2)
    configs = _run(_searcher(config, "alignray-0000000a"), 0, trials)
    counts = Counter(c["divergence"] for c in configs)
    assert [counts[d] for d in divergences] == shares
    # the trial sees plain names, the study the divergence's own: each divergence is modelled from its own trials
    assert {"beta", "learning_rate"} <= set(configs[-1]) and not any("." in name for name in configs[-1])
    study = optuna.load_study(study_name="alignray-0000000a", storage=f"sqlite:///{tmp_path / 'study.db'}")
    for trial in study.trials:
        divergence = trial.params["divergence"]
        assert {f"{divergence}.beta", f"{divergence}.learning_rate"} <= set(trial.params)
        assert all(name in ("divergence", "loss_type") or name.startswith(f"{divergence}.") for name in trial.params)
    assert divergence_counts(study) == Counter(c["divergence"] for c in configs)


def test_an_extended_study_keeps_the_balance(tmp_path):
    """--resume --num-trials: a new searcher over the same study (no start points) counts the trials it holds."""
    divergences = ("reverse_kl", "forward_kl", "js_divergence")
    config = SweepConfig(output=str(tmp_path), divergences=divergences, num_trials=7, startup_trials=2)
    first = _run(_searcher(config, "alignray-0000000b"), 0, 7)  # 3/2/2
    more = _run(_searcher(config, "alignray-0000000b", seeded=False), 7, 5)
    counts = Counter(c["divergence"] for c in first + more)
    assert sorted(counts.values()) == [4, 4, 4]
    assert Counter(c["divergence"] for c in more) == {"forward_kl": 2, "js_divergence": 2, "reverse_kl": 1}


def test_each_divergences_first_trial_lands_in_the_cautious_corner(tmp_path):
    """The start points: β in the upper half of its (log) range, the learning rate in the lower half."""
    config = SweepConfig(output=str(tmp_path))
    configs = _run(_searcher(config, "alignray-0000000c"), 0, len(config.divergences))
    assert [c["divergence"] for c in configs] == list(config.divergences)
    middle_beta = (config.beta_min * config.beta_max) ** 0.5
    middle_lr = (config.learning_rate_min * config.learning_rate_max) ** 0.5
    for c in configs:
        assert middle_beta <= c["beta"] <= config.beta_max
        assert config.learning_rate_min <= c["learning_rate"] <= middle_lr
