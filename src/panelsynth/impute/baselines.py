"""Statistical imputers of a panel's gaps, one interface (issue 15).

Every imputer has ``name`` and ``impute(panel, gaps, m, seed) -> list[CompletedSet]`` (``m``
completed data sets). Imputation ``k`` uses its own seed (``[seed, k]``), so the sets differ and
the same seed reproduces them; each set draws the absent respondents' clusters from the real
transition table again (:func:`draw_missing_clusters`), so the between-imputation variance
includes the uncertainty of the cluster.

* :class:`HotDeck`: per cell, the answer of a random donor of the same cluster in the same wave
  who answered the variable (the whole wave when the cluster has no donor).
* :class:`LastObservationCarriedForward`: an absent row takes the respondent's most recent
  observed answer to each variable in an earlier requested wave. Item gaps, and variables the
  respondent never answered before, fall back to the hot-deck (LOCF has nothing to carry there).
  LOCF is deterministic, so its between-imputation variance comes only from those fallbacks.
* :class:`ChainedEquations`: scikit-learn's ``IterativeImputer`` (MICE with ``BayesianRidge``,
  ``sample_posterior=True``, ``random_state`` distinct per imputation, 5 rounds as R's mice),
  one model per wave. Columns:
  the wave's variables, the cluster (one-hot; drawn for absent rows) and the respondent's answers
  in the previous requested wave (so an absent row is predicted from its own history). Ordinal,
  binary and continuous variables are modelled as numbers and then rounded to the nearest allowed
  code or clipped to the range; a nominal ("a categorical") variable enters as one indicator
  column per code and its imputed code is the indicator with the largest imputed value.
  With ``matching="pmm"`` the numeric variables take instead the observed answer of a donor by
  predictive mean matching (R's ``mice`` default for numbers), so imputed answers keep the
  observed distribution of the codes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from panelsynth.impute.completed import CELL_COLUMNS, CompletedSet, allowed_codes, snap_to_codes
from panelsynth.impute.gaps import Gaps, Panel, cluster_of, draw_missing_clusters

log = logging.getLogger("panelsynth")


class Imputer(Protocol):
    """What every imputation method offers."""

    name: str

    def impute(self, panel: Panel, gaps: Gaps, m: int, seed: int) -> list[CompletedSet]:
        """Return ``m`` completed data sets of ``panel``'s ``gaps``."""
        ...


def _seeds(seed: int, k: int) -> tuple[np.random.Generator, int]:
    """Generator of imputation ``k`` and an integer seed for the cluster draw / scikit-learn."""
    ss = np.random.SeedSequence([int(seed), int(k)])
    return np.random.default_rng(ss), int(ss.generate_state(1)[0])


def _check_m(m: int) -> None:
    if m < 1:
        raise ValueError(f"m must be at least 1, not {m}")


def hot_deck_values(
    panel: Panel,
    wave: str,
    variable: str,
    ids: np.ndarray,
    clusters: pd.Series,
    rng: np.random.Generator,
) -> np.ndarray:
    """A random donor's answer per id, among the wave's respondents of the id's cluster."""
    frame = panel.waves[wave].frame
    answered = frame[variable].dropna()
    donors_cluster = frame.loc[answered.index, panel.cluster_column].astype(int)
    if answered.empty:
        raise ValueError(f"wave {wave}: no respondent answered {variable!r}, no donor for it")
    target = clusters.reindex(ids).to_numpy()
    out = np.empty(len(ids), dtype=object)
    for c in np.unique(target):
        where = np.flatnonzero(target == c)
        pool = answered[donors_cluster == c].to_numpy()
        if pool.size == 0:
            pool = answered.to_numpy()
        out[where] = pool[rng.integers(0, pool.size, size=where.size)]
    return out


def _cells_frame(rows: list[pd.DataFrame]) -> pd.DataFrame:
    rows = [r for r in rows if len(r)]
    if not rows:
        return pd.DataFrame(columns=CELL_COLUMNS)
    return pd.concat(rows, ignore_index=True)[CELL_COLUMNS]


