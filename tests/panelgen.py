"""A small seeded panel generator for the panel tests (not the demo simulator).

Respondents follow a Markov chain on (present in cluster k / absent, last cluster k): clusters
persist (stay probability ``stay``), retention depends on the previous cluster, and absent
respondents come back at ``reentry``. Ordinal items 1..5 persist within a person: each wave keeps
the previous answer with probability ``persistence``, else draws from the cluster's distribution.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ITEMS = ["q1", "q2", "q3", "q4"]
#: Answer distribution of codes 1..5 per cluster.
CLUSTER_P = {1: [0.05, 0.1, 0.2, 0.35, 0.3], 2: [0.35, 0.3, 0.2, 0.1, 0.05]}


def make_panel(
    n: int = 1500,
    waves: int = 5,
    *,
    seed: int = 0,
    stay: float = 0.85,
    retention: tuple[float, float] = (0.9, 0.75),
    reentry: float = 0.3,
    persistence: float = 0.75,
    id_column: str = "respondent_id",
) -> dict[str, pd.DataFrame]:
    """Waves "1".."waves" as prepared frames: id, items, cluster, prev_cluster (from wave 2)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1001, 1001 + n)
    cluster = np.where(rng.random(n) < 0.6, 1, 2)
    present = np.ones(n, dtype=bool)
    answers = {q: np.zeros(n, dtype=np.int64) for q in ITEMS}
    frames: dict[str, pd.DataFrame] = {}
    prev_cluster_shown: np.ndarray | None = None
    for t in range(1, waves + 1):
        if t > 1:
            was = present.copy()
            ret = np.where(cluster == 1, retention[0], retention[1])
            present = np.where(was, rng.random(n) < ret, rng.random(n) < reentry)
            moved = rng.random(n) > stay
            new_cluster = np.where(moved & was, 3 - cluster, cluster)
            prev_cluster_shown = np.where(was, cluster, 0)
            cluster = np.where(present, new_cluster, cluster)
        for q in ITEMS:
            fresh = np.empty(n, dtype=np.int64)
            for c, p in CLUSTER_P.items():
                sel = cluster == c
                fresh[sel] = rng.choice(np.arange(1, 6), size=int(sel.sum()), p=p)
            keep = (answers[q] > 0) & (rng.random(n) < persistence)
            answers[q] = np.where(keep, answers[q], fresh)
        rows = {id_column: ids[present]}
        rows.update({q: answers[q][present] for q in ITEMS})
        rows["cluster"] = cluster[present]
        frame = pd.DataFrame(rows)
        if prev_cluster_shown is not None:
            pc = prev_cluster_shown[present]
            frame["prev_cluster"] = pd.array(pc, dtype="Int64")
            frame.loc[pc == 0, "prev_cluster"] = pd.NA
        frames[str(t)] = frame
    return frames


def reentry_rate(present: np.ndarray, t: int) -> tuple[float, int]:
    """(share of those seen before and absent in wave t-1 who are present in t, their count)."""
    seen = present[:, :t].any(axis=1)
    absent = seen & ~present[:, t - 1]
    n = int(absent.sum())
    return (float(present[absent, t].mean()) if n else float("nan")), n


def presence_matrix(frames: dict[str, pd.DataFrame], id_column: str) -> np.ndarray:
    """Boolean respondents x waves over the union of ids."""
    ids = pd.Index(pd.unique(np.concatenate([f[id_column].astype(str) for f in frames.values()])))
    out = np.zeros((len(ids), len(frames)), dtype=bool)
    for t, f in enumerate(frames.values()):
        out[ids.get_indexer(f[id_column].astype(str)), t] = True
    return out
