"""Shared, vectorised encodings of evaluation frames (codes for counting, matrices for models)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from panelsynth.evaluate.columns import EvalColumn, EvalColumns
from panelsynth.values import label_text

N_BINS = 10  # bins of a continuous column in pair trends and plots (numpy's default, as sdmetrics)


def category_values(col: EvalColumn, frames: Sequence[pd.DataFrame]) -> list:
    """Sorted distinct non-missing values of a discrete column over several frames."""
    vals = pd.concat([f[col.name] for f in frames], ignore_index=True).dropna().unique()
    try:
        return sorted(vals.tolist())
    except TypeError:
        return sorted(vals.tolist(), key=str)


def labels(series: pd.Series) -> pd.Series:
    """Text labels of a column ('1' for 1.0, missing stays missing), mapped per distinct value."""
    mapping = {v: label_text(v) for v in series.dropna().unique()}
    return series.map(mapping)


def discrete_codes(
    col: EvalColumn, frames: Sequence[pd.DataFrame], edges: np.ndarray | None = None
) -> tuple[list[np.ndarray], int, list[str]]:
    """Integer codes 0..K-1 for the values and K for missing, the same mapping in every frame.

    Continuous columns are binned with ``edges`` (default: histogram edges of the first frame,
    which is the real data).

    Returns:
        (codes per frame, number of codes including the NA code, labels of the codes).
    """
    if col.discrete:
        cats = category_values(col, frames)
        k = len(cats)
        out = []
        for f in frames:
            codes = pd.Categorical(f[col.name], categories=cats).codes.astype(np.int64)
            out.append(np.where(codes < 0, k, codes))
        return out, k + 1, [_label(v) for v in cats] + ["NA"]
    if edges is None:
        edges = continuous_edges(frames[0][col.name])
    nb = len(edges) - 1
    out = []
    for f in frames:
        x = f[col.name].to_numpy(dtype="float64")
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, nb - 1)
        out.append(np.where(np.isnan(x), nb, idx).astype(np.int64))
    labels = [f"{_label(edges[i])}–{_label(edges[i + 1])}" for i in range(nb)] + ["NA"]
    return out, nb + 1, labels


def continuous_edges(values: pd.Series, bins: int = N_BINS) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype="float64")
    if len(x) == 0:
        return np.array([0.0, 1.0])
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return np.array([lo - 0.5, hi + 0.5])
    return np.histogram_bin_edges(x, bins=bins)


def column_shares(
    col: EvalColumn, real: pd.DataFrame, synthetic: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Shares of every code (bins at the real data's edges for a continuous column) and NA."""
    edges = None if col.discrete else continuous_edges(real[col.name])
    (cr, cs), k, labels = discrete_codes(col, [real, synthetic], edges)
    pr = np.bincount(cr, minlength=k) / max(len(cr), 1)
    ps = np.bincount(cs, minlength=k) / max(len(cs), 1)
    if pr[-1] == 0 and ps[-1] == 0:  # no NA on either side: drop the empty NA bar
        return pr[:-1], ps[:-1], labels[:-1]
    return pr, ps, labels


def _label(v: object) -> str:
    """A code's or bin edge's label: 3 significant digits for a non-integer number."""
    if isinstance(v, float | np.floating) and not float(v).is_integer():
        return f"{float(v):.3g}"
    return label_text(v)


