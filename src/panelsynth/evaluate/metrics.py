"""Metric objects. Each is small, named, bounded in [0, 1], oriented so that higher is better, and
has ``compute(real, synthetic) -> MetricResult``. A metric that cannot be computed returns NaN with
an ``error`` string (see :func:`safe_compute`), never an exception that aborts an evaluation.

Fidelity metrics re-implement sdmetrics' formulas in vectorised form (so they can run per cluster
and on 100,000-row waves in seconds); the parity numbers themselves are sdmetrics' own
(:mod:`panelsynth.evaluate.sdm`, computed by the parity-tested :mod:`panelsynth.evaluate.parity`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from panelsynth.evaluate.columns import EvalColumn, EvalColumns
from panelsynth.evaluate.encoding import (
    continuous_edges,
    discrete_codes,
    model_matrix,
    nearest_gower,
    row_keys,
)
from panelsynth.evaluate.parity import cramers_v, joint_codes

log = logging.getLogger("panelsynth")

#: Rows per side used by the classifier two-sample tests (random sample above it).
C2ST_MAX_ROWS = 10_000
#: Candidate rows whose distance to closest record is computed (random sample above it).
DCR_MAX_ROWS = 2_000
#: Training rows of the TSTR classifier (random sample above it).
TSTR_MAX_ROWS = 50_000
#: sdmetrics' default thresholds of Column Pair Trends (sdmetrics >= 0.2x).
SDMETRICS_ASSOCIATION_THRESHOLD = 0.3
SDMETRICS_CORRELATION_THRESHOLD = 0.5


@dataclass
class MetricResult:
    """Outcome of one metric: a score in [0, 1] (NaN with ``error`` when incomputable)."""

    name: str
    score: float
    details: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self, with_details: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.name, "score": _num(self.score)}
        if self.error:
            out["error"] = self.error
        out.update(self.extra)
        if with_details and self.details is not None and len(self.details):
            out["details"] = frame_records(self.details)
        return out


def _num(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, np.integer | int) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, np.floating | float):
        return None if not math.isfinite(float(x)) else round(float(x), 6)
    return x


def frame_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame -> JSON-ready records (NaN -> None, numpy scalars -> Python)."""
    recs = []
    for row in df.to_dict(orient="records"):
        recs.append({str(k): _json_value(v) for k, v in row.items()})
    return recs


