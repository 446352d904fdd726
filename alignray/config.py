"""Typed configs: dataclasses with a one-line docstring per field, validated when built, usable from YAML and CLI.

``parse_config(TrainConfig, argv)`` makes ``--help`` from the field docstrings, reads ``--config file.yaml`` with
``yaml.safe_load`` and lets command-line flags override it; every value is checked by the dataclass itself, before
Ray or a model starts. Values are read by one rule wherever they come from (Python, YAML, the command line):
``coerce_fields``, which every config calls first in its ``__post_init__``. What needs the model (lengths against
its context, the evaluation pool's size) is checked by ``check_against_policy`` once the policy is known.

Adding a config:
    1. write a frozen dataclass with a one-line docstring under each field (``int``, ``float``, ``bool``, ``str``,
       ``tuple[str, ...]``, or any of them ``| None``);
    2. start its ``__post_init__`` with ``coerce_fields(self)``, then check ranges with ``ValueError``s that name the
       field, the value and what is allowed; ``parse_config(MyConfig)`` then reads it from YAML and flags.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import math
import numbers
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alignray.data.pairing import check_strategy
from alignray.data.prompts import PROMPT_SOURCES
from alignray.divergences import get_divergence
from alignray.losses import check_loss_type
from alignray.registry import unknown_name

__all__ = [
    "OBJECTIVES",
    "SWEEP_PRESETS",
    "EVAL_PROMPT_TOKENS",
    "EvalConfig",
    "PreferenceConfig",
    "SweepConfig",
    "TrainConfig",
    "check_against_policy",
    "coerce_fields",
    "field_docs",
    "given_fields",
    "parse_config",
    "policy_context",
]

C = TypeVar("C")

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class _Refused(Exception):
    """A value that does not convert; the message says what it is (``is not an integer``)."""


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Refused("is a boolean")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _Refused("is not an integer")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Refused("is a boolean")
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Refused("is not a number") from None
    else:
        raise _Refused("is not a number")
    if not math.isfinite(number):
        raise _Refused("is not finite")
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _Refused("is not a boolean")


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        raise _Refused("is a boolean")
    if isinstance(value, str | numbers.Integral):
        return str(value)
    raise _Refused("is not a string")


def _to_strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise _Refused("is a single string, not a list")
    if not isinstance(value, list | tuple):
        raise _Refused("is not a list")
    try:
        return tuple(_to_str(item) for item in value)
    except _Refused:
        raise _Refused("holds something other than strings") from None


_CONVERTERS: dict[Any, tuple[Any, str]] = {
    int: (_to_int, "an integer"),
    float: (_to_float, "a finite number"),
    bool: (_to_bool, "true or false"),
    str: (_to_str, "a string"),
    tuple: (_to_strings, "a list of strings (YAML: [a, b]; command line: --flag a b)"),
}


@cache
def _field_types(cls: type) -> dict[str, tuple[Any, bool]]:
    """Each field's type (``tuple`` for ``tuple[str, ...]``) and whether it takes None."""
    types_ = {}
    for name, annotation in typing.get_type_hints(cls).items():
        optional = False
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            args = typing.get_args(annotation)
            optional = type(None) in args
            (annotation,) = [a for a in args if a is not type(None)]
        types_[name] = (tuple if typing.get_origin(annotation) is tuple else annotation, optional)
    return types_


