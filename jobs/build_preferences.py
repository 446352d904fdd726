"""Build a preference data set on Ray Data: sample completions, score them with the reward, pair them.

    python jobs/build_preferences.py --out runs/prefs --num-prompts 512 --samples-per-prompt 4 --strategy best_vs_worst
    python jobs/build_preferences.py --config prefs.yaml          # any field as YAML; flags override it

Writes <out>/preferences.parquet (prompt, chosen, rejected, chosen_reward, rejected_reward), samples.parquet and
card.json. Every option is checked before Ray or a model starts.
"""

from __future__ import annotations

import json
import logging

from alignray.config import parse_config
from alignray.data.config import PreferenceConfig
from alignray.data.pipeline import check_against_policy


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(PreferenceConfig, argv, description=__doc__)
    try:
        check_against_policy(config)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    from alignray.data.pipeline import build_preferences  # Ray and models only once the input is known good

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _, card = build_preferences(config)
    print(json.dumps({"counts": card["counts"], "rewards": card["rewards"], "seconds": card["seconds"]}, indent=2))
    return card


if __name__ == "__main__":
    main()
