"""Frontier per training budget: a plain sweep (each trial's final model only) against the same sweep with trajectory
points and derived candidates, in ``--repeats`` pairs of sweeps at different seeds, on tiny-imdb.

The two sweeps of a pair train the same trials (the same points to evaluate at the same seed, so the same parameters
and the same training runs: asserted, their trials' rows must be identical), share one preference data set, one
reference pass and one base evaluation, and are confirmed the same way. "plain": ``eval_points`` 1, nothing derived.
"rich": ``eval_points`` 2 (each trial's model halfway too) and derived candidates of the search frontier (λ 0.5 and
1.5 of each model, soups of neighbours).

Only fresh seeds score: a confirmed figure is the mean of ``replicates`` retrained runs on held-out prompts, never
the search's run. A hypervolume can only grow as candidates are added, and the rich sweep confirms more of them, so
noise alone would favour it. The comparison is therefore at an equal count: of the rich sweep's confirmed candidates,
the k the plain sweep confirmed (k its count), chosen on the search's figures alone (greedily, each adding the most
search hypervolume), then measured on their confirmed figures. The unequal ratio (every confirmed candidate) is
printed beside it. Per pair: rich / plain confirmed feasible hypervolume; over pairs: the mean and a 95% t-interval
(undefined ratios, a plain hypervolume of 0 or no confirmation, are left out and counted). Last line:
``RESULT confirmed_hypervolume_ratio <mean ratio at an equal count>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import ray
from common import SIX_DIVERGENCES, SIX_TRIALS  # bench/common.py
from scipy import stats

from alignray.sweep.config import SweepConfig
from alignray.sweep.confirm import CONFIRMED
from alignray.sweep.driver import run_sweep
from alignray.sweep.frontier import CONFIRM
from alignray.sweep.objectives import objective_points, signed
from alignray.sweep.pareto import hypervolume

SWEEPS = {
    "plain": {"eval_points": 1, "derive_lambdas": (), "soups": False},
    "rich": {"eval_points": 2, "derive_lambdas": (0.5, 1.5), "soups": True},
}
"""The two sweeps of a pair, their other settings the defaults."""
SAME = ("divergence", "beta", "learning_rate", "alpha", "status", "reward/mean", "kl/ref", "diversity/token_entropy")
"""The trial columns that must agree between the two sweeps of a pair: the same runs, evaluated the same way."""


def confirmed_volume(table: pd.DataFrame, config: SweepConfig, reference: tuple[float, float]) -> float:
    """The hypervolume of ``table``'s confirmed feasible candidates at their confirmed figures."""
    feasible = table[table[CONFIRMED + "feasible"].astype(bool)]
    objectives = config.objective_pair
    return hypervolume(objective_points(feasible, objectives, CONFIRMED), signed(reference, objectives))


def chosen_on_search(table: pd.DataFrame, config: SweepConfig, reference: tuple[float, float], k: int) -> pd.DataFrame:
    """``k`` of ``table``'s confirmed candidates picked on the search's figures alone: each in turn the one adding the
    most search hypervolume (ties: the best first objective), so no confirmation figure takes part in the choice."""
    objectives = config.objective_pair
    pool = objectives[0].best_first(table[table[CONFIRM].astype(bool)])
    chosen: list[int] = []
    for _ in range(min(k, len(pool))):
        def volume(extra: int) -> float:
            rows = pool.loc[[*chosen, extra]]
            rows = rows[rows["feasible"].astype(bool)]
            return hypervolume(objective_points(rows, objectives), signed(reference, objectives))

        left = [i for i in pool.index if i not in chosen]
        chosen.append(max(left, key=lambda i: (volume(i), -left.index(i))))
    return pool.loc[chosen]


def interval(ratios: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval of ``ratios`` (NaN bounds with fewer than two)."""
    values = np.asarray(ratios, dtype=float)
    mean = float(values.mean()) if len(values) else math.nan
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=len(SIX_TRIALS),
                        help=f"trials per sweep (at most {len(SIX_TRIALS)})")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="pairs of sweeps, at seeds 0, 1, ... (default 3)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    equal, unequal = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.repeats):
            root = Path(scratch) / f"seed-{seed}"
            base = SweepConfig(num_trials=args.trials, points_to_evaluate=SIX_TRIALS[: args.trials],
                               divergences=SIX_DIVERGENCES, seed=seed)  # fmt: skip
            found = {}
            for name, settings in SWEEPS.items():
                out = root / name
                if name != "plain":  # one preference set, one reference pass, one base evaluation for both
                    for shared in ("preferences", "base"):
                        shutil.copytree(root / "plain" / shared, out / shared)
                config = dataclasses.replace(base, output=str(out), **settings)
                summary = run_sweep(config)
                ray.shutdown()  # the next sweep starts a Ray session of its own
                found[name] = (config, summary, pd.read_parquet(out / "results.parquet"))
            trials = [t[t["kind"] == "trial"].sort_values("index")[list(SAME)].reset_index(drop=True)
                      for _, _, t in found.values()]  # fmt: skip
            pd.testing.assert_frame_equal(*trials, check_exact=True)  # the same training runs in both
            (config, summary, plain), (rich_config, rich_summary, rich) = found["plain"], found["rich"]
            if "reference_point" not in summary["confirmation"]:  # e.g. nothing feasible to confirm
                print(f"seed {seed}: plain sweep not confirmed ({summary['confirmation'].get('skipped')}): no ratio")
                equal.append(math.nan)
                unequal.append(math.nan)
                continue
            reference = tuple(summary["confirmation"]["reference_point"])
            k = int(plain[CONFIRM].sum())
            picked = chosen_on_search(rich, rich_config, tuple(rich_summary["reference_point"]), k)
            volumes = {
                "plain": confirmed_volume(plain, config, reference),
                "rich, equal count": confirmed_volume(picked, rich_config, reference),
                "rich, all": confirmed_volume(rich, rich_config, reference),
            }
            for name, ratios in (("rich, equal count", equal), ("rich, all", unequal)):
                ratios.append(volumes[name] / volumes["plain"] if volumes["plain"] > 0 else math.nan)
            print(f"seed {seed}: confirmed candidates plain {k}, rich {int(rich[CONFIRM].sum())} (rich's {k} "
                  f"picked on search figures: {list(picked['trial'])}); confirmed feasible hypervolume against "
                  f"{tuple(round(v, 4) for v in reference)}: "
                  + ", ".join(f"{n} {v:.4f}" for n, v in volumes.items())
                  + f"; rich / plain {equal[-1]:.3f} at an equal count, {unequal[-1]:.3f} with all; "
                  f"sweeps {summary['seconds']:.0f} s and {rich_summary['seconds']:.0f} s")  # fmt: skip
    for name, ratios in (("at an equal count", equal), ("with every confirmed candidate", unequal)):
        defined = [r for r in ratios if math.isfinite(r)]
        mean, low, high = interval(defined)
        print(f"rich / plain confirmed hypervolume {name}: mean {mean:.3f}, 95% t-interval [{low:.3f}, {high:.3f}] "
              f"over {len(defined)} seeds ({len(ratios) - len(defined)} undefined)")  # fmt: skip
    print(f"RESULT confirmed_hypervolume_ratio {interval([r for r in equal if math.isfinite(r)])[0]:.3f}")


if __name__ == "__main__":
    main()