def coerce_fields(config: Any) -> None:
    """Convert each field of the (frozen) dataclass ``config`` to its declared type, in place, or raise ValueError.

    Every config calls it first in ``__post_init__``, so that ``TrainConfig(learning_rate="5e-5")`` in Python, a YAML
    file (``yaml.safe_load`` reads ``5e-5`` as a string) and the command line (all text) give the same config:

    - ``int``: an integer, or a string of one (``"16"``); a bool or a float is refused;
    - ``float``: an integer, a float or a string of one (``"5e-5"``); a bool, NaN and ±inf are refused;
    - ``bool``: a bool, or one of true/false, yes/no, on/off, 1/0 as a string;
    - ``str``: a string (an integer becomes its digits, as typed on the command line); a bool is refused;
    - ``tuple[str, ...]``: a list or tuple of strings; a bare string is refused rather than split into characters
      or taken as one item, since either guess can be wrong;
    - ``X | None``: None, or an X as above.

    The ValueError names the field, the value received and what is allowed:
    ``batch_size=True is a boolean; expected an integer``.
    """
    for field in dataclasses.fields(config):
        kind, optional = _field_types(type(config))[field.name]
        if kind not in _CONVERTERS:
            continue
        value = getattr(config, field.name)
        convert, allowed = _CONVERTERS[kind]
        try:
            if value is None:
                if optional:
                    continue
                raise _Refused("is not allowed")
            converted = convert(value)
        except _Refused as refused:
            raise ValueError(
                f"{field.name}={value!r} {refused}; expected {allowed}{' or None' if optional else ''}"
            ) from None
        object.__setattr__(config, field.name, converted)


@dataclass(frozen=True)
class TrainConfig:
    """One f-DPO training run: a preference file in, a ``save_pretrained`` policy and ``metrics.json`` out."""

    data: str
    """Preference data: a parquet file (or directory of them) with prompt, chosen and rejected columns."""
    out: str = "runs/train"
    """Directory for the trained policy (``model/``) and ``metrics.json``."""
    policy: str = "tiny-imdb"
    """Policy to start from and to stay near: a preset (tiny-imdb, lvwerra-imdb), a local path or a hub id."""
    divergence: str = "reverse_kl"
    """f-divergence by name (alignray.divergences.DIVERGENCES)."""
    alpha: float | None = None
    """The paper's α ∈ (0, 1), for alpha_divergence only (α → 0: reverse KL, α → 1: forward KL)."""
    beta: float = 0.1
    """Strength of the divergence constraint β > 0."""
    loss_type: str = "sigmoid"
    """Loss shape: sigmoid (DPO), hinge (RSO/TRL) or ipo."""
    learning_rate: float = 5e-5
    """Peak learning rate (linear decay)."""
    epochs: float = 1.0
    """Passes over the preference data."""
    batch_size: int = 16
    """Pairs per optimizer step and worker."""
    max_length: int = 128
    """Tokens of prompt + completion kept per pair (longer ones are truncated)."""
    seed: int = 0
    """Seed of initialisation order, shuffling and dropout."""
    workers: int = 1
    """Data-parallel workers; more than 1 runs on Ray Train (TorchTrainer)."""
    use_gpu: bool = False
    """Give each Ray Train worker a GPU (workers > 1); a single run uses a GPU whenever one is present."""
    precompute_ref: bool = True
    """Score the reference policy once before training instead of at every step."""

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.divergence != "alpha_divergence" and self.alpha is not None:
            raise ValueError(
                f"alpha={self.alpha!r} is only for divergence='alpha_divergence', not {self.divergence!r}"
            )
        get_divergence(self.divergence, **self.divergence_params).check_trainable()
        check_loss_type(self.loss_type)
        _check_positive(self, floats=("beta", "learning_rate", "epochs"), ints=("batch_size", "max_length", "workers"))
        _check_learning_rates(self, "learning_rate")
        if self.use_gpu and self.workers == 1:
            raise ValueError("use_gpu=True is for Ray Train workers (workers > 1); a single run finds a GPU itself")

    @property
    def divergence_params(self) -> dict[str, float]:
        """Parameters for ``get_divergence`` (``{'alpha': α}`` for alpha_divergence)."""
        return {} if self.alpha is None else {"alpha": self.alpha}

    def validate_data(self) -> Path:
        """The data path, or ValueError naming ``data`` when it is missing, unreadable, lacks a column of
        prompt/chosen/rejected or has no rows (parquet metadata only: no rows are read)."""
        import pyarrow.parquet as pq

        path = Path(self.data)
        if not path.exists():
            raise ValueError(f"data={self.data!r} does not exist; expected a parquet file with prompt/chosen/rejected")
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"data={self.data!r} holds no parquet files; expected prompt/chosen/rejected parquet")
        rows = 0
        for file in files:
            try:
                metadata = pq.ParquetFile(file).metadata
            except Exception as err:  # pyarrow's ArrowInvalid and OSError: not a parquet file
                raise ValueError(f"data={self.data!r}: {file} is not a readable parquet file ({err})") from None
            missing = [c for c in ("prompt", "chosen", "rejected") if c not in metadata.schema.names]
            if missing:
                raise ValueError(
                    f"data={self.data!r} lacks columns {missing}; expected prompt, chosen and rejected "
                    f"(it has {metadata.schema.names})"
                )
            rows += metadata.num_rows
        if rows == 0:
            raise ValueError(f"data={self.data!r} has no rows; expected at least one prompt/chosen/rejected pair")
        return path


