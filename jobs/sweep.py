"""The alignray sweep: which divergence and which β? Answered as a reward–diversity Pareto frontier.

    python jobs/sweep.py                                   # tiny-imdb: 8 trials, each divergence confirmed, 2 cores
    python jobs/sweep.py --preset gpt2-imdb --output runs/gpt2      # the hub models, one GPU per trial
    python jobs/sweep.py --search grid --output runs/grid           # the seeds' hand grid, to compare searches
    python jobs/sweep.py --output runs/sweep --resume               # continue a sweep whose driver was killed
    ray job submit -- python jobs/sweep.py                          # on a running head, from this checkout
    ray job submit --working-dir . -- python jobs/sweep.py --output $PWD/runs/sweep   # an uploaded copy: absolute

The first line printed is where the results land. A job that runs from Ray's copy of its working directory
(``--working-dir``) must be given an absolute --output, or it is refused: the copy is temporary.

Stages: preference data on Ray Data; reference log-probs and the base policy once; Ray Tune + Optuna trials, each
divergence its share (each trains with FDPOTrainer and evaluates in its own resources); the frontier
(results.parquet, pareto.csv, frontier/<trial>/ models, the Optuna study in study.db); the confirmation of each
divergence's answer and the frontier with fresh seeds on held-out prompts; the report (answer.csv, report.md). The job
ends by printing each divergence's answer. Every option is checked before Ray starts.
"""

from __future__ import annotations

import logging
import sys

from alignray.config import given_fields, parse_config
from alignray.sweep.config import SWEEP_PRESETS, SweepConfig


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(SweepConfig, argv, description=__doc__, presets=SWEEP_PRESETS)
    from alignray.sweep.checks import check_output, check_sweep, load_resumed
    from alignray.sweep.driver import SweepRefused, run_sweep
    from alignray.sweep.submit import results_dir
    from alignray.world import WorldError

    try:
        print(f"[alignray] results: {results_dir(config)}", flush=True)
        if config.resume:
            check_output(config)
            config = load_resumed(config, given_fields(SweepConfig, argv, SWEEP_PRESETS))
        check_sweep(config)
    except (ValueError, WorldError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        return run_sweep(config)
    except SweepRefused as err:  # what only the running cluster could tell; nothing was written
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
