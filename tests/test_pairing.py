import numpy as np
import pandas as pd
import pytest

from alignray.data.pairing import STRATEGIES, make_pairs, register_strategy


def samples(*groups: list[float]) -> pd.DataFrame:
    rows = [(f"p{g}", f"c{g}-{i}", r) for g, rewards in enumerate(groups) for i, r in enumerate(rewards)]
    return pd.DataFrame(rows, columns=["prompt", "completion", "reward"])


def pairs_of(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(frame["chosen"], frame["rejected"], strict=True))


def test_best_vs_worst_takes_one_pair_per_prompt():
    frame = make_pairs(samples([0.1, 2.0, -1.0, 0.5], [3.0, 1.0]), "best_vs_worst")
    assert pairs_of(frame) == [("c0-1", "c0-2"), ("c1-0", "c1-1")]
    assert frame["chosen_reward"].tolist() == [2.0, 3.0]


def test_top_vs_bottom_is_seed_004s_recipe_without_repeats():
    # rewards rank c0 > c1 > ... > c5
    frame = make_pairs(samples([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]), "top_vs_bottom", k=3)
    expected = [("c0-0", "c0-5"), ("c0-0", "c0-4"), ("c0-0", "c0-3"), ("c0-1", "c0-5"), ("c0-2", "c0-5")]
    assert pairs_of(frame) == expected


def test_threshold_pairs_everything_above_hi_with_everything_below_lo():
    frame = make_pairs(samples([3.0, 2.6, 2.0, 1.0, 0.0]), "threshold", hi=2.5, lo=1.75)
    assert sorted(pairs_of(frame)) == [("c0-0", "c0-3"), ("c0-0", "c0-4"), ("c0-1", "c0-3"), ("c0-1", "c0-4")]


def test_random_pairs_order_by_reward_and_follow_the_seed():
    data = samples(list(np.linspace(0, 1, 8)), list(np.linspace(1, 0, 8)))
    first = make_pairs(data, "random_pairs", seed=3, pairs_per_prompt=4)
    assert first.equals(make_pairs(data, "random_pairs", seed=3, pairs_per_prompt=4))
    assert not first.equals(make_pairs(data, "random_pairs", seed=4, pairs_per_prompt=4))
    assert len(first) == 8


def test_random_pairs_are_distinct_and_all_of_them_when_fewer_exist():
    rng = np.random.default_rng(0)
    data = samples(*[list(rng.permutation(4) + 0.5) for _ in range(40)], [2.0, 1.0, 0.0])
    frame = make_pairs(data, "random_pairs", seed=1, pairs_per_prompt=6)
    for prompt, group in frame.groupby("prompt"):
        assert len(set(pairs_of(group))) == len(group) == (3 if prompt == "p40" else 6)  # 4·3/2 and 3·2/2 pairs
    few = make_pairs(data, "random_pairs", seed=1, pairs_per_prompt=3)
    assert all(len(set(pairs_of(group))) == 3 for _, group in few.groupby("prompt"))


@pytest.mark.parametrize(
    ("rewards", "k", "expected"),
    [
        # k near half of 5 samples: the middle sample c2 is among both the best and the worst k.
        (
            [5.0, 4.0, 3.0, 2.0, 1.0],
            3,
            [("c0-0", "c0-4"), ("c0-0", "c0-3"), ("c0-0", "c0-2"), ("c0-1", "c0-4"), ("c0-2", "c0-4")],
        ),
        ([4.0, 3.0, 2.0, 1.0], 2, [("c0-0", "c0-3"), ("c0-0", "c0-2"), ("c0-1", "c0-3")]),
        # k = n: a sample against itself is a tie and is dropped.
        ([1.0, 3.0, 2.0], 3, [("c0-1", "c0-0"), ("c0-1", "c0-2"), ("c0-2", "c0-0")]),
    ],
)
def test_top_vs_bottom_with_k_near_half_the_samples(rewards, k, expected):
    assert pairs_of(make_pairs(samples(rewards), "top_vs_bottom", k=k)) == expected


def _check_chosen_beats_rejected(data: pd.DataFrame, frame: pd.DataFrame) -> None:
    reward_of = dict(zip(data["completion"], data["reward"], strict=True))
    assert len(frame) > 0
    assert (frame["chosen_reward"] > frame["rejected_reward"]).all()
    assert [reward_of[c] for c in frame["chosen"]] == frame["chosen_reward"].tolist()
    assert [reward_of[r] for r in frame["rejected"]] == frame["rejected_reward"].tolist()
    assert all(c.split("-")[0] == r.split("-")[0] for c, r in pairs_of(frame))  # never across prompts


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_chooses_the_higher_reward_and_drops_ties(strategy):
    rng = np.random.default_rng(0)
    # rounded to one decimal: many ties within a prompt; p30 is all ties, p31 has a tie at the top and the bottom
    data = samples(*[list(np.round(rng.normal(size=6), 1)) for _ in range(30)], [1.0] * 3, [2.0, 2.0, -2.0, -2.0])
    params = {"hi": 0.5, "lo": -0.5} if strategy == "threshold" else {}
    params |= {"pairs_per_prompt": 15} if strategy == "random_pairs" else {}
    frame = make_pairs(data, strategy, **params)
    _check_chosen_beats_rejected(data, frame)
    assert "p30" not in set(frame["prompt"])
    assert "p31" in set(frame["prompt"])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_honours_min_margin(strategy):
    rng = np.random.default_rng(0)
    data = samples(*[list(np.round(rng.normal(size=6), 1)) for _ in range(30)])
    params = {"hi": 0.5, "lo": -0.5} if strategy == "threshold" else {}
    every = make_pairs(data, strategy, **params)
    frame = make_pairs(data, strategy, min_margin=0.5, **params)
    _check_chosen_beats_rejected(data, frame)
    kept = every[every["chosen_reward"] - every["rejected_reward"] >= 0.5].reset_index(drop=True)
    assert frame.equals(kept)


def test_unknown_and_duplicate_strategies_are_refused():
    with pytest.raises(ValueError, match="strategy='best_vs_wrost' is unknown; did you mean 'best_vs_worst'"):
        make_pairs(samples([1.0, 0.0]), "best_vs_wrost")
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("threshold")(lambda rewards, rng: [])
