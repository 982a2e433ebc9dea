"""Score one candidate data set (LLM output, real half, baseline) with every metric: its
:class:`Scorecard`, per-cluster figures, and the flat summary figures read from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.evaluate.base import MetricResult, safe_compute
from panelsynth.evaluate.collapse import NAShareSimilarity, VarianceCollapse
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.fidelity import (
    AssociationSimilarity,
    ClusterShares,
    ColumnShapes,
    PairTrends,
    TransitionSimilarity,
    pair_statistics,
)
from panelsynth.evaluate.privacy import DCRRatio, NewRowShare, UniqueRowShare
from panelsynth.evaluate.protocol import SYNTHETIC
from panelsynth.evaluate.sdm import LogisticDetectionC2ST, SDMetricsQuality
from panelsynth.evaluate.utility import GradientBoostingC2ST, TrainSyntheticTestReal
from panelsynth.values import label_text


@dataclass
class Scorecard:
    """Every metric of one candidate."""

    name: str
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    per_cluster: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: int = 0

    def score(self, key: str) -> float:
        m = self.metrics.get(key)
        return m.score if m is not None else math.nan


def membership_result(fig: dict[str, Any]) -> MetricResult:
    """A membership-inference figure as a metric result (score: the AUC; NaN with the reason)."""
    auc = fig.get("auc", math.nan)
    return MetricResult(
        "membership_inference",
        float(auc) if auc is not None else math.nan,
        extra={k: v for k, v in fig.items() if k != "error"},
        error=fig.get("error"),
    )


def score_candidate(
    name: str,
    candidate: pd.DataFrame,
    columns: EvalColumns,
    *,
    fidelity_real: pd.DataFrame,
    copy_ref: pd.DataFrame,
    dcr_ref: pd.DataFrame,
    utility_test: pd.DataFrame,
    holdout_dcr: dict[str, Any] | None,
    target: str | None,
    seed: int,
    copy_ref_half: pd.DataFrame | None = None,
    examples: pd.DataFrame | None = None,
    light: bool = False,
) -> Scorecard:
    """Run every metric on one candidate (see the module docstring for the roles of the frames).

    ``light``: the floor's repeats — a few cheap figures only (panelsynth's Column Shapes, the
    gradient-boosting C2ST, cluster shares and transitions, NA shares), so that evaluating at
    scale stays fast; no sdmetrics report, pair statistics, logistic C2ST, TSTR, copies or
    distances.
    """
    card = Scorecard(name, rows=len(candidate))
    m = card.metrics
    if light:
        return _light_scores(card, candidate, columns, fidelity_real, seed)
    m["sdmetrics_quality"] = safe_compute(SDMetricsQuality(columns, seed), fidelity_real, candidate)
    m["c2st_logistic"] = safe_compute(
        LogisticDetectionC2ST(columns, seed), fidelity_real, candidate
    )
    m["c2st_gradient_boosting"] = safe_compute(
        GradientBoostingC2ST(columns, seed), fidelity_real, candidate
    )
    m["column_shapes"] = safe_compute(ColumnShapes(columns), fidelity_real, candidate)
    pairs = _pair_statistics_or_none(columns, fidelity_real, candidate)
    m["pair_trends_unthresholded"] = safe_compute(
        PairTrends(columns, pairs), fidelity_real, candidate
    )
    m["association_similarity"] = safe_compute(
        AssociationSimilarity(columns, pairs), fidelity_real, candidate
    )
    m["cluster_shares"] = safe_compute(ClusterShares(columns), fidelity_real, candidate)
    m["transition_similarity"] = safe_compute(
        TransitionSimilarity(columns), fidelity_real, candidate
    )
    m["na_share_similarity"] = safe_compute(NAShareSimilarity(columns), fidelity_real, candidate)
    m["variance_collapse"] = safe_compute(VarianceCollapse(columns), fidelity_real, candidate)
    m["unique_row_share"] = safe_compute(UniqueRowShare(columns), fidelity_real, candidate)
    m["new_row_share"] = safe_compute(NewRowShare(columns), copy_ref, candidate)
    if copy_ref_half is not None:
        r = safe_compute(NewRowShare(columns), copy_ref_half, candidate)
        r.name = "new_row_share_half"
        m["new_row_share_half"] = r
    if examples is not None:
        r = safe_compute(NewRowShare(columns), examples, candidate)
        r.name = "example_new_row_share"
        m["example_new_row_share"] = r
    m["dcr_ratio"] = safe_compute(DCRRatio(columns, holdout_dcr, seed), dcr_ref, candidate)
    if target is not None:
        m["tstr_auc"] = safe_compute(
            TrainSyntheticTestReal(columns, target, seed), utility_test, candidate
        )
    card.per_cluster = per_cluster_scores(fidelity_real, candidate, columns)
    return card


def _light_scores(
    card: Scorecard, candidate: pd.DataFrame, columns: EvalColumns, real: pd.DataFrame, seed: int
) -> Scorecard:
    m = card.metrics
    m["column_shapes"] = safe_compute(ColumnShapes(columns), real, candidate)
    m["c2st_gradient_boosting"] = safe_compute(GradientBoostingC2ST(columns, seed), real, candidate)
    m["cluster_shares"] = safe_compute(ClusterShares(columns), real, candidate)
    m["transition_similarity"] = safe_compute(TransitionSimilarity(columns), real, candidate)
    m["na_share_similarity"] = safe_compute(NAShareSimilarity(columns), real, candidate)
    return card


def _pair_statistics_or_none(
    columns: EvalColumns, real: pd.DataFrame, candidate: pd.DataFrame
) -> pd.DataFrame | None:
    """Pair statistics shared by two metrics (None: each metric then reports its own error)."""
    try:
        return pair_statistics(columns, real, candidate)
    except Exception:  # noqa: BLE001 - safe_compute records the reason
        return None


def per_cluster_scores(
    real: pd.DataFrame, candidate: pd.DataFrame, columns: EvalColumns
) -> dict[str, dict[str, Any]]:
    """Column Shapes and unthresholded Pair Trends within each cluster."""
    c = columns.cluster
    if c is None:
        return {}
    inner = columns.without([c])
    out: dict[str, dict[str, Any]] = {}
    labels = sorted(set(real[c].dropna()) | set(candidate[c].dropna()), key=str)
    for lab in labels:
        r, s = real[real[c] == lab], candidate[candidate[c] == lab]
        key = label_text(lab)
        entry: dict[str, Any] = {"rows_real": int(len(r)), "rows_candidate": int(len(s))}
        if len(r) == 0 or len(s) == 0:
            why = f"cluster {key} has no {'real' if len(r) == 0 else 'candidate'} rows"
            entry["column_shapes"] = MetricResult("column_shapes", math.nan, error=why)
            entry["pair_trends_unthresholded"] = MetricResult(
                "pair_trends_unthresholded", math.nan, error=why
            )
        else:
            entry["column_shapes"] = safe_compute(ColumnShapes(inner), r, s)
            entry["pair_trends_unthresholded"] = safe_compute(PairTrends(inner), r, s)
        out[key] = entry
    return out


def duplicate_share_sample(
    real: pd.DataFrame, columns: EvalColumns, size: int, rng: np.random.Generator
) -> float:
    """Duplicate share of a random real sample of ``size`` rows (size-matched diversity floor)."""
    size = min(size, len(real))
    if size == 0:
        return math.nan
    sample = real.iloc[rng.choice(len(real), size, replace=False)]
    r = UniqueRowShare(columns).compute(sample, sample)
    return float(r.extra.get("duplicate_share", math.nan))


def summary_values(card: Scorecard) -> dict[str, tuple[float, str | None]]:
    """Flat ``key -> (value, reason-if-NaN)`` of a scorecard."""
    m = card.metrics

    def res(key: str) -> MetricResult | None:
        return m.get(key)

    def val(key: str, extra: str | None = None, transform=None) -> tuple[float, str | None]:
        r = res(key)
        if r is None:
            return math.nan, "not computed for this candidate"
        v = r.score if extra is None else r.extra.get(extra, math.nan)
        if isinstance(v, dict):
            v = math.nan
        v = math.nan if v is None else float(v)
        if transform is not None and not math.isnan(v):
            v = transform(v)
        reason = None
        if math.isnan(v):
            reason = r.error or r.extra.get("pair_nan_reason") or "not computed"
        return v, reason

    q = res("sdmetrics_quality")
    out: dict[str, tuple[float, str | None]] = {}
    out["density_shape"] = val("sdmetrics_quality", "column_shapes")
    trend = val("sdmetrics_quality", "column_pair_trends")
    if math.isnan(trend[0]) and q is not None and q.extra.get("pair_nan_reason"):
        trend = (trend[0], "sdmetrics Column Pair Trends is NaN: " + q.extra["pair_nan_reason"])
    out["density_trend"] = trend
    out["density_overall"] = val("sdmetrics_quality", "overall")
    out["density_trend_unthresholded"] = val("pair_trends_unthresholded")
    out["association_similarity"] = val("association_similarity")
    out["c2st"] = val("c2st_logistic")
    out["c2st_gb"] = val("c2st_gradient_boosting")
    out["cluster_shares"] = val("cluster_shares")
    out["transition_similarity"] = val("transition_similarity")
    out["na_share_similarity"] = val("na_share_similarity")
    out["na_mean_abs_diff"] = val("na_share_similarity", "mean_abs_diff")
    out["duplicate_share"] = val("unique_row_share", "duplicate_share")
    if card.name == SYNTHETIC:
        out["exact_copy_share"] = val("new_row_share", "copy_share")
        out["exact_copy_share_half"] = val("new_row_share_half", "copy_share")
    else:
        out["exact_copy_share"] = (
            math.nan,
            "references are compared with a real half, not the "
            "full wave: see exact_copy_share_half",
        )
        out["exact_copy_share_half"] = val("new_row_share", "copy_share")
    out["example_copy_share"] = (
        val("example_new_row_share", "copy_share")
        if "example_new_row_share" in m
        else (
            math.nan,
            "not applicable: only LLM output is built from few-shot examples"
            if card.name != SYNTHETIC
            else "no few-shot examples file for this model dir and wave",
        )
    )
    dcr = res("dcr_ratio")
    if dcr is not None and isinstance(dcr.extra.get("dcr"), dict):
        out["dcr_mean"] = (float(dcr.extra["dcr"]["mean"]), None)
    else:
        out["dcr_mean"] = (math.nan, (dcr.error if dcr is not None else None) or "not computed")
    out["dcr_ratio"] = val("dcr_ratio")
    if "tstr_auc" in m:
        out["tstr_auc"] = val("tstr_auc")
    vc = val("variance_collapse")
    out["collapsed_item_share"] = (1.0 - vc[0], vc[1]) if not math.isnan(vc[0]) else vc
    out["modal_share"] = val("variance_collapse", "mean_modal_share_candidate")
    for key, extra in (
        ("mia_tpr_1pct_fpr", "tpr_at_1pct_fpr"),
        ("mia_tpr_10pct_fpr", "tpr_at_10pct_fpr"),
        ("mia_auc", "auc"),
    ):
        out[key] = (
            val("membership_inference", extra)
            if "membership_inference" in m
            else (math.nan, "membership inference not computed for this candidate")
        )
    for lab, entry in card.per_cluster.items():
        for key, short in (("column_shapes", "shape"), ("pair_trends_unthresholded", "trend")):
            r = entry[key]
            out[f"cluster_{lab}_{short}"] = (r.score, r.error if math.isnan(r.score) else None)
    return out
