"""Train one f-DPO policy from a preference parquet file (prompt, chosen, rejected).

    python jobs/train.py --data prefs.parquet --divergence alpha_divergence --alpha 0.3 --beta 0.1 --out runs/a03
    python jobs/train.py --config trial.yaml --workers 2       # data-parallel on Ray Train

Every option is checked (max_length against the policy's context too) before a model loads; the run writes
<out>/model (safetensors) and <out>/metrics.json.
"""

from __future__ import annotations

import json
import logging

from alignray.config import parse_config
from alignray.train import check_against_policy
from alignray.train_config import TrainConfig


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(TrainConfig, argv, description=__doc__)
    try:
        check_against_policy(config)
        config.validate_data()
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    from alignray.train import train  # heavy imports only once the input is known to be good

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = train(config)
    print(json.dumps({k: result[k] for k in ("pairs", "seconds", "pairs_per_second")} | result["metrics"], indent=2))
    return result


if __name__ == "__main__":
    main()
