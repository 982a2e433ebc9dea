"""Diversity and privacy metrics: duplicate rows, rows copied from a reference, and the
distance to the closest real record (membership inference: :mod:`.membership`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from panelsynth.evaluate.base import Metric, MetricResult
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.encoding import nearest_gower, row_keys

#: Candidate rows whose distance to closest record is computed (random sample above it).
DCR_MAX_ROWS = 2_000


class UniqueRowShare(Metric):
    """Diversity: 1 - share of rows that duplicate an earlier row (on the wave's variables)."""

    name = "unique_row_share"
    description = "1 - share of duplicate rows (on the wave's variables)"

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        keys = row_keys(synthetic, self.columns.variables)
        if len(keys) == 0:
            return self.nan("no rows")
        dup = float(pd.Series(keys).duplicated().mean())
        return self.result(
            1.0 - dup,
            extra={
                "duplicate_share": dup,
                "rows": int(len(keys)),
                "distinct_rows": int(len(np.unique(keys))),
            },
        )


class NewRowShare(Metric):
    """Privacy: 1 - share of synthetic rows identical (on every variable, NA = NA) to a row of
    ``real`` — the real wave, a real half, or the few-shot examples."""

    name = "new_row_share"
    description = "1 - share of rows identical to a reference row"

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        names = [v for v in self.columns.variables if v in real.columns and v in synthetic.columns]
        if not names:
            return self.nan("no common variables with the reference rows")
        if len(synthetic) == 0:
            return self.nan("no synthetic rows")
        if len(real) == 0:
            return self.nan("no reference rows")
        ks, kr = row_keys(synthetic, names), row_keys(real, names)
        copy = float(np.isin(ks, kr).mean())
        return self.result(
            1.0 - copy,
            extra={"copy_share": copy, "compared_on": names, "reference_rows": int(len(real))},
        )


class DCRRatio(Metric):
    """Privacy: mean distance to closest record (Gower) of the candidate rows, relative to that of
    a real holdout half — ``min(1, mean DCR(candidate -> real) / mean DCR(holdout -> real))``.

    1 means synthetic rows sit no closer to the real records than unseen real respondents do;
    values near 0 mean they hug (or copy) real records. Candidate rows are sampled to
    :data:`DCR_MAX_ROWS`; every reference row is searched (:func:`nearest_gower`).
    """

    name = "dcr_ratio"
    description = "mean DCR(candidate->real) / mean DCR(real holdout->real), capped at 1"

    def __init__(
        self, columns: EvalColumns, holdout_dcr: dict[str, Any] | None = None, seed: int = 42
    ) -> None:
        super().__init__(columns.subset(columns.variables))
        self.holdout_dcr = holdout_dcr
        self.seed = seed

    def distances(self, real: pd.DataFrame, candidate: pd.DataFrame) -> dict[str, Any]:
        """DCR summary of ``candidate`` rows against every ``real`` row."""
        rng = np.random.default_rng(self.seed)
        cand = (
            candidate
            if len(candidate) <= DCR_MAX_ROWS
            else candidate.iloc[rng.choice(len(candidate), DCR_MAX_ROWS, replace=False)]
        )
        d = nearest_gower(self.columns, cand, real)
        return {
            "mean": float(d.mean()),
            "median": float(np.median(d)),
            "p05": float(np.quantile(d, 0.05)),
            "zero_share": float((d <= 1e-12).mean()),
            "rows": int(len(cand)),
            "reference_rows": int(len(real)),
        }

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        if not self.columns.columns:
            return self.nan("no variables")
        if len(real) == 0 or len(synthetic) == 0:
            return self.nan("no rows")
        mine = self.distances(real, synthetic)
        extra: dict[str, Any] = {"dcr": mine}
        if self.holdout_dcr is None:
            return self.nan("no real-holdout DCR to compare with", extra=extra)
        extra["holdout_dcr"] = self.holdout_dcr
        ref = self.holdout_dcr["mean"]
        if ref <= 0:
            return self.nan(
                "every holdout row has an exact twin among the real rows (mean holdout "
                "DCR is 0), so the ratio is undefined; compare the zero-distance shares",
                extra=extra,
            )
        return self.result(mine["mean"] / ref, extra=extra)
