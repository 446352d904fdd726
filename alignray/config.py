"""Typed configs, the generic part: dataclasses with a one-line docstring per field, validated when built, usable
from YAML and the command line. Each config lives beside what it configures (``train_config.py``, ``eval_config.py``,
``data/config.py``, ``sweep/config.py``); this module imports none of them, nor any other concept.

``parse_config(TrainConfig, argv)`` makes ``--help`` from the field docstrings, reads ``--config file.yaml`` with
``yaml.safe_load`` and lets command-line flags override it; every value is checked by the dataclass itself, before
Ray or a model starts. Values are read by one rule wherever they come from (Python, YAML, the command line):
``coerce_fields``, which every config calls first in its ``__post_init__``. What needs the model (lengths against
its context, the evaluation pool's size) is checked by ``check_against_policy`` beside each concept
(``alignray.train``, ``alignray.data.pipeline``, ``alignray.metrics``) once the policy is known.

Adding a config:
    1. write a frozen dataclass with a one-line docstring under each field (``int``, ``float``, ``bool``, ``str``,
       ``tuple[str, ...]``, or any of them ``| None``), in a ``config`` module beside what it configures;
    2. start its ``__post_init__`` with ``coerce_fields(self)``, then check ranges with ``ValueError``s that name the
       field, the value and what is allowed (``check_positive`` helps); ``parse_config(MyConfig)`` then reads it from
       YAML and flags.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import numbers
import sys
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "check_learning_rates",
    "check_positive",
    "coerce_fields",
    "field_docs",
    "given_fields",
    "parse_config",
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


def _to_list(convert: Any, items: str) -> Any:
    """A converter of a list or tuple whose every item ``convert`` takes (``items``: what they are, in words)."""

    def to_list(value: Any) -> tuple:
        if isinstance(value, str):
            raise _Refused("is a single string, not a list")
        if not isinstance(value, list | tuple):
            raise _Refused("is not a list")
        try:
            return tuple(convert(item) for item in value)
        except _Refused:
            raise _Refused(f"holds something other than {items}") from None

    return to_list


FLOATS = "tuple[float, ...]"
"""The kind ``_field_types`` gives a ``tuple[float, ...]`` field."""

_CONVERTERS: dict[Any, tuple[Any, str]] = {
    int: (_to_int, "an integer"),
    float: (_to_float, "a finite number"),
    bool: (_to_bool, "true or false"),
    str: (_to_str, "a string"),
    tuple: (_to_list(_to_str, "strings"), "a list of strings (YAML: [a, b]; command line: --flag a b)"),
    FLOATS: (_to_list(_to_float, "finite numbers"),
             "a list of numbers (YAML: [0.5, 1.5]; command line: --flag 0.5 1.5, --flag alone: none)"),
}


@cache
def _field_types(cls: type) -> dict[str, tuple[Any, bool]]:
    """Each field's type (``tuple`` for ``tuple[str, ...]``, ``FLOATS`` for ``tuple[float, ...]``) and whether it
    takes None."""
    types_ = {}
    for name, annotation in typing.get_type_hints(cls).items():
        optional = False
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            args = typing.get_args(annotation)
            optional = type(None) in args
            (annotation,) = [a for a in args if a is not type(None)]
        if typing.get_origin(annotation) is tuple:
            annotation = FLOATS if typing.get_args(annotation)[0] is float else tuple
        types_[name] = (annotation, optional)
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
      or taken as one item, since either guess can be wrong; ``tuple[float, ...]`` likewise, of numbers;
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


def check_positive(config: Any, floats: tuple[str, ...] = (), ints: tuple[str, ...] = ()) -> None:
    """Refuse a float field of ``floats`` not > 0, or an int field of ``ints`` not >= 1 (None passes)."""
    for name in floats:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name}={getattr(config, name)!r} must be > 0")
    for name in ints:
        value = getattr(config, name)
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}={value!r} must be an integer >= 1")


def check_learning_rates(config: Any, *names: str) -> None:
    """Refuse a learning rate above 1: absurd for Adam, and a sign of a typo (5 for 5e-5)."""
    for name in names:
        if getattr(config, name) > 1:
            raise ValueError(f"{name}={getattr(config, name)!r} is absurd for Adam; allowed: (0, 1]")


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
    """The fields that ``argv`` sets rather than leaves at their defaults: its flags and the fields of its
    ``--config`` file; ``"preset"`` when it names ``--preset`` (``--resume`` refuses those that differ from the saved
    ones)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser(cls, None, presets)
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config")
    args.pop("preset", None)
    named = presets is not None and any(a == "--preset" or a.startswith("--preset=") for a in argv)
    given = {"preset"} if named else set()
    given |= set(_read_yaml(parser, cls, config_path)) if config_path else set()
    return given | {k for k, v in args.items() if v is not None}


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
            nargs="+" if kind is tuple else "*" if kind == FLOATS else "?" if kind is bool else None,
            const="true" if kind is bool else None,  # a bare --flag means true
            help=f"{docs.get(field.name, '')} ({default})".replace("%", "%%"),  # argparse formats help with %
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
