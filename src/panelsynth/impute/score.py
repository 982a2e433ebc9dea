"""Score imputations against the answers a mask hid (issue 15).

Per variable, pooled over the requested waves (and by kind: hidden answers ``item``, hidden wave
rows ``wave``):

* ``accuracy``: share of hidden cells whose imputed value equals the hidden answer, averaged over
  the ``m`` imputations (coded variables).
* ``mae``: mean absolute error, same averaging (ordinal and continuous variables; the summary
  averages the ordinal ones only, since units differ).
* ``tvd``: total variation distance between the distribution of the imputed values (all ``m``
  sets pooled) and that of the hidden answers; continuous variables on ten quantile bins of the
  hidden answers.
* ``corr_diff``: preservation of the variable's correlation with the others: per wave, Pearson
  correlations of the real data and of each completed set on the same cells (the cells that were
  observed before masking, so only the hidden answers differ); mean over the other variables
  and the waves of ``|corr_completed - corr_real|``, averaged over the imputations.
* ``coverage``: per wave and numeric variable with hidden cells, the estimate is the mean of the
  variable over the cells observed before masking. Each completed set gives ``Q_k`` (that mean)
  and ``U_k`` (its sampling variance, ``s^2 / n``); :func:`rubin` pools them (``T = Ubar + (1 +
  1/m) B``, t reference with the Barnard-Rubin degrees of freedom, ``nu_com = n - 1``) into a
  95% interval, which covers when it contains the real (before-masking) mean. ``coverage`` is
  the share of covering intervals; :func:`pool_coverage` pools it over repeated masks. Because
  ``T`` also counts the sampling variance of the complete data, a method that imputes well covers
  the before-masking mean in more than 95% of the intervals; a lower figure flags bias or too
  little between-imputation variance. A sharper check, conditional on the sample: the real
  mean differs from the before-masking data only through the hidden cells, so
  ``coverage_between`` uses ``Qbar +- t_{m-1, 0.975} sqrt((1 + 1/m) B)`` (the imputation's own
  uncertainty); a proper imputation covers about 95% there, one with too little
  between-imputation variance (or bias) much less.

Every metric that cannot be computed is ``None`` in the JSON with its reason in ``errors`` and in
``nan_explanations`` (path + reason), as in the other evaluations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from panelsynth.impute.completed import CompletedSet, completed_frames
from panelsynth.impute.gaps import Panel
from panelsynth.values import as_number

KEY = ["wave", "respondent_id", "variable"]
METRICS = ("accuracy", "mae", "tvd", "corr_diff", "coverage")
NUMERIC_TYPES = ("an ordinal", "a continuous", "a binary")


@dataclass(frozen=True)
class RubinInterval:
    """Rubin's rules for one scalar estimate over ``m`` imputations."""

    qbar: float
    ubar: float
    between: float
    total: float
    df: float
    lower: float
    upper: float
    fmi: float  # (1 + 1/m) B / T, the share of the variance due to the missing data


def rubin(
    estimates: np.ndarray, variances: np.ndarray, df_complete: float, level: float = 0.95
) -> RubinInterval:
    """Pool ``m >= 2`` estimates and their variances by Rubin's rules (Barnard-Rubin df).

    ``T = Ubar + (1 + 1/m) B``; ``lambda = (1 + 1/m) B / T``; ``nu_old = (m - 1) / lambda^2``;
    ``nu_obs = (nu_com + 1) / (nu_com + 3) * nu_com * (1 - lambda)``; ``nu = 1 / (1/nu_old +
    1/nu_obs)``; interval ``Qbar +- t_{nu, (1+level)/2} sqrt(T)``.
    """
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(variances, dtype=float)
    m = q.size
    if m < 2:
        raise ValueError("Rubin's rules need at least two imputations")
    qbar = float(q.mean())
    ubar = float(u.mean())
    b = float(q.var(ddof=1))
    t = ubar + (1.0 + 1.0 / m) * b
    lam = (1.0 + 1.0 / m) * b / t if t > 0 else 0.0
    nu_obs = (df_complete + 1.0) / (df_complete + 3.0) * df_complete * (1.0 - lam)
    nu = nu_obs if lam == 0 else 1.0 / (lam**2 / (m - 1) + (1.0 / nu_obs if nu_obs > 0 else 0.0))
    half = float(stats.t.ppf((1.0 + level) / 2.0, nu)) * math.sqrt(t) if t > 0 else 0.0
    return RubinInterval(qbar, ubar, b, t, float(nu), qbar - half, qbar + half, float(lam))


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def _same(a: pd.Series, b: pd.Series) -> np.ndarray:
    an, bn = _num(a), _num(b)
    numeric = an.notna() & bn.notna()
    return np.where(numeric, an == bn, a.astype(str) == b.astype(str))


