"""The report of a finished sweep: report.md with its PNGs beside it and a self-contained report.html.

    python analysis/report.py runs/sweep

The sweep writes it at its end; run this to rebuild it (or after a report failure the sweep printed).
"""

from __future__ import annotations

import argparse

from alignray.report import RESAMPLES, write_report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment_dir", help="the sweep's output directory (holds sweep.json, results.parquet)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples per interval")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.experiment_dir, resamples=args.resamples)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    for path in written.values():
        print(path)
    return written


if __name__ == "__main__":
    main()
