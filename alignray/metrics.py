"""The evaluation every trial runs: sample from the policy on fixed prompts, score, and report fixed metric names.

Metric names (reported to Tune as they are): ``reward/{mean,std,p10,p50,p90,frac_positive}``,
``diversity/token_entropy`` (the seeds': entropy of the token-frequency distribution over all generated tokens),
``diversity/predictive_entropy`` (the f-DPO paper's: mean next-token entropy of the policy along its own samples),
``diversity/distinct_1``, ``diversity/distinct_2`` (distinct n-grams / all n-grams, over all samples),
``diversity/word_entropy`` (entropy of the frequency distribution of the in-vocabulary words of all completions),
``kl/ref`` (Monte Carlo KL(π‖π_ref) = mean over samples of log π(y|x) − log π_ref(y|x)), ``fluency/ref_perplexity``
(exp of the mean negative log π_ref per generated token), ``fluency/nonword_rate`` (words outside the reference
vocabulary / all words, pooled over all completions) and ``fluency/garbled_rate`` (the share of completions at least
40% of whose words are non-words, ``GARBLED``: the tail of the non-word rate, which a mean can hide). Words and the
reference vocabulary are ``alignray.vocabulary``'s: by default the words of the IMDB training split. Non-words add
nothing to the word entropy (they are left out of it; replacing real words with them still changes it) and count
against the rate.
With a judge (a second sentiment classifier, never optimised and never an objective or a constraint), the samples also
get ``judge/mean`` (its POSITIVE logit) and ``judge/frac_positive`` (``JUDGE_METRICS``): a reward gain the judge does
not share is reward hacking.
Samples are drawn by pure sampling (temperature 1, no top-k/top-p), so that they are samples of π and the KL and
entropy estimates are unbiased.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence

import numpy as np
import pandas as pd

from alignray.eval_config import EVAL_PROMPT_TOKENS, EvalConfig
from alignray.vocabulary import load_vocabulary, words

__all__ = [
    "GARBLED",
    "JUDGE_METRICS",
    "METRICS",
    "RECORDED",
    "distinct_n",
    "evaluate",
    "evaluate_config",
    "evaluate_here",
    "evaluation_prompts",
    "metrics_from_samples",
    "garbled_rate",
    "nonword_rate",
    "text_nonword_rate",
    "token_entropy",
    "word_entropy",
]

METRICS = (
    "reward/mean",
    "reward/std",
    "reward/p10",
    "reward/p50",
    "reward/p90",
    "reward/frac_positive",
    "diversity/token_entropy",
    "diversity/predictive_entropy",
    "diversity/distinct_1",
    "diversity/distinct_2",
    "diversity/word_entropy",
    "kl/ref",
    "fluency/ref_perplexity",
    "fluency/nonword_rate",
    "fluency/garbled_rate",
)
JUDGE_METRICS = ("judge/mean", "judge/frac_positive")
"""The judge's verdict on the samples, recorded when a judge scores them: never an objective or a constraint."""
RECORDED = (*METRICS, *JUDGE_METRICS)
"""Every metric an evaluation may record."""
GARBLED = 0.4
"""A completion is garbled when at least this share of its words are non-words (``garbled_rate``). On tiny-imdb such
a completion reads as gibberish: the first world's base policy wrote none of 192 (make sweep's evaluation, seed 0),
while 30% non-words was still its ordinary text (2.6% of its completions); today's world's writes 1.0%
(`docs/calibrate_bounds.yaml`'s base, 192 completions)."""


def _entropy(counts: Counter) -> float:
    """Entropy (nats) of the frequency distribution ``counts``; 0 for no counts."""
    frequencies = np.fromiter(counts.values(), dtype=np.float64)
    if frequencies.size == 0:
        return 0.0
    p = frequencies / frequencies.sum()
    return float(-(p * np.log(p)).sum())


def token_entropy(token_ids: Sequence[Sequence[int]]) -> float:
    """Entropy (nats) of the frequency distribution of all tokens in all sequences; 0 for no tokens."""
    return _entropy(Counter(t for seq in token_ids for t in seq))


