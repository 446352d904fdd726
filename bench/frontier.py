"""Frontier per training budget: a plain sweep (each trial's final model only) against the same sweep with trajectory
points and derived candidates, one run, on tiny-imdb.

Both sweeps train the same trials (the same points to evaluate, so the same parameters and the same training runs:
an equal training budget in the search), share one preference data set, one reference pass and one base evaluation,
and are confirmed the same way (a new seed per frontier candidate's run, 128 held-out prompts). "plain":
``eval_points`` 1, no derived candidates. "rich": the defaults, ``eval_points`` 3 (each trial's models at a third
and two thirds of its steps too) and derived candidates of the search frontier (λ 0.5 and 1.5 of each model,
soups of neighbours). Compared: the confirmed feasible hypervolume (means over seeds on the held-out prompts,
against the base policy on them), and what each spent: training seconds in the search and in the confirmation,
evaluations. Last line: ``RESULT confirmed_hypervolume_ratio <rich / plain>``; the issue's goal is >= 1.5.
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


def spent(out: Path) -> dict[str, float]:
    """Training seconds of the search and of the confirmation, and evaluations run, from what the sweep saved."""
    table = pd.read_parquet(out / "results.parquet")
    seeds = pd.read_parquet(out / "confirmation.parquet") if (out / "confirmation.parquet").is_file() else None
    confirmation = 0.0 if seeds is None else seeds.drop_duplicates(["seed", "time/train_s"])["time/train_s"].sum()
    return {
        "search_train_s": float(table["time/train_s"].fillna(0).sum()),
        "confirm_train_s": float(confirmation),
        "evaluations": int((table["status"] == "ok").sum() + (0 if seeds is None else len(seeds))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=len(SIX_TRIALS),
                        help=f"trials per sweep (at most {len(SIX_TRIALS)})")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    sweeps = {
        "plain": {"eval_points": 1, "derive_lambdas": (), "soups": False},
        "rich": {},  # the defaults: trajectories and derived candidates
    }
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        base = SweepConfig(num_trials=args.trials, points_to_evaluate=SIX_TRIALS[: args.trials],
                           divergences=SIX_DIVERGENCES)
        found = {}
        for i, (name, settings) in enumerate(sweeps.items()):
            out = root / name
            if i:  # one preference set, one reference pass, one base evaluation for both
                for shared in ("preferences", "base"):
                    shutil.copytree(root / "plain" / shared, out / shared)
            summary = run_sweep(dataclasses.replace(base, output=str(out), **settings))
            ray.shutdown()  # the next sweep starts a Ray session of its own
            found[name] = (summary, spent(out))
    volumes = {}
    for name, (summary, cost) in found.items():
        confirmation = summary["confirmation"]
        volumes[name] = confirmation.get("hypervolume", 0.0)
        searched = summary.get("search_frontier", summary["frontier"])
        print(f"{name:5s}: candidates {summary['candidates']}, search frontier {len(searched)}, "
              f"confirmed frontier {summary['frontier']}")  # fmt: skip
        print(f"       confirmed feasible hypervolume {volumes[name]:.4f} against "
              f"{tuple(round(v, 4) for v in confirmation.get('reference_point', ()))}; search hypervolume "
              f"{summary['hypervolume']:.4f}; training {cost['search_train_s']:.0f} s in the search, "
              f"{cost['confirm_train_s']:.0f} s in the confirmation; {cost['evaluations']} evaluations; "
              f"sweep {summary['seconds']:.0f} s")  # fmt: skip
    ratio = volumes["rich"] / volumes["plain"] if volumes["plain"] > 0 else float("inf")
    print(f"confirmed hypervolume, rich / plain at the same search training: {ratio:.2f}")
    print(f"RESULT confirmed_hypervolume_ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
