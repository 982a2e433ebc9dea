"""Parity with the reference evaluation: sdmetrics' QualityReport and LogisticDetection.

sdmetrics is imported lazily (it pulls in plotly). The single-table ``QualityReport`` is used
because it exists in every sdmetrics version the project supports (0.17-0.3x); 0.32 marks it
deprecated in favour of ``sdmetrics.reports.QualityReport`` but computes the same properties.

The numbers are computed by the vectorised equivalents in :mod:`panelsynth.evaluate.parity`
(tested equal to sdmetrics 0.32 to 1e-12); data outside their scope go to sdmetrics itself, and
``extra["engine"]`` says which one ran.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.evaluate.base import (
    Metric,
    MetricResult,
    frame_records,
    numpy_global_seed,
    single_thread,
)
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.encoding import labels
from panelsynth.evaluate.parity import (
    ASSOCIATION_THRESHOLD,
    CORRELATION_THRESHOLD,
    QualityResult,
    Unsupported,
    logistic_detection,
    quality_report,
)
from panelsynth.evaluate.utility import C2ST_MAX_ROWS

log = logging.getLogger("panelsynth")

#: Rows per side given to the QualityReport (random sample above it; sdmetrics itself subsamples
#: contingency tables at 50,000 rows).
QUALITY_MAX_ROWS = 20_000


def sdmetrics_version() -> str:
    try:
        from importlib.metadata import version

        return version("sdmetrics")
    except Exception:  # pragma: no cover - sdmetrics is a dependency
        return "unknown"


def _quality_report_class() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport
    return QualityReport


class SDMetricsQuality(Metric):
    """sdmetrics QualityReport: Column Shapes, Column Pair Trends and their mean ("overall").

    ``score`` is the report's overall score (sdmetrics averages the two properties ignoring a NaN
    one). ``extra`` has ``column_shapes``, ``column_pair_trends``, the pair counts and, when Column
    Pair Trends is NaN or drops pairs, the reason: sdmetrics >= 0.2x scores a pair only if its real
    association exceeds a threshold (Cramér's V > 0.3, |Pearson r| > 0.5).
    """

    name = "sdmetrics_quality"
    description = "sdmetrics QualityReport overall score (mean of Column Shapes and Pair Trends)"

    def __init__(self, columns: EvalColumns, seed: int = 42) -> None:
        super().__init__(columns)
        self.seed = seed

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        rng = np.random.default_rng(self.seed)
        real, synthetic = _cap(real, rng), _cap(synthetic, rng)
        names = self.columns.names
        try:
            res = quality_report(real[names], synthetic[names], self.columns)
            engine = "panelsynth (vectorised; equal to sdmetrics, tested)"
        except Unsupported:
            res = self._sdmetrics_report(real[names].copy(), synthetic[names].copy())
            engine = "sdmetrics"
        shapes, trends, overall = res.column_shapes, res.column_pair_trends, res.overall
        shape_details, pair_details = res.shape_details, res.pair_details
        extra: dict[str, Any] = {
            "column_shapes": shapes,
            "column_pair_trends": trends,
            "overall": overall,
            "rows_used": {"real": len(real), "synthetic": len(synthetic)},
            "association_threshold": ASSOCIATION_THRESHOLD,
            "correlation_threshold": CORRELATION_THRESHOLD,
            "engine": engine,
            "column_shapes_details": frame_records(shape_details),
        }
        extra.update(_pair_summary(pair_details))
        errors = []
        if math.isnan(shapes):
            errors.append(
                "Column Shapes is NaN: no column could be scored " + _first_errors(shape_details)
            )
        if math.isnan(trends):
            errors.append("Column Pair Trends is NaN: " + extra["pair_nan_reason"])
            if not math.isnan(shapes):
                extra["overall_note"] = (
                    "overall = Column Shapes only (sdmetrics averages the "
                    "properties ignoring a NaN one)"
                )
        return MetricResult(
            self.name, overall, details=pair_details, extra=extra, error="; ".join(errors) or None
        )

    def _sdmetrics_report(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> QualityResult:
        """sdmetrics' own QualityReport (data the vectorised version does not cover)."""
        report = _quality_report_class()()
        with warnings.catch_warnings(), numpy_global_seed(self.seed):
            warnings.simplefilter("ignore")
            report.generate(real, synthetic, self.columns.sdmetrics_metadata(), verbose=False)
        props = report.get_properties().set_index("Property")["Score"]
        return QualityResult(
            float(props.get("Column Shapes", math.nan)),
            float(props.get("Column Pair Trends", math.nan)),
            float(report.get_score()),
            report.get_details(property_name="Column Shapes"),
            report.get_details(property_name="Column Pair Trends"),
        )


def _cap(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    if len(df) <= QUALITY_MAX_ROWS:
        return df
    return df.iloc[np.sort(rng.choice(len(df), QUALITY_MAX_ROWS, replace=False))]


def _first_errors(details: pd.DataFrame) -> str:
    if "Error" not in details.columns:
        return ""
    errs = details["Error"].dropna().astype(str).unique()[:3]
    return "(" + "; ".join(errs) + ")" if len(errs) else ""


def _pair_summary(d: pd.DataFrame) -> dict[str, Any]:
    n = len(d)
    score = d["Score"] if "Score" in d.columns else pd.Series(dtype=float)
    meets = (
        d["Meets Threshold?"].astype("boolean").fillna(False)
        if "Meets Threshold?" in d.columns
        else score.notna()
    )
    errors = d["Error"].notna() if "Error" in d.columns else pd.Series(False, index=d.index)
    n_err = int(errors.sum())
    n_scored = int((meets & score.notna()).sum())
    n_below = int((~meets & ~errors).sum())
    reasons = []
    if n_below:
        reasons.append(
            f"{n_below} of {n} pairs have a real association at or below sdmetrics' threshold "
            f"(Cramér's V <= 0.3 or |r| <= 0.5), so sdmetrics leaves their score NaN and "
            f"leaves them out of the average"
        )
    if n_err:
        reasons.append(
            f"{n_err} pairs failed: " + "; ".join(d.loc[errors, "Error"].astype(str).unique()[:3])
        )
    if n == 0:
        reasons.append("fewer than two columns")
    out: dict[str, Any] = {
        "n_pairs": n,
        "n_pairs_scored": n_scored,
        "n_pairs_nan_below_threshold": n_below,
        "n_pairs_error": n_err,
        "pair_nan_reason": "; ".join(reasons) if reasons else None,
    }
    nan_pairs = d.loc[~meets | score.isna()]
    if len(nan_pairs):
        cols = [
            c
            for c in (
                "Column 1",
                "Column 2",
                "Metric",
                "Real Association",
                "Real Correlation",
                "Error",
            )
            if c in d.columns
        ]
        out["nan_pairs"] = frame_records(nan_pairs[cols])
    return out


class LogisticDetectionC2ST(Metric):
    """sdmetrics LogisticDetection (the reference study's C2ST): 1 - (2·max(AUC, 0.5) - 1).

    Coded columns are passed as text so sdmetrics one-hot encodes them (its HyperTransformer
    chooses the encoding from the pandas dtype, not the sdtype); missing values are a category.
    If the one-hot encoder meets a category only the synthetic data has, the metric is re-run on
    numeric codes and ``encoding`` says so. Rows are capped at :data:`C2ST_MAX_ROWS` per side;
    numpy's global seed is fixed around the call (sdmetrics' 3-fold split is unseeded).
    """

    name = "c2st_logistic"
    description = "sdmetrics LogisticDetection: 1 - (2 max(AUC, 0.5) - 1), 3-fold CV"

    def __init__(self, columns: EvalColumns, seed: int = 42) -> None:
        super().__init__(columns)
        self.seed = seed

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        rng = np.random.default_rng(self.seed)
        real = (
            real
            if len(real) <= C2ST_MAX_ROWS
            else real.iloc[rng.choice(len(real), C2ST_MAX_ROWS, replace=False)]
        )
        synthetic = (
            synthetic
            if len(synthetic) <= C2ST_MAX_ROWS
            else synthetic.iloc[rng.choice(len(synthetic), C2ST_MAX_ROWS, replace=False)]
        )
        names = self.columns.names
        meta = {
            "columns": {
                c.name: {"sdtype": "categorical" if c.discrete else "numerical"}
                for c in self.columns
            }
        }
        text_r, text_s = real[names].copy(), synthetic[names].copy()
        for c in self.columns:
            if c.discrete:
                text_r[c.name] = _text(text_r[c.name])
                text_s[c.name] = _text(text_s[c.name])
        encoding = "one-hot (coded columns as text, NA a category)"
        try:
            score = _detection(text_r, text_s, meta, self.seed)
        except Exception as err:
            log.debug("LogisticDetection on one-hot codes failed: %s", err)
            num_r, num_s = real[names].copy(), synthetic[names].copy()
            for c in self.columns:
                if c.discrete:
                    codes = (
                        pd.concat([num_r[c.name], num_s[c.name]]).astype("category").cat.categories
                    )
                    mapping = {v: i for i, v in enumerate(codes)}
                    num_r[c.name] = num_r[c.name].map(mapping).astype("float64")
                    num_s[c.name] = num_s[c.name].map(mapping).astype("float64")
            score = _detection(num_r, num_s, meta, self.seed)
            encoding = (
                f"numeric codes (one-hot failed: {type(err).__name__}: "
                f"{str(err).splitlines()[0][:160]})"
            )
        return self.result(
            score,
            extra={"encoding": encoding, "rows": {"real": len(real), "synthetic": len(synthetic)}},
        )


def _detection(real: pd.DataFrame, synthetic: pd.DataFrame, meta: dict, seed: int) -> float:
    """LogisticDetection score: the vectorised design matrix, else sdmetrics itself."""
    with warnings.catch_warnings(), numpy_global_seed(seed), single_thread():
        warnings.simplefilter("ignore")
        try:
            return logistic_detection(real, synthetic)
        except Unsupported:
            from sdmetrics.single_table import LogisticDetection

            return float(LogisticDetection.compute(real, synthetic, meta))


def _text(s: pd.Series) -> pd.Series:
    """Codes as text for one-hot encoding ('1' for 1.0); missing stays NaN."""
    return labels(s).astype(object).where(s.notna(), np.nan)
