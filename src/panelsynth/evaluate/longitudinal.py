"""Longitudinal evaluation of a synthetic panel (issue 19, item 4): pure functions over
``{wave: frame}`` dicts whose frames carry ``study.id_column`` (linked respondents).

For each pair of consecutive generated waves (in the order given):

- **stability** per item present in both waves, over the respondents present in both who
  answered it in both: the share with an unchanged answer, and the Spearman correlation of the
  two waves' answers — real vs synthetic; the *stability error* is mean |real - synthetic| over
  items and pairs, separately for the unchanged share and for Spearman (0 = as stable as the real
  panel);
- **transition fidelity**: 1 - total variation distance of the *joint* (cluster in wave a,
  cluster in wave b) table over respondents present in both, the convention of the cross-sectional
  :class:`~panelsynth.evaluate.metrics.TransitionSimilarity` (reused): a joint TVD also penalises
  a wrong previous-cluster mix, which a row-weighted TVD of the conditional tables would hide;
- **retention** per previous cluster: the share of wave a's cluster-k respondents present in b,
  real vs synthetic (absolute difference);
- a **trajectory C2ST**: every respondent's waves side by side (``item@wave`` and
  ``cluster@wave``; a wave the respondent missed is all NaN), scored by the existing
  :class:`~panelsynth.evaluate.metrics.GradientBoostingC2ST` (cross-validated, 1 =
  indistinguishable).
  On both sides the respondents are the first generated wave's (the synthetic panel is a cohort:
  nobody enters after its first wave), so a real refreshment sample is not held against it (nor
  against the real-half floor); respondents who enter later are judged by the other figures.

:func:`panel_section` scores the synthetic panel, the real-half floor (two halves of the real
respondents, :data:`~panelsynth.evaluate.suite.FLOOR_REPEATS` seeded splits with their spread)
and the two baselines of :mod:`panelsynth.evaluate.panel_baselines` with this same code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.data import id_text
from panelsynth.errors import PanelDataError
from panelsynth.evaluate.columns import EvalColumn, EvalColumns
from panelsynth.evaluate.metrics import (
    GradientBoostingC2ST,
    MetricResult,
    TransitionSimilarity,
    frame_records,
    safe_compute,
)
from panelsynth.evaluate.panel_baselines import cart_panel, item_column, unlinked_panel
from panelsynth.evaluate.suite import FLOOR_REPEATS

log = logging.getLogger("panelsynth")

Frames = Mapping[str, pd.DataFrame]

SYNTHETIC = "synthetic"
HOLDOUT = "_real_holdout"
UNLINKED = "_baseline_unlinked"
CART_PANEL = "_baseline_cart_panel"
#: Figures whose spread over the floor's seeded splits is reported (the C2ST is the first split's).
SPREAD_KEYS = (
    "stability_error_unchanged",
    "stability_error_spearman",
    "transition_fidelity",
    "retention_mean_abs_diff",
    "retention_max_abs_diff",
)

PROTOCOL = {
    "pairs": "Consecutive generated waves, in the order evaluated (1,3,5: pairs 1-3 and 3-5).",
    "stability": "Per item present in both waves of a pair, over the respondents present in both "
    "who answered it in both: share with an unchanged answer, and the Spearman correlation of "
    "the two answers. stability_error_* = mean |real - candidate| over items and pairs.",
    "transition_fidelity": "1 - TVD of the joint (cluster in a, cluster in b) table over the "
    "respondents present in both waves, averaged over pairs.",
    "retention": "Share of wave a's respondents of each cluster present in wave b; "
    "retention_*_abs_diff over (pair, cluster).",
    "c2st_trajectory": "Gradient-boosting C2ST (the cross-sectional one) on every respondent's "
    "waves side by side (item@wave, cluster@wave; a missed wave is NaN), over the respondents "
    "of the first generated wave on both sides; 1 = indistinguishable.",
    "floor": "The real panel's respondents split at random into halves A and B; A scored as the "
    "candidate against B with the same code, on several seeded splits (spread: min, max, "
    "mean, sd). The C2ST is the first split's.",
    "floor_held_out": "--holdout runs: the real panel is the held-out respondents; the floor is a "
    "seeded sample of the training respondents (as many as the held-out ones, every wave of a "
    "person) scored against them, on several seeded samples; the CART panel is fitted on the "
    "training respondents.",
    "unlinked": "The candidate's own rows with the links cut: rows of consecutive waves paired "
    "at random within the same cluster path (the per-wave method's output read as a panel).",
    "cart_panel": "First wave by the sequential CART baseline per cluster; each later wave by "
    "sequential CART conditioned on the respondent's previous answers, per cluster, on the "
    "candidate's cluster path and presence.",
}

FLOOR_HELD_OUT = PROTOCOL["floor_held_out"]


# ---------------------------------------------------------------------------------- linking
def keyed(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """The frame indexed by its ids as text (:func:`panelsynth.data.id_text`), first row per id."""
    out = frame.set_index(frame[id_column].map(id_text))
    return out[~out.index.duplicated()]


def linked(a: pd.DataFrame, b: pd.DataFrame, id_column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the respondents present in both frames, aligned by id."""
    ka, kb = keyed(a, id_column), keyed(b, id_column)
    ids = ka.index.intersection(kb.index, sort=False)
    return ka.loc[ids], kb.loc[ids]


