"""Deterministic fault-injection points for the kill-timing tests (``tests/reliability``).

Code that must survive a kill at a precise moment calls :func:`reach` with the moment's name.
Nothing happens unless the environment variable ``PANELSYNTH_FAULT_AT`` names that point; then
the process sends itself ``PANELSYNTH_FAULT_SIGNAL`` (``KILL`` by default; ``INT`` behaves like
Ctrl-C, ``TERM`` like a batch scheduler's time limit). Tests set the variables on a subprocess
instead of sleeping and hoping to hit the moment.
"""

from __future__ import annotations

import os
import signal

ENV_POINT = "PANELSYNTH_FAULT_AT"
ENV_SIGNAL = "PANELSYNTH_FAULT_SIGNAL"


def reach(point: str) -> None:
    """Signal this process if ``PANELSYNTH_FAULT_AT`` names ``point`` (comma-separated list)."""
    wanted = os.environ.get(ENV_POINT)
    if not wanted or point not in {p.strip() for p in wanted.split(",")}:
        return
    name = os.environ.get(ENV_SIGNAL, "KILL").upper().removeprefix("SIG")
    os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