class HotDeck:
    """Random donor from the same cluster and wave, cell by cell."""

    name = "hot-deck"

    def impute(self, panel: Panel, gaps: Gaps, m: int, seed: int) -> list[CompletedSet]:
        _check_m(m)
        todo = gaps.all_cells(panel)
        out = []
        for k in range(1, m + 1):
            rng, sub = _seeds(seed, k)
            drawn = draw_missing_clusters(panel, gaps, sub)
            parts = []
            for (w, v), grp in todo.groupby(["wave", "variable"], sort=False):
                ids = grp["respondent_id"].to_numpy()
                vals = hot_deck_values(panel, w, v, ids, cluster_of(panel, w, drawn), rng)
                parts.append(grp.assign(value=vals))
            out.append(CompletedSet(k, _cells_frame(parts), drawn))
        return out


class LastObservationCarriedForward:
    """Absent rows carry each answer forward; item gaps fall back to the hot-deck."""

    name = "LOCF"

    def impute(self, panel: Panel, gaps: Gaps, m: int, seed: int) -> list[CompletedSet]:
        _check_m(m)
        todo = gaps.all_cells(panel)
        out = []
        for k in range(1, m + 1):
            rng, sub = _seeds(seed, k)
            drawn = draw_missing_clusters(panel, gaps, sub)
            parts = []
            for (w, v), grp in todo.groupby(["wave", "variable"], sort=False):
                ids = grp["respondent_id"].to_numpy()
                vals = np.full(len(ids), None, dtype=object)
                rows = (grp["kind"] == "wave").to_numpy()  # item gaps are not carried
                if rows.any():
                    vals[rows] = self._carried(panel, w, v, ids[rows])
                gap = pd.isna(pd.Series(vals)).to_numpy()
                if gap.any():
                    clusters = cluster_of(panel, w, drawn)
                    vals[gap] = hot_deck_values(panel, w, v, ids[gap], clusters, rng)
                parts.append(grp.assign(value=vals))
            out.append(CompletedSet(k, _cells_frame(parts), drawn))
        return out

    @staticmethod
    def _carried(panel: Panel, wave: str, variable: str, ids: np.ndarray) -> np.ndarray:
        vals = pd.Series(None, index=pd.Index(ids, dtype=object), dtype=object)
        earlier = panel.order[: panel.order.index(wave)]
        for w in reversed(earlier):
            frame = panel.waves[w].frame
            if variable not in frame.columns:
                continue
            need = vals.index[vals.isna().to_numpy()].intersection(frame.index)
            found = frame.loc[need, variable].dropna()
            vals.loc[found.index] = found.to_numpy()
        return vals.to_numpy(dtype=object)


