"""What ``prepare`` reports: one :class:`WaveReport` per wave and the :class:`PrepareResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from panelsynth.prepare.truth import TruthCheck
from panelsynth.prepare.vartypes import order_assumed
from panelsynth.workspace import Workspace


@dataclass
class WaveReport:
    """What ``prepare`` did with one wave.

    Attributes:
        wave: Wave id.
        source: Raw file read.
        n_respondents: Rows (respondents) of the wave.
        items: Items clustered on.
        full_vars: Variables of the full mode (its var types, in file order).
        dense_vars: Variables of the dense mode.
        dropped: Variables dropped (all NA) in this wave.
        class_sizes: Respondents per cluster (1..k).
        average_posterior: Mean posterior of their own class, per cluster.
        entropy: Scaled relative entropy of the posteriors (1 = perfectly separated).
        bic: LCA BIC per number of classes.
        n_fit: Respondents the model was fitted on.
        alignment: How cluster 1 was chosen.
        truth: Comparison with the true classes, when the workspace has them.
        demographics: Demographic variables used (configured, or found under another name).
        missing_codes: Rows of ``Prepare/missing_codes.csv`` (values each code set to NA, codes
            kept as answers).
        type_reasons: Why each variable of the full mode has its type.
        var_types: The full mode's var types.
    """

    wave: str
    source: Path
    n_respondents: int
    items: list[str]
    full_vars: list[str]
    dense_vars: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    class_sizes: dict[int, int] = field(default_factory=dict)
    average_posterior: dict[int, float] = field(default_factory=dict)
    entropy: float = float("nan")
    bic: dict[int, float] = field(default_factory=dict)
    bic_n: int = 0
    n_fit: int = 0
    method: str = "lca"
    converged: bool = True
    alignment: str = ""
    n_linked: int = 0
    truth: TruthCheck | None = None
    demographics: list[str] = field(default_factory=list)
    missing_codes: list[dict[str, Any]] = field(default_factory=list)
    type_reasons: dict[str, str] = field(default_factory=dict)
    var_types: dict[str, str] = field(default_factory=dict)

    def class_shares(self, digits: int = 4) -> dict[int, float]:
        """Share of the wave's respondents in each cluster (1..k), rounded."""
        return {c: round(n / self.n_respondents, digits) for c, n in self.class_sizes.items()}


@dataclass
class PrepareResult:
    """Everything :func:`prepare_workspace` produced.

    Attributes:
        workspace: The workspace.
        waves: One report per wave, in study order.
        ranking: The cross-wave item ranking (also in ``Prepare/item_ranking.csv``).
        transitions: Transition counts between consecutive waves.
        written: Files written, relative to the workspace.
        replaced: Files that existed, were not written by ``prepare`` and were backed up.
        warnings: Every warning logged during the run.
    """

    workspace: Workspace
    waves: list[WaveReport]
    ranking: pd.DataFrame
    transitions: pd.DataFrame
    written: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def truth(self) -> list[TruthCheck]:
        return [w.truth for w in self.waves if w.truth is not None]

    def assumed_ordinals(self) -> list[str]:
        """Variables typed ordinal in some wave only because their codes are numbers: neither
        the dictionary's ``type`` column nor the file's measurement level said so (a party or
        region coded 1, 2, 3, ... is then treated as ordered). In first-seen order."""
        seen: dict[str, None] = {}
        for w in self.waves:
            for v in w.full_vars:
                if order_assumed(w.var_types.get(v, ""), w.type_reasons.get(v, "")):
                    seen.setdefault(v)
        return list(seen)
