"""Rewrite ``tests/data/golden/expected`` from the current code.

Run it ONLY when a change of behaviour is intended (new prompt text, a new manifest field, other
rows), never to make ``tests/test_golden_outputs.py`` pass after a refactor that was meant to
change nothing: then the difference it reports is the bug. Say in the commit message that the
golden files were regenerated and why.

    PYTHONPATH=src python tests/data/golden/regenerate.py
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--regenerate"]
    runpy.run_path(
        str(Path(__file__).resolve().parents[2] / "test_golden_outputs.py"), run_name="__main__"
    )