def model_matrix(
    columns: EvalColumns, frames: Sequence[pd.DataFrame]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Numeric matrices for tree models: ordered columns as numbers, nominal ones as category ids.

    Missing values stay NaN (histogram gradient boosting and CART handle them natively).

    Returns:
        (one float matrix per frame, boolean mask of nominal columns).
    """
    mats = [np.empty((len(f), len(columns)), dtype="float64") for f in frames]
    nominal = np.zeros(len(columns), dtype=bool)
    for j, col in enumerate(columns):
        if col.discrete and (col.nominal or not _all_numeric(col, frames)):
            cats = category_values(col, frames)
            for m, f in zip(mats, frames, strict=True):
                codes = pd.Categorical(f[col.name], categories=cats).codes
                m[:, j] = np.where(codes < 0, np.nan, codes)
            nominal[j] = len(cats) <= 250
        else:
            for m, f in zip(mats, frames, strict=True):
                m[:, j] = pd.to_numeric(f[col.name], errors="coerce").to_numpy(dtype="float64")
    return mats, nominal


def _all_numeric(col: EvalColumn, frames: Sequence[pd.DataFrame]) -> bool:
    return all(pd.api.types.is_numeric_dtype(f[col.name]) for f in frames)


#: Above this many distinct values an ordered column is compared directly, not as bits.
MAX_THERMOMETER_LEVELS = 128
#: Reference rows per block of the nearest-record search (block x candidates float32 matrix).
NEAREST_BLOCK_ROWS = 8_192


def gower_bits(
    columns: EvalColumns, candidate: pd.DataFrame, reference: pd.DataFrame
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """0/1 matrices with bit weights whose weighted Hamming distance is a Gower distance sum.

    Ordered columns (continuous, ordinal) are scaled by the reference data's range; missing
    values sit at the bottom of the range plus a missing-value bit of weight 1, so that "both
    missing" is distance 0 and "one missing" at least 1. A scaled column with distinct values
    u_0 < ... < u_V is written as V "at least u_t" bits of weight u_t - u_(t-1) (thermometer
    code), so the weighted count of differing bits is |x - y|; one with more than
    :data:`MAX_THERMOMETER_LEVELS` values is returned as a dense column instead. Nominal columns
    are one-hot with weight 0.5 (a mismatch costs 1), missing being a category of its own.

    Returns:
        ([candidate bits, reference bits] as uint8, weights, [candidate dense, reference dense]).
    """
    frames = [candidate, reference]
    bits: list[list[np.ndarray]] = [[], []]
    dense: list[list[np.ndarray]] = [[], []]
    weights: list[np.ndarray] = []
    for col in columns:
        if col.ordered and _all_numeric(col, frames):
            scaled, na = _scaled(col, frames)
            levels = np.unique(np.concatenate(scaled))
            if len(levels) > MAX_THERMOMETER_LEVELS:
                for d, x in zip(dense, scaled, strict=True):
                    d.append(x)
            else:
                steps = np.arange(1, len(levels))
                for b, x in zip(bits, scaled, strict=True):
                    b.append(np.searchsorted(levels, x)[:, None] >= steps[None, :])
                weights.append(np.diff(levels))
            for b, m in zip(bits, na, strict=True):
                b.append(m[:, None])
            weights.append(np.ones(1))
        else:
            codes, k, _ = discrete_codes(col, frames)
            eye = np.eye(k, dtype=bool)
            for b, c in zip(bits, codes, strict=True):
                b.append(eye[c])
            weights.append(np.full(k, 0.5))
    mats = [
        np.hstack(b).astype(np.uint8) if b else np.zeros((len(f), 0), np.uint8)
        for b, f in zip(bits, frames, strict=True)
    ]
    dmats = [
        np.column_stack(d) if d else np.zeros((len(f), 0))
        for d, f in zip(dense, frames, strict=True)
    ]
    w = np.concatenate(weights) if weights else np.zeros(0)
    return mats, w, dmats


def _scaled(col: EvalColumn, frames: Sequence[pd.DataFrame]) -> tuple[list, list]:
    """Values scaled by the last frame's (the reference's) range; missing at 0, and the NA mask."""
    ref = frames[-1][col.name].to_numpy(dtype="float64")
    finite = ref[~np.isnan(ref)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    scaled, na = [], []
    for f in frames:
        x = f[col.name].to_numpy(dtype="float64")
        m = np.isnan(x)
        scaled.append(np.where(m, 0.0, (x - lo) / span))
        na.append(m)
    return scaled, na


def nearest_gower(
    columns: EvalColumns, candidate: pd.DataFrame, reference: pd.DataFrame
) -> np.ndarray:
    """Gower distance of every candidate row to its closest reference row (all of them).

    A brute-force search as one matrix product per block of reference rows: with bits a, b and
    weights w, sum w|a - b| = a.w + b.w - 2 (a*w).b. The products run in float32 (the nearest row
    is found to ~1e-6); the distance to the row found is then recomputed exactly in float64.
    """
    (bc, br), w, (dc, dr) = gower_bits(columns, candidate, reference)
    p = max(len(columns), 1)
    if len(reference) == 0 or len(candidate) == 0:
        return np.full(len(candidate), np.nan)
    w32 = w.astype(np.float32)
    ref32 = br.astype(np.float32)
    wc = bc.astype(np.float32) * w32
    norm_c = wc.sum(axis=1)
    norm_r = ref32 @ w32
    best = np.full(len(candidate), np.inf, dtype=np.float32)
    arg = np.zeros(len(candidate), dtype=np.int64)
    rows = np.arange(len(candidate))
    for start in range(0, len(reference), NEAREST_BLOCK_ROWS):
        stop = min(start + NEAREST_BLOCK_ROWS, len(reference))
        d = wc @ ref32[start:stop].T
        d *= -2
        d += norm_c[:, None]
        d += norm_r[None, start:stop]
        for q in range(dc.shape[1]):
            d += np.abs(dc[:, q, None] - dr[None, start:stop, q]).astype(np.float32)
        j = d.argmin(axis=1)
        dj = d[rows, j]
        better = dj < best
        best[better] = dj[better]
        arg[better] = start + j[better]
    exact = np.abs(bc.astype(np.float64) - br[arg]) @ w
    exact += np.abs(dc - dr[arg]).sum(axis=1)
    return exact / p


def row_keys(frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """A 64-bit hash per row of the given columns (missing values compare equal)."""
    if not names:
        return np.zeros(len(frame), dtype=np.uint64)
    return pd.util.hash_pandas_object(frame[list(names)], index=False).to_numpy()
