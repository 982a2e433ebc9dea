"""Evaluation of synthetic waves (SPEC §3.6).

Parity with the reference study (sdmetrics QualityReport and LogisticDetection, the four model x
wave tables, per-variable PNGs) plus per-cluster, missing-data, detection, diversity, privacy and
utility figures, each next to a real-vs-real reference and two statistical baselines, in a
metrics JSON per (model dir, wave) and one HTML report per workspace.

Heavy libraries (sdmetrics, matplotlib, scikit-learn) are imported only when a metric runs.

The modules, in the order of one evaluation (:mod:`.runner` reads as this sequence):

- :mod:`.discover` — which (model dir, wave) pairs; :mod:`.pair` — one pair read (synthetic CSV
  and manifest next to the real wave, harmonised on :mod:`.columns`), :mod:`.heldout` — a
  ``--holdout`` run's split;
- :mod:`.suite` — the wave's size-matched references (real-vs-real floor, :mod:`.baselines`),
  cached by :mod:`.refcache`; :mod:`.scoring` — every metric of one candidate; :mod:`.protocol`
  — the candidates, caps, protocol text and summary figures;
- metrics by family (catalogue: :mod:`.metrics`; protocol: :mod:`.base`): :mod:`.fidelity`,
  :mod:`.collapse` (missing answers, variance collapse), :mod:`.utility` (C2ST, TSTR),
  :mod:`.privacy` and :mod:`.membership`, sdmetrics' own figures in :mod:`.sdm` (parity:
  :mod:`.parity`), shared codes and distances in :mod:`.encoding`;
- :mod:`.document` — the metrics JSON (its reading in words: :mod:`.reading`); :mod:`.plots`;
  :mod:`.tables` — the model x wave tables; :mod:`.report` — report.html;
- :mod:`.parallel` and :mod:`.worker` — large waves in worker processes; :mod:`.outcome` — what
  an evaluation returns.
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
