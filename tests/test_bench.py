"""The benchmarks' own bookkeeping, on made-up sweeps: how trial-slot time splits (``bench/common.py``) and how the
frontier benchmark picks the rich sweep's candidates at an equal count (``bench/frontier.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from common import slot_time  # noqa: E402
from frontier import chosen_on_search, interval  # noqa: E402

from alignray.sweep.config import SweepConfig  # noqa: E402


def test_slot_time_splits_busy_tail_idle_and_overhead(tmp_path):
    """Two slots for 100 s: three trials, busy 50 + 40 + 30 s; the last two end at 90 and 100 s, so the slot that
    freed at 90 s stood idle 10 s at the end with nothing to start; the rest, 200 - 120 - 10, is overhead."""
    pd.DataFrame({
        "kind": ["trial", "point", "trial", "trial"],
        "time/train_s": [40.0, None, 30.0, 20.0], "time/eval_s": [10.0, 5.0, 10.0, 10.0],
        "time/ended_unix": [1000.0 + 60, None, 1000.0 + 90, 1000.0 + 100],
    }).to_parquet(tmp_path / "results.parquet")  # fmt: skip
    spent = slot_time(tmp_path, {"search_seconds": 100.0, "concurrent_trials": 2})
    assert spent == {"slots": 200.0, "busy": 120.0, "tail": 10.0, "overhead": 70.0, "trials": 3}


def test_the_rich_sweeps_equal_count_is_chosen_on_search_figures_alone():
    """Of the confirmed candidates, the k adding the most search hypervolume, whatever their confirmed figures: the
    confirmation measures the pick, it never makes it."""
    config = SweepConfig(objectives=("reward/mean", "diversity/token_entropy"))
    table = pd.DataFrame({
        "trial": ["a", "b", "c", "d"],
        "confirm": [True, True, True, False],
        "feasible": [True, True, True, True],
        "reward/mean": [1.0, 0.9, 0.2, 5.0],  # d would win, but it was not confirmed
        "diversity/token_entropy": [5.0, 5.0, 6.0, 9.0],  # b adds nothing beside a
        "confirmed/reward/mean": [0.0, 9.0, 0.0, 0.0],  # b's confirmed figure must not buy it a place
    })  # fmt: skip
    picked = chosen_on_search(table, config, (0.0, 4.0), 2)
    assert list(picked["trial"]) == ["a", "c"]
    assert list(chosen_on_search(table, config, (0.0, 4.0), 5)["trial"]) == ["a", "c", "b"]  # at most all three


def test_the_ratios_interval_is_a_t_interval():
    mean, low, high = interval([1.0, 1.2, 1.1])
    assert mean == pytest.approx(1.1) and (low, high) == pytest.approx((1.1 - 0.2484, 1.1 + 0.2484), abs=1e-3)
    assert interval([1.0])[1] != interval([1.0])[1]  # NaN bounds from one value
