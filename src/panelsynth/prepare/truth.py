"""The demo's check: computed cluster labels against the simulator's true classes.

A workspace built by ``panelsynth demo`` has ``Ground truth/truth_wave{W}.csv``; ``prepare``
compares its labels with the true classes and the Bayes-optimal assignment
(``Prepare/truth_check.csv``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.data import read_csv_any
from panelsynth.prepare.clustering import adjusted_rand_index
from panelsynth.prepare.raw import id_keys
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")


@dataclass
class TruthCheck:
    """Computed labels against the simulator's truth (demo workspaces).

    Attributes:
        wave: Wave id.
        n: Respondents compared.
        ari: Adjusted Rand index of the computed labels with the true classes.
        ari_bayes: The same for the Bayes-optimal assignment.
        accuracy: Share of respondents whose computed label equals their true class.
        accuracy_bayes: The same for the Bayes-optimal assignment.
    """

    wave: str
    n: int
    ari: float
    ari_bayes: float
    accuracy: float
    accuracy_bayes: float

    @property
    def ari_ratio(self) -> float:
        return self.ari / self.ari_bayes if self.ari_bayes > 0 else float("nan")

    @property
    def accuracy_ratio(self) -> float:
        return self.accuracy / self.accuracy_bayes if self.accuracy_bayes > 0 else float("nan")

    @property
    def passed(self) -> bool:
        """The issue's criterion: both ratios at least 0.8."""
        return self.ari >= 0.8 * self.ari_bayes and self.accuracy >= 0.8 * self.accuracy_bayes

    def as_row(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "n": self.n,
            "ari": round(self.ari, 4),
            "ari_bayes": round(self.ari_bayes, 4),
            "ari_ratio": round(self.ari_ratio, 4),
            "accuracy": round(self.accuracy, 4),
            "accuracy_bayes": round(self.accuracy_bayes, 4),
            "accuracy_ratio": round(self.accuracy_ratio, 4),
            "passed": self.passed,
        }


def truth_check(
    ws: Workspace, wave: str, ids: pd.Series, labels: np.ndarray, id_column: str
) -> TruthCheck | None:
    """Compare computed labels with ``Ground truth/truth_wave{W}.csv`` when it exists."""
    path = ws.ground_truth_dir() / f"truth_wave{wave}.csv"
    if not path.exists():
        return None
    truth = read_csv_any(path)
    key = id_column if id_column in truth.columns else "respondent_id"
    if key not in truth.columns or "true_class" not in truth.columns:
        log.warning("%s lacks %r or 'true_class' — no truth check", ws.rel(path), key)
        return None
    if "bayes_class" in truth.columns:
        bayes = truth["bayes_class"]
    elif "posterior_class1" in truth.columns:
        bayes = pd.Series(np.where(truth["posterior_class1"] >= 0.5, 1, 2), index=truth.index)
    else:
        bayes = None
    t = pd.DataFrame({"key": id_keys(truth[key]), "true": truth["true_class"]})
    t["bayes"] = bayes if bayes is not None else np.nan
    mine = pd.DataFrame({"key": id_keys(ids), "label": labels})
    m = mine.merge(t, on="key", how="inner").dropna(subset=["true"])
    if m.empty:
        return None
    true = m["true"].astype(int).to_numpy()
    lab = m["label"].astype(int).to_numpy()
    has_bayes = m["bayes"].notna().all() and bayes is not None
    b = m["bayes"].astype(int).to_numpy() if has_bayes else true
    return TruthCheck(
        wave=wave,
        n=len(m),
        ari=float(adjusted_rand_index(true, lab)),
        ari_bayes=float(adjusted_rand_index(true, b)),
        accuracy=float(np.mean(lab == true)),
        accuracy_bayes=float(np.mean(b == true)),
    )
