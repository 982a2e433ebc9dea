"""Worker process of a parallel evaluation: ``python -m panelsynth.evaluate.worker``.

Arguments: workspace, seed, the (model dir, wave) pairs as JSON, and the file the pickled
outcomes are written to (see ``parallel.run_parallel``).
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

from panelsynth.evaluate.runner import evaluate_group
from panelsynth.io import atomic_write_bytes


def main(argv: list[str]) -> int:
    root, seed, pairs, out = argv
    outcomes = evaluate_group(root, [tuple(p) for p in json.loads(pairs)], int(seed))
    atomic_write_bytes(Path(out), pickle.dumps(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