def word_entropy(texts: Iterable[str], vocabulary: Collection[str]) -> float:
    """Entropy (nats) of the frequency distribution of the words of all texts that are in ``vocabulary``; non-words
    are left out, so writing more of them adds nothing to it. 0 for no such words."""
    return _entropy(Counter(word for text in texts for word in words(text) if word in vocabulary))


def text_nonword_rate(text: str, vocabulary: Collection[str]) -> float:
    """Share of the words of one text that are not in ``vocabulary``; 0 for a text with no words."""
    found = words(text)
    return sum(word not in vocabulary for word in found) / len(found) if found else 0.0


def nonword_rate(texts: Iterable[str], vocabulary: Collection[str]) -> float:
    """Words not in ``vocabulary`` over all words, pooled over the texts (each word counts once, so a long text
    weighs more than a short one); 0 for no words."""
    found = [word for text in texts for word in words(text)]
    return sum(word not in vocabulary for word in found) / len(found) if found else 0.0


def garbled_rate(texts: Iterable[str], vocabulary: Collection[str]) -> float:
    """Share of the texts at least ``GARBLED`` of whose words are not in ``vocabulary`` (a text without words has a
    rate of 0: not garbled); 0 for no texts."""
    rates = [text_nonword_rate(text, vocabulary) for text in texts]
    return sum(rate >= GARBLED for rate in rates) / len(rates) if rates else 0.0


def distinct_n(token_ids: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams over all n-grams, pooled over the sequences (n-grams do not cross sequences); 0 if none."""
    grams = [tuple(seq[i : i + n]) for seq in token_ids for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def metrics_from_samples(samples: pd.DataFrame, vocabulary: Collection[str] | None = None) -> dict[str, float]:
    """The METRICS of scored samples with columns reward, positive, completion (text), completion_ids, logp, entropy,
    ref_logp, tokens; the word metrics against ``vocabulary`` (default: ``alignray.vocabulary.load_vocabulary()``);
    and ``JUDGE_METRICS`` when the samples have a judge's columns (judge, judge_positive)."""
    vocabulary = load_vocabulary() if vocabulary is None else vocabulary
    texts = samples["completion"].tolist()
    rewards = samples["reward"].to_numpy(dtype=np.float64)
    ids = samples["completion_ids"].tolist()
    tokens = samples["tokens"].to_numpy(dtype=np.float64)
    total = max(tokens.sum(), 1.0)
    p10, p50, p90 = np.percentile(rewards, [10, 50, 90])
    judged = (
        {"judge/mean": float(samples["judge"].mean()), "judge/frac_positive": float(samples["judge_positive"].mean())}
        if "judge" in samples.columns
        else {}
    )
    return {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()),
        "reward/p10": float(p10),
        "reward/p50": float(p50),
        "reward/p90": float(p90),
        "reward/frac_positive": float(samples["positive"].mean()),
        "diversity/token_entropy": token_entropy(ids),
        "diversity/predictive_entropy": float(samples["entropy"].sum() / total),
        "diversity/distinct_1": distinct_n(ids, 1),
        "diversity/distinct_2": distinct_n(ids, 2),
        "diversity/word_entropy": word_entropy(texts, vocabulary),
        "kl/ref": float((samples["logp"] - samples["ref_logp"]).mean()),
        "fluency/ref_perplexity": math.exp(-float(samples["ref_logp"].sum()) / total),
        "fluency/nonword_rate": nonword_rate(texts, vocabulary),
        "fluency/garbled_rate": garbled_rate(texts, vocabulary),
        **judged,
    }


def evaluate(
    policy: str,
    reference: str,
    reward: str,
    prompts: list[str],
    samples_per_prompt: int = 1,
    max_new_tokens: int = 48,
    seed: int = 0,
    judge: str | None = None,
    **stage_options,
) -> dict[str, float]:
    """Sample from ``policy`` on ``prompts`` through the Ray Data stages of the preference pipeline and score (by
    ``judge`` too, when given).

    A reference with another tokenizer than the policy's is refused before Ray starts (``check_same_tokenizer``).
    """
    from alignray.data.pipeline import run_stages
    from alignray.world import check_same_tokenizer

    check_same_tokenizer(policy, reference)

    samples = run_stages(
        prompts, policy, reward, samples_per_prompt, max_new_tokens, seed, reference=reference, judge=judge,
        **stage_options,
    )
    return metrics_from_samples(samples)


