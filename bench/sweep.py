"""Searches on equal budgets on tiny-imdb: Optuna (TPE), random search and the seeds' hand grid, one run.

All three share one preference data set, one reference pass and one base evaluation (so one hypervolume reference
point), and run the grid's 16 trials each, with no confirmation and no derived candidates (the search is what is
compared; bench/frontier.py measures what those add), each trial evaluated at 2 points of its training
(``eval_points`` 2, the default, set here explicitly). The hypervolume after each trial counts that trial's final
model, the point Optuna is told. Printed: the hypervolume after each trial per search; how many Optuna trials reach
the grid's final hypervolume; the trial-slot time split as ``bench/overhead.py`` splits it (``common.slot_time``:
busy, tail idle, overhead); and training pairs/s with the shared reference log-probs vs a reference forward at
every step. Last line: ``RESULT optuna_trials_to_grid_hypervolume_fraction <fraction>``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import describe_slots, slot_time  # bench/common.py

from alignray.sweep.config import SweepConfig
from alignray.sweep.driver import run_sweep
from alignray.sweep.objectives import objective_points, signed
from alignray.sweep.pareto import hypervolume_curve
from alignray.train import build_trainer, load_preferences
from alignray.train_config import TrainConfig


def curve(out: Path, config: SweepConfig, reference: tuple[float, float]) -> list[float]:
    table = pd.read_parquet(out / "results.parquet")
    table = table[table["kind"] == "trial"]  # the final model of each trial, in the order trials ran
    objectives = config.objective_pair
    points = objective_points(table, objectives)
    points[(table["status"] != "ok").to_numpy()] = np.nan
    return hypervolume_curve(points, signed(reference, objectives))


def pairs_per_second(data: Path, shared: bool, scratch: str) -> float:
    """One epoch of reverse-KL training, with the data's reference columns or a reference forward per step."""
    config = TrainConfig(data=str(data), max_length=96, precompute_ref=shared)
    frame = load_preferences(data)
    if not shared:
        frame = frame.select_columns(["prompt", "chosen", "rejected"])
    started = time.perf_counter()
    trainer = build_trainer(config, frame, scratch, disable_tqdm=True)
    trainer.train()
    return len(frame) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16, help="trials per search (default: the grid's 16)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        plain = {"confirmation_prompts": 0, "derive_lambdas": (), "soups": False, "eval_points": 2}
        searches = {
            "grid": SweepConfig(output=str(root / "grid"), search="grid", **plain),
            "optuna": SweepConfig(output=str(root / "optuna"), num_trials=args.trials, **plain),
            "random": SweepConfig(output=str(root / "random"), num_trials=args.trials, sampler="random", **plain),
        }
        summaries, curves = {}, {}
        for name, config in searches.items():
            if name != "grid":  # one preference set, one reference pass, one base evaluation for all
                for shared in ("preferences", "base"):
                    shutil.copytree(root / "grid" / shared, Path(config.output) / shared)
            summaries[name] = run_sweep(config)
        reference = tuple(summaries["grid"]["reference_point"])
        for name, config in searches.items():
            curves[name] = curve(Path(config.output), config, reference)
        data = root / "grid" / "preferences" / "with_reference.parquet"
        forward = pairs_per_second(data, False, str(root / "t1"))
        shared = pairs_per_second(data, True, str(root / "t2"))
        spent = {name: slot_time(Path(config.output), summaries[name]) for name, config in searches.items()}

    target = curves["grid"][-1]
    reached = next((k + 1 for k, v in enumerate(curves["optuna"]) if v >= target), None)
    for name, values in curves.items():
        print(f"hypervolume after each trial, {name:6s}: " + " ".join(f"{v:.3f}" for v in values))
    print(f"reference point {tuple(round(v, 3) for v in reference)}; grid final hypervolume {target:.4f}")
    budget = len(curves["grid"])
    print(f"Optuna reaches it after {reached} of {budget} trials" if reached else "Optuna never reaches it")
    for name in searches:
        print(f"trial slots, {name:6s}: {spent[name]['slots'] / spent[name]['trials']:.1f} s a trial; "
              + describe_slots(spent[name]))  # fmt: skip
    ratio = shared / forward
    print(f"pairs/s: shared reference {shared:.1f}, reference forward per step {forward:.1f} ({ratio:.2f}x)")
    fraction = reached / budget if reached else float("inf")
    print(f"RESULT optuna_trials_to_grid_hypervolume_fraction {fraction:.3f}")


if __name__ == "__main__":
    main()
