"""Vectorised re-implementations of sdmetrics 0.32's QualityReport and LogisticDetection.

sdmetrics scores every column pair with a pandas ``groupby`` (about 5 ms a pair: 2 s for the 496
pairs of a 32-column wave) and one-hot encodes with a column-by-column ``concat``. The functions
here compute the same numbers with integer codes and ``bincount``; they follow sdmetrics' source
step by step (noted below) and ``tests/evaluate/test_parity.py`` checks them against sdmetrics
itself on mixed, missing, constant and all-missing data to 1e-9.

What is delegated to sdmetrics' own functions (cheap: a few numerical columns): KSComplement of
numerical columns and CorrelationSimilarity of numerical pairs. What is re-implemented:
TVComplement (with its 1e-6 regularisation of values only the synthetic data has),
ContingencySimilarity with the real-association threshold (Cramér's V as scipy computes it,
numerical columns cut by ``np.digitize`` at each data set's own ``np.histogram_bin_edges``, so the
maximum and a missing value share the top code, as in sdmetrics), the property averages, and the
LogisticDetection design matrix (sdmetrics' classifier pipeline and folds are then run as is).

Anything outside this scope (an sdtype other than numerical/categorical/ordinal/boolean, a column
that cannot be binned) raises :class:`Unsupported`; callers then run sdmetrics itself.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from panelsynth.evaluate.columns import EvalColumn, EvalColumns

#: sdmetrics' defaults (sdmetrics.reports.utils): Cramér's V and |Pearson r| a pair must exceed.
ASSOCIATION_THRESHOLD = 0.3
CORRELATION_THRESHOLD = 0.5
#: Regularisation sdmetrics' ``get_frequencies`` gives a value only the synthetic data has.
_TV_EPS = 1e-6
_SUPPORTED = frozenset({"numerical", "categorical", "ordinal", "boolean"})
_PAIR_COLUMNS = [
    "Column 1",
    "Column 2",
    "Metric",
    "Score",
    "Real Correlation",
    "Synthetic Correlation",
    "Real Association",
    "Meets Threshold?",
    "Error",
]


class Unsupported(Exception):
    """The fast path does not cover these data; run sdmetrics itself."""


@dataclass
class QualityResult:
    """What ``QualityReport.get_properties/get_score/get_details`` return."""

    column_shapes: float
    column_pair_trends: float
    overall: float
    shape_details: pd.DataFrame
    pair_details: pd.DataFrame


def quality_report(
    real: pd.DataFrame, synthetic: pd.DataFrame, columns: EvalColumns
) -> QualityResult:
    """sdmetrics' single-table QualityReport (Column Shapes, Column Pair Trends, overall)."""
    if any(c.sdtype not in _SUPPORTED for c in columns):
        raise Unsupported("sdtype outside numerical/categorical/ordinal/boolean")
    shapes = _shape_details(real, synthetic, columns)
    pairs = _pair_details(real, synthetic, columns)
    shape_score = float(shapes["Score"].mean())
    meets = pairs["Meets Threshold?"].astype("boolean").fillna(False)
    trend_score = float(pairs.loc[meets, "Score"].mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # both NaN: sdmetrics' nanmean warns too
        overall = float(np.nanmean([shape_score, trend_score]))
    return QualityResult(shape_score, trend_score, overall, shapes, pairs)


# --------------------------------------------------------------------------- Column Shapes
def _shape_details(
    real: pd.DataFrame, synthetic: pd.DataFrame, columns: EvalColumns
) -> pd.DataFrame:
    names, metrics, scores, errors = [], [], [], []
    for col in columns:
        metric = "TVComplement" if col.discrete else "KSComplement"
        score, error = math.nan, None
        try:
            if col.discrete:
                score = tv_complement(real[col.name], synthetic[col.name])
            else:
                from sdmetrics.single_column import KSComplement

                score = float(KSComplement.compute(real[col.name], synthetic[col.name]))
        except Exception as e:  # noqa: BLE001 - recorded per column, as sdmetrics does
            error = f"{type(e).__name__}: {e}"
        names.append(col.name)
        metrics.append(metric)
        scores.append(score)
        errors.append(error)
    out = pd.DataFrame({"Column": names, "Metric": metrics, "Score": scores, "Error": errors})
    return out.drop(columns="Error") if out["Error"].isna().all() else out


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """sdmetrics TVComplement: 1 - TV over the real values and the synthetic-only ones.

    As ``sdmetrics.utils.get_frequencies``: a value only the synthetic data has gets a real count
    of 1e-6, and the real frequencies are divided by the regularised total.
    """
    from sdmetrics.errors import IncomputableMetricError

    r, s = real.dropna(), synthetic.dropna()
    if len(s) == 0 or len(r) == 0:
        raise IncomputableMetricError(
            "The TVComplement metric must have 1 or more non-null values."
        )
    (cr, cs), k = joint_codes([r, s])
    real_counts = np.bincount(cr, minlength=k).astype("float64")
    synth_counts = np.bincount(cs, minlength=k).astype("float64")
    only_synth = (real_counts == 0) & (synth_counts > 0)
    real_counts[only_synth] = _TV_EPS
    present = (real_counts > 0) | (synth_counts > 0)
    f_exp = real_counts[present] / real_counts.sum()
    f_obs = synth_counts[present] / synth_counts.sum()
    return 1.0 - 0.5 * float(np.abs(f_obs - f_exp).sum())


def joint_codes(series: list[pd.Series]) -> tuple[list[np.ndarray], int]:
    """Codes 0..K-1 of the distinct non-missing values over all series, K for missing."""
    values = pd.concat(series, ignore_index=True)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    k = len(uniques)
    codes = np.where(codes < 0, k, codes)
    out, start = [], 0
    for s in series:
        out.append(codes[start : start + len(s)])
        start += len(s)
    return out, k + 1


# --------------------------------------------------------------------------- Column Pair Trends
def _pair_details(
    real: pd.DataFrame, synthetic: pd.DataFrame, columns: EvalColumns
) -> pd.DataFrame:
    discrete = {c.name: _discrete_codes(c, real, synthetic) for c in columns if c.discrete}
    binned = {c.name: _binned_codes(c, real, synthetic) for c in columns if not c.discrete}
    rows = []
    for c1, c2 in combinations(list(columns), 2):
        if not c1.discrete and not c2.discrete:
            rows.append(_correlation_row(c1.name, c2.name, real, synthetic))
            continue
        a = discrete.get(c1.name) or binned[c1.name]
        b = discrete.get(c2.name) or binned[c2.name]
        rows.append([c1.name, c2.name, "ContingencySimilarity", *_contingency(a, b), None])
    out = pd.DataFrame(rows, columns=_PAIR_COLUMNS)
    for col in ("Score", "Real Correlation", "Synthetic Correlation", "Real Association"):
        out[col] = out[col].astype("float64")
    out["Meets Threshold?"] = out["Meets Threshold?"].astype("boolean")
    return out.drop(columns="Error") if out["Error"].isna().all() else out


_Codes = tuple[np.ndarray, np.ndarray, int]


def _discrete_codes(col: EvalColumn, real: pd.DataFrame, synthetic: pd.DataFrame) -> _Codes:
    """Shared codes of a discrete column's values; missing is a value (groupby dropna=False)."""
    (cr, cs), k = joint_codes([real[col.name], synthetic[col.name]])
    return cr, cs, k


def _binned_codes(col: EvalColumn, real: pd.DataFrame, synthetic: pd.DataFrame) -> _Codes:
    """sdmetrics' ``_discretize_column``: each data set at its own 10 histogram bins.

    ``np.digitize`` puts the maximum and missing values in the same top code (len(edges)).
    """
    out = []
    for frame in (real, synthetic):
        x = frame[col.name]
        try:
            edges = np.histogram_bin_edges(x.dropna())
            out.append(np.digitize(x, bins=edges).astype(np.int64))
        except Exception as e:  # sdmetrics records it per pair; rare enough to hand over
            raise Unsupported(f"{col.name} cannot be binned: {e}") from e
    k = int(max(out[0].max(initial=0), out[1].max(initial=0))) + 1
    return out[0], out[1], k


def _contingency(a: _Codes, b: _Codes) -> tuple[float, float, float, float, bool]:
    """ContingencySimilarity with sdmetrics' real-association threshold.

    Returns (score, real correlation, synthetic correlation, real association, meets threshold).
    """
    ra, sa, ka = a
    rb, sb, kb = b
    real = np.bincount(ra * kb + rb, minlength=ka * kb).reshape(ka, kb).astype("float64")
    synth = np.bincount(sa * kb + sb, minlength=ka * kb).reshape(ka, kb).astype("float64")
    table = real[real.sum(axis=1) > 0][:, real.sum(axis=0) > 0]
    if table.sum() == 0 or min(table.shape) < 2:
        return math.nan, math.nan, math.nan, math.nan, False
    assoc = float(cramers_v(table))
    if assoc <= ASSOCIATION_THRESHOLD:
        return math.nan, math.nan, math.nan, assoc, False
    tv = 0.5 * float(np.abs(real / len(ra) - synth / len(sa)).sum())
    return 1.0 - tv, math.nan, math.nan, assoc, True


def cramers_v(tables: np.ndarray) -> np.ndarray:
    """Cramér's V of a table (or a stack of tables), as ``scipy.stats.contingency.association``.

    No bias correction; empty rows and columns are ignored; NaN below 2 x 2.
    """
    rows, cols = tables.sum(axis=-1), tables.sum(axis=-2)
    n = rows.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = rows[..., :, None] * cols[..., None, :] / n[..., None, None]
        cells = np.where(expected > 0, (tables - expected) ** 2 / expected, 0.0)
        chi2 = cells.sum(axis=(-2, -1))
        dim = np.minimum((rows > 0).sum(axis=-1), (cols > 0).sum(axis=-1))
        v = np.sqrt(chi2 / n / (dim - 1))
    return np.where(dim >= 2, v, np.nan)


def _correlation_row(c1: str, c2: str, real: pd.DataFrame, synthetic: pd.DataFrame) -> list[object]:
    """A numerical pair, by sdmetrics' own CorrelationSimilarity (as ColumnPairTrends calls it)."""
    from sdmetrics.column_pairs.statistical import CorrelationSimilarity

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = CorrelationSimilarity.compute_breakdown(
                real_data=real[[c1, c2]],
                synthetic_data=synthetic[[c1, c2]],
                real_correlation_threshold=CORRELATION_THRESHOLD,
            )
    except Exception as e:  # noqa: BLE001 - sdmetrics records the error in the pair's row
        return [c1, c2, "CorrelationSimilarity", *[math.nan] * 4, pd.NA, f"{type(e).__name__}: {e}"]
    real_r = b["real"]
    meets = not np.isnan(real_r) and abs(real_r) > CORRELATION_THRESHOLD
    return [
        c1,
        c2,
        "CorrelationSimilarity",
        b["score"],
        real_r,
        b["synthetic"],
        math.nan,
        meets,
        None,
    ]


# --------------------------------------------------------------------------- LogisticDetection
def logistic_detection(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    """sdmetrics LogisticDetection: its pipeline and unseeded 3-fold split on our design matrix.

    The design matrix is what sdmetrics' ``HyperTransformer`` builds from the columns' dtypes:
    numerical columns in place with missing values set to the real mean, then one block of
    one-hot columns per object column (categories sorted, missing last, as scikit-learn's
    ``OneHotEncoder``), in column order. A category the real data lacks raises ``ValueError``, as
    sdmetrics' encoder does. Seed numpy's global generator around the call for reproducible folds.
    """
    from sdmetrics.single_table import LogisticDetection
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    xr, xs = _detection_matrix(real, synthetic)
    x = np.concatenate([xr, xs])
    y = np.hstack([np.ones(len(xr)), np.zeros(len(xs))])
    x[np.isinf(x)] = np.nan
    scores = []
    for train, test in StratifiedKFold(n_splits=3, shuffle=True).split(x, y):
        pred = LogisticDetection._fit_predict(x[train], y[train], x[test])
        scores.append(max(0.5, roc_auc_score(y[test], pred)) * 2 - 1)
    return float(1 - np.mean(scores))


def _detection_matrix(real: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    kinds = {c: real[c].dropna().infer_objects().dtype.kind for c in real.columns}
    if any(k not in "ifO" for k in kinds.values()):
        raise Unsupported("boolean or datetime columns")
    numeric = [c for c in real.columns if kinds[c] in "if"]
    blocks_r = [real[numeric].to_numpy(dtype="float64", copy=True)]
    blocks_s = [synthetic[numeric].to_numpy(dtype="float64", copy=True)]
    means = real[numeric].mean().to_numpy(dtype="float64")
    for b in (blocks_r[0], blocks_s[0]):
        rows, cols = np.nonzero(np.isnan(b))
        b[rows, cols] = means[cols]
    for name in (c for c in real.columns if kinds[c] == "O"):
        r, s = real[name], synthetic[name]
        cats = sorted(r.dropna().unique().tolist())
        has_na = bool(r.isna().any())
        unseen = set(s.dropna().unique().tolist()) - set(cats)
        if unseen or (s.isna().any() and not has_na):
            raise ValueError(f"Found unknown categories in column {name!r}")
        blocks_r.append(_one_hot(r, cats, has_na))
        blocks_s.append(_one_hot(s, cats, has_na))
    return np.hstack(blocks_r), np.hstack(blocks_s)


def _one_hot(s: pd.Series, cats: list, has_na: bool) -> np.ndarray:
    codes = pd.Categorical(s, categories=cats).codes.astype(np.int64)
    codes = np.where(codes < 0, len(cats), codes)  # missing: the last column
    return np.eye(len(cats) + has_na, dtype="float64")[codes]
