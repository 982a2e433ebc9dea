"""The two baselines of the longitudinal evaluation (issue 19, item 4), scored by the same code.

- :func:`unlinked_panel` — the per-wave method read as a panel: the rows of each wave keep their
  answers and clusters, but links are cut and re-made at random *within the same cluster path*:
  a row of wave b whose ``prev_cluster`` is k takes the id of a random not yet taken row of the
  previous generated wave in cluster k; a row with an empty ``prev_cluster`` (absent from the
  study's previous wave) that of a random respondent seen before but absent from the previous
  generated wave; a row with no such partner left starts a new respondent. For non-consecutive
  generated waves (1, 3) ``prev_cluster`` (the wave-2 cluster) is matched to the wave-1 cluster,
  the closest link the per-wave output carries.
- :func:`cart_panel` — a statistical panel: the first wave by the sequential CART baseline
  (:func:`panelsynth.evaluate.baselines.cart_baseline`) within each cluster, each later wave by
  sequential CART *conditioned on the respondent's previous answers* (and previous cluster),
  fitted per current cluster on the real respondents present in both waves, donor values drawn
  from the tree leaves (synthpop's method). The cluster path and presence are given (the
  synthetic panel's, i.e. the host-drawn structure). A cluster with fewer than ``min_train``
  linked real respondents is synthesised unconditionally from the wave's real rows of that
  cluster (a note says so).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from panelsynth.data import id_text
from panelsynth.evaluate.baselines import cart_baseline
from panelsynth.evaluate.columns import SDTYPE_FOR_VAR_TYPE, EvalColumn, EvalColumns
from panelsynth.evaluate.encoding import continuous_edges, discrete_codes, model_matrix

log = logging.getLogger("panelsynth")

Frames = Mapping[str, pd.DataFrame]
PREV = "prev::"


def _new_ids(start: int, n: int, prefix: str) -> np.ndarray:
    return np.array([f"{prefix}{i:05d}" for i in range(start, start + n)], dtype=object)


def unlinked_panel(
    frames: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    rng: np.random.Generator,
    cluster_column: str = "cluster",
    prev_cluster_column: str = "prev_cluster",
) -> dict[str, pd.DataFrame]:
    """The frames with ids re-made at random within the cluster path (see the module docstring)."""
    out: dict[str, pd.DataFrame] = {}
    counter = 1
    seen: set[str] = set()
    for t, w in enumerate(waves):
        cur = frames[w].reset_index(drop=True).copy()
        ids = np.empty(len(cur), dtype=object)
        if t == 0:
            keys = np.full(len(cur), -1)
            pools: dict[int, np.ndarray] = {}
        else:
            prev = out[waves[t - 1]]
            pids = prev[id_column].to_numpy(dtype=object)
            pcl = pd.to_numeric(prev[cluster_column], errors="coerce").fillna(-2).to_numpy()
            if prev_cluster_column in cur.columns:
                keys = pd.to_numeric(cur[prev_cluster_column], errors="coerce").fillna(0)
                keys = keys.to_numpy(dtype=np.int64)
                pools = {int(k): rng.permutation(pids[pcl == k]) for k in np.unique(keys) if k}
                away = np.array(sorted(seen - set(pids.tolist())), dtype=object)
                pools[0] = rng.permutation(away)
            else:
                keys = np.full(len(cur), -2)
                pools = {-2: rng.permutation(pids)}
        for k in np.unique(keys):
            rows = rng.permutation(np.flatnonzero(keys == k))
            pool = pools.get(int(k), np.array([], dtype=object))
            m = min(len(rows), len(pool))
            ids[rows[:m]] = pool[:m]
            ids[rows[m:]] = _new_ids(counter, len(rows) - m, "U")
            counter += len(rows) - m
        cur[id_column] = ids
        seen |= set(ids.tolist())
        out[w] = cur
    return out


def item_column(
    name: str, item: str, var_types: Mapping[str, str] | None, like: pd.Series
) -> EvalColumn:
    """The evaluation column ``name`` of a survey item: typed by the item's var type where known,
    else ordinal for numbers and categorical for text."""
    vt = (var_types or {}).get(item)
    if vt is None:
        vt = "an ordinal" if pd.api.types.is_numeric_dtype(like) else "a categorical"
    return EvalColumn(name, SDTYPE_FOR_VAR_TYPE.get(vt, "categorical"), vt)


def cart_panel(
    real: Frames,
    skeleton: Frames,
    waves: Sequence[str],
    *,
    id_column: str,
    items: Sequence[str],
    rng: np.random.Generator,
    cluster_column: str = "cluster",
    prev_cluster_column: str = "prev_cluster",
    var_types: Mapping[str, str] | None = None,
    seed: int = 42,
    min_train: int = 10,
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The CART panel baseline on ``skeleton``'s respondents, clusters and presence.

    Args:
        real: Real frames by wave (id column, items, cluster).
        skeleton: Per generated wave, the rows to fill: id, cluster (and prev_cluster, kept).

    Returns:
        (frames by wave, notes about clusters synthesised unconditionally).
    """
    out: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    last: pd.DataFrame | None = None  # latest answers per synthetic id, columns PREV + name
    for t, w in enumerate(waves):
        sk = skeleton[w].reset_index(drop=True)
        keep = [c for c in (id_column, cluster_column, prev_cluster_column) if c in sk.columns]
        frame = sk[keep].copy()
        r = real[w]
        cur_items = [i for i in items if i in r.columns]
        targets = [item_column(i, i, var_types, r[i]) for i in cur_items]
        for i in cur_items:
            frame[i] = np.nan if pd.api.types.is_numeric_dtype(r[i]) else None
        cl = pd.to_numeric(sk[cluster_column], errors="coerce").to_numpy()
        if t > 0:
            rp = real[waves[t - 1]]
            prev_items = [i for i in items if i in rp.columns]
            given = [item_column(PREV + i, i, var_types, rp[i]) for i in prev_items]
            given.append(EvalColumn(PREV + cluster_column, "categorical", "a categorical"))
            train = _linked_train(rp, r, id_column, prev_items, cur_items, cluster_column)
            syn_given = (
                last.reindex(sk[id_column].map(id_text).to_numpy())
                if last is not None
                else pd.DataFrame(index=range(len(sk)))
            )
            syn_given = syn_given.reindex(columns=[g.name for g in given]).reset_index(drop=True)
        for k in pd.unique(cl):
            sel = np.flatnonzero(cl == k)
            real_k = r[pd.to_numeric(r[cluster_column], errors="coerce") == k]
            if t > 0:
                train_k = train[train["_cluster"] == k]
            if t == 0 or len(train_k) < min_train:
                if t > 0:
                    notes.append(
                        f"wave {w} cluster {k}: {len(train_k)} linked real respondents — "
                        f"synthesised without conditioning on the previous wave"
                    )
                if len(real_k) == 0:
                    notes.append(f"wave {w} cluster {k}: no real respondents — left empty")
                    continue
                drawn = cart_baseline(
                    real_k[cur_items].reset_index(drop=True),
                    EvalColumns(tuple(targets)),
                    len(sel),
                    rng,
                    seed=seed,
                )
            else:
                drawn = conditional_cart(
                    train_k.reset_index(drop=True),
                    given,
                    targets,
                    syn_given.iloc[sel].reset_index(drop=True),
                    rng,
                    seed=seed,
                )
            for i in cur_items:
                frame.loc[sel, i] = drawn[i].to_numpy()
        out[w] = frame
        answers = frame.set_index(frame[id_column].map(id_text))
        now = answers[cur_items].add_prefix(PREV)
        now[PREV + cluster_column] = answers[cluster_column].to_numpy()
        last = now if last is None else pd.concat([last[~last.index.isin(now.index)], now])
    return out, notes


