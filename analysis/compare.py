"""Two experiments' frontiers on one plot (e.g. two reward models or two pairing strategies) and each search's
hypervolume curve against one reference point: compare.md, compare.html and PNGs in --out.

    python analysis/compare.py runs/best_vs_worst runs/top_vs_bottom --out runs/compare
"""

from __future__ import annotations

import argparse

from alignray.report import write_comparison


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment_a", help="an experiment directory")
    parser.add_argument("experiment_b", help="another experiment directory")
    parser.add_argument("--out", default="runs/compare", help="where the comparison goes (default: runs/compare)")
    parser.add_argument("--names", nargs=2, metavar=("A", "B"), help="labels (default: the directory names)")
    args = parser.parse_args(argv)
    try:
        written = write_comparison(args.experiment_a, args.experiment_b, args.out, tuple(args.names or ()) or None)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    for path in written.values():
        print(path)
    return written


if __name__ == "__main__":
    main()