def _codes(s: pd.Series) -> pd.Series:
    """Values as code texts: the code 3 is ``"3"`` whether written 3, 3.0 or "3"."""
    return pd.Series([str(as_number(str(v))) for v in s], dtype=object)


def _tvd(imputed: pd.Series, hidden: pd.Series, continuous: bool) -> float:
    if continuous:
        h = _num(hidden).dropna()
        edges = np.unique(np.quantile(h, np.linspace(0, 1, 11)))
        if edges.size < 2:
            return 0.0

        def cut(s: pd.Series) -> pd.Series:
            bins = np.searchsorted(edges, _num(s), side="right") - 1
            return pd.Series(np.clip(bins, 0, edges.size - 2))

        imputed, hidden = cut(imputed), cut(h)
    p = _codes(imputed).value_counts(normalize=True)
    q = _codes(hidden).value_counts(normalize=True)
    keys = p.index.union(q.index)
    return float(0.5 * np.abs(p.reindex(keys, fill_value=0) - q.reindex(keys, fill_value=0)).sum())


def _joined(truth: pd.DataFrame, sets: list[CompletedSet]) -> list[pd.DataFrame]:
    out = []
    for done in sets:
        j = truth.merge(done.cells, on=KEY, how="left", suffixes=("", "_imp"))
        if j["value_imp"].isna().any():
            n = int(j["value_imp"].isna().sum())
            raise ValueError(f"imputation {done.k} left {n} hidden cells empty")
        out.append(j)
    return out


def _cell_metrics(joined: list[pd.DataFrame], vtype: str) -> tuple[dict, dict]:
    vals: dict[str, float | None] = {}
    errs: dict[str, str] = {}
    if vtype == "a continuous":
        vals["accuracy"] = None
        errs["accuracy"] = "continuous variable: exact agreement is not meaningful"
    else:
        vals["accuracy"] = float(
            np.mean([_same(j["value"], j["value_imp"]).mean() for j in joined])
        )
    if vtype in ("an ordinal", "a continuous"):
        vals["mae"] = float(
            np.mean([(_num(j["value"]) - _num(j["value_imp"])).abs().mean() for j in joined])
        )
    else:
        vals["mae"] = None
        errs["mae"] = f"{vtype} variable: no order for an absolute error"
    pooled = pd.concat([j["value_imp"] for j in joined], ignore_index=True)
    vals["tvd"] = _tvd(pooled, joined[0]["value"], vtype == "a continuous")
    return vals, errs


def score_imputations(
    panel: Panel,
    masked: Panel,
    truth: pd.DataFrame,
    sets: list[CompletedSet],
    *,
    method: str = "",
) -> dict:
    """Score ``m`` completed sets of ``masked`` against the ``truth`` hidden from ``panel``.

    Returns:
        A JSON-ready dict: ``summary`` (per kind ``all``/``item``/``wave``: the mean of each
        metric over variables), ``variables`` (per variable: metrics, ``n_hidden``, ``errors``),
        ``intervals`` (one per wave and numeric variable with hidden cells) and
        ``nan_explanations``.
    """
    types = {v: t for pw in panel.waves.values() for v, t in pw.var_types.items()}
    joined = _joined(truth, sets)
    frames = [completed_frames(masked, done) for done in sets]
    corr = _corr_diffs(panel, frames)
    intervals = _intervals(panel, truth, frames) if len(sets) >= 2 else []
    out: dict = {"method": method, "m": len(sets), "n_hidden": {}, "summary": {}, "variables": {}}
    for kind in ("all", "item", "wave"):
        sel = [j if kind == "all" else j[j["kind"] == kind] for j in joined]
        out["n_hidden"][kind] = int(len(sel[0]))
        per_var = {}
        for v in sorted(types):
            part = [j[j["variable"] == v] for j in sel]
            if not len(part[0]):
                continue
            vals, errs = _cell_metrics(part, types[v])
            if kind == "all":
                vals["corr_diff"], err = corr.get(v, (None, "no other numeric variable"))
                if err:
                    errs["corr_diff"] = err
                cov = [iv["covered"] for iv in intervals if iv["variable"] == v]
                vals["coverage"] = float(np.mean(cov)) if cov else None
                if not cov:
                    errs["coverage"] = (
                        "needs m >= 2 imputations" if len(sets) < 2 else "no numeric interval"
                    )
            per_var[v] = {**vals, "n_hidden": int(len(part[0])), "errors": errs}
        summary = {}
        for name in METRICS:
            xs = [
                r[name]
                for v, r in per_var.items()
                if r.get(name) is not None and (name != "mae" or types[v] == "an ordinal")
            ]
            summary[name] = float(np.mean(xs)) if xs else None
        if kind == "all":
            out["variables"] = per_var
            cov = [iv["covered"] for iv in intervals]
            summary["coverage"] = float(np.mean(cov)) if cov else None
            summary["n_intervals"] = len(cov)
            summary["coverage_between"] = (
                float(np.mean([iv["covered_between"] for iv in intervals])) if intervals else None
            )
            summary["interval_abs_bias"] = (
                float(np.mean([abs(iv["pooled_mean"] - iv["real_mean"]) for iv in intervals]))
                if intervals
                else None
            )
            summary["interval_width"] = (
                float(np.mean([iv["upper"] - iv["lower"] for iv in intervals]))
                if intervals
                else None
            )
            summary["fmi"] = float(np.mean([iv["fmi"] for iv in intervals])) if intervals else None
        else:
            summary.pop("corr_diff")
            summary.pop("coverage")
        out["summary"][kind] = summary
    out["intervals"] = intervals
    out["nan_explanations"] = nan_explanations(out)
    return out


