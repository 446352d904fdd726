"""Train a saved world's policy again on schedules of other lengths: how fluent each ends, and what a longer build
would reach.

python jobs/policy_schedules.py --world alignray/assets/tiny-imdb --steps 1125 2250

Each schedule keeps the world's tokenizer, data, shape, learning rate and seed; only the number of steps changes. Its
policy is measured as the build measured the world's (held-out perplexity, non-words in sampled continuations) and
then dropped. The figures go to the world's build.json (``policy_schedules``), and MODEL_CARD.md is rewritten with
them beside the built policy's, and with what a learning curve fitted to them predicts for the longest schedule the
policy's share of the build's time budget fits. A longer schedule is refused: the build's wall clock would cut it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from alignray.world_build import check_schedules, longest_schedule, policy_schedules, write_model_card


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True, help="directory with policy/ and build.json (a built world)")
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="schedule lengths to train, in steps")
    args = parser.parse_args(argv)
    saved = Path(args.world) / "build.json"
    try:
        card = json.loads(saved.read_text())
        longest_schedule(card)
    except FileNotFoundError:
        parser.error(f"--world: {args.world} has no build.json; build the world first (jobs/build_world.py)")
    except (ValueError, KeyError, TypeError) as err:
        parser.error(f"--world: {saved} is not a world's build record ({err!r})")
    try:
        check_schedules(card, args.steps)
    except ValueError as err:
        parser.error(f"--steps: {err}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "python jobs/policy_schedules.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        rows = policy_schedules(args.world, args.steps, command)
    finally:  # the rows measured before a stop reach the card too
        write_model_card(json.loads(saved.read_text()), args.world)
    print(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