def _linked_train(
    prev: pd.DataFrame,
    cur: pd.DataFrame,
    id_column: str,
    prev_items: list[str],
    cur_items: list[str],
    cluster_column: str,
) -> pd.DataFrame:
    kp = prev.set_index(prev[id_column].map(id_text))
    kc = cur.set_index(cur[id_column].map(id_text))
    kp, kc = kp[~kp.index.duplicated()], kc[~kc.index.duplicated()]
    ids = kp.index.intersection(kc.index, sort=False)
    train = kp.loc[ids, prev_items].add_prefix(PREV)
    train[PREV + cluster_column] = kp.loc[ids, cluster_column].to_numpy()
    for i in cur_items:
        train[i] = kc.loc[ids, i].to_numpy()
    train["_cluster"] = pd.to_numeric(kc.loc[ids, cluster_column], errors="coerce").to_numpy()
    return train.reset_index(drop=True)


def conditional_cart(
    train: pd.DataFrame,
    given: Sequence[EvalColumn],
    targets: Sequence[EvalColumn],
    syn_given: pd.DataFrame,
    rng: np.random.Generator,
    *,
    seed: int = 42,
    min_samples_leaf: int = 5,
) -> pd.DataFrame:
    """Sequential CART of ``targets`` given the synthetic rows' ``given`` columns: each target
    from a tree on the given columns and the targets before it, a donor value of a real row in
    the synthetic row's leaf."""
    from sklearn.tree import DecisionTreeClassifier

    from panelsynth.evaluate.metrics import single_thread

    out = syn_given.copy()
    n = len(out)
    with single_thread():
        for j, col in enumerate(targets):
            before = EvalColumns((*given, *targets[:j]))
            (x_train, x_syn), _ = model_matrix(before, [train, out])
            edges = None if col.discrete else continuous_edges(train[col.name])
            (y_codes,), _, _ = discrete_codes(col, [train], edges)
            donors = train[col.name].to_numpy()
            if len(np.unique(y_codes)) < 2:
                out[col.name] = donors[rng.integers(0, len(train), n)]
                continue
            tree = DecisionTreeClassifier(min_samples_leaf=min_samples_leaf, random_state=seed)
            tree.fit(x_train, y_codes)
            out[col.name] = donors[_leaf_donor(tree.apply(x_train), tree.apply(x_syn), rng)]
    return out[[c.name for c in targets]]


def _leaf_donor(
    leaf_train: np.ndarray, leaf_syn: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For each synthetic row, the index of a random real row in the same leaf."""
    order = np.argsort(leaf_train, kind="stable")
    leaves, first, size = np.unique(leaf_train[order], return_index=True, return_counts=True)
    at = np.clip(np.searchsorted(leaves, leaf_syn), 0, len(leaves) - 1)
    return order[first[at] + (rng.random(len(leaf_syn)) * size[at]).astype(np.int64)]