def _check_positive(config: Any, floats: tuple[str, ...] = (), ints: tuple[str, ...] = ()) -> None:
    for name in floats:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name}={getattr(config, name)!r} must be > 0")
    for name in ints:
        value = getattr(config, name)
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}={value!r} must be an integer >= 1")


def _check_learning_rates(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) > 1:
            raise ValueError(f"{name}={getattr(config, name)!r} is absurd for Adam; allowed: (0, 1]")


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
        _check_positive(
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
        _check_positive(self, ints=("num_prompts", "samples_per_prompt", "max_new_tokens"))


EVAL_PROMPT_TOKENS: tuple[int, int] = (2, 8)
"""Shortest and longest evaluation prompt, in tokens (openings of held-out reviews)."""


def policy_context(policy: str) -> int:
    """The positions the policy can attend to, from its config.json alone (no weights are loaded)."""
    from transformers import AutoConfig

    from alignray.world import resolve_model

    model_config = AutoConfig.from_pretrained(resolve_model(policy, "policy"), trust_remote_code=False)
    for key in ("n_positions", "max_position_embeddings"):
        if isinstance(getattr(model_config, key, None), int):
            return getattr(model_config, key)
    raise ValueError(f"policy={policy!r}: its config.json states no context length (n_positions)")


def _longest_prompt(config: PreferenceConfig | EvalConfig) -> int:
    """The most tokens a prompt of ``config`` can have."""
    if isinstance(config, EvalConfig):
        return EVAL_PROMPT_TOKENS[1]
    if config.prompts == "imdb_prefix":
        return config.max_prompt_tokens
    from alignray.data.pipeline import load_prompts
    from alignray.world import load_tokenizer

    tokenizer = load_tokenizer(config.policy, "policy")
    return max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in load_prompts(config))


def check_against_policy(config: TrainConfig | PreferenceConfig | EvalConfig, eval_pool: int | None = None) -> None:
    """Refuse what the policy or the prompt pool cannot hold, before any model loads or Ray starts.

    The longest prompt plus ``max_new_tokens``, and ``max_length``, must fit the policy's context (its config.json);
    an ``EvalConfig`` must ask for no more prompts than the evaluation pool holds (``eval_pool``, read from
    ``imdb_prompt_reviews("eval")`` when not given) and name a reference with the policy's tokenizer. Nothing is
    capped silently: each refusal is a ValueError naming the field, its value and the limit.
    """
    context = policy_context(config.policy)
    if isinstance(config, TrainConfig):
        if config.max_length > context:
            raise ValueError(
                f"max_length={config.max_length} exceeds the {context}-token context of policy={config.policy!r}; "
                f"use max_length <= {context}"
            )
        return
    prompt = _longest_prompt(config)
    if prompt + config.max_new_tokens > context:
        raise ValueError(
            f"max_new_tokens={config.max_new_tokens} after prompts of up to {prompt} tokens exceeds the "
            f"{context}-token context of policy={config.policy!r}; use max_new_tokens <= {context - prompt}"
        )
    if isinstance(config, EvalConfig):
        if eval_pool is None:
            from alignray.data.prompts import imdb_prompt_reviews

            eval_pool = len(imdb_prompt_reviews("eval"))
        if config.num_prompts > eval_pool:
            raise ValueError(
                f"num_prompts={config.num_prompts} exceeds the {eval_pool} reviews of the evaluation pool; "
                f"use num_prompts <= {eval_pool}"
            )
        from alignray.world import check_same_tokenizer

        check_same_tokenizer(config.policy, config.reference)


