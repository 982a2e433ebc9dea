"""The one progress protocol: library code reports what it does as plain event dicts
(``{"event": "step3-call", "wave": "1", ...}``) to an optional callback; the CLI renders them,
the library API forwards them, tests collect them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: A callback that receives one event dict per step (never raises into the run).
Progress = Callable[[dict[str, Any]], None]


def emit(progress: Progress | None, event: dict[str, Any]) -> None:
    """Send ``event`` to ``progress`` if there is one."""
    if progress:
        progress(event)
