"""Evaluation of synthetic waves (SPEC §3.6).

Parity with the reference study (sdmetrics QualityReport and LogisticDetection, the four model x
wave tables, per-variable PNGs) plus per-cluster, missing-data, detection, diversity, privacy and
utility figures, each next to a real-vs-real reference and two statistical baselines, in a
metrics JSON per (model dir, wave) and one HTML report per workspace.

Heavy libraries (sdmetrics, matplotlib, scikit-learn) are imported only when a metric runs.
"""

from __future__ import annotations

from panelsynth.evaluate.columns import EvalColumn, EvalColumns, columns_from_var_types
from panelsynth.evaluate.metrics import (
    AssociationSimilarity,
    ClusterShares,
    ColumnShapes,
    DCRRatio,
    GradientBoostingC2ST,
    Metric,
    MetricResult,
    NAShareSimilarity,
    NewRowShare,
    PairTrends,
    TrainSyntheticTestReal,
    TransitionSimilarity,
    UniqueRowShare,
    safe_compute,
)
from panelsynth.evaluate.outcome import EvaluationSummary, PairOutcome, ProgressCallback
from panelsynth.evaluate.runner import evaluate_workspace
from panelsynth.evaluate.sdm import LogisticDetectionC2ST, SDMetricsQuality

__all__ = [
    "AssociationSimilarity",
    "ClusterShares",
    "ColumnShapes",
    "DCRRatio",
    "EvalColumn",
    "EvalColumns",
    "EvaluationSummary",
    "GradientBoostingC2ST",
    "LogisticDetectionC2ST",
    "Metric",
    "MetricResult",
    "NAShareSimilarity",
    "NewRowShare",
    "PairOutcome",
    "PairTrends",
    "ProgressCallback",
    "SDMetricsQuality",
    "TrainSyntheticTestReal",
    "TransitionSimilarity",
    "UniqueRowShare",
    "columns_from_var_types",
    "evaluate_workspace",
    "safe_compute",
]
