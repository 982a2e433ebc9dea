"""panelsynth: synthetic respondents for panel surveys (cluster-guided, three-stage LLM method).

The library API (the functions the ``panelsynth`` commands call; see :mod:`panelsynth.api`)::

    from panelsynth import build_demo, open_workspace, prepare, run_wave, evaluate, read_metrics
    from panelsynth import run_panel  # a synthetic panel (run --panel)

Names are imported on first use, so ``import panelsynth`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from panelsynth.api import (
        dry_run,
        evaluate,
        metrics_path,
        open_model,
        open_workspace,
        prepare,
        read_metrics,
        run_panel,
        run_wave,
        workspace_config,
    )
    from panelsynth.demo import build_demo
    from panelsynth.errors import PanelsynthError
    from panelsynth.run.plan import RunOptions
    from panelsynth.run.wave import RunResult
    from panelsynth.scaffold import init_workspace
    from panelsynth.workspace import Workspace

#: Public name -> module that defines it.
_EXPORTS: dict[str, str] = {
    "open_workspace": "panelsynth.api",
    "workspace_config": "panelsynth.api",
    "prepare": "panelsynth.api",
    "open_model": "panelsynth.api",
    "run_wave": "panelsynth.api",
    "run_panel": "panelsynth.api",
    "dry_run": "panelsynth.api",
    "evaluate": "panelsynth.api",
    "metrics_path": "panelsynth.api",
    "read_metrics": "panelsynth.api",
    "build_demo": "panelsynth.demo",
    "init_workspace": "panelsynth.scaffold",
    "RunOptions": "panelsynth.run.plan",
    "RunResult": "panelsynth.run.wave",
    "Workspace": "panelsynth.workspace",
    "PanelsynthError": "panelsynth.errors",
}

__all__ = [
    "PanelsynthError",
    "RunOptions",
    "RunResult",
    "Workspace",
    "__version__",
    "build_demo",
    "dry_run",
    "evaluate",
    "init_workspace",
    "metrics_path",
    "open_model",
    "open_workspace",
    "prepare",
    "read_metrics",
    "run_panel",
    "run_wave",
    "workspace_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'panelsynth' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