def field_docs(cls: type) -> dict[str, str]:
    """The one-line docstrings under each field of a dataclass, read from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())  # type: ignore[union-attr]
    return docs


def parse_config(
    cls: type[C],
    argv: list[str] | None = None,
    description: str | None = None,
    presets: dict[str, dict[str, Any]] | None = None,
) -> C:
    """Build ``cls`` from ``--preset NAME``, ``--config file.yaml`` and ``--field value`` flags, each layer
    overriding the one before; bad values exit with the field named."""
    parser = _parser(cls, description, presets)
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config")
    values = dict(presets[args.pop("preset")]) if presets else {}
    values.update(_read_yaml(parser, cls, config_path) if config_path else {})
    values.update({k: v for k, v in args.items() if v is not None})
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        parser.error(str(err))


def given_fields(
    cls: type, argv: list[str] | None = None, presets: dict[str, dict[str, Any]] | None = None
) -> set[str]:
    """The fields that ``argv`` sets rather than leaves at their defaults: its flags, the fields of its ``--config``
    file and, when ``--preset`` is named, the preset's (``--resume`` refuses those that differ from the saved ones)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser(cls, None, presets)
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config")
    named = presets is not None and any(a == "--preset" or a.startswith("--preset=") for a in argv)
    given = set(presets[args.pop("preset")]) if named else set()
    given |= set(_read_yaml(parser, cls, config_path)) if config_path else set()
    return given | {k for k, v in args.items() if v is not None and k != "preset"}


