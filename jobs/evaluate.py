"""Evaluate a policy: sample on held-out evaluation prompts through the Ray Data stages, score, print the metrics.

python jobs/evaluate.py --policy runs/a03/model            # against the tiny-imdb SFT policy as reference
"""

from __future__ import annotations

import json

from alignray.config import parse_config
from alignray.eval_config import EvalConfig
from alignray.metrics import check_against_policy


def main(argv: list[str] | None = None) -> dict[str, float]:
    config = parse_config(EvalConfig, argv, description=__doc__)
    try:
        check_against_policy(config)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    from alignray.metrics import evaluate_config  # Ray and models only once the input is known good

    metrics = evaluate_config(config)
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=2))
    return metrics


if __name__ == "__main__":
    main()
