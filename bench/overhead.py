"""A trial slot's overhead with a fresh worker process per trial and with workers reused, side by side, one run.

Four searches of the same trials on tiny-imdb, in the order fresh, reused, reused, fresh (so that neither mode gains
from going first or last), each in a Ray session of its own: the same points to evaluate, one preference data set,
one reference pass and one base evaluation (made by the first), no confirmation. "fresh" starts a process per trial
(``reuse_workers`` off, the old behaviour: Python, torch and the libraries load for every trial); "reused" runs each
trial in a worker an earlier trial left. Overhead: the share of the search stage's trial-slot time (search seconds ×
trials at once) spent neither training nor evaluating, the figure ``bench/sweep.py`` prints; each mode's is the mean
of its two searches. Last line: ``RESULT trial_overhead_fraction <overhead with workers reused>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import ray
from common import SIX_DIVERGENCES, SIX_TRIALS  # bench/common.py

from alignray.sweep.config import SweepConfig
from alignray.sweep.driver import run_sweep


def overhead(out: Path, summary: dict) -> tuple[float, float]:
    """The share of trial-slot time spent neither training nor evaluating, and the seconds per trial it makes."""
    table = pd.read_parquet(out / "results.parquet")
    table = table[table["kind"] == "trial"]  # a trial's timings are on its final model's row
    busy = (table["time/train_s"].fillna(0) + table["time/eval_s"].fillna(0)).sum()
    slots = summary["search_seconds"] * summary["concurrent_trials"]
    return 1 - busy / slots, (slots - busy) / len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=len(SIX_TRIALS),
                        help=f"trials per search (at most {len(SIX_TRIALS)})")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        base = SweepConfig(num_trials=args.trials, points_to_evaluate=SIX_TRIALS[: args.trials],
                           divergences=SIX_DIVERGENCES,
                           confirmation_prompts=0, derive_lambdas=(), soups=False)  # the trials only: nothing derived
        found: dict[str, list[tuple[float, float]]] = {"fresh": [], "reused": []}
        volumes = set()
        for i, name in enumerate(("fresh", "reused", "reused", "fresh")):
            out = root / f"{i}-{name}"
            if i:  # one preference set, one reference pass, one base evaluation for all
                for shared in ("preferences", "base"):
                    shutil.copytree(root / "0-fresh" / shared, out / shared)
            summary = run_sweep(dataclasses.replace(base, output=str(out), reuse_workers=name == "reused"))
            ray.shutdown()  # the next search starts a Ray session of its own
            found[name].append(overhead(out, summary))
            volumes.add(round(summary["hypervolume"], 12))
    print(f"hypervolume of each search: {sorted(volumes)} (one value: the same trials gave the same results)")
    for name, runs in found.items():
        shares = ", ".join(f"{share:.1%} ({seconds:.1f} s a trial)" for share, seconds in runs)
        print(f"workers {name:6s}: {shares} of trial-slot time neither training nor evaluating")
    fresh, reused = (sum(share for share, _ in found[name]) / 2 for name in ("fresh", "reused"))
    print(f"mean overhead: fresh {fresh:.1%}, reused {reused:.1%}; ratio reused / fresh {reused / fresh:.2f}")
    print(f"RESULT trial_overhead_fraction {reused:.3f}")


if __name__ == "__main__":
    main()
