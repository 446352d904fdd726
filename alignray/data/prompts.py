"""Prompt sets. ``imdb_prefix``: the first 2–8 tokens of held-out IMDB reviews (the DPO paper's recipe)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

__all__ = [
    "EVAL_REVIEWS",
    "PROMPT_SEED",
    "PROMPT_SOURCES",
    "imdb_prefix_prompts",
    "imdb_prompt_pools",
    "imdb_prompt_reviews",
    "label_balanced_pools",
    "read_prompt_file",
]


def imdb_prefix_prompts(
    reviews: list[str],
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    seed: int = 0,
    min_tokens: int = 2,
    max_tokens: int = 8,
) -> list[str]:
    """``n`` prompts, each the first k ∈ [min_tokens, max_tokens] tokens of a distinct review (seeded choice).

    Reviews are taken in a seeded order; with fewer than ``n`` reviews, all of them are used once.
    """
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, got min_tokens={min_tokens}, max_tokens={max_tokens}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(reviews))[:n]
    lengths = rng.integers(min_tokens, max_tokens + 1, size=len(order))
    prompts = []
    for index, k in zip(order, lengths, strict=True):
        ids = tokenizer(reviews[index], add_special_tokens=False)["input_ids"][: int(k)]
        prompts.append(tokenizer.decode(ids))
    return prompts


EVAL_REVIEWS = 500
"""Held-out reviews in the evaluation pool; the preference-data pool takes a balanced share of the rest."""
PROMPT_SEED = 0
"""Seed of the draw that fills the two prompt pools."""


def label_balanced_pools(
    reviews: pd.DataFrame, eval_size: int = EVAL_REVIEWS, seed: int = PROMPT_SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``reviews`` (columns ``text``, ``label``) into disjoint (train, eval) pools, each half positive.

    The eval pool is a seeded draw of ``eval_size / 2`` reviews of each label; the train pool is a seeded draw of as
    many reviews of each label as both labels still have, so that prompts for preference data and for evaluation
    open reviews of the same sentiment mix. Each pool is in a seeded order, its labels interleaved.
    """
    if eval_size < 2 or eval_size % 2:
        raise ValueError(f"eval_size={eval_size!r} must be an even number >= 2 (half of it per label)")
    counts = reviews["label"].value_counts()
    if set(counts.index) != {0, 1} or counts.min() <= eval_size // 2:
        raise ValueError(
            f"eval_size={eval_size} needs more than {eval_size // 2} reviews of each label; got {counts.to_dict()}"
        )
    rng = np.random.default_rng(seed)
    by_label = [rng.permutation(np.flatnonzero(reviews["label"].to_numpy() == label)) for label in (0, 1)]
    half = eval_size // 2
    per_label = min(len(rows) for rows in by_label) - half
    eval_rows = np.concatenate([rows[:half] for rows in by_label])
    train_rows = np.concatenate([rows[half : half + per_label] for rows in by_label])
    train = reviews.iloc[rng.permutation(train_rows)].reset_index(drop=True)
    return train, reviews.iloc[rng.permutation(eval_rows)].reset_index(drop=True)


def imdb_prompt_pools(seed: int = PROMPT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``label_balanced_pools`` of the held-out IMDB reviews (``alignray.imdb.split_reviews``): (train, eval)."""
    from alignray.imdb import load_reviews, split_reviews

    return label_balanced_pools(split_reviews(load_reviews())[1], EVAL_REVIEWS, seed)


def imdb_prompt_reviews(purpose: str, seed: int = PROMPT_SEED) -> list[str]:
    """Held-out IMDB reviews to cut prompts from: ``"train"`` (preference data) or ``"eval"`` (evaluation).

    Both pools are half positive, disjoint, and never seen by the world's training (see ``imdb_prompt_pools``).
    """
    if purpose not in ("train", "eval"):
        raise ValueError(f"purpose={purpose!r} must be 'train' or 'eval'")
    train, evaluation = imdb_prompt_pools(seed)
    return (train if purpose == "train" else evaluation)["text"].tolist()


PROMPT_SOURCES = ("imdb_prefix", "fixed", "file")
"""Where prompts come from: held-out IMDB prefixes, a fixed list, or a column of a parquet/CSV/JSONL file."""


def read_prompt_file(path: str, column: str = "prompt") -> list[str]:
    """Prompts from a ``.txt`` (one per line), ``.parquet``, ``.csv`` or ``.jsonl`` file (column ``column``)."""
    suffix = path.rsplit(".", 1)[-1].lower()
    if suffix == "txt":
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    readers = {"parquet": pd.read_parquet, "csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True)}
    if suffix not in readers:
        raise ValueError(f"prompt_file={path!r}: expected .txt, .parquet, .csv or .jsonl")
    frame = readers[suffix](path)
    if column not in frame.columns:
        raise ValueError(f"prompt_column={column!r} is not in {path} (columns: {list(frame.columns)})")
    return frame[column].astype(str).tolist()
