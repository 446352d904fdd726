"""What the sweep's stages share: the ``Plan`` decided once before any stage runs, and how stages speak and write.

Every stage writes through ``write_atomic`` (a crash never leaves half a file) and says what it does through ``say``
(one line of the job log each, the libraries' own output kept quiet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignray.sweep.config import SweepConfig

__all__ = ["Plan", "hash_of", "say", "write_atomic"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the stages share, decided once by ``alignray.sweep.driver``'s ``_plan``."""

    config: SweepConfig
    """The sweep's config: its output and local model paths absolute, ``gpus_per_trial`` resolved."""
    out: Path
    """The experiment directory."""
    study: str
    """The Optuna study's name, which also names the Tune experiment."""
    tokenizer: Any
    """The policy's tokenizer, loaded once."""
    prompts: list[str]
    """The evaluation prompts every trial and the base policy are evaluated on."""
    confirmation: list[str]
    """The confirmation prompts, sharing no text with ``prompts`` or the preference data's (empty: no
    confirmation)."""
    dropped: dict[str, int]
    """Drawn confirmation prompts left out because their text is a search or preference prompt, or repeated."""
    resources: dict[str, float]
    """One trial's Ray resources (the reference task takes the same)."""
    concurrent: int
    """Trials at once."""
    tune_storage: str
    """Where Tune keeps the trials."""
    base_fingerprint: str | None = None
    """The base policy's ``weights_fingerprint``, recorded in ``sweep.json`` when the sweep started: every model
    derived from the trials' weights is checked against it (``alignray.sweep.derive.combine``)."""


def say(message: str) -> None:
    """One line of the job log, marked as the sweep's own."""
    print(f"[alignray] {message}", flush=True)


def hash_of(values: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-able mapping: what a reused stage output was made from."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file and rename, so a crash or a full disk never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(f"could not write {path}: {err}; earlier results are untouched") from err
