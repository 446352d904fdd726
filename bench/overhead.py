"""A trial slot's overhead with a fresh worker process per trial and with workers reused, side by side, one run.

Four searches of the same trials on tiny-imdb, in the order fresh, reused, reused, fresh (so that neither mode gains
from going first or last), each in a Ray session of its own: the same points to evaluate, ``eval_points`` 2 (each
trial's model halfway through training evaluated too, as by default), one preference data set, one reference pass and
one base evaluation (made by the first), no confirmation, nothing derived. "fresh" starts a process per trial
(``reuse_workers`` off: Python, torch and the libraries load for every trial); "reused" runs each trial in a worker
an earlier trial left. The search stage's trial-slot time (search seconds × trials at once) splits into busy
(training and evaluating, loading each evaluated model included), tail idle (slots left empty at the end, when no
trial remains to start) and overhead, the rest (``common.slot_time``, the definition ``bench/sweep.py`` prints too);
each mode's figure is the mean of its two searches. Last line: ``RESULT trial_overhead_fraction <overhead with
workers reused>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

import ray
from common import SIX_DIVERGENCES, SIX_TRIALS, describe_slots, slot_time  # bench/common.py

from alignray.sweep.config import SweepConfig
from alignray.sweep.driver import run_sweep

EVAL_POINTS = 2
"""Models evaluated along each trial's training (the default), set here so the figure does not drift with it."""


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
                           eval_points=EVAL_POINTS, confirmation_prompts=0, derive_lambdas=(),
                           soups=False)  # the trials only: nothing derived  # fmt: skip
        found: dict[str, list[dict[str, float]]] = {"fresh": [], "reused": []}
        volumes = set()
        for i, name in enumerate(("fresh", "reused", "reused", "fresh")):
            out = root / f"{i}-{name}"
            if i:  # one preference set, one reference pass, one base evaluation for all
                for shared in ("preferences", "base"):
                    shutil.copytree(root / "0-fresh" / shared, out / shared)
            summary = run_sweep(dataclasses.replace(base, output=str(out), reuse_workers=name == "reused"))
            ray.shutdown()  # the next search starts a Ray session of its own
            found[name].append(slot_time(out, summary))
            volumes.add(round(summary["hypervolume"], 12))
    print(f"hypervolume of each search: {sorted(volumes)} (one value: the same trials gave the same results)")
    for name, runs in found.items():
        for spent in runs:
            print(f"workers {name:6s}: {spent['slots'] / spent['trials']:.1f} s of slot time a trial; "
                  + describe_slots(spent))  # fmt: skip
    fresh, reused = (sum(s["overhead"] / s["slots"] for s in found[name]) / 2 for name in ("fresh", "reused"))
    print(f"mean overhead: fresh {fresh:.1%}, reused {reused:.1%}; ratio reused / fresh {reused / fresh:.2f}")
    print(f"RESULT trial_overhead_fraction {reused:.3f}")


if __name__ == "__main__":
    main()
