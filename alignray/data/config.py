"""The config of a preference data set (``alignray.data.pipeline``), beside what it configures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignray.config import check_positive, coerce_fields
from alignray.data.pairing import check_strategy
from alignray.data.prompts import PROMPT_SOURCES
from alignray.registry import unknown_name

__all__ = ["PreferenceConfig"]


@dataclass(frozen=True)
class PreferenceConfig:
    """A preference data set: sample completions of prompts, score them with the reward, pair them."""

    out: str = "runs/preferences"
    """Directory for preferences.parquet, samples.parquet and card.json."""
    policy: str = "tiny-imdb"
    """Policy that writes the completions: a preset, a local path or a hub id."""
    reward: str = "tiny-imdb"
    """Reward model that scores prompt + completion (its POSITIVE logit)."""
    prompts: str = "imdb_prefix"
    """Prompt source: imdb_prefix (openings of held-out IMDB reviews not kept for evaluation), fixed (fixed_prompts
    or a .txt), file (a column of a file)."""
    num_prompts: int = 512
    """How many prompts to use (at most)."""
    fixed_prompts: tuple[str, ...] = ()
    """The prompts of the fixed source, e.g. seed 002's topic words."""
    prompt_file: str | None = None
    """File of the fixed (.txt) or file (.parquet, .csv, .jsonl) source."""
    prompt_column: str = "prompt"
    """Column of prompt_file that holds the prompts (file source)."""
    min_prompt_tokens: int = 2
    """Shortest imdb_prefix prompt, in tokens."""
    max_prompt_tokens: int = 8
    """Longest imdb_prefix prompt, in tokens."""
    samples_per_prompt: int = 4
    """Completions sampled for each prompt."""
    max_new_tokens: int = 48
    """Tokens sampled per completion."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_k: int = 0
    """Sample from the k most likely tokens only (0: all)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1: all)."""
    strategy: str = "best_vs_worst"
    """Pairing: best_vs_worst, top_vs_bottom, random_pairs or threshold."""
    k: int = 3
    """top_vs_bottom: the best against the k worst, the k best against the worst."""
    pairs_per_prompt: int = 2
    """random_pairs: distinct pairs drawn per prompt (all of them when a prompt has fewer)."""
    hi: float = 1.0
    """threshold: a chosen completion's reward is above hi (seed 000 used 2.5 with lvwerra/distilbert-imdb)."""
    lo: float = -0.5
    """threshold: a rejected completion's reward is below lo (seed 000 used 1.75 with lvwerra/distilbert-imdb)."""
    min_margin: float = 0.0
    """Keep a pair only when chosen_reward − rejected_reward ≥ this (ties are always dropped)."""
    seed: int = 0
    """Seed of prompts, sampling and pairing; the same seed gives the same data set on CPU."""
    batch_size: int = 128
    """Samples per generate call and per scoring call."""
    generation_actors: int | None = None
    """Generation actor pool size (default: one per GPU, or the CPUs less half a CPU per scorer)."""
    scoring_actors: int | None = None
    """Scoring actor pool size (default: one per GPU, or one)."""
    use_gpu: bool | None = None
    """Put actors on GPUs (default: when the cluster has them)."""

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.prompts not in PROMPT_SOURCES:
            raise unknown_name("prompts", self.prompts, PROMPT_SOURCES)
        if self.prompts == "file" and not self.prompt_file:
            raise ValueError("prompts='file' needs prompt_file (a .parquet, .csv or .jsonl file)")
        if self.prompts == "fixed" and not (self.fixed_prompts or self.prompt_file):
            raise ValueError("prompts='fixed' needs fixed_prompts or prompt_file (a .txt file, one prompt per line)")
        if self.prompt_file and not Path(self.prompt_file).is_file():
            raise ValueError(f"prompt_file={self.prompt_file!r} does not exist")
        check_strategy(self.strategy)
        check_positive(
            self,
            floats=("temperature", "top_p"),
            ints=("num_prompts", "min_prompt_tokens", "max_prompt_tokens", "samples_per_prompt", "max_new_tokens",
                  "k", "pairs_per_prompt", "batch_size", "generation_actors", "scoring_actors"),
        )  # fmt: skip
        if self.top_p > 1:
            raise ValueError(f"top_p={self.top_p!r} must lie in (0, 1]")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k!r} must be >= 0")
        if self.min_prompt_tokens > self.max_prompt_tokens:
            raise ValueError(
                f"min_prompt_tokens={self.min_prompt_tokens} exceeds max_prompt_tokens={self.max_prompt_tokens}"
            )
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt={self.samples_per_prompt} must be >= 2 to make pairs")
        if self.min_margin < 0:
            raise ValueError(f"min_margin={self.min_margin!r} must be >= 0")
        if self.strategy == "threshold" and not self.hi > self.lo:
            raise ValueError(f"threshold needs hi > lo, got hi={self.hi}, lo={self.lo}")

    @property
    def sampling(self) -> dict[str, float]:
        """Sampling options for ``generate``."""
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}

    @property
    def strategy_params(self) -> dict[str, float]:
        """The parameters of the chosen pairing strategy."""
        return {
            "best_vs_worst": {},
            "top_vs_bottom": {"k": self.k},
            "random_pairs": {"pairs_per_prompt": self.pairs_per_prompt},
            "threshold": {"hi": self.hi, "lo": self.lo},
        }[self.strategy]
