"""How the report writes numbers and trials: ``num`` (4 significant digits, blank for missing), a trial's parameters
("β=0.31 α=0.3", with the learning rate when asked) and its label ("alpha_divergence β=0.31 α=0.3")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["group_name", "label", "num", "params"]


def num(value: Any) -> str:
    """A number as the report prints it: 4 significant digits, small ones in scientific notation, "" for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def params(row: pd.Series, loss: bool = False, lr: bool = False) -> str:
    """A trial's parameters as a short label: "β=0.27", "β=0.31 α=0.3" (and the learning rate, "lr=0.00088", and
    the loss type when asked)."""
    text = f"β={row['beta']:.3g}"
    if row.get("alpha") is not None and not pd.isna(row.get("alpha")):
        text += f" α={row['alpha']:.2g}"
    if lr:
        text += f" lr={row['learning_rate']:.2g}"
    return text + (f" {row['loss_type']}" if loss else "")


def label(row: pd.Series, loss: bool = False, lr: bool = False) -> str:
    """A trial as the report names it: its divergence and parameters."""
    return f"{row['divergence']} {params(row, loss, lr)}"


def group_name(group: tuple[str, ...]) -> str:
    """A group of trials (divergence, and loss type when the sweep had several) as a legend entry."""
    return " / ".join(group)
