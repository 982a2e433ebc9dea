"""Which variables of a wave are items, carried along, clustered on, and in the dense mode.

- Items: ``prepare.include`` when given (these bypass the density threshold), otherwise every
  variable answered by at least ``prepare.density_threshold`` of the wave's respondents; free text
  is skipped, a variable without any answer dropped with a warning.
- Carried: demographics and the outcome, in both modes but never clustered on.
- Clustered: the items with at least two distinct answers and :data:`MIN_ANSWERS_TO_CLUSTER`.
- Dense mode: the top ``prepare.n_dense_items`` items of the cross-wave ranking
  (:func:`rank_items`) plus the carried variables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig

log = logging.getLogger("panelsynth")

MAX_TEXT_LEVELS = 20
MIN_ANSWERS_TO_CLUSTER = 10


@dataclass
class Selection:
    """Variables of one wave."""

    items: list[str]
    carried: list[str]
    full_vars: list[str]
    cluster_items: list[str]
    dropped: list[str]
    density: dict[str, float]


def select_variables(
    frame: pd.DataFrame,
    cfg: PanelsynthConfig,
    types: dict[str, str],
    *,
    wave: str,
    source: str,
    warn: Callable[[str], None],
    demographics: Sequence[str] | None = None,
) -> Selection:
    """Choose the items, carried variables and clustering items of one wave.

    ``demographics``: the demographic columns (default: ``prepare.demographics``).
    """
    st, pr = cfg.study, cfg.prepare
    reserved = {st.id_column, st.cluster_column, st.prev_cluster_column}
    excluded = set(pr.exclude)
    columns = [c for c in frame.columns if c not in reserved and c not in excluded]
    demo = pr.demographics if demographics is None else demographics
    carried_names = list(dict.fromkeys([*demo, *([st.outcome] if st.outcome else [])]))
    density = {c: float(frame[c].notna().mean()) if len(frame) else 0.0 for c in columns}

    dropped = [c for c in columns if density[c] == 0.0]
    for c in dropped:
        warn(f"wave {wave}: variable {c!r} has no answers (all NA) in {source} — dropped")
    usable = [c for c in columns if c not in dropped]

    carried = [c for c in usable if c in carried_names]
    include = set(pr.include)
    items: list[str] = []
    for c in usable:
        if c in carried:
            continue
        if include and c not in include:
            continue
        if types.get(c) == "a categorical" and _is_free_text(frame[c]):
            log.info("wave %s: %r looks like free text — not used as an item", wave, c)
            continue
        if c in include or density[c] >= pr.density_threshold:
            items.append(c)
        else:
            log.debug("wave %s: %r answered by %.0f%% — below density", wave, c, 100 * density[c])
    cluster_items = [
        c
        for c in items
        if frame[c].nunique() >= 2 and frame[c].notna().sum() >= MIN_ANSWERS_TO_CLUSTER
    ]
    full_vars = [c for c in usable if c in items or c in carried]
    return Selection(items, carried, full_vars, cluster_items, dropped, density)


def _is_free_text(s: pd.Series) -> bool:
    obs = s.dropna()
    return pd.to_numeric(obs, errors="coerce").isna().any() and obs.nunique() > MAX_TEXT_LEVELS


def rank_items(
    mi_cluster: dict[str, dict[str, float]], mi_traj: dict[str, dict[str, float]]
) -> pd.DataFrame:
    """Rank items by mutual information with the cluster label and the trajectory.

    Args:
        mi_cluster: wave -> item -> MI (bits) with the wave's cluster label.
        mi_traj: wave -> item -> MI (bits) with (previous, current) label (empty for wave 1).

    Returns:
        One row per item, best first: ``rank``, ``item``, ``score``, ``mi_cluster_mean``,
        ``mi_trajectory_mean``, ``n_waves`` and per-wave ``mi_cluster_w{W}`` /
        ``mi_trajectory_w{W}`` columns.
    """
    waves = list(mi_cluster)
    items = list(dict.fromkeys(it for w in waves for it in mi_cluster[w]))
    rows = []
    any_traj = any(mi_traj.get(w) for w in waves)
    for it in items:
        lab = [mi_cluster[w][it] for w in waves if it in mi_cluster[w]]
        trj = [mi_traj[w][it] for w in waves if it in mi_traj.get(w, {})]
        lab_mean = float(np.mean(lab)) if lab else 0.0
        trj_mean = float(np.mean(trj)) if trj else float("nan")
        if any_traj:
            score = (lab_mean + (trj_mean if trj else 0.0)) / 2
        else:
            score = lab_mean
        row: dict[str, Any] = {
            "item": it,
            "score": round(score, 6),
            "mi_cluster_mean": round(lab_mean, 6),
            "mi_trajectory_mean": round(trj_mean, 6) if trj else np.nan,
            "n_waves": len(lab),
        }
        for w in waves:
            row[f"mi_cluster_w{w}"] = round(mi_cluster[w][it], 6) if it in mi_cluster[w] else np.nan
        for w in waves:
            if mi_traj.get(w):
                row[f"mi_trajectory_w{w}"] = (
                    round(mi_traj[w][it], 6) if it in mi_traj[w] else np.nan
                )
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["rank", "item", "score"])
    df = df.sort_values(["score", "item"], ascending=[False, True], kind="stable")
    df.insert(0, "rank", range(1, len(df) + 1))
    return df.reset_index(drop=True)


def dense_variables(
    items: list[str], full_vars: list[str], scores: dict[str, float], n_dense: int
) -> list[str]:
    """The dense mode's variables: the ``n_dense`` best-ranked items (file order breaks ties),
    then every carried variable."""
    top = sorted(items, key=lambda it: (-scores.get(it, 0.0), items.index(it)))[:n_dense]
    return top + [c for c in full_vars if c not in items]