def _json_value(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    if isinstance(v, np.integer | np.floating | int | float):
        return _num(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if isinstance(v, str | list | dict) else str(v)


class Metric:
    """Base of the metric objects: named, bounded, higher is better."""

    name: ClassVar[str] = "metric"
    description: ClassVar[str] = ""
    min_value: ClassVar[float] = 0.0
    max_value: ClassVar[float] = 1.0
    higher_is_better: ClassVar[bool] = True

    def __init__(self, columns: EvalColumns) -> None:
        self.columns = columns

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        raise NotImplementedError

    def result(self, score: float, **kw: Any) -> MetricResult:
        if score is not None and math.isfinite(score):
            score = float(min(self.max_value, max(self.min_value, score)))
        return MetricResult(self.name, float(score) if score is not None else math.nan, **kw)

    def nan(self, error: str, **kw: Any) -> MetricResult:
        return MetricResult(self.name, math.nan, error=error, **kw)


def safe_compute(metric: Metric, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
    """Run a metric; any exception becomes NaN plus an ``error`` string."""
    try:
        return metric.compute(real, synthetic)
    except Exception as err:  # a metric failure must not abort the evaluation
        log.debug("metric %s failed", metric.name, exc_info=True)
        return MetricResult(metric.name, math.nan, error=f"{type(err).__name__}: {err}")


# ----------------------------------------------------------------------------- fidelity
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
        pr = real[c].value_counts(normalize=True, dropna=False)
        ps = synthetic[c].value_counts(normalize=True, dropna=False)
        idx = pr.index.union(ps.index)
        pr, ps = pr.reindex(idx, fill_value=0.0), ps.reindex(idx, fill_value=0.0)
        details = pd.DataFrame(
            {
                "cluster": [_lab(v) for v in idx],
                "real_share": pr.to_numpy(),
                "synthetic_share": ps.to_numpy(),
            }
        )
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


def labels(series: pd.Series) -> pd.Series:
    """Text labels of a column ('1' for 1.0, missing stays missing), mapped per distinct value."""
    mapping = {v: _lab(v) for v in series.dropna().unique()}
    return series.map(mapping)


def _lab(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NA"
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


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
                key = _lab(lab)
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


# ----------------------------------------------------------------------------- detection
class GradientBoostingC2ST(Metric):
    """Classifier two-sample test with histogram gradient boosting (sees joint structure).

    Real and synthetic rows (equal numbers, at most :data:`C2ST_MAX_ROWS` each) are labelled and
    a gradient-boosting classifier (native missing values and categorical splits) is
    cross-validated (3 folds, as LogisticDetection); the mean ROC AUC is mapped to
    ``1 - 2|AUC - 0.5|`` clipped to
    [0, 1]: 1 = indistinguishable, 0 = perfectly separable — the scale of sdmetrics'
    LogisticDetection.
    """

    name = "c2st_gradient_boosting"
    description = (
        "1 - 2|AUC - 0.5| of a cross-validated gradient-boosting real/synthetic classifier"
    )

    def __init__(self, columns: EvalColumns, seed: int = 42, folds: int = 3) -> None:
        super().__init__(columns)
        self.seed = seed
        self.folds = folds

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        with single_thread():
            return self._compute(real, synthetic)

    def _compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold

        rng = np.random.default_rng(self.seed)
        n = min(len(real), len(synthetic), C2ST_MAX_ROWS)
        if n < 2 * self.folds:
            return self.nan(f"too few rows for a {self.folds}-fold C2ST ({n} per side)")
        r = real.iloc[rng.choice(len(real), n, replace=False)]
        s = synthetic.iloc[rng.choice(len(synthetic), n, replace=False)]
        (xr, xs), nominal = model_matrix(self.columns, [r, s])
        x = np.vstack([xr, xs])
        y = np.r_[np.ones(n), np.zeros(n)]
        aucs = []
        kf = StratifiedKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
        for tr, te in kf.split(x, y):
            clf = _gradient_boosting(nominal, self.seed)
            clf.fit(x[tr], y[tr])
            aucs.append(roc_auc_score(y[te], clf.predict_proba(x[te])[:, 1]))
        auc = float(np.mean(aucs))
        return self.result(
            1.0 - 2.0 * abs(auc - 0.5),
            extra={
                "auc": auc,
                "auc_folds": [float(a) for a in aucs],
                "rows_per_side": n,
                "sampled": n < max(len(real), len(synthetic)),
            },
        )


def _gradient_boosting(nominal: np.ndarray, seed: int) -> Any:
    """The gradient-boosting classifier of the C2ST and TSTR (small: 60 trees of 15 leaves)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=60,
        learning_rate=0.15,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        categorical_features=nominal if nominal.any() else None,
        random_state=seed,
        early_stopping=False,
    )


# ----------------------------------------------------------------------------- diversity, privacy
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


# ----------------------------------------------------------------------------- utility
class TrainSyntheticTestReal(Metric):
    """Utility: ROC AUC on real test rows of a classifier of ``target`` trained on the candidate.

    ``compute(real=test rows, synthetic=training rows)``. With real training rows this is the
    train-real-test-real (TRTR) reference. The classifier is histogram gradient boosting (native
    missing values); features are every other evaluated column; multi-class targets use the
    one-vs-rest macro AUC. Rows whose target is missing are dropped.
    """

    name = "tstr_auc"
    description = "ROC AUC on real rows of a classifier trained on the candidate rows"

    def __init__(self, columns: EvalColumns, target: str, seed: int = 42) -> None:
        super().__init__(columns)
        self.target = target
        self.seed = seed

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        with single_thread():
            return self._compute(real, synthetic)

    def _compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        from sklearn.metrics import balanced_accuracy_score, roc_auc_score

        t = self.target
        feats = self.columns.without([t])
        train = synthetic[synthetic[t].notna()]
        test = real[real[t].notna()]
        if len(train) > TSTR_MAX_ROWS:
            train = train.sample(TSTR_MAX_ROWS, random_state=self.seed)
        classes = sorted(set(test[t]), key=str)
        train_classes = set(train[t])
        if len(classes) < 2:
            return self.nan(f"the real test rows have a single value of {t!r}")
        if len(train_classes) < 2:
            return self.nan(f"the training rows have a single value of {t!r} ({len(train)} rows)")
        (xtr, xte), nominal = model_matrix(feats, [train, test])
        clf = _gradient_boosting(nominal, self.seed)
        ytr = labels(train[t]).to_numpy()
        yte = labels(test[t]).to_numpy()
        clf.fit(xtr, ytr)
        proba = clf.predict_proba(xte)
        model_classes = list(clf.classes_)
        full = np.zeros((len(test), len(classes)))
        class_labels = [_lab(c) for c in classes]
        for j, c in enumerate(class_labels):
            if c in model_classes:
                full[:, j] = proba[:, model_classes.index(c)]
        if len(class_labels) == 2:
            auc = roc_auc_score(yte == class_labels[1], full[:, 1])
        else:
            full = full / np.clip(full.sum(axis=1, keepdims=True), 1e-12, None)
            auc = roc_auc_score(yte, full, multi_class="ovr", average="macro", labels=class_labels)
        bacc = balanced_accuracy_score(yte, clf.predict(xte))
        return self.result(
            float(auc),
            extra={
                "target": t,
                "auc": float(auc),
                "balanced_accuracy": float(bacc),
                "train_rows": int(len(train)),
                "test_rows": int(len(test)),
                "classes": class_labels,
            },
        )


_SINGLE_THREAD_DEPTH = 0


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run scikit-learn/BLAS with one thread.

    The models here are small and many; on a busy 2-core machine OpenMP spin-waiting made
    gradient boosting 25x slower than single-threaded. scikit-learn's OpenMP runtime is loaded
    first so that the limit reaches it.
    """
    global _SINGLE_THREAD_DEPTH
    if _SINGLE_THREAD_DEPTH:  # already limited: inspecting the loaded libraries again costs ~50 ms
        yield
        return
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        _SINGLE_THREAD_DEPTH += 1
        try:
            yield
        finally:
            _SINGLE_THREAD_DEPTH -= 1


@contextlib.contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (sklearn uses it without random_state), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)
