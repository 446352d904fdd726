"""Pairing strategies: scored samples of each prompt → (chosen, rejected) pairs.

Adding a strategy:
    1. write ``def pairs(rewards: np.ndarray, rng: np.random.Generator, **params) -> list[tuple[int, int]]``
       returning (chosen, rejected) indices into one prompt's samples;
    2. decorate it with ``@register_strategy("name")``; ``make_pairs`` then applies ``min_margin`` and drops ties.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd

from alignray.registry import unknown_name

__all__ = ["STRATEGIES", "check_strategy", "make_pairs", "register_strategy"]

Strategy = Callable[..., list[tuple[int, int]]]
_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str) -> Callable[[Strategy], Strategy]:
    """Register a pairing strategy under ``name``; a name may be registered once."""

    def add(fn: Strategy) -> Strategy:
        if name in _STRATEGIES:
            raise ValueError(f"pairing strategy {name!r} is already registered")
        _STRATEGIES[name] = fn
        return fn

    return add


def check_strategy(name: str) -> None:
    """Raise ValueError naming ``strategy`` when it is not registered."""
    if name not in _STRATEGIES:
        raise unknown_name("strategy", name, _STRATEGIES)


@register_strategy("best_vs_worst")
def best_vs_worst(rewards: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
    """One pair per prompt: the highest reward against the lowest (seed 001)."""
    return [(int(np.argmax(rewards)), int(np.argmin(rewards)))]


@register_strategy("top_vs_bottom")
def top_vs_bottom(rewards: np.ndarray, rng: np.random.Generator, k: int = 3) -> list[tuple[int, int]]:
    """The best against each of the k worst, and each of the k best against the worst (seed 004), without repeats."""
    order = np.argsort(-rewards, kind="stable")
    best, worst = order[:k], order[::-1][:k]
    pairs = [(int(order[0]), int(w)) for w in worst] + [(int(b), int(order[-1])) for b in best]
    return list(dict.fromkeys(pairs))


@register_strategy("random_pairs")
def random_pairs(rewards: np.ndarray, rng: np.random.Generator, pairs_per_prompt: int = 2) -> list[tuple[int, int]]:
    """``pairs_per_prompt`` distinct pairs of samples (all n(n−1)/2 when there are fewer), drawn without replacement,
    the higher reward chosen (seed 002)."""
    candidates = list(itertools.combinations(range(len(rewards)), 2))
    drawn = rng.choice(len(candidates), size=min(pairs_per_prompt, len(candidates)), replace=False)
    pairs = [candidates[i] for i in drawn]
    return [(a, b) if rewards[a] >= rewards[b] else (b, a) for a, b in pairs]


@register_strategy("threshold")
def threshold(
    rewards: np.ndarray, rng: np.random.Generator, hi: float = 2.5, lo: float = 1.75
) -> list[tuple[int, int]]:
    """Each sample above ``hi`` against each sample below ``lo`` (seed 000)."""
    above, below = np.flatnonzero(rewards > hi), np.flatnonzero(rewards < lo)
    return [(int(a), int(b)) for a in above for b in below]


STRATEGIES: tuple[str, ...] = tuple(_STRATEGIES)
"""The built-in strategies, by name."""


def make_pairs(samples: pd.DataFrame, strategy: str, min_margin: float = 0.0, seed: int = 0, **params) -> pd.DataFrame:
    """Pairs from ``samples`` (columns prompt, completion, reward; several rows per prompt).

    Returns prompt, chosen, rejected, chosen_reward, rejected_reward; a pair is kept only when its reward gap is
    > 0 (ties dropped) and >= ``min_margin``. Samples of prompts with the same text are pooled. Prompts are visited
    in order of first appearance, so the result is a pure function of ``samples`` and ``seed``.
    """
    check_strategy(strategy)
    rng = np.random.default_rng(seed)
    rows = []
    for prompt, group in samples.groupby("prompt", sort=False):
        rewards = group["reward"].to_numpy(dtype=np.float64)
        completions = group["completion"].tolist()
        for c, r in _STRATEGIES[strategy](rewards, rng, **params):
            margin = rewards[c] - rewards[r]
            if margin > 0 and margin >= min_margin:
                rows.append((prompt, completions[c], completions[r], rewards[c], rewards[r]))
    columns = ["prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"]
    return pd.DataFrame(rows, columns=columns)
