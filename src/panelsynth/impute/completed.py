"""One completed data set of a multiple imputation, and the values an imputer may write.

Every imputer (the statistical baselines here, the LLM strategy later) returns ``m``
:class:`CompletedSet` objects: the imputed cells in long form plus the drawn clusters of the absent
respondents. :func:`completed_frames` turns one into full wave tables; :func:`snap_to_codes` keeps
a value inside the variable's allowed codes or range (codes and bounds as for generation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from panelsynth.dictionaries import CODED_TYPES, VariableMeta
from panelsynth.impute.gaps import Panel

CELL_COLUMNS = ["wave", "respondent_id", "variable", "value"]


@dataclass
class CompletedSet:
    """Imputation ``k`` (1-based) of a panel.

    Attributes:
        k: Imputation number, 1..m.
        cells: Columns ``wave``, ``respondent_id``, ``variable``, ``value``: exactly the cells
            that were missing (item gaps and every variable of an absent row).
        clusters: Wave -> drawn cluster of each absent respondent (index respondent id).
    """

    k: int
    cells: pd.DataFrame
    clusters: dict[str, pd.Series]


def completed_frames(panel: Panel, done: CompletedSet) -> dict[str, pd.DataFrame]:
    """Per wave: every respondent (present ones first, in file order, then the absent ones), the
    wave's variables with the gaps filled and the cluster column (drawn for absent rows)."""
    out = {}
    for w, pw in panel.waves.items():
        cols = [*pw.variables, panel.cluster_column]
        frame = pw.frame[cols].astype(object).copy()
        drawn = done.clusters.get(w)
        if drawn is not None and len(drawn):
            extra = pd.DataFrame(index=drawn.index, columns=cols, dtype=object)
            extra[panel.cluster_column] = drawn.to_numpy()
            frame = pd.concat([frame, extra])
        cells = done.cells[done.cells["wave"] == w]
        for var, grp in cells.groupby("variable", sort=False):
            frame.loc[grp["respondent_id"].to_numpy(), var] = grp["value"].to_numpy()
        out[w] = frame
    return out


def allowed_codes(meta: VariableMeta | None) -> list[float] | None:
    """The numeric response codes of a coded variable, sorted (``None`` if any is text)."""
    if meta is None or not meta.responses:
        return None
    codes = meta.codes()
    if not all(isinstance(c, int | float) for c in codes):
        return None
    return sorted(float(c) for c in codes)


def snap_to_codes(
    values: np.ndarray, vtype: str, meta: VariableMeta | None, observed: pd.Series
) -> np.ndarray:
    """Round imputed numbers to the nearest allowed code (coded types) or clip them to the range
    (continuous; whole numbers when every observed answer is whole)."""
    x = np.asarray(values, dtype=float)
    if vtype in CODED_TYPES:
        codes = allowed_codes(meta)
        if codes is None:
            codes = sorted(
                float(c) for c in pd.to_numeric(observed, errors="coerce").dropna().unique()
            )
        arr = np.asarray(codes)
        idx = np.abs(x[:, None] - arr[None, :]).argmin(axis=1)
        return arr[idx]
    obs = pd.to_numeric(observed, errors="coerce").dropna()
    lo, hi = meta.range if meta is not None and meta.range is not None else (obs.min(), obs.max())
    x = np.clip(x, lo, hi)
    if len(obs) and (obs % 1 == 0).all():
        x = np.clip(np.rint(x), np.ceil(lo), np.floor(hi))
    return x
