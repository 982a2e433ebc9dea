"""Helpers for the worker processes of large workspaces (prepare and evaluate)."""

from __future__ import annotations

import os
from pathlib import Path


def worker_env() -> dict[str, str]:
    """The environment with this package importable (also when it is run from a source tree)."""
    import panelsynth

    env = dict(os.environ)
    src = str(Path(panelsynth.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env
