"""Typed configs: dataclasses with a one-line docstring per field, validated when built, usable from YAML and CLI.

``parse_config(TrainConfig, argv)`` makes ``--help`` from the field docstrings, reads ``--config file.yaml`` with
``yaml.safe_load`` and lets command-line flags override it; every value is checked by the dataclass itself, before
Ray or a model starts.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alignray.divergences import get_divergence
from alignray.losses import check_loss_type

__all__ = ["TrainConfig", "field_docs", "parse_config"]

C = TypeVar("C")


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
        if self.divergence != "alpha_divergence" and self.alpha is not None:
            raise ValueError(
                f"alpha={self.alpha!r} is only for divergence='alpha_divergence', not {self.divergence!r}"
            )
        get_divergence(self.divergence, **self.divergence_params).check_trainable()
        check_loss_type(self.loss_type)
        for name in ("beta", "learning_rate", "epochs"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        for name in ("batch_size", "max_length", "workers"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer >= 1")
        if self.use_gpu and self.workers == 1:
            raise ValueError("use_gpu=True is for Ray Train workers (workers > 1); a single run finds a GPU itself")

    @property
    def divergence_params(self) -> dict[str, float]:
        """Parameters for ``get_divergence`` (``{'alpha': α}`` for alpha_divergence)."""
        return {} if self.alpha is None else {"alpha": self.alpha}

    def validate_data(self) -> Path:
        """The data path, or ValueError naming ``data`` when it is missing."""
        path = Path(self.data)
        if not path.exists():
            raise ValueError(f"data={self.data!r} does not exist; expected a parquet file with prompt/chosen/rejected")
        return path


def field_docs(cls: type) -> dict[str, str]:
    """The one-line docstrings under each field of a dataclass, read from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())  # type: ignore[union-attr]
    return docs


def _scalar_type(annotation: Any) -> type:
    """The argparse type of a field annotation: ``int``, ``float``, ``str`` or ``bool`` (``X | None`` → X)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false)")


def parse_config(cls: type[C], argv: list[str] | None = None, description: str | None = None) -> C:
    """Build ``cls`` from ``--config file.yaml`` and ``--field value`` flags; bad values exit with the field named."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    parser.add_argument("--config", help="YAML file of field: value pairs; flags given here override it")
    for field in dataclasses.fields(cls):
        kind = _scalar_type(hints[field.name])
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = "required" if required else f"default: {field.default!r}"
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            type=_bool if kind is bool else kind,
            help=f"{docs.get(field.name, '')} ({default})",
        )
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config")
    values = _read_yaml(parser, cls, config_path) if config_path else {}
    values.update({k: v for k, v in args.items() if v is not None})
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        parser.error(str(err))


def _read_yaml(parser: argparse.ArgumentParser, cls: type, path: str) -> dict[str, Any]:
    loaded = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(loaded, dict):
        parser.error(f"--config {path}: expected a mapping of field: value")
    unknown = sorted(set(loaded) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        parser.error(f"--config {path}: unknown fields {unknown}")
    return loaded
