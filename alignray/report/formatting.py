"""How the report writes numbers and candidates: ``num`` (4 significant digits, blank for missing), a candidate's
parameters ("β=0.31 α=0.3", with the learning rate when asked; "β=0.31 @40" for a point along training at step 40;
"×1.5 of β=0.31" or "soup" for a derived one), its label ("alpha_divergence β=0.31 α=0.3") and its kind in words
(``kind``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from alignray.sweep.derive import DERIVED

__all__ = ["group_name", "kind", "label", "num", "params"]


def num(value: Any) -> str:
    """A number as the report prints it: 4 significant digits, small ones in scientific notation, "" for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def _given(row: pd.Series, key: str) -> bool:
    value = row.get(key)
    return value is not None and not (isinstance(value, float | np.floating) and math.isnan(value))


def _parents(row: pd.Series) -> list[str]:
    parents = row.get("parents")
    return [] if parents is None or isinstance(parents, float) else [str(p) for p in parents]


def _at(candidate: str) -> str:
    """The step a point's id names, as a label's suffix (" @40" for "<tune id>@40"); "" for a trial's id."""
    _, at, step = candidate.rpartition("@")
    return f" @{step}" if at else ""


def _trained(row: pd.Series, lr: bool) -> str:
    """A trained candidate's hyperparameters, the ones it has: "β=0.27 α=0.3 lr=0.00088"."""
    parts = [f"β={row['beta']:.3g}"] if _given(row, "beta") else []
    if _given(row, "alpha"):
        parts.append(f"α={row['alpha']:.2g}")
    if lr and _given(row, "learning_rate"):
        parts.append(f"lr={row['learning_rate']:.2g}")
    return " ".join(parts)


def params(row: pd.Series, loss: bool = False, lr: bool = False) -> str:
    """A candidate's parameters as a short label: "β=0.27", "β=0.31 α=0.3" (and the learning rate, "lr=0.00088", and
    the loss type when asked); a point along training adds its step ("β=0.27 @40"); a derived candidate names its
    recipe instead: "×1.5 of β=0.27 @40" (one parent, weight λ) or "soup" (several)."""
    if row.get("kind") == DERIVED:
        parents = _parents(row)
        if len(parents) == 1:
            weight = row["lambda"] if _given(row, "lambda") else list(row["weights"])[0]
            text = f"×{weight:g} of {_trained(row, lr)}{_at(parents[0])}".rstrip()
        else:
            text = "soup"
    else:
        text = _trained(row, lr) + (f" @{int(row['step'])}" if row.get("kind") == "point" and _given(row, "step")
                                    else "")  # fmt: skip
    return text + (f" {row['loss_type']}" if loss and _given(row, "loss_type") else "")


def label(row: pd.Series, loss: bool = False, lr: bool = False) -> str:
    """A candidate as the report names it: its divergence and parameters; a soup of several divergences by its
    parents ("soup of 6be8eac8@3 + 15f739b2")."""
    if row.get("kind") == DERIVED and len(_parents(row)) != 1:
        divergence = row.get("divergence")
        named = f"{divergence} " if _given(row, "divergence") and divergence != "soup" else ""
        extra = f" {row['loss_type']}" if loss and _given(row, "loss_type") else ""
        return f"{named}soup of {' + '.join(_parents(row))}{extra}"
    return f"{row['divergence']} {params(row, loss, lr)}"


def kind(row: pd.Series) -> str:
    """A candidate's kind in words: "trial", "point at step 40 of trial 6be8eac8", or "derived: " and its recipe."""
    found = row.get("kind", "trial")
    if found == "point":
        step = f" {int(row['step'])}" if _given(row, "step") else ""
        return f"point at step{step} of trial {row['tune_trial']}"
    if found == DERIVED:
        return f"derived: {row['recipe']}" if _given(row, "recipe") else "derived"
    return str(found)


def group_name(group: tuple[str, ...]) -> str:
    """A group of trials (divergence, and loss type when the sweep had several) as a legend entry."""
    return " / ".join(group)
