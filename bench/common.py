"""What the benchmarks share: the matmul peak that achieved FLOP/s are measured against, and the six trials the sweep
benchmarks run as points to evaluate (``SIX_TRIALS``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch


def matmul_peak_flops(size: int = 1024, seconds: float = 2.0) -> float:
    """FLOP/s of back-to-back ``size`` x ``size`` float32 matmuls on the CPU for ``seconds`` (after one warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started)


SIX_TRIALS = tuple(
    json.dumps({"divergence": divergence, "beta": beta, "learning_rate": lr})
    for divergence, beta, lr in [
        ("reverse_kl", 0.1, 3e-4), ("forward_kl", 0.5, 5e-4), ("js_divergence", 1.0, 4e-4),
        ("reverse_kl", 1.5, 6e-4), ("forward_kl", 0.2, 2.5e-4), ("js_divergence", 0.3, 8e-4),
    ]
)  # fmt: skip
"""Six trials over three divergences, β and learning rates within tiny-imdb's KL budget, as points to evaluate: the
same trials in every search a benchmark compares."""
SIX_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence")
"""The divergences of ``SIX_TRIALS``: a sweep searches only these, two trials each."""


def slot_time(out: Path, summary: dict) -> dict[str, float]:
    """How a search's trial slots (its search seconds × trials at once) were spent, in seconds: ``busy`` training
    and evaluating (evaluation includes loading the model of each point evaluated along training), ``tail`` idle at
    the end because no trial was left to start (each of the last trials to end leaves its slot idle until the last
    one ends; a slot no trial ever used, when there are fewer trials than slots, is idle throughout), and
    ``overhead``, the rest: starting worker processes, loading libraries, Tune's bookkeeping, copying checkpoints.
    A trial that failed before it reported has no end time and counts as overhead. ``trials``: how many ran."""
    table = pd.read_parquet(out / "results.parquet")
    table = table[table["kind"] == "trial"]  # a trial's timings are on its final model's row
    busy = float((table["time/train_s"].fillna(0) + table["time/eval_s"].fillna(0)).sum())
    slots = summary["search_seconds"] * summary["concurrent_trials"]
    ended = table["time/ended_unix"].dropna().sort_values().to_numpy()
    last = ended[-summary["concurrent_trials"] :]
    tail = float((last[-1] - last).sum()) if len(last) else 0.0
    tail += max(0, summary["concurrent_trials"] - len(table)) * summary["search_seconds"]
    return {"slots": slots, "busy": busy, "tail": tail, "overhead": slots - busy - tail, "trials": len(table)}


def describe_slots(spent: dict[str, float]) -> str:
    """``slot_time`` in one line: each part's share of the slots and the overhead's seconds per trial."""
    share = {k: spent[k] / spent["slots"] for k in ("busy", "tail", "overhead")}
    return (f"busy {share['busy']:.1%} (training and evaluating, model loads included), "
            f"tail idle {share['tail']:.1%}, overhead {share['overhead']:.1%} "
            f"({spent['overhead'] / spent['trials']:.1f} s a trial)")  # fmt: skip
