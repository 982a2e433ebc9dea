"""Worker process of a parallel prepare: ``python -m panelsynth.prepare.worker JOBS OUT_DIR``.

Reads and clusters its share of the raw waves (:func:`panelsynth.prepare.fit.read_and_fit`) for
the pool of :mod:`panelsynth.workers`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from panelsynth.prepare.fit import read_and_fit
from panelsynth.workers import serve


def main(argv: Sequence[str] | None = None) -> int:
    return serve(sys.argv[1:] if argv is None else argv, read_and_fit)


if __name__ == "__main__":
    sys.exit(main())