def _corr_diffs(panel: Panel, frames: list[dict[str, pd.DataFrame]]) -> dict:
    diffs: dict[str, list[float]] = {}
    for w, pw in panel.waves.items():
        num = [v for v in pw.variables if pw.var_types[v] in NUMERIC_TYPES]
        if len(num) < 2:
            continue
        real = pw.frame[num].apply(_num)
        c_real = real.corr()
        for fr in frames:
            comp = fr[w].reindex(index=real.index, columns=num).apply(_num).where(real.notna())
            d = (comp.corr() - c_real).abs()
            for v in num:
                others = d.loc[v].drop(v).dropna()
                if len(others):
                    diffs.setdefault(v, []).append(float(others.mean()))
    return {v: (float(np.mean(x)), None) for v, x in diffs.items()}


def _intervals(panel: Panel, truth: pd.DataFrame, frames: list[dict]) -> list[dict]:
    out = []
    for w, pw in panel.waves.items():
        hidden = truth[truth["wave"] == w]
        for v in pw.variables:
            if pw.var_types[v] not in NUMERIC_TYPES or not (hidden["variable"] == v).any():
                continue
            real = _num(pw.frame[v]).dropna()
            n = real.size
            if n < 3:
                continue
            q, u = [], []
            for fr in frames:
                x = _num(fr[w][v].reindex(real.index))
                q.append(float(x.mean()))
                u.append(float(x.var(ddof=1)) / n)
            r = rubin(np.array(q), np.array(u), n - 1)
            m = len(q)
            half_b = float(stats.t.ppf(0.975, m - 1)) * math.sqrt((1.0 + 1.0 / m) * r.between)
            out.append(
                {
                    "wave": w,
                    "variable": v,
                    "real_mean": float(real.mean()),
                    "pooled_mean": r.qbar,
                    "lower": r.lower,
                    "upper": r.upper,
                    "df": r.df,
                    "fmi": r.fmi,
                    "covered": bool(r.lower <= float(real.mean()) <= r.upper),
                    "covered_between": bool(abs(r.qbar - float(real.mean())) <= half_b),
                }
            )
    return out


def pool_coverage(results: list[dict], key: str = "covered") -> float | None:
    """Coverage over repeated masks: the share of covering intervals among all of them
    (``key="covered_between"``: of the between-imputation intervals)."""
    cov = [iv[key] for res in results for iv in res["intervals"]]
    return float(np.mean(cov)) if cov else None


def nan_explanations(result: dict) -> list[dict[str, str]]:
    """Every ``None`` metric with its reason (``path``, ``reason``)."""
    out = []
    for v, rec in result["variables"].items():
        for name in METRICS:
            if name in rec and rec[name] is None:
                reason = rec["errors"].get(name, "unexplained")
                out.append({"path": f"variables.{v}.{name}", "reason": reason})
    for kind, summ in result["summary"].items():
        for name, val in summ.items():
            if val is None:
                out.append({"path": f"summary.{kind}.{name}", "reason": "no variable has it"})
    return out
