"""Whole rows selected from the pool to match the real per-cluster marginals."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.calibrate.targets import build_targets, marginal_distance
from panelsynth.generate import (
    row_key,
)
from panelsynth.pydantic_models.rows import RowSpec

log = logging.getLogger("panelsynth")


#: Copies are used only when a cluster has no other row: the penalty per copy exceeds any gain.
_COPY_PENALTY_PER_VARIABLE = 2.0


@dataclass
class Selection:
    """The selected rows and how far the pool and the selection are from the real marginals."""

    rows: pd.DataFrame
    indices: list[int]  # positions in the pool, ascending
    before: dict[str, Any]
    after: dict[str, Any]
    counts: dict[int, int]
    copies_pool: int = 0
    copies_selected: int = 0
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """JSON-ready summary for the manifest."""
        return {
            "pool_rows": int(self.before.get("rows", 0)),
            "selected_rows": int(len(self.rows)),
            "cluster_counts": {str(k): v for k, v in self.counts.items()},
            "marginal_distance_before": self.before,
            "marginal_distance_after": self.after,
            "copies_in_pool": self.copies_pool,
            "copies_selected": self.copies_selected,
            "notes": self.notes,
        }


def select_rows(
    pool: pd.DataFrame,
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    n: int,
    *,
    cluster_column: str,
    seed: int,
    avoid: Iterable[tuple[Any, ...]] = (),
    key_columns: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
    max_swaps: int | None = None,
) -> Selection:
    """Select ``n`` whole rows of ``pool`` whose per-cluster marginals match ``real``.

    Cluster counts are the real shares of ``n`` (largest remainder). Within each cluster a greedy
    pass picks, row by row, the row that most reduces the L1 distance between the selection's
    category counts and the target counts summed over variables, then a local search swaps a
    selected row for an unselected one while that lowers the distance. Rows whose
    :func:`~panelsynth.generate.row_key` over ``key_columns`` is in ``avoid`` (copies of a real
    row or a few-shot example) carry a penalty larger than any gain, so they are selected only
    when the cluster has no other row left. Ties are broken by a seeded shuffle of the pool.

    Args:
        pool: Valid synthetic rows (more than ``n``).
        real: Real respondents of the wave.
        specs: Column specs of the wave.
        n: Rows to keep.
        cluster_column: The cluster column.
        seed: Random state of the tie-breaking.
        avoid: Row keys of rows not to prefer.
        key_columns: Columns of the row keys (default: the pool's columns).
        variables: Variables to match (default: every spec but the cluster column).
        max_swaps: Bound on local-search swaps per cluster (default: ``4 * n`` + 100).

    Returns:
        The selection; rows keep the pool's order.
    """
    if n > len(pool):
        raise ValueError(f"cannot select {n} rows from a pool of {len(pool)}")
    targets = build_targets(real, specs, cluster_column=cluster_column, n=n, variables=variables)
    before = {"rows": int(len(pool)), **marginal_distance(pool, targets)}
    avoid_set = set(avoid)
    keys_cols = list(key_columns) if key_columns is not None else list(pool.columns)
    copies = (
        np.array(
            [row_key(r) in avoid_set for r in pool[keys_cols].itertuples(index=False)], dtype=bool
        )
        if avoid_set
        else np.zeros(len(pool), dtype=bool)
    )
    labels = pd.to_numeric(pool[cluster_column], errors="coerce").to_numpy()
    codes = targets.codes(pool)
    counts, notes = _feasible_counts(targets.counts, labels)
    rng = np.random.default_rng([seed, 8003])
    penalty = _COPY_PENALTY_PER_VARIABLE * max(1, len(targets.variables)) + 1.0
    chosen: list[int] = []
    for c, need in counts.items():
        if need <= 0:
            continue
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        dists = targets.distributions.get(c)
        if dists is None:  # a cluster the real data lacks: nothing to match, keep seeded order
            chosen += [int(i) for i in members[:need]]
            continue
        picked = _select_cluster(
            codes[members],
            copies[members],
            dists,
            need,
            penalty,
            rng,
            max_swaps if max_swaps is not None else 4 * need + 100,
        )
        chosen += [int(members[i]) for i in picked]
    chosen.sort()
    rows = pool.iloc[chosen].reset_index(drop=True)
    after = {"rows": int(len(rows)), **marginal_distance(rows, targets)}
    for note in notes:
        log.warning(note)
    return Selection(
        rows=rows,
        indices=chosen,
        before=before,
        after=after,
        counts=counts,
        copies_pool=int(copies.sum()),
        copies_selected=int(copies[chosen].sum()) if chosen else 0,
        notes=notes,
    )


def _feasible_counts(
    wanted: dict[int, int], labels: np.ndarray
) -> tuple[dict[int, int], list[str]]:
    """Target counts capped by the pool; a shortfall goes to the clusters with rows to spare."""
    have = {c: int((labels == c).sum()) for c in wanted}
    others = sorted({int(x) for x in labels[~np.isnan(labels.astype(float))]} - set(wanted))
    counts = {c: min(k, have[c]) for c, k in wanted.items()}
    notes: list[str] = []
    short = sum(wanted.values()) - sum(counts.values())
    if short:
        short_txt = ", ".join(
            f"cluster {c}: {have[c]} of {k}" for c, k in wanted.items() if have[c] < k
        )
        notes.append(
            f"the pool has too few rows of some clusters ({short_txt}); the {short} missing "
            f"rows come from other clusters, so cluster shares are off by up to "
            f"{short / max(1, sum(wanted.values())):.1%}"
        )
    while short:
        spare = {c: have.get(c, 0) - counts.get(c, 0) for c in [*wanted, *others]}
        best = max(spare, key=lambda c: (spare[c], -c))
        if spare[best] <= 0:
            break
        counts[best] = counts.get(best, 0) + 1
        short -= 1
    return counts, notes


def _select_cluster(
    codes: np.ndarray,
    copies: np.ndarray,
    dists: list[np.ndarray],
    need: int,
    penalty: float,
    rng: np.random.Generator,
    max_swaps: int,
) -> list[int]:
    """Indices (into ``codes``) of ``need`` rows: greedy, then best-improvement swaps."""
    m, v = codes.shape
    if need >= m:
        return list(range(m))
    sizes = [len(d) for d in dists]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    # flat category index per cell; a value outside every category gets a dump slot with target 0
    dump = int(sum(sizes))
    flat = np.where(codes >= 0, codes + offsets[None, :], dump)
    target = np.concatenate([*[d * need for d in dists], [0.0]])
    counts = np.zeros(dump + 1, dtype=float)
    cost = penalty * copies.astype(float)
    selected = np.zeros(m, dtype=bool)

    # greedy: gain of adding a row = sum over its cells of |S - T| - |S + 1 - T|
    for _ in range(need):
        gain_cell = np.abs(counts - target) - np.abs(counts + 1 - target)
        gain = gain_cell[flat].sum(axis=1) - cost
        gain[selected] = -np.inf
        best = int(np.argmax(gain))
        selected[best] = True
        np.add.at(counts, flat[best], 1.0)

    # local search: swap selected i for unselected o when it lowers the distance (+ penalties)
    cap = 600  # rows per side in one pass: bounds memory (cap^2 x variables)
    stale = 0
    for _ in range(max_swaps):
        ins = np.flatnonzero(selected)
        outs = np.flatnonzero(~selected)
        if len(outs) == 0:
            break
        if len(ins) > cap:
            ins = rng.choice(ins, cap, replace=False)
        if len(outs) > cap:
            outs = rng.choice(outs, cap, replace=False)
        rem_cell = np.abs(counts - 1 - target) - np.abs(counts - target)
        add_cell = np.abs(counts + 1 - target) - np.abs(counts - target)
        fi, fo = flat[ins], flat[outs]  # (a, v), (b, v)
        differ = fi[:, None, :] != fo[None, :, :]
        delta = (differ * (rem_cell[fi][:, None, :] + add_cell[fo][None, :, :])).sum(axis=2)
        delta += cost[outs][None, :] - cost[ins][:, None]
        k = int(np.argmin(delta))
        a, b = divmod(k, len(outs))
        if delta[a, b] >= -1e-9:
            full = len(ins) == int(selected.sum()) and len(outs) == int((~selected).sum())
            stale += 1
            if full or stale >= 3:
                break
            continue
        stale = 0
        i, o = int(ins[a]), int(outs[b])
        selected[i], selected[o] = False, True
        np.add.at(counts, flat[i], -1.0)
        np.add.at(counts, flat[o], 1.0)
    return [int(i) for i in np.flatnonzero(selected)]
