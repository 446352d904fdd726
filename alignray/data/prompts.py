"""Prompt sets. ``imdb_prefix``: the first 2–8 tokens of held-out IMDB reviews (the DPO paper's recipe)."""

from __future__ import annotations

import numpy as np
from transformers import PreTrainedTokenizerBase

__all__ = ["EVAL_REVIEWS", "PROMPT_SOURCES", "imdb_prefix_prompts", "imdb_prompt_reviews", "read_prompt_file"]


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
"""The last 500 held-out reviews give evaluation prompts and the rest give preference-data prompts, so that the
two never share a review."""


def imdb_prompt_reviews(purpose: str) -> list[str]:
    """Held-out IMDB reviews to cut prompts from: ``"train"`` (preference data) or ``"eval"`` (evaluation)."""
    from alignray.imdb import load_reviews, split_reviews

    if purpose not in ("train", "eval"):
        raise ValueError(f"purpose={purpose!r} must be 'train' or 'eval'")
    texts = split_reviews(load_reviews())[1]["text"].tolist()
    return texts[-EVAL_REVIEWS:] if purpose == "eval" else texts[:-EVAL_REVIEWS]


PROMPT_SOURCES = ("imdb_prefix", "fixed", "file")
"""Where prompts come from: held-out IMDB prefixes, a fixed list, or a column of a parquet/CSV/JSONL file."""


def read_prompt_file(path: str, column: str = "prompt") -> list[str]:
    """Prompts from a ``.txt`` (one per line), ``.parquet``, ``.csv`` or ``.jsonl`` file (column ``column``)."""
    import pandas as pd

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
