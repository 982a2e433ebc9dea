"""Statistical baselines scored by the same code as the LLM output.

- :func:`marginal_baseline` — independent per-cluster marginals: the cluster label is drawn from
  the real cluster shares, then every other column independently from its real distribution
  *within that cluster*, missing values included. It reproduces marginals and cluster structure
  but no association between items beyond what the clusters carry.
- :func:`cart_baseline` — a sequential CART synthesiser in the manner of R's synthpop: columns are
  visited in order (cluster, previous cluster, then the variables); the first is drawn from its
  marginal, each next one from a classification tree fitted on the columns before it
  (``min_samples_leaf=5``, synthpop's ``minbucket``), by drawing a donor value from the real rows
  in the same leaf (so missing values are reproduced where they occur).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.encoding import continuous_edges, discrete_codes, model_matrix

BASELINES: tuple[str, ...] = ("_baseline_marginal", "_baseline_cart")


def marginal_baseline(
    train: pd.DataFrame, columns: EvalColumns, n: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Independent per-cluster marginals (with NA), ``n`` rows."""
    names = columns.names
    c = columns.cluster
    if c is None:
        groups = {None: np.arange(len(train))}
        labels = np.full(n, None, dtype=object)
    else:
        cl = train[c].to_numpy()
        uniq = pd.unique(cl)
        groups = {u: np.flatnonzero(cl == u) for u in uniq}
        labels = cl[rng.integers(0, len(train), n)]
    out = {name: np.empty(n, dtype=object) for name in names}
    for u, idx in groups.items():
        sel = np.flatnonzero(labels == u) if c is not None else np.arange(n)
        if len(sel) == 0:
            continue
        for name in names:
            values = train[name].to_numpy()[idx]
            out[name][sel] = values[rng.integers(0, len(idx), len(sel))]
    return _typed(pd.DataFrame(out), train, names)


def cart_baseline(
    train: pd.DataFrame,
    columns: EvalColumns,
    n: int,
    rng: np.random.Generator,
    *,
    min_samples_leaf: int = 5,
    seed: int = 42,
) -> pd.DataFrame:
    """Sequential CART synthesis (synthpop-style donor sampling from tree leaves), ``n`` rows."""
    from panelsynth.evaluate.base import single_thread

    with single_thread():
        return _cart(train, columns, n, rng, min_samples_leaf=min_samples_leaf, seed=seed)


def _cart(
    train: pd.DataFrame,
    columns: EvalColumns,
    n: int,
    rng: np.random.Generator,
    *,
    min_samples_leaf: int,
    seed: int,
) -> pd.DataFrame:
    from sklearn.tree import DecisionTreeClassifier

    order = [x for x in (columns.cluster, columns.prev_cluster) if x] + columns.variables
    cols = [columns.get(name) for name in order]
    train = train.reset_index(drop=True)
    out = pd.DataFrame(index=range(n))
    first = order[0]
    out[first] = train[first].to_numpy()[rng.integers(0, len(train), n)]
    for j in range(1, len(cols)):
        col = cols[j]
        prev = EvalColumns(tuple(cols[:j]))
        (x_train, x_syn), _ = model_matrix(prev, [train, _typed(out, train, prev.names)])
        edges = None if col.discrete else _quantile_edges(train[col.name])
        (y_codes,), _, _ = discrete_codes(col, [train], edges)
        y_values = train[col.name].to_numpy()
        if len(np.unique(y_codes)) < 2:
            out[col.name] = y_values[rng.integers(0, len(train), n)]
            continue
        tree = DecisionTreeClassifier(min_samples_leaf=min_samples_leaf, random_state=seed)
        tree.fit(x_train, y_codes)
        leaf_train = tree.apply(x_train)
        leaf_syn = tree.apply(x_syn)
        sort = np.argsort(leaf_train, kind="stable")
        uniq, start, count = np.unique(leaf_train[sort], return_index=True, return_counts=True)
        pos = np.searchsorted(uniq, leaf_syn)
        pos = np.clip(pos, 0, len(uniq) - 1)
        pick = start[pos] + (rng.random(n) * count[pos]).astype(np.int64)
        out[col.name] = y_values[sort[pick]]
    return _typed(out[columns.names], train, columns.names)


def _quantile_edges(values: pd.Series) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype="float64")
    if len(x) == 0:
        return np.array([0.0, 1.0])
    edges = np.unique(np.quantile(x, np.linspace(0, 1, 11)))
    return edges if len(edges) >= 2 else continuous_edges(values)


def _typed(df: pd.DataFrame, like: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Give the generated columns the dtypes of the training frame."""
    out = pd.DataFrame(index=df.index)
    for name in names:
        s = df[name]
        if pd.api.types.is_numeric_dtype(like[name]):
            out[name] = pd.to_numeric(s, errors="coerce").astype("float64")
        else:
            out[name] = s.astype(object).where(s.notna(), np.nan)
    return out