def _parser(
    cls: type, description: str | None, presets: dict[str, dict[str, Any]] | None
) -> argparse.ArgumentParser:
    docs = field_docs(cls)
    parser = argparse.ArgumentParser(
        description=description or cls.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if presets:
        parser.add_argument(
            "--preset", choices=list(presets), default=next(iter(presets)), help="defaults to start from (%(default)s)"
        )
    parser.add_argument("--config", help="YAML file of field: value pairs; flags given here override it")
    for field in dataclasses.fields(cls):
        kind, _ = _field_types(cls)[field.name]
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = "required" if required else f"default: {field.default!r}"
        parser.add_argument(  # values stay text here: the dataclass converts them as it converts YAML's
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            nargs="+" if kind is tuple else "?" if kind is bool else None,
            const="true" if kind is bool else None,  # a bare --flag means true
            help=f"{docs.get(field.name, '')} ({default})",
        )
    return parser


def _read_yaml(parser: argparse.ArgumentParser, cls: type, path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as err:
        parser.error(f"--config {path}: cannot be read ({err.strerror or err})")
    except yaml.YAMLError as err:  # the problem and its line, not a traceback
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        parser.error(f"--config {path}: not valid YAML{line}: {problem}; expected a mapping of field: value")
    if not isinstance(loaded, dict):
        parser.error(f"--config {path}: expected a mapping of field: value")
    unknown = sorted(set(loaded) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        parser.error(f"--config {path}: unknown fields {unknown}")
    return loaded


OBJECTIVES = {
    "reward": ("reward/mean", "reward/p50", "reward/frac_positive"),
    "diversity": ("diversity/token_entropy", "diversity/predictive_entropy", "diversity/distinct_2"),
}
"""Metrics the sweep may maximise, per objective (names of alignray.metrics.METRICS)."""


@dataclass(frozen=True)
class SweepConfig:
    """A reward–diversity sweep: preference data on Ray Data, f-DPO trials searched by Optuna on Ray Tune, and the
    Pareto frontier. Defaults are the tiny-imdb preset: 10 trials of ~940 pairs each, 2 at a time, in well under 10
    minutes on 2 CPU cores."""

    output: str = "runs/sweep"
    """Experiment directory: preferences, study, Tune experiment, results, frontier models, report."""
    policy: str = "tiny-imdb"
    """SFT policy every trial starts from and stays near: a preset, a local path or a hub id."""
    reward: str = "tiny-imdb"
    """Reward model (its POSITIVE logit): a preset, a local path or a hub id."""
    num_prompts: int = 320
    """Preference data: prompts (openings of held-out IMDB reviews kept for preference data)."""
    samples_per_prompt: int = 4
    """Preference data: completions sampled per prompt."""
    strategy: str = "top_vs_bottom"
    """Preference data: pairing strategy (best_vs_worst, top_vs_bottom, random_pairs, threshold)."""
    k: int = 2
    """Preference data: top_vs_bottom's k (k=2 of 4 samples: best against the two worst, second best against the
    worst; 3 pairs a prompt, seed 004's recipe)."""
    max_new_tokens: int = 48
    """Tokens sampled per completion, for preference data and evaluation alike."""
    search: str = "optuna"
    """optuna (the sampler below over the space) or grid (the seeds' hand grid: β ∈ {0.1, 0.5, 1, 10} × reverse_kl,
    forward_kl, js_divergence, alpha_divergence α=0.5; num_trials is then the grid's 16)."""
    sampler: str = "tpe"
    """Optuna sampler: tpe, nsga2 or random."""
    num_trials: int = 10
    """Trials to run (search=optuna)."""
    startup_trials: int = 4
    """Random trials before TPE models the space (NSGA-II: its population size)."""
    divergences: tuple[str, ...] = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
    """Divergences to search over (alignray.divergences.DIVERGENCES)."""
    loss_types: tuple[str, ...] = ("sigmoid",)
    """Loss shapes to search over (sigmoid, hinge, ipo); one fixes it."""
    beta_min: float = 0.05
    """Smallest β (log-uniform)."""
    beta_max: float = 2.0
    """Largest β."""
    learning_rate_min: float = 2e-4
    """Smallest learning rate (log-uniform)."""
    learning_rate_max: float = 2e-3
    """Largest learning rate."""
    alpha_min: float = 0.1
    """Smallest α of alpha_divergence (the paper's α; uniform)."""
    alpha_max: float = 0.9
    """Largest α."""
    grid_learning_rate: float = 5e-4
    """Learning rate of every grid trial."""
    points_to_evaluate: tuple[str, ...] = ()
    """Trials to run first, each a JSON mapping, e.g. '{"divergence": "reverse_kl", "beta": 0.1,
    "learning_rate": 5e-4}' (YAML: a list of mappings); default: one per divergence at the middle of the ranges, so
    that every divergence is tried however few trials there are."""
    reward_metric: str = "reward/mean"
    """Reward objective (maximised): reward/mean, reward/p50 or reward/frac_positive."""
    diversity_metric: str = "diversity/token_entropy"
    """Diversity objective (maximised): diversity/token_entropy (the seeds'), diversity/predictive_entropy (the
    paper's) or diversity/distinct_2."""
    hv_reward: float | None = None
    """Reward of the hypervolume reference point (default: the base policy's reward)."""
    hv_diversity: float | None = None
    """Diversity of the hypervolume reference point (default: half the base policy's diversity)."""
    epochs: float = 1.0
    """Each trial: passes over the preference data."""
    batch_size: int = 16
    """Each trial: pairs per optimizer step and worker."""
    max_length: int = 96
    """Each trial: tokens of prompt + completion kept per pair."""
    eval_prompts: int = 128
    """Each trial: held-out evaluation prompts (disjoint from the preference prompts)."""
    eval_samples_per_prompt: int = 2
    """Each trial: completions sampled per evaluation prompt."""
    workers_per_trial: int = 1
    """Each trial: data-parallel workers; more than 1 runs the trial's training on Ray Train."""
    cpus_per_trial: float = 1.0
    """Each trial: CPUs it holds, at least 1 (its torch threads: the whole part; a fraction would let Tune run more
    trials than there are cores)."""
    gpus_per_trial: float | None = None
    """Each trial: GPUs it holds (default: 1 when the cluster has GPUs, else 0)."""
    max_concurrent_trials: int | None = None
    """Trials at once (default: what the cluster's CPUs and GPUs hold)."""
    max_failures: int = 1
    """Retries of a trial that crashed: its worker or node died, or it raised (e.g. CUDA out of memory). A trial
    that meets NaN or a bad value fails the same way again: it is recorded and never retried."""
    seed: int = 0
    """Seed of prompts, sampling, pairing, the sampler and every trial's training."""
    storage: str | None = None
    """Optuna study storage, any SQLAlchemy URL without a password (default: sqlite:///<output>/study.db)."""
    storage_password_env: str | None = None
    """Environment variable holding the storage's password, e.g. ALIGNRAY_STORAGE_PASSWORD; the password is joined
    to the URL in memory only, never written to sweep.json or Tune's state."""
    tune_storage: str | None = None
    """Where Tune keeps trials and checkpoints (default: <output>/tune; on several nodes a shared or cloud path)."""
    keep_all_models: bool = False
    """Keep every trial's model, not only the frontier's."""
    resume: bool = False
    """Continue the sweep in output with its saved config (finished trials are kept, not repeated); only
    num_trials (more trials), max_failures and max_concurrent_trials may be given anew."""
    overwrite: bool = False
    """Delete an existing experiment in output and start again."""

    def __post_init__(self) -> None:
        from alignray.sweep.space import PARAMETERS, SAMPLERS

        points = self.points_to_evaluate  # YAML gives mappings: each becomes its canonical JSON text first
        if isinstance(points, list | tuple):
            object.__setattr__(self, "points_to_evaluate", tuple(_point(p, PARAMETERS) for p in points))
        coerce_fields(self)
        if self.search not in ("optuna", "grid"):
            raise unknown_name("search", self.search, ("optuna", "grid"))
        if self.sampler not in SAMPLERS:
            raise unknown_name("sampler", self.sampler, SAMPLERS)
        check_strategy(self.strategy)
        if not self.divergences:
            raise ValueError("divergences=() is empty; name at least one divergence to search")
        for name in self.divergences:
            params = {"alpha": 0.5} if name == "alpha_divergence" else {}
            try:
                get_divergence(name, **params).check_trainable()
            except ValueError as err:
                raise ValueError(f"divergences: {err}") from None
        if not self.loss_types:
            raise ValueError("loss_types=() is empty; name at least one of sigmoid, hinge, ipo")
        for loss_type in self.loss_types:
            check_loss_type(loss_type)
        _check_positive(
            self,
            floats=("beta_min", "beta_max", "learning_rate_min", "learning_rate_max", "grid_learning_rate", "epochs"),
            ints=("num_prompts", "samples_per_prompt", "k", "max_new_tokens", "num_trials", "startup_trials",
                  "batch_size", "max_length", "eval_prompts", "eval_samples_per_prompt", "workers_per_trial",
                  "max_concurrent_trials"),
        )  # fmt: skip
        for low, high in (("beta_min", "beta_max"), ("learning_rate_min", "learning_rate_max")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low}={getattr(self, low)!r} exceeds {high}={getattr(self, high)!r}")
        if not 0 < self.alpha_min <= self.alpha_max < 1:
            raise ValueError(f"need 0 < alpha_min <= alpha_max < 1, got {self.alpha_min!r}, {self.alpha_max!r}")
        _check_learning_rates(self, "learning_rate_max", "grid_learning_rate")
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt={self.samples_per_prompt} must be >= 2 to make pairs")
        for objective, metric in (("reward", self.reward_metric), ("diversity", self.diversity_metric)):
            if metric not in OBJECTIVES[objective]:
                raise unknown_name(f"{objective}_metric", metric, OBJECTIVES[objective])
        if self.cpus_per_trial < 1:
            raise ValueError(
                f"cpus_per_trial={self.cpus_per_trial!r} must be >= 1: a trial runs at least one thread, and a "
                "fraction would let Tune start more trials than there are cores"
            )
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial={self.gpus_per_trial!r} must be >= 0")
        if self.max_failures < 0:
            raise ValueError(f"max_failures={self.max_failures!r} must be >= 0")
        if self.resume and self.overwrite:
            raise ValueError("resume=True and overwrite=True contradict each other; pick one")
        _check_points(self)
        _check_storage_url(self)

    def preference_config(self, out: str) -> PreferenceConfig:
        """The preference data set of this sweep, written to ``out``."""
        return PreferenceConfig(
            out=out,
            policy=self.policy,
            reward=self.reward,
            num_prompts=self.num_prompts,
            samples_per_prompt=self.samples_per_prompt,
            max_new_tokens=self.max_new_tokens,
            strategy=self.strategy,
            k=self.k,
            seed=self.seed,
        )


def _check_points(config: SweepConfig) -> None:
    """Points to evaluate lie in the searched space (Optuna would record them outside it, or refuse them inside the
    search, after the data stage), and there are no more of them than trials."""
    if config.search == "grid" or not config.points_to_evaluate:
        return
    if len(config.points_to_evaluate) > config.num_trials:
        raise ValueError(
            f"points_to_evaluate holds {len(config.points_to_evaluate)} points but num_trials={config.num_trials}; "
            "raise num_trials or give fewer points"
        )
    ranges = {
        "beta": (config.beta_min, config.beta_max),
        "learning_rate": (config.learning_rate_min, config.learning_rate_max),
        "alpha": (config.alpha_min, config.alpha_max),
    }
    for point in map(json.loads, config.points_to_evaluate):
        for name, allowed in (("divergence", config.divergences), ("loss_type", config.loss_types)):
            if name in point and point[name] not in allowed:
                raise ValueError(
                    f"points_to_evaluate: {name}={point[name]!r} is outside the searched {name}s {list(allowed)}"
                )
        for name, (low, high) in ranges.items():
            if name in point and not low <= point[name] <= high:
                raise ValueError(
                    f"points_to_evaluate: {name}={point[name]!r} is outside the searched range [{low:g}, {high:g}] "
                    f"({name}_min, {name}_max)"
                )


def _check_storage_url(config: SweepConfig) -> None:
    """A storage URL that holds a password is refused: the URL is saved in sweep.json and Tune's state."""
    if config.storage_password_env is not None and not config.storage_password_env.isidentifier():
        raise ValueError(f"storage_password_env={config.storage_password_env!r} is not an environment variable's name")
    if config.storage is None:
        return
    from sqlalchemy.engine import make_url

    try:
        url = make_url(config.storage)
    except Exception:  # not a URL at all: check_storage names it, without printing any of it
        return
    if url.password:
        raise ValueError(
            f"storage={url.render_as_string(hide_password=True)!r} holds a password, which would be saved in "
            "sweep.json and Tune's state; remove it from the URL, export it (export ALIGNRAY_STORAGE_PASSWORD=...) "
            "and pass --storage-password-env ALIGNRAY_STORAGE_PASSWORD"
        )


def _point(point: str | dict, allowed: tuple[str, ...]) -> str:
    """A point to evaluate as canonical JSON, after checking its names and values (a trial config must build)."""

    try:
        values = json.loads(point) if isinstance(point, str) else dict(point)
    except (ValueError, TypeError) as err:
        raise ValueError(f"points_to_evaluate: {point!r} is not a JSON mapping ({err})") from None
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"points_to_evaluate: {point!r} has unknown names {unknown}; allowed: {', '.join(allowed)}")
    missing = [name for name in ("divergence", "beta", "learning_rate") if name not in values]
    if missing:
        raise ValueError(f"points_to_evaluate: {point!r} lacks {missing}")
    try:
        TrainConfig(data="-", **values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"points_to_evaluate: {point!r}: {err}") from None
    return json.dumps(values, sort_keys=True)


SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "tiny-imdb": {},
    "gpt2-imdb": {
        "policy": "lvwerra-imdb",
        "reward": "lvwerra-imdb",
        "num_prompts": 600,
        "samples_per_prompt": 6,
        "k": 3,
        "num_trials": 32,
        "startup_trials": 8,
        "beta_min": 0.05,
        "beta_max": 10.0,
        "learning_rate_min": 1e-6,
        "learning_rate_max": 1e-4,
        "grid_learning_rate": 1e-5,
        "epochs": 1.0,
        "batch_size": 16,
        "max_length": 128,
        "eval_prompts": 500,
        "eval_samples_per_prompt": 2,
        "gpus_per_trial": 1.0,
        "cpus_per_trial": 2.0,
    },
}
"""Sweep presets: ``tiny-imdb`` (the defaults; 2 CPU cores) and ``gpt2-imdb`` (the hub models at the seeds' sizes,
~600 prompts x 6 samples, one GPU per trial)."""
