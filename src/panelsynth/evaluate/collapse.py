"""Missing answers and variance collapse: does the candidate skip and vary like people do?

:class:`NAShareSimilarity` compares the share of missing answers per variable (overall and per
cluster). :class:`VarianceCollapse` (issue 16): do the synthetic respondents answer too uniformly?

LLM respondents are known to answer more alike than people do (most synthetic answers in a narrow
window; many questions answered almost identically by everyone). Per item, overall and within each
cluster, this metric compares the entropy of the answers (missing answers left out; a continuous
item cut into the real data's bins) and the share of the modal answer, real vs candidate. An item
is *collapsed* when the candidate's entropy is below half the real one; items whose real answers
are all the same (entropy 0) cannot collapse and are left out of the share.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.evaluate.base import Metric, MetricResult, frame_records
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.encoding import continuous_edges, discrete_codes
from panelsynth.values import label_text

#: An item is collapsed when the candidate's answer entropy is below this share of the real one.
COLLAPSE_RATIO = 0.5


def entropy_and_mode(codes: np.ndarray, k: int) -> tuple[float, float, int]:
    """Shannon entropy (bits) and modal share of answered codes (0..k-1), and their count."""
    if len(codes) == 0:
        return math.nan, math.nan, 0
    p = np.bincount(codes, minlength=k) / len(codes)
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum()), float(p.max()), int(len(codes))


class VarianceCollapse(Metric):
    """1 - the share of collapsed items (see the module docstring); details per item and cluster."""

    name = "variance_collapse"
    description = "1 - share of items whose candidate answer entropy is below half the real one"

    def __init__(self, columns: EvalColumns, ratio: float = COLLAPSE_RATIO) -> None:
        super().__init__(columns)
        self.ratio = ratio

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        items = self.columns.subset(self.columns.variables)
        if not items.columns:
            return self.nan("no variables")
        c = self.columns.cluster
        groups: list[tuple[str, pd.Series | None, pd.Series | None]] = [("all", None, None)]
        if c is not None:
            labels = sorted(set(real[c].dropna()) & set(synthetic[c].dropna()), key=str)
            groups += [(label_text(v), real[c] == v, synthetic[c] == v) for v in labels]
        rows: list[dict[str, Any]] = []
        for col in items:
            edges = None if col.discrete else continuous_edges(real[col.name])
            (cr, cs), k, _ = discrete_codes(col, [real, synthetic], edges)
            na = k - 1
            for label, in_r, in_s in groups:
                r = cr if in_r is None else cr[in_r.to_numpy()]
                s = cs if in_s is None else cs[in_s.to_numpy()]
                h_r, m_r, n_r = entropy_and_mode(r[r != na], na)
                h_s, m_s, n_s = entropy_and_mode(s[s != na], na)
                scorable = n_r > 0 and n_s > 0 and h_r > 0
                rows.append(
                    {
                        "column": col.name,
                        "cluster": label,
                        "entropy_real": h_r,
                        "entropy_candidate": h_s,
                        "modal_share_real": m_r,
                        "modal_share_candidate": m_s,
                        "answers_real": n_r,
                        "answers_candidate": n_s,
                        "collapsed": bool(h_s < self.ratio * h_r) if scorable else None,
                    }
                )
        details = pd.DataFrame(rows)
        overall = details[details["cluster"] == "all"]
        share = _collapsed_share(overall)
        per_cluster = {
            lab: _collapsed_share(details[details["cluster"] == lab])
            for lab in details["cluster"].unique()
            if lab != "all"
        }
        extra = {
            "collapsed_share": share,
            "collapsed_items": overall.loc[overall["collapsed"] == True, "column"].tolist(),  # noqa: E712
            "items_scored": int(overall["collapsed"].notna().sum()),
            "ratio": self.ratio,
            "per_cluster_collapsed_share": per_cluster,
            "mean_modal_share_real": _mean(overall["modal_share_real"]),
            "mean_modal_share_candidate": _mean(overall["modal_share_candidate"]),
        }
        if math.isnan(share):
            return self.nan(
                "no item has varied real answers and candidate answers to compare",
                details=details,
                extra=extra,
            )
        return self.result(1.0 - share, details=details, extra=extra)


def _collapsed_share(rows: pd.DataFrame) -> float:
    scored = rows["collapsed"].dropna()
    return float(scored.astype(bool).mean()) if len(scored) else math.nan


def _mean(s: pd.Series) -> float:
    x = pd.to_numeric(s, errors="coerce").dropna()
    return float(x.mean()) if len(x) else math.nan


class NAShareSimilarity(Metric):
    """1 - mean absolute difference of the NA share per variable (overall and per cluster)."""

    name = "na_share_similarity"
    description = "1 - mean |NA share real - NA share synthetic| over variables"

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        vars_ = self.columns.variables
        if not vars_:
            return self.nan("no variables")
        nr = real[vars_].isna().mean()
        ns = synthetic[vars_].isna().mean()
        details = pd.DataFrame(
            {"variable": vars_, "real_na_share": nr.to_numpy(), "synthetic_na_share": ns.to_numpy()}
        )
        details["abs_diff"] = (details["real_na_share"] - details["synthetic_na_share"]).abs()
        mad = float(details["abs_diff"].mean())
        extra: dict[str, Any] = {"mean_abs_diff": mad}
        c = self.columns.cluster
        if c is not None:
            per: dict[str, Any] = {}
            for lab in sorted(set(real[c].dropna()) | set(synthetic[c].dropna()), key=str):
                r, s = real[real[c] == lab], synthetic[synthetic[c] == lab]
                key = label_text(lab)
                if len(r) == 0 or len(s) == 0:
                    per[key] = {
                        "mean_abs_diff": None,
                        "error": f"cluster {key} has no "
                        f"{'real' if len(r) == 0 else 'synthetic'} rows",
                    }
                    continue
                d = (r[vars_].isna().mean() - s[vars_].isna().mean()).abs()
                per[key] = {
                    "mean_abs_diff": float(d.mean()),
                    "variables": frame_records(
                        pd.DataFrame(
                            {
                                "variable": vars_,
                                "real_na_share": r[vars_].isna().mean().to_numpy(),
                                "synthetic_na_share": s[vars_].isna().mean().to_numpy(),
                            }
                        )
                    ),
                }
            extra["per_cluster"] = per
        return self.result(1.0 - mad, details=details, extra=extra)
