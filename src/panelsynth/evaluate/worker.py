"""Worker process of a parallel evaluation: ``python -m panelsynth.evaluate.worker JOBS OUT_DIR``.

Evaluates its share of the wave groups (:func:`panelsynth.evaluate.runner.evaluate_group`) for
the pool of :mod:`panelsynth.workers` (see :mod:`panelsynth.evaluate.parallel`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from panelsynth.evaluate.outcome import PairOutcome
from panelsynth.evaluate.runner import evaluate_group
from panelsynth.workers import serve


def _evaluate(group: list[tuple[str, str]], shared: tuple[str, int]) -> list[PairOutcome]:
    root, seed = shared
    return evaluate_group(root, group, seed)


def main(argv: Sequence[str] | None = None) -> int:
    return serve(sys.argv[1:] if argv is None else argv, _evaluate)


if __name__ == "__main__":
    sys.exit(main())
