"""Worker process of a parallel prepare: ``python -m panelsynth.prepare_worker JOBS OUT_DIR``.

See :func:`panelsynth.prepare.fit_worker_main`.
"""

from __future__ import annotations

import sys

from panelsynth.prepare import fit_worker_main

if __name__ == "__main__":
    sys.exit(fit_worker_main(sys.argv[1:]))
