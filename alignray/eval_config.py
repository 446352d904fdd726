"""The config of one policy's evaluation (``alignray.metrics``), beside what it configures."""

from __future__ import annotations

from dataclasses import dataclass

from alignray.config import check_positive, coerce_fields

__all__ = ["EVAL_PROMPT_TOKENS", "EvalConfig"]

EVAL_PROMPT_TOKENS: tuple[int, int] = (2, 8)
"""Shortest and longest evaluation prompt, in tokens (openings of held-out reviews)."""



@dataclass(frozen=True)
class EvalConfig:
    """The evaluation of one policy: sample on held-out evaluation prompts, score, report alignray.metrics.METRICS."""

    policy: str = "tiny-imdb"
    """Policy to evaluate: a preset, a local path (e.g. runs/x/model) or a hub id."""
    reference: str = "tiny-imdb"
    """Reference policy for kl/ref and fluency/ref_perplexity."""
    reward: str = "tiny-imdb"
    """Reward model (its POSITIVE logit)."""
    num_prompts: int = 256
    """Evaluation prompts: openings of distinct held-out reviews kept for evaluation (no more than that pool holds)."""
    samples_per_prompt: int = 2
    """Completions sampled per prompt."""
    max_new_tokens: int = 48
    """Tokens sampled per completion."""
    seed: int = 0
    """Seed of prompts and sampling."""

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_positive(self, ints=("num_prompts", "samples_per_prompt", "max_new_tokens"))
