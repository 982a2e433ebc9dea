"""Shared, vectorised encodings of evaluation frames (codes for counting, matrices for models)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from panelsynth.evaluate.columns import EvalColumn, EvalColumns

N_BINS = 10  # bins of a continuous column in pair trends and plots (numpy's default, as sdmetrics)


def category_values(col: EvalColumn, frames: Sequence[pd.DataFrame]) -> list:
    """Sorted distinct non-missing values of a discrete column over several frames."""
    vals = pd.concat([f[col.name] for f in frames], ignore_index=True).dropna().unique()
    try:
        return sorted(vals.tolist())
    except TypeError:
        return sorted(vals.tolist(), key=str)


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
        mapping = {v: i for i, v in enumerate(cats)}
        k = len(cats)
        out = []
        for f in frames:
            s = f[col.name]
            codes = s.map(mapping).to_numpy(dtype="float64", na_value=np.nan)
            out.append(np.where(np.isnan(codes), k, codes).astype(np.int64))
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


def _label(v: object) -> str:
    if isinstance(v, float | np.floating):
        return str(int(v)) if float(v).is_integer() else f"{float(v):.3g}"
    return str(v)


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
            mapping = {v: i for i, v in enumerate(cats)}
            for m, f in zip(mats, frames, strict=True):
                m[:, j] = f[col.name].map(mapping).to_numpy(dtype="float64", na_value=np.nan)
            nominal[j] = len(cats) <= 250
        else:
            for m, f in zip(mats, frames, strict=True):
                m[:, j] = pd.to_numeric(f[col.name], errors="coerce").to_numpy(dtype="float64")
    return mats, nominal


def _all_numeric(col: EvalColumn, frames: Sequence[pd.DataFrame]) -> bool:
    return all(pd.api.types.is_numeric_dtype(f[col.name]) for f in frames)


def gower_matrix(
    columns: EvalColumns, frames: Sequence[pd.DataFrame], reference: pd.DataFrame
) -> list[np.ndarray]:
    """Feature matrices whose L1 distance divided by the number of columns is a Gower distance.

    Ordered columns (continuous, ordinal) are scaled by the reference data's range, with a
    missing-value indicator (weight 1) so that "both missing" is distance 0 and "one missing" at
    least 1; nominal columns are one-hot encoded with weight 0.5 (a mismatch costs 1), missing
    being a category of its own.
    """
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    for col in columns:
        if col.ordered and _all_numeric(col, [*frames, reference]):
            ref = reference[col.name].to_numpy(dtype="float64")
            finite = ref[~np.isnan(ref)]
            lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
            span = hi - lo if hi > lo else 1.0
            for b, f in zip(blocks, frames, strict=True):
                x = f[col.name].to_numpy(dtype="float64")
                na = np.isnan(x)
                b.append(np.where(na, 0.0, (x - lo) / span)[:, None])
                b.append(na.astype("float64")[:, None])
        else:
            codes, k, _ = discrete_codes(col, [*frames, reference])
            eye = np.eye(k, dtype="float64") * 0.5
            for b, c in zip(blocks, codes[: len(frames)], strict=True):
                b.append(eye[c])
    return [np.hstack(b) if b else np.zeros((0, 0)) for b in blocks]


def row_keys(frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """A 64-bit hash per row of the given columns (missing values compare equal)."""
    if not names:
        return np.zeros(len(frame), dtype=np.uint64)
    return pd.util.hash_pandas_object(frame[list(names)], index=False).to_numpy()
