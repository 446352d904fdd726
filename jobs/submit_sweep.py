"""``make sweep``: run jobs/sweep.py as a Ray job on the local head, starting a head first if none runs (and stopping
only that head afterwards). Arguments are passed to jobs/sweep.py.

    python jobs/submit_sweep.py --output $PWD/runs/sweep --overwrite
"""

from __future__ import annotations

import sys

from alignray.sweep.submit import submit_sweep

if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        raise SystemExit(0)
    raise SystemExit(submit_sweep(sys.argv[1:]))