def wave_pairs(waves: Sequence[str]) -> list[tuple[str, str]]:
    return list(zip(waves, waves[1:], strict=False))


# ---------------------------------------------------------------------------------- figures
def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = pd.Series(x).rank().to_numpy()
    ry = pd.Series(y).rank().to_numpy()
    if len(rx) < 3 or np.std(rx) == 0 or np.std(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _comparable(s: pd.Series) -> np.ndarray:
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().sum() == s.notna().sum():
        return num.to_numpy(dtype="float64")
    return s.map(lambda v: None if pd.isna(v) else str(v)).to_numpy(dtype=object)


def stability_table(
    frames: Frames, waves: Sequence[str], *, id_column: str, items: Sequence[str]
) -> pd.DataFrame:
    """Per (pair, item): respondents compared, unchanged share, Spearman correlation."""
    rows = []
    for a, b in wave_pairs(waves):
        la, lb = linked(frames[a], frames[b], id_column)
        for item in items:
            if item not in la.columns or item not in lb.columns:
                continue
            xa, xb = _comparable(la[item]), _comparable(lb[item])
            ok = ~(pd.isna(xa) | pd.isna(xb))
            n = int(ok.sum())
            xa, xb = xa[ok], xb[ok]
            unchanged = float(np.mean(xa == xb)) if n else math.nan
            spearman = _spearman(xa, xb) if xa.dtype != object else math.nan
            rows.append(
                {
                    "pair": f"{a}-{b}",
                    "item": item,
                    "n": n,
                    "unchanged": unchanged,
                    "spearman": spearman,
                }
            )
    return pd.DataFrame(rows, columns=["pair", "item", "n", "unchanged", "spearman"])


def stability(
    real: Frames,
    candidate: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    items: Sequence[str],
) -> pd.DataFrame:
    """Real vs candidate stability per (pair, item) with the absolute differences."""
    r = stability_table(real, waves, id_column=id_column, items=items)
    c = stability_table(candidate, waves, id_column=id_column, items=items)
    out = r.merge(c, on=["pair", "item"], how="inner", suffixes=("_real", "_synthetic"))
    out["unchanged_abs_diff"] = (out["unchanged_real"] - out["unchanged_synthetic"]).abs()
    out["spearman_abs_diff"] = (out["spearman_real"] - out["spearman_synthetic"]).abs()
    return out


def _transition_columns() -> EvalColumns:
    return EvalColumns(
        (
            EvalColumn("cluster", "categorical", None, "cluster"),
            EvalColumn("prev_cluster", "categorical", None, "prev_cluster"),
        )
    )


def transitions(
    real: Frames,
    candidate: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    cluster_column: str = "cluster",
) -> tuple[float, list[dict[str, Any]]]:
    """(mean 1 - joint TVD over pairs, per pair: score and the real/candidate tables)."""
    metric = TransitionSimilarity(_transition_columns())
    out = []
    for a, b in wave_pairs(waves):
        sides = []
        for frames in (real, candidate):
            la, lb = linked(frames[a], frames[b], id_column)
            sides.append(
                pd.DataFrame(
                    {
                        "prev_cluster": la[cluster_column].to_numpy(),
                        "cluster": lb[cluster_column].to_numpy(),
                    }
                )
            )
        res = safe_compute(metric, sides[0], sides[1])
        entry = {"pair": f"{a}-{b}", "score": _num(res.score)}
        if res.error:
            entry["error"] = res.error
        if res.details is not None:
            entry["table"] = frame_records(res.details)
        out.append(entry)
    scores = [e["score"] for e in out if e["score"] is not None]
    return (float(np.mean(scores)) if scores else math.nan), out


def retention(
    real: Frames,
    candidate: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    cluster_column: str = "cluster",
) -> pd.DataFrame:
    """Per (pair, cluster of wave a): share present in wave b, real vs candidate."""
    rows = []
    for a, b in wave_pairs(waves):
        shares = []
        for frames in (real, candidate):
            ka, kb = keyed(frames[a], id_column), keyed(frames[b], id_column)
            stays = ka.index.isin(kb.index)
            cl = pd.to_numeric(ka[cluster_column], errors="coerce")
            shares.append(pd.Series(stays, index=ka.index).groupby(cl.to_numpy()).mean())
        for c in sorted(set(shares[0].index) | set(shares[1].index)):
            r, s = shares[0].get(c, math.nan), shares[1].get(c, math.nan)
            rows.append(
                {
                    "pair": f"{a}-{b}",
                    "prev_cluster": int(c),
                    "real": float(r),
                    "synthetic": float(s),
                    "abs_diff": abs(float(r) - float(s)),
                }
            )
    return pd.DataFrame(rows, columns=["pair", "prev_cluster", "real", "synthetic", "abs_diff"])


def trajectory_frame(
    frames: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    items: Sequence[str],
    cluster_column: str = "cluster",
    cohort: bool = True,
) -> pd.DataFrame:
    """One row per respondent: ``item@wave`` and ``cluster@wave`` for every wave (NaN where the
    respondent missed the wave or the wave lacks the item). ``cohort``: only the respondents of
    the first wave."""
    keyed_frames = {w: keyed(frames[w], id_column) for w in waves}
    if cohort:
        ids = keyed_frames[waves[0]].index
    else:
        ids = pd.Index(
            pd.unique(np.concatenate([k.index.to_numpy() for k in keyed_frames.values()]))
        )
    cols: dict[str, np.ndarray] = {}
    for w in waves:
        k = keyed_frames[w].reindex(ids)
        for item in [*items, cluster_column]:
            if item in k.columns:
                cols[f"{item}@{w}"] = (
                    pd.to_numeric(k[item], errors="coerce").to_numpy(dtype="float64")
                    if _numeric(frames[w][item])
                    else k[item].to_numpy(dtype=object)
                )
    return pd.DataFrame(cols).reset_index(drop=True)


def _numeric(s: pd.Series) -> bool:
    return bool(pd.to_numeric(s, errors="coerce").notna().sum() == s.notna().sum())


def trajectory_columns(
    frame: pd.DataFrame, var_types: Mapping[str, str] | None, cluster_column: str
) -> EvalColumns:
    """Typed columns of a :func:`trajectory_frame`: the item's var type where known, else
    ordinal for numbers and categorical for text; cluster labels nominal."""
    cols = []
    for name in frame.columns:
        item = name.rsplit("@", 1)[0]
        if item == cluster_column:
            cols.append(EvalColumn(name, "categorical", "a categorical"))
            continue
        cols.append(item_column(name, item, var_types, frame[name]))
    return EvalColumns(tuple(cols))


def trajectory_c2st(
    real: Frames,
    candidate: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    items: Sequence[str],
    cluster_column: str = "cluster",
    var_types: Mapping[str, str] | None = None,
    seed: int = 42,
) -> MetricResult:
    """The gradient-boosting C2ST on concatenated waves (1 = indistinguishable)."""
    kw = {"id_column": id_column, "items": items, "cluster_column": cluster_column}
    r = trajectory_frame(real, waves, **kw)
    c = trajectory_frame(candidate, waves, **kw)
    common = [x for x in r.columns if x in c.columns]
    r, c = r[common], c[common]
    # one column encoding on both sides: text where either side has text
    for name in common:
        if r[name].dtype == object or c[name].dtype == object:
            r[name], c[name] = r[name].astype(object), c[name].astype(object)
    metric = GradientBoostingC2ST(trajectory_columns(r, var_types, cluster_column), seed=seed)
    res = safe_compute(metric, r, c)
    res.name = "c2st_trajectory"
    return res


def panel_figures(
    real: Frames,
    candidate: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    items: Sequence[str],
    cluster_column: str = "cluster",
    var_types: Mapping[str, str] | None = None,
    seed: int = 42,
    c2st: bool = True,
) -> dict[str, Any]:
    """Every longitudinal figure of one candidate panel against the real one (JSON-able)."""
    st = stability(real, candidate, waves, id_column=id_column, items=items)
    fid, tables = transitions(
        real, candidate, waves, id_column=id_column, cluster_column=cluster_column
    )
    ret = retention(real, candidate, waves, id_column=id_column, cluster_column=cluster_column)
    out: dict[str, Any] = {
        "stability_error_unchanged": _mean(st["unchanged_abs_diff"]),
        "stability_error_spearman": _mean(st["spearman_abs_diff"]),
        "transition_fidelity": _num(fid),
        "retention_mean_abs_diff": _mean(ret["abs_diff"]),
        "retention_max_abs_diff": _num(ret["abs_diff"].max()) if len(ret) else None,
        "mean_unchanged_real": _mean(st["unchanged_real"]),
        "mean_unchanged_synthetic": _mean(st["unchanged_synthetic"]),
        "mean_spearman_real": _mean(st["spearman_real"]),
        "mean_spearman_synthetic": _mean(st["spearman_synthetic"]),
        "stability": frame_records(st),
        "transitions": tables,
        "retention": frame_records(ret),
    }
    if c2st:
        res = trajectory_c2st(
            real,
            candidate,
            waves,
            id_column=id_column,
            items=items,
            cluster_column=cluster_column,
            var_types=var_types,
            seed=seed,
        )
        out["c2st_trajectory"] = res.to_json()
    return out


def _mean(s: pd.Series) -> float | None:
    x = pd.to_numeric(s, errors="coerce").dropna()
    return _num(float(x.mean())) if len(x) else None


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


# ---------------------------------------------------------------------------------- floor
def split_respondents(
    real: Frames, id_column: str, rng: np.random.Generator
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Two random halves of the real panel's respondents (every wave of a person in one half)."""
    ids = _ids(real, id_column)
    perm = rng.permutation(len(ids))
    half_a = set(ids[perm[: len(ids) // 2]].tolist())
    a, b = {}, {}
    for w, f in real.items():
        in_a = f[id_column].map(id_text).isin(half_a).to_numpy()
        a[w], b[w] = f[in_a].reset_index(drop=True), f[~in_a].reset_index(drop=True)
    return a, b


def _ids(frames: Frames, id_column: str) -> np.ndarray:
    """Every respondent id of a panel (as text, first appearance order)."""
    return pd.unique(
        np.concatenate([f[id_column].map(id_text).to_numpy() for f in frames.values()])
    )


def sample_respondents(
    frames: Frames, n: int, id_column: str, rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """``n`` respondents of a panel drawn at random (every wave of a person; all when fewer)."""
    ids = _ids(frames, id_column)
    keep = set(ids[rng.permutation(len(ids))[:n]].tolist())
    return {
        w: f[f[id_column].map(id_text).isin(keep).to_numpy()].reset_index(drop=True)
        for w, f in frames.items()
    }


def real_half_floor(
    real: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    items: Sequence[str],
    cluster_column: str = "cluster",
    var_types: Mapping[str, str] | None = None,
    seed: int = 42,
    repeats: int | None = None,
    train: Frames | None = None,
) -> dict[str, Any]:
    """Half A of the real respondents scored against half B, on ``repeats`` seeded splits: the
    first split's figures plus ``floor_spread`` (min, max, mean, sd, values) of
    :data:`SPREAD_KEYS`.

    With ``train`` (a ``--holdout`` run: ``real`` is the held-out respondents) the floor is
    instead a seeded sample of the training respondents, as many as the held-out ones, scored
    against the held-out respondents."""
    repeats = FLOOR_REPEATS if repeats is None else repeats
    first: dict[str, Any] = {}
    values: dict[str, list[float]] = {k: [] for k in SPREAD_KEYS}
    n_held = len(_ids(real, id_column)) if train is not None else 0
    for i in range(repeats):
        rng = np.random.default_rng([seed, 19, i])
        if train is None:
            a, b = split_respondents(real, id_column, rng)
        else:
            a, b = sample_respondents(train, n_held, id_column, rng), dict(real)
        fig = panel_figures(
            b,
            a,
            waves,
            id_column=id_column,
            items=items,
            cluster_column=cluster_column,
            var_types=var_types,
            seed=seed,
            c2st=i == 0,
        )
        if i == 0:
            first = fig
        for key in SPREAD_KEYS:
            if fig.get(key) is not None:
                values[key].append(float(fig[key]))
    spread = {}
    for key, vals in values.items():
        if vals:
            x = np.asarray(vals)
            spread[key] = {
                "min": float(x.min()),
                "max": float(x.max()),
                "mean": float(x.mean()),
                "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                "values": [float(v) for v in x],
            }
    first["floor_spread"] = spread
    return first


# ---------------------------------------------------------------------------------- section
def panel_section(
    real: Frames,
    synthetic: Frames,
    *,
    id_column: str,
    items: Sequence[str],
    waves: Sequence[str] | None = None,
    cluster_column: str = "cluster",
    prev_cluster_column: str = "prev_cluster",
    var_types: Mapping[str, str] | None = None,
    seed: int = 42,
    unlinked: Frames | None = None,
    floor_repeats: int | None = None,
    train: Frames | None = None,
) -> dict[str, Any]:
    """The ``panel`` section of ``wave{W}_metrics.json``: the synthetic panel, the real-half floor
    and the two baselines, each scored by :func:`panel_figures`.

    Args:
        real, synthetic: Frames by wave with the id column (the synthetic panel's ids link it).
        items: Items to compare (each pair uses those present in both of its waves).
        waves: Generated waves in order (default: ``synthetic``'s keys in order).
        unlinked: Per-wave output to read as the unlinked baseline (default: ``synthetic``'s own
            rows with the links cut).
        train: A ``--holdout`` run's training respondents (``real`` being the held-out ones):
            the CART panel is fitted on them and the floor is a size-matched sample of them.

    Raises:
        PanelDataError: fewer than two waves, a wave without real data, or a frame without the
            id column.
    """
    waves = list(waves or synthetic)
    if len(waves) < 2:
        raise PanelDataError(
            f"the panel evaluation needs two or more generated waves (got {', '.join(waves)})"
        )
    for w in waves:
        for side, frames in (("real", real), ("synthetic", synthetic)):
            if w not in frames:
                raise PanelDataError(f"the panel evaluation has no {side} data for wave {w}")
            if id_column not in frames[w].columns:
                raise PanelDataError(
                    f"{side} wave {w} has no id column {id_column!r} — the panel evaluation "
                    f"links respondents by it (study.id_column)",
                    column=id_column,
                )
    kw: dict[str, Any] = {
        "id_column": id_column,
        "items": items,
        "cluster_column": cluster_column,
        "var_types": var_types,
        "seed": seed,
    }
    rng = np.random.default_rng([seed, 19])
    cut = unlinked_panel(
        unlinked or synthetic,
        waves,
        id_column=id_column,
        rng=rng,
        cluster_column=cluster_column,
        prev_cluster_column=prev_cluster_column,
    )
    cart, notes = cart_panel(
        real if train is None else train,
        synthetic,
        waves,
        rng=rng,
        prev_cluster_column=prev_cluster_column,
        **kw,
    )
    candidates = {
        SYNTHETIC: panel_figures(real, synthetic, waves, **kw),
        HOLDOUT: real_half_floor(real, waves, repeats=floor_repeats, train=train, **kw),
        UNLINKED: panel_figures(real, cut, waves, **kw),
        CART_PANEL: panel_figures(real, cart, waves, **kw),
    }
    keys = (*SPREAD_KEYS, "c2st_trajectory")
    summary = {
        key: {
            name: (fig.get(key) or {}).get("score") if key == "c2st_trajectory" else fig.get(key)
            for name, fig in candidates.items()
        }
        for key in keys
    }
    for note in notes:
        log.info("panel CART baseline: %s", note)
    return {
        "waves": waves,
        "pairs": [f"{a}-{b}" for a, b in wave_pairs(waves)],
        "items": list(items),
        "respondents": {
            "real_first_wave": int(len(keyed(real[waves[0]], id_column))),
            "synthetic_first_wave": int(len(keyed(synthetic[waves[0]], id_column))),
            **(
                {"training_first_wave": int(len(keyed(train[waves[0]], id_column)))}
                if train is not None
                else {}
            ),
        },
        "floor": FLOOR_HELD_OUT if train is not None else PROTOCOL["floor"],
        "summary": summary,
        "candidates": candidates,
        "notes": notes,
        "protocol": PROTOCOL,
    }
