"""Fidelity metrics: column shapes, pair trends and associations, cluster shares and the
previous -> current cluster table.

They re-implement sdmetrics' formulas in vectorised form (so they can run per cluster and on
100,000-row waves in seconds); the parity numbers themselves are sdmetrics' own
(:mod:`panelsynth.evaluate.sdm`, computed by the parity-tested :mod:`panelsynth.evaluate.parity`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from panelsynth.evaluate.base import Metric, MetricResult
from panelsynth.evaluate.columns import EvalColumn, EvalColumns
from panelsynth.evaluate.encoding import column_shares, continuous_edges, discrete_codes, labels
from panelsynth.evaluate.parity import cramers_v, joint_codes

#: sdmetrics' default thresholds of Column Pair Trends (sdmetrics >= 0.2x).
SDMETRICS_ASSOCIATION_THRESHOLD = 0.3
SDMETRICS_CORRELATION_THRESHOLD = 0.5


class ColumnShapes(Metric):
    """Mean over columns of TVComplement (discrete) / KSComplement (continuous), as sdmetrics.

    Missing values are ignored here, as in sdmetrics; :class:`NAShareSimilarity` scores them.
    """

    name = "column_shapes"
    description = "1 - total variation (discrete) or 1 - KS statistic (continuous), per column"

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        rows = []
        for col in self.columns:
            score, err = math.nan, None
            try:
                score = column_shape(col, real[col.name], synthetic[col.name])
            except ValueError as e:
                err = str(e)
            rows.append(
                {
                    "column": col.name,
                    "metric": "TVComplement" if col.discrete else "KSComplement",
                    "score": score,
                    "error": err,
                }
            )
        details = pd.DataFrame(rows, columns=["column", "metric", "score", "error"])
        if details.empty:
            return self.nan("no columns to score", details=details)
        scored = details["score"].dropna()
        if scored.empty:
            return self.nan(
                "no column could be scored: " + "; ".join(details["error"].dropna()),
                details=details,
            )
        return self.result(float(scored.mean()), details=details)


def column_shape(col: EvalColumn, real: pd.Series, synthetic: pd.Series) -> float:
    """TVComplement or KSComplement of one column (missing values dropped, as sdmetrics)."""
    r, s = real.dropna(), synthetic.dropna()
    if len(r) == 0 or len(s) == 0:
        raise ValueError(
            f"{col.name}: no non-missing values in the "
            f"{'real' if len(r) == 0 else 'synthetic'} data"
        )
    if col.discrete:
        (cr, cs), k = joint_codes([r, s])
        pr = np.bincount(cr, minlength=k) / len(cr)
        ps = np.bincount(cs, minlength=k) / len(cs)
        return 1.0 - 0.5 * float(np.abs(pr - ps).sum())
    a = np.sort(r.to_numpy(dtype="float64").round(9))
    b = np.sort(s.to_numpy(dtype="float64").round(9))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return 1.0 - float(np.max(np.abs(cdf_a - cdf_b)))


@dataclass
class _PairStats:
    score: float
    metric: str
    real_assoc: float
    synth_assoc: float
    assoc_similarity: float
    meets_threshold: bool
    error: str | None = None


class PairTrends(Metric):
    """Unthresholded Column Pair Trends: sdmetrics' pair formulas averaged over **every** pair.

    Discrete/mixed pairs: ContingencySimilarity (1 - total variation of the joint distribution,
    missing values a category of their own; a continuous column is cut into 10 bins at the *real*
    data's edges, where sdmetrics cuts each data set at its own edges). Continuous pairs:
    CorrelationSimilarity (1 - |r_real - r_synth| / 2, Pearson). Unlike sdmetrics >= 0.2x no pair
    is dropped for a weak real association, so the score exists whenever there are two columns.
    Details also carry each pair's real/synthetic association (Cramér's V or Pearson r) and
    whether it meets sdmetrics' threshold.
    """

    name = "pair_trends_unthresholded"
    description = "1 - TV of the joint distribution / 1 - |delta r|/2, mean over all column pairs"

    def __init__(self, columns: EvalColumns, details: pd.DataFrame | None = None) -> None:
        super().__init__(columns)
        self.details = details  # pair_statistics() already computed for the same data

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        details = _pair_details(self, real, synthetic)
        if details.empty:
            return self.nan("fewer than two columns: no pairs", details=details)
        scored = details["score"].dropna()
        if scored.empty:
            return self.nan("no pair could be scored", details=details)
        n_thr = int(details["meets_sdmetrics_threshold"].sum())
        return self.result(
            float(scored.mean()),
            details=details,
            extra={"n_pairs": len(details), "n_pairs_meeting_sdmetrics_threshold": n_thr},
        )


class AssociationSimilarity(Metric):
    """Mean over pairs of 1 - |association_real - association_synth|.

    Association is Cramér's V (discrete or mixed pairs, missing as a category, continuous columns
    binned) or Pearson r for two continuous columns (then 1 - |delta r| / 2). It isolates the
    dependence between items from their marginal shapes, which ContingencySimilarity mixes.
    """

    name = "association_similarity"
    description = "1 - |Cramér's V real - synthetic| (or 1 - |delta r|/2), mean over pairs"

    def __init__(self, columns: EvalColumns, details: pd.DataFrame | None = None) -> None:
        super().__init__(columns)
        self.details = details

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        details = _pair_details(self, real, synthetic)
        if details.empty:
            return self.nan("fewer than two columns: no pairs")
        vals = details["association_similarity"].dropna()
        if vals.empty:
            return self.nan("no pair has a defined association (constant columns)")
        return self.result(float(vals.mean()), extra={"n_pairs": int(len(vals))})


def _pair_details(
    metric: PairTrends | AssociationSimilarity, real: pd.DataFrame, synthetic: pd.DataFrame
) -> pd.DataFrame:
    if metric.details is not None:
        return metric.details
    return pair_statistics(metric.columns, real, synthetic)


_PAIR_COLUMNS = [
    "column_1",
    "column_2",
    "metric",
    "score",
    "real_association",
    "synthetic_association",
    "association_similarity",
    "meets_sdmetrics_threshold",
    "error",
]
#: Cells (pairs x rows) per batch of joint-table counting.
_PAIR_BATCH_CELLS = 4_000_000


def pair_statistics(
    columns: EvalColumns, real: pd.DataFrame, synthetic: pd.DataFrame
) -> pd.DataFrame:
    """Per-pair contingency/correlation similarity and associations (vectorised over pairs)."""
    cols = list(columns)
    codes_r, codes_s, ks = [], [], []
    for col in cols:
        edges = None if col.discrete else continuous_edges(real[col.name])
        (cr, cs), k, _ = discrete_codes(col, [real, synthetic], edges)
        codes_r.append(cr)
        codes_s.append(cs)
        ks.append(k)
    pairs = list(combinations(range(len(cols)), 2))
    joint = [(i, j) for i, j in pairs if cols[i].discrete or cols[j].discrete]
    stats = dict(zip(joint, _contingency_stats(joint, codes_r, codes_s, ks), strict=True))
    rows = []
    for i, j in pairs:
        st = stats.get((i, j)) or _correlation_pair(cols[i], cols[j], real, synthetic)
        rows.append(
            [
                cols[i].name,
                cols[j].name,
                st.metric,
                st.score,
                st.real_assoc,
                st.synth_assoc,
                st.assoc_similarity,
                st.meets_threshold,
                st.error,
            ]
        )
    return pd.DataFrame(rows, columns=_PAIR_COLUMNS)


def _correlation_pair(
    c1: EvalColumn, c2: EvalColumn, real: pd.DataFrame, synthetic: pd.DataFrame
) -> _PairStats:
    rr = _pearson(real[c1.name], real[c2.name])
    rs = _pearson(synthetic[c1.name], synthetic[c2.name])
    if math.isnan(rr) or math.isnan(rs):
        which = "real" if math.isnan(rr) else "synthetic"
        return _PairStats(
            math.nan,
            "CorrelationSimilarity",
            rr,
            rs,
            math.nan,
            False,
            f"correlation undefined in the {which} data (constant column)",
        )
    sim = 1.0 - abs(rr - rs) / 2.0
    return _PairStats(
        sim, "CorrelationSimilarity", rr, rs, sim, abs(rr) > SDMETRICS_CORRELATION_THRESHOLD
    )


def _contingency_stats(
    pairs: list[tuple[int, int]],
    codes_r: list[np.ndarray],
    codes_s: list[np.ndarray],
    ks: list[int],
) -> list[_PairStats]:
    """ContingencySimilarity and Cramér's V of many pairs, from joint tables counted in batches."""
    if not pairs:
        return []
    tr = _joint_tables(pairs, codes_r, ks)
    ts = _joint_tables(pairs, codes_s, ks)
    nr, ns = tr.sum(axis=(1, 2)), ts.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        tv = 0.5 * np.abs(tr / nr[:, None, None] - ts / ns[:, None, None]).sum(axis=(1, 2))
    vr, vs = cramers_v(tr), cramers_v(ts)
    out = []
    for p in range(len(pairs)):
        if nr[p] == 0 or ns[p] == 0:
            out.append(
                _PairStats(
                    math.nan,
                    "ContingencySimilarity",
                    math.nan,
                    math.nan,
                    math.nan,
                    False,
                    "no rows",
                )
            )
            continue
        a, b = float(vr[p]), float(vs[p])
        assoc = (
            math.nan
            if math.isnan(a) and math.isnan(b)
            else 1.0 - abs((0.0 if math.isnan(a) else a) - (0.0 if math.isnan(b) else b))
        )
        meets = (not math.isnan(a)) and a > SDMETRICS_ASSOCIATION_THRESHOLD
        out.append(_PairStats(1.0 - float(tv[p]), "ContingencySimilarity", a, b, assoc, meets))
    return out