class ChainedEquations:
    """MICE by scikit-learn's ``IterativeImputer`` with posterior draws, one model per wave."""

    def __init__(self, max_iter: int = 5, matching: Literal["round", "pmm"] = "round") -> None:
        if matching not in ("round", "pmm"):
            raise ValueError(f"matching must be 'round' or 'pmm', not {matching!r}")
        self.max_iter = max_iter
        self.matching = matching
        self.name = "chained equations" + (" (PMM)" if matching == "pmm" else "")

    def impute(self, panel: Panel, gaps: Gaps, m: int, seed: int) -> list[CompletedSet]:
        _check_m(m)
        todo = gaps.all_cells(panel)
        out = []
        for k in range(1, m + 1):
            _, sub = _seeds(seed, k)
            drawn = draw_missing_clusters(panel, gaps, sub)
            parts = []
            for w in panel.order:
                cells = todo[todo["wave"] == w]
                if len(cells):
                    parts.append(self._wave(panel, w, cells, drawn, sub))
            out.append(CompletedSet(k, _cells_frame(parts), drawn))
        return out

    def _wave(
        self, panel: Panel, wave: str, cells: pd.DataFrame, drawn: dict, seed: int
    ) -> pd.DataFrame:
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer
        from threadpoolctl import threadpool_limits

        pw = panel.waves[wave]
        clusters = cluster_of(panel, wave, drawn)
        ids = clusters.index
        blocks: dict[str, list[str]] = {}
        cols: dict[str, np.ndarray] = {}
        for v in pw.variables:
            col = pw.frame[v].reindex(ids)
            codes = allowed_codes(pw.metadata.get(v))
            if pw.var_types[v] == "a categorical" or (
                pw.var_types[v] != "a continuous" and codes is None
            ):
                levels = codes or sorted(col.dropna().unique(), key=str)
                names = []
                for j, lev in enumerate(levels):
                    name = f"{v}=={j}"
                    cols[name] = np.where(col.isna(), np.nan, (col == lev).astype(float))
                    names.append(name)
                blocks[v] = names
            else:
                cols[v] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        for c in sorted(clusters.unique()):
            cols[f"cluster=={c}"] = (clusters.to_numpy() == c).astype(float)
        prev = panel.previous(wave)
        if prev is not None:
            pf = panel.waves[prev].frame
            # auxiliary, kept complete (mean + an indicator of "not answered before") so the
            # imputer does not spend a model on each of them
            for v in panel.waves[prev].variables:
                x = pd.to_numeric(pf[v], errors="coerce").reindex(ids).to_numpy(dtype=float)
                seen = np.isfinite(x)
                if seen.sum() >= 2:
                    cols[f"prev:{v}"] = np.where(seen, x, x[seen].mean())
                    if not seen.all():
                        cols[f"prev:{v}:missing"] = (~seen).astype(float)
        names = list(cols)
        X = np.column_stack([cols[n] for n in names])
        imp = IterativeImputer(
            sample_posterior=True,
            max_iter=self.max_iter,
            random_state=seed,
            skip_complete=True,
            keep_empty_features=True,
        )
        # one BLAS thread: small least-squares problems run ~40x slower oversubscribed
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # ConvergenceWarning of the posterior draws
            filled = pd.DataFrame(imp.fit_transform(X), index=ids, columns=names)
        parts = []
        for v, grp in cells.groupby("variable", sort=False):
            rid = grp["respondent_id"].to_numpy()
            if v in blocks:
                levels = allowed_codes(pw.metadata.get(v)) or sorted(
                    pw.frame[v].dropna().unique(), key=str
                )
                best = filled.loc[rid, blocks[v]].to_numpy().argmax(axis=1)
                vals = np.asarray(levels, dtype=object)[best]
            elif self.matching == "pmm":
                observed = pw.frame[v].reindex(ids)
                vals = _pmm(filled, v, observed, rid, np.random.default_rng([seed, len(parts)]))
            else:
                raw = filled.loc[rid, v].to_numpy()
                vals = snap_to_codes(raw, pw.var_types[v], pw.metadata.get(v), pw.frame[v])
            parts.append(grp.assign(value=list(vals)))
        return pd.concat(parts, ignore_index=True)


def _pmm(
    filled: pd.DataFrame,
    variable: str,
    observed: pd.Series,
    targets: np.ndarray,
    rng: np.random.Generator,
    donors: int = 5,
) -> np.ndarray:
    """Predictive mean matching (type 1, as R's ``mice.impute.pmm``): regress the variable on
    the completed other columns over its observed rows; the observed rows get the posterior-mean
    prediction, the targets one from coefficients drawn from the posterior; each target takes
    the observed answer of a random one of the ``donors`` closest observed rows."""
    from sklearn.linear_model import BayesianRidge

    seen = observed.notna().to_numpy()
    X = filled.drop(columns=[variable]).to_numpy()
    y = pd.to_numeric(observed[seen], errors="coerce").to_numpy(dtype=float)
    mean = X[seen].mean(axis=0)
    model = BayesianRidge(fit_intercept=False).fit(X[seen] - mean, y - y.mean())
    beta = rng.multivariate_normal(model.coef_, model.sigma_)
    pred_obs = (X[seen] - mean) @ model.coef_
    pos = filled.index.get_indexer(targets)
    pred_mis = (X[pos] - mean) @ beta
    k = min(donors, y.size)
    nearest = np.argpartition(np.abs(pred_mis[:, None] - pred_obs[None, :]), k - 1, axis=1)[:, :k]
    pick = nearest[np.arange(len(pos)), rng.integers(0, k, size=len(pos))]
    return observed[seen].to_numpy(dtype=object)[pick]


def _pmm_imputer() -> ChainedEquations:
    return ChainedEquations(matching="pmm")


#: Method name (as a future ``--method`` would take it) -> imputer factory.
BASELINES: dict[str, Callable[[], Imputer]] = {
    "hot-deck": HotDeck,
    "locf": LastObservationCarriedForward,
    "mice": ChainedEquations,
    "mice-pmm": _pmm_imputer,
}
