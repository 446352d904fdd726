"""A trial slot's overhead with a fresh worker process per trial and with workers reused, side by side, one run.

Two searches of the same trials on tiny-imdb: the same points to evaluate, one preference data set, one reference
pass and one base evaluation, no confirmation. The first starts a fresh process per trial (``reuse_workers`` off, the
old behaviour: Python, torch and the libraries load for every trial); the second runs each trial in a worker an
earlier trial left. Overhead: the share of the search stage's trial-slot time (search seconds × trials at once) spent
neither training nor evaluating, the figure ``bench/sweep.py`` prints. Last line:
``RESULT trial_overhead_fraction <overhead with workers reused>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import ray

from alignray.sweep.config import SweepConfig
from alignray.sweep.driver import run_sweep

POINTS = tuple(
    json.dumps({"divergence": divergence, "beta": beta, "learning_rate": lr})
    for divergence, beta, lr in [
        ("reverse_kl", 0.1, 3e-4), ("forward_kl", 0.5, 5e-4), ("js_divergence", 1.0, 4e-4),
        ("reverse_kl", 1.5, 6e-4), ("forward_kl", 0.2, 2.5e-4), ("js_divergence", 0.3, 8e-4),
    ]
)  # fmt: skip


def overhead(out: Path, summary: dict) -> tuple[float, float]:
    """The share of trial-slot time spent neither training nor evaluating, and the seconds per trial it makes."""
    table = pd.read_parquet(out / "results.parquet")
    busy = (table["time/train_s"].fillna(0) + table["time/eval_s"].fillna(0)).sum()
    slots = summary["search_seconds"] * summary["concurrent_trials"]
    return 1 - busy / slots, (slots - busy) / len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=len(POINTS), help=f"trials per search (at most {len(POINTS)})")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        base = SweepConfig(num_trials=args.trials, points_to_evaluate=POINTS[: args.trials], confirmation_prompts=0)
        searches = {"fresh": False, "reused": True}
        found, volumes = {}, {}
        for name, reuse in searches.items():
            config = dataclasses.replace(base, output=str(root / name), reuse_workers=reuse)
            if name != "fresh":  # one preference set, one reference pass, one base evaluation for both
                for shared in ("preferences", "base"):
                    shutil.copytree(root / "fresh" / shared, root / name / shared)
            summary = run_sweep(config)
            found[name], volumes[name] = overhead(root / name, summary), summary["hypervolume"]
    ray.shutdown()  # its workers' last log lines come before the results
    same = "the same" if volumes["fresh"] == volumes["reused"] else "different"
    print(f"hypervolume: fresh {volumes['fresh']:.4f}, reused {volumes['reused']:.4f} ({same} trials' results)")
    for name, (share, seconds) in found.items():
        print(f"workers {name:6s}: {share:.1%} of trial-slot time is neither training nor evaluating "
              f"({seconds:.1f} s a trial)")  # fmt: skip
    print(f"overhead ratio, reused / fresh: {found['reused'][0] / found['fresh'][0]:.2f}")
    print(f"RESULT trial_overhead_fraction {found['reused'][0]:.3f}")


if __name__ == "__main__":
    main()
