"""Write docs/reliability.md from a run of tests/test_reliability.py: the figures come from the tests, not from memory.

    python docs/reliability_figures.py                 # runs the tests (a few minutes: one two-node Ray sweep)
    python docs/reliability_figures.py -m "not slow"   # any further arguments go to pytest

Each test case counts once under the category its name starts with; the fault sweep records how many trials it
started and how many the results hold (``record_property``), which gives the trials lost.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = [
    ("test_bad_input_", "Bad inputs tried, each refused with the field named, writing nothing (before Ray starts, "
                        "but for what only the cluster can tell)"),
    ("test_fault_extreme_", "Numerics: divergence × loss type × dtype (float32, bfloat16) finite at log-ratios ±1000"),
    ("test_fault_", "Faults injected (crash, killed worker or node, full disk, read-only directory) and survived"),
    ("test_security_", "Security checks (remote code, pickles, token auth, loopback, password, path escape)"),
]


def _category(name: str) -> str:
    return next(label for prefix, label in CATEGORIES if name.startswith(prefix))


def main(extra: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        started = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_reliability.py",
                   f"--junitxml={report}", "-o", "junit_family=xunit1", *extra]  # fmt: skip
        run = subprocess.run(command, cwd=ROOT)
        seconds = time.monotonic() - started
        cases = ET.parse(report).getroot().iter("testcase")
        counts: dict[str, list[int]] = {label: [0, 0] for _, label in CATEGORIES}
        expected = recorded = 0
        for case in cases:
            outcome = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            if "skipped" in outcome:
                continue
            counts[_category(case.get("name", ""))][0 if not outcome else 1] += 1
            for prop in case.iter("property"):
                if prop.get("name") == "trials_expected":
                    expected += int(prop.get("value"))
                elif prop.get("name") == "trials_recorded":
                    recorded += int(prop.get("value"))
    lines = [
        "# Reliability figures",
        "",
        f"Written by `python docs/reliability_figures.py` from a run of `tests/test_reliability.py` "
        f"({time.strftime('%Y-%m-%d')}, {seconds / 60:.1f} min on this machine, pytest exit status {run.returncode}). "
        "Do not edit by hand: run the script again.",
        "",
        "| what | passed | failed |",
        "|---|---:|---:|",
        *(f"| {label} | {passed} | {failed} |" for label, (passed, failed) in counts.items()),
        f"| Trials of the fault sweep lost (started {expected}, in results.parquet {recorded}) | "
        f"{expected - recorded if expected else 'not run'} | |",
        "",
        "The driver killed with SIGKILL and resumed, and a trial whose reward is NaN, are covered by "
        "`tests/test_sweep.py` (`test_resume_after_the_driver_is_killed_adds_no_duplicates`, "
        "`test_nan_trial_is_errored_with_its_reason_and_failed_in_the_study`).",
        "",
    ]
    (ROOT / "docs" / "reliability.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