def _joint_tables(
    pairs: list[tuple[int, int]], codes: list[np.ndarray], ks: list[int]
) -> np.ndarray:
    """Counts of every pair's joint codes, padded to K x K (K = the largest number of codes)."""
    big_k = max(ks)
    cells = big_k * big_k
    n = len(codes[0]) if codes else 0
    out = np.zeros((len(pairs), cells), dtype="float64")
    step = max(1, _PAIR_BATCH_CELLS // max(n, 1))
    for start in range(0, len(pairs), step):
        batch = pairs[start : start + step]
        idx = np.concatenate(
            [p * cells + codes[i] * big_k + codes[j] for p, (i, j) in enumerate(batch)]
        )
        counts = np.bincount(idx, minlength=len(batch) * cells)
        out[start : start + len(batch)] = counts.reshape(len(batch), cells)
    return out.reshape(len(pairs), big_k, big_k)


def _pearson(a: pd.Series, b: pd.Series) -> float:
    x = pd.to_numeric(a, errors="coerce").to_numpy(dtype="float64")
    y = pd.to_numeric(b, errors="coerce").to_numpy(dtype="float64")
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


class ClusterShares(Metric):
    """1 - total variation between the real and synthetic cluster proportions."""

    name = "cluster_shares"
    description = "1 - TV distance of cluster proportions"

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        c = self.columns.cluster
        if c is None:
            return self.nan("no cluster column")
        # the cluster labels as codes (a cluster column is nominal whatever its evaluation type)
        col = dataclasses.replace(self.columns.get(c), sdtype="categorical")
        pr, ps, labs = column_shares(col, real, synthetic)
        details = pd.DataFrame({"cluster": labs, "real_share": pr, "synthetic_share": ps})
        return self.result(1.0 - 0.5 * float(np.abs(pr - ps).sum()), details=details)


class TransitionSimilarity(Metric):
    """1 - total variation of the joint previous-cluster x cluster distribution.

    Respondents without a previous-wave label (entered the panel this wave) form the row "NA".
    Details give joint shares and row-normalised transition probabilities, real vs synthetic.
    """

    name = "transition_similarity"
    description = "1 - TV distance of the prev_cluster -> cluster table"

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        c, p = self.columns.cluster, self.columns.prev_cluster
        if c is None or p is None:
            return self.nan("the wave has no previous-wave cluster column (first wave)")
        tr = _joint(real, p, c)
        ts = _joint(synthetic, p, c)
        idx = tr.index.union(ts.index)
        tr, ts = tr.reindex(idx, fill_value=0.0), ts.reindex(idx, fill_value=0.0)
        rows = []
        for prev, cur in idx:
            rows.append(
                {
                    "prev_cluster": prev,
                    "cluster": cur,
                    "real_share": float(tr[(prev, cur)]),
                    "synthetic_share": float(ts[(prev, cur)]),
                }
            )
        details = pd.DataFrame(rows)
        for side in ("real", "synthetic"):
            tot = details.groupby("prev_cluster")[f"{side}_share"].transform("sum")
            details[f"{side}_transition_prob"] = np.where(
                tot > 0, details[f"{side}_share"] / tot.where(tot > 0, 1), np.nan
            )
        return self.result(1.0 - 0.5 * float(np.abs(tr - ts).sum()), details=details)


def _joint(df: pd.DataFrame, prev: str, cur: str) -> pd.Series:
    keys = pd.DataFrame({"p": labels(df[prev]).fillna("NA"), "c": labels(df[cur]).fillna("NA")})
    return keys.value_counts(normalize=True).sort_index()
