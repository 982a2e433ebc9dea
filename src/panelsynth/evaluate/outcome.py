"""What an evaluation returns: one :class:`PairOutcome` per (model dir, wave) and the
:class:`EvaluationSummary` of the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from panelsynth.evaluate.panel_eval import PanelOutcome

ProgressCallback = Callable[[str, int, int], None]
"""``progress(description, completed, total)`` — called before and after each (model dir, wave)."""


@dataclass
class PairOutcome:
    """Result of one (model dir, wave)."""

    model_dir: str
    wave: str
    metrics_json: Path | None = None
    plot: Path | None = None
    summary: dict[str, dict[str, float | None]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    #: What the synthetic figures are read against (``--holdout`` runs: held-out respondents).
    floor_label: str = "real half"


@dataclass
class EvaluationSummary:
    """What :func:`evaluate_workspace` produced."""

    workspace: Path
    outcomes: list[PairOutcome]
    tables: dict[str, Path]
    report: Path | None
    seconds: float
    #: The panel figures of model dirs whose synthetic waves are linked by ids (issue 19).
    panels: list[PanelOutcome] = field(default_factory=list)

    @property
    def failures(self) -> list[PairOutcome]:
        return [o for o in self.outcomes if o.error]

    @property
    def evaluated(self) -> list[tuple[str, str]]:
        return [(o.model_dir, o.wave) for o in self.outcomes if not o.error]

    def scores(self) -> pd.DataFrame:
        """Long table: model_dir, wave, metric, candidate, value."""
        rows = []
        for o in self.outcomes:
            for metric, per in o.summary.items():
                for cand, v in per.items():
                    rows.append(
                        {
                            "model_dir": o.model_dir,
                            "wave": o.wave,
                            "metric": metric,
                            "candidate": cand,
                            "value": v,
                        }
                    )
        return pd.DataFrame(rows, columns=["model_dir", "wave", "metric", "candidate", "value"])
