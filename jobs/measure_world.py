"""Measure a saved world again on the held-out IMDB reviews: the figures its MODEL_CARD.md quotes.

python jobs/measure_world.py --world alignray/assets/tiny-imdb

Prints the reward's accuracy on every held-out review, whole and cut to its first 48 and 24 words (sweeps score
completions of about 35 words), the policy's perplexity, and the reward's verdict on the policy's samples.
"""

from __future__ import annotations

import argparse
import json

from alignray.world_build import measure_world


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True, help="directory with policy/, reward/ and build.json")
    args = parser.parse_args(argv)
    figures = measure_world(args.world)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
