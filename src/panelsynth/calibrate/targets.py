"""The real per-cluster marginals a calibrated selection matches, and the distance to them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.calibrate.profiles import allocate
from panelsynth.data import cluster_shares
from panelsynth.generate import (
    row_key,
)
from panelsynth.pydantic_models.rows import RowSpec

#: Bins of a continuous variable when its marginal is matched by the selection.
N_MATCH_BINS = 10


# ----------------------------------------------------------------------------------------------
# selection
@dataclass
class _Var:
    name: str
    categories: list[Any]  # category labels; the NA category is the label None
    edges: np.ndarray | None  # interior bin edges of a continuous variable
    na_category: bool  # NA counted as a category (the mode allows NA)


@dataclass
class Targets:
    """What the selection aims at: cluster counts and per-cluster category shares."""

    cluster_column: str
    counts: dict[int, int]
    shares: dict[int, float]
    variables: list[_Var]
    distributions: dict[int, list[np.ndarray]]  # cluster -> per variable, shares of categories

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Category index of every cell (rows x variables); -1 for a value with no category."""
        out = np.full((len(frame), len(self.variables)), -1, dtype=np.int64)
        for j, var in enumerate(self.variables):
            out[:, j] = _categorise(frame[var.name], var)
        return out


def build_targets(
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    *,
    cluster_column: str,
    n: int,
    variables: Sequence[str] | None = None,
) -> Targets:
    """The real cluster counts for ``n`` rows and the real per-cluster marginals.

    Coded variables keep their codes as categories; continuous ones are cut at the deciles of the
    real values. NA is a category of its own where the spec allows NA (full mode); elsewhere the
    target is the distribution of the answers given (NA excluded), as the synthetic rows of the
    dense mode have no NA.

    Args:
        real: Real respondents of the wave (all of them: cluster shares come from here).
        specs: Column specs of the wave.
        cluster_column: The cluster column.
        n: Rows to select.
        variables: Variables to match (default: every spec but the cluster column).
    """
    names = (
        list(variables)
        if variables is not None
        else [s.name for s in specs if s.name != cluster_column]
    )
    by_name = {s.name: s for s in specs}
    labels = pd.to_numeric(real[cluster_column], errors="coerce")
    shares = cluster_shares(real[cluster_column])
    clusters = list(shares)
    counts = allocate(shares, n)
    vars_: list[_Var] = []
    for name in names:
        spec = by_name.get(name)
        na = bool(spec.nullable) if spec is not None else False
        if spec is not None and spec.codes:
            cats: list[Any] = [row_key([c])[0] for c in spec.codes]
            edges = None
        else:
            x = pd.to_numeric(real[name], errors="coerce").dropna().to_numpy(dtype=float)
            qs = np.quantile(x, np.linspace(0, 1, N_MATCH_BINS + 1)[1:-1]) if len(x) else []
            edges = np.unique(np.asarray(qs, dtype=float))
            cats = list(range(len(edges) + 1))
        if na:
            cats = [*cats, None]
        vars_.append(_Var(name, cats, edges, na))
    targets = Targets(cluster_column, counts, shares, vars_, {})
    codes = targets.codes(real)
    for c in clusters:
        mask = (labels == c).to_numpy()
        dists = []
        for j, var in enumerate(vars_):
            col = codes[mask, j]
            col = col[col >= 0]
            k = len(var.categories)
            d = np.bincount(col, minlength=k).astype(float)
            dists.append(d / d.sum() if d.sum() else np.full(k, 1.0 / k))
        targets.distributions[c] = dists
    return targets


def _categorise(values: pd.Series, var: _Var) -> np.ndarray:
    out = np.full(len(values), -1, dtype=np.int64)
    na = values.isna().to_numpy()
    if var.na_category:
        out[na] = len(var.categories) - 1
    if var.edges is not None:
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        ok = ~np.isnan(x)
        out[ok] = np.searchsorted(var.edges, x[ok], side="right")
        return out
    index = {c: i for i, c in enumerate(var.categories) if c is not None}
    for i, v in enumerate(values.tolist()):
        if not na[i]:
            out[i] = index.get(row_key([v])[0], -1)
    return out


def marginal_distance(frame: pd.DataFrame, targets: Targets) -> dict[str, Any]:
    """Total variation distance of each variable's per-cluster marginal from the real one.

    Returns:
        ``mean_tvd`` (mean over clusters and variables), ``per_cluster`` (cluster -> mean),
        ``per_variable`` (cluster -> variable -> TVD), ``cluster_shares`` (real vs these rows)
        and ``cluster_share_tvd``.
    """
    labels = pd.to_numeric(frame[targets.cluster_column], errors="coerce")
    codes = targets.codes(frame)
    per_var: dict[str, dict[str, float]] = {}
    per_cluster: dict[str, float] = {}
    values: list[float] = []
    for c, dists in targets.distributions.items():
        mask = (labels == c).to_numpy()
        row: dict[str, float] = {}
        for j, var in enumerate(targets.variables):
            col = codes[mask, j]
            col = col[col >= 0]
            if len(col) == 0:
                tvd = 1.0 if mask.any() or len(frame) else math.nan
            else:
                got = np.bincount(col, minlength=len(var.categories)) / len(col)
                tvd = 0.5 * float(np.abs(got - dists[j]).sum())
            row[var.name] = round(tvd, 6)
        per_var[str(c)] = row
        ok = [v for v in row.values() if not math.isnan(v)]
        per_cluster[str(c)] = round(float(np.mean(ok)), 6) if ok else math.nan
        values += ok
    shares_here = cluster_shares(frame[targets.cluster_column])
    shares = {
        str(c): {"real": round(s, 6), "rows": round(float(shares_here.get(c, 0.0)), 6)}
        for c, s in targets.shares.items()
    }
    share_tvd = 0.5 * sum(abs(v["real"] - v["rows"]) for v in shares.values())
    return {
        "mean_tvd": round(float(np.mean(values)), 6) if values else math.nan,
        "per_cluster": per_cluster,
        "per_variable": per_var,
        "cluster_shares": shares,
        "cluster_share_tvd": round(share_tvd, 6),
    }
