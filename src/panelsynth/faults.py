"""Deterministic kill points for the reliability tests.

``fault_point("name")`` does nothing unless the environment variable ``PANELSYNTH_KILL_AT`` is
``name`` or ``name:N``: the process then kills itself with SIGKILL the N-th time (default: the
first) it passes that point — a crash at an exact moment, without timing races.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "PANELSYNTH_KILL_AT"

_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process here if ``PANELSYNTH_KILL_AT`` names this point (and pass)."""
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
