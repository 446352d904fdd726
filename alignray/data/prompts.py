"""Prompt sets. ``imdb_prefix``: the first 2–8 tokens of held-out IMDB reviews (the DPO paper's recipe)."""

from __future__ import annotations

import numpy as np
from transformers import PreTrainedTokenizerBase

__all__ = ["imdb_prefix_prompts"]


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
