"""``make sweep``: run jobs/sweep.py as a Ray job on the local head, starting a head first if none runs (and stopping
only that head afterwards). Arguments are passed to jobs/sweep.py (`python jobs/sweep.py --help` lists them); a
--help after them reaches the job, which prints its options. RAY_API_SERVER_ADDRESS names another head than
http://127.0.0.1:8265.

    python jobs/submit_sweep.py --output $PWD/runs/sweep --overwrite
"""

from __future__ import annotations

import sys

from alignray.sweep.submit import submit_sweep

if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        raise SystemExit(0)
    raise SystemExit(submit_sweep(sys.argv[1:]))