def evaluate_here(
    policy: str,
    reference: str,
    reward: str,
    prompts: list[str],
    samples_per_prompt: int = 1,
    max_new_tokens: int = 48,
    seed: int = 0,
    threads: int | None = None,
    batch_size: int = 128,
    judge: str | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """``evaluate`` in this process, with the same stages and seeds (what a sweep trial runs in its own resources);
    returns the metrics and the scored samples."""
    from alignray.data.pipeline import run_stages_here

    samples = run_stages_here(
        prompts, policy, reward, samples_per_prompt, max_new_tokens, seed, reference=reference,
        batch_size=batch_size, threads=threads, judge=judge,
    )  # fmt: skip
    return metrics_from_samples(samples), samples


def evaluation_prompts(policy: str, num_prompts: int, seed: int = 0, tokenizer=None) -> list[str]:
    """Evaluation prompts: openings of the held-out reviews kept for evaluation, cut with the policy's tokenizer
    (``tokenizer``: that tokenizer, already loaded).

    Asking for more prompts than the evaluation pool holds is a ValueError naming ``num_prompts``, never a cap."""
    from alignray.data.prompts import imdb_prefix_prompts, imdb_prompt_reviews
    from alignray.world import load_tokenizer

    reviews = imdb_prompt_reviews("eval")
    if num_prompts > len(reviews):
        raise ValueError(
            f"num_prompts={num_prompts} exceeds the {len(reviews)} reviews of the evaluation pool; "
            f"use num_prompts <= {len(reviews)}"
        )
    tokenizer = tokenizer or load_tokenizer(policy, "policy")
    shortest, longest = EVAL_PROMPT_TOKENS
    return imdb_prefix_prompts(reviews, tokenizer, num_prompts, seed, shortest, longest)


def check_against_policy(config: EvalConfig, eval_pool: int | None = None) -> None:
    """Refuse what the policy or the evaluation pool cannot hold, before any model loads or Ray starts: the longest
    evaluation prompt plus ``max_new_tokens`` must fit the policy's context (its config.json), ``num_prompts`` the
    evaluation pool (``eval_pool``, read from ``imdb_prompt_reviews("eval")`` when not given), and the reference must
    share the policy's tokenizer. Each refusal is a ValueError naming the field, its value and the limit."""
    from alignray.data.prompts import imdb_prompt_reviews
    from alignray.world import check_same_tokenizer, policy_context

    context, prompt = policy_context(config.policy), EVAL_PROMPT_TOKENS[1]
    if prompt + config.max_new_tokens > context:
        raise ValueError(
            f"max_new_tokens={config.max_new_tokens} after prompts of up to {prompt} tokens exceeds the "
            f"{context}-token context of policy={config.policy!r}; use max_new_tokens <= {context - prompt}"
        )
    eval_pool = len(imdb_prompt_reviews("eval")) if eval_pool is None else eval_pool
    if config.num_prompts > eval_pool:
        raise ValueError(
            f"num_prompts={config.num_prompts} exceeds the {eval_pool} reviews of the evaluation pool; "
            f"use num_prompts <= {eval_pool}"
        )
    check_same_tokenizer(config.policy, config.reference)


def evaluate_config(config: EvalConfig) -> dict[str, float]:
    """``evaluate`` on the config's evaluation prompts (held-out reviews never used for preference prompts), once
    ``check_against_policy`` has found that the policy and the evaluation pool can hold them."""
    check_against_policy(config)
    prompts = evaluation_prompts(config.policy, config.num_prompts, config.seed)
    return evaluate(
        config.policy,
        config.reference,
        config.reward,
        prompts,
        samples_per_prompt=config.samples_per_prompt,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )
