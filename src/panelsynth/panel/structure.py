"""The structure of a synthetic panel that the host guarantees (issue 19, item 2).

From the real panel (one frame per study wave, each with ``study.id_column`` and the cluster
column) :func:`estimate_structure` estimates, per consecutive study-wave pair, a Markov chain on
``2K`` states: *present in cluster k* and *absent, last seen in cluster k*. Over the real
respondents seen in any wave from the first requested wave up to wave ``w-1`` (the absent state
carries the last cluster they were seen in), it counts the moves to wave ``w``:

- present k -> present j: the wave-to-wave transition table (respondents present in both waves);
- present k -> absent k: drop-out, so retention by wave and previous cluster is reproduced;
- absent k -> present j: re-entry at its real rate (exactly 0 when the real panel has none, so a
  dropped respondent then never reappears); absent k -> absent k: staying away.

:func:`draw_panel` draws N synthetic respondents (every one present in the first requested wave,
cluster from that wave's real shares) through **every study wave** between the first and the last
requested one, so ``prev_cluster`` of a row is the respondent's cluster in the *study's* previous
wave, as ``panelsynth prepare`` writes it: empty when the respondent was absent from that wave (or
the wave is the study's first). For the first requested wave the previous cluster is drawn from
the real joint of (cluster, prev_cluster) of that wave. No respondent enters after the first
requested wave.

Synthetic ids are text ``S00001``, ``S00002``, ... (at least five digits, wider for N >= 100,000)
whatever the real ids look like: they are stable (respondent i has the same id under every seed
and N), sort in order, and can never be taken for (or joined to) a real respondent's id.

A transition row without data (nobody in that state in the real wave ``w-1``) falls back to the
pooled row of its kind — the current wave's marginal over every previous cluster of the same
presence (for absent rows when nobody was absent: staying absent) — and a warning is logged and
kept in ``PanelStructure.warnings`` (for an absent row only when the draw can reach it). Since the
draw follows the real counts, a state it reaches always has data; the fallback keeps the matrices
complete rather than changing a draw.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.data import respondent_ids
from panelsynth.errors import ConfigError, DataError, PanelDataError  # PanelDataError: re-export

log = logging.getLogger("panelsynth")

#: Prefix of the synthetic ids (``S00001``).
ID_PREFIX = "S"
ID_DIGITS = 5


class PanelRequestError(ConfigError):
    """A ``--panel`` request that cannot be drawn (a single wave, a wave outside the study)."""


@dataclass(frozen=True)
class PanelStructure:
    """What :func:`draw_panel` draws from, estimated from the real panel.

    States are coded ``0..K-1`` (present in cluster ``s+1``) and ``K..2K-1`` (absent, last seen
    in cluster ``s-K+1``). ``transitions[i]`` is the ``2K x 2K`` row-stochastic matrix from
    ``waves[i]`` to ``waves[i+1]``; ``counts[i]`` the real counts it was estimated from.
    """

    waves: tuple[str, ...]
    requested: tuple[str, ...]
    k: int
    first_shares: np.ndarray
    transitions: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]
    #: ``K x (K+1)``: P(prev_cluster = j | cluster k) in the first requested wave, the last
    #: column being "empty" (absent from the study's previous wave); ``None``: the first
    #: requested wave is the study's first (prev_cluster always empty).
    first_prev: np.ndarray | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def state_names(self) -> list[str]:
        return [f"present {c}" for c in range(1, self.k + 1)] + [
            f"absent (last {c})" for c in range(1, self.k + 1)
        ]

    def retention(self) -> dict[str, dict[int, float]]:
        """Per pair ``"a-b"``: P(present in b | present in cluster k in a), by k."""
        k = self.k
        return {
            f"{self.waves[i]}-{self.waves[i + 1]}": {c + 1: float(m[c, :k].sum()) for c in range(k)}
            for i, m in enumerate(self.transitions)
        }

    def reentry(self) -> dict[str, dict[int, float]]:
        """Per pair ``"a-b"``: P(present in b | absent from a, last seen in cluster k), by k."""
        k = self.k
        return {
            f"{self.waves[i]}-{self.waves[i + 1]}": {
                c + 1: float(m[k + c, :k].sum()) for c in range(k)
            }
            for i, m in enumerate(self.transitions)
        }

    def to_json(self) -> dict[str, Any]:
        """The structure as JSON (for the run's log and manifest)."""
        names = self.state_names()

        def table(m: np.ndarray) -> dict[str, dict[str, float]]:
            return {
                names[i]: {names[j]: float(m[i, j]) for j in range(2 * self.k)}
                for i in range(2 * self.k)
            }

        return {
            "waves": list(self.waves),
            "requested": list(self.requested),
            "k": self.k,
            "first_shares": {str(c + 1): float(s) for c, s in enumerate(self.first_shares)},
            "pairs": [
                {
                    "from": self.waves[i],
                    "to": self.waves[i + 1],
                    "probabilities": table(self.transitions[i]),
                    "counts": table(self.counts[i]),
                }
                for i in range(len(self.transitions))
            ],
            "retention": {
                p: {str(c): v for c, v in r.items()} for p, r in self.retention().items()
            },
            "reentry": {p: {str(c): v for c, v in r.items()} for p, r in self.reentry().items()},
            "warnings": list(self.warnings),
        }


def ordered_request(
    waves: Sequence[str], study_waves: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(requested waves in study order, every study wave from the first to the last of them).

    Raises:
        PanelRequestError: fewer than two distinct waves, or a wave the study does not have.
    """
    study = [str(w) for w in study_waves]
    req = list(dict.fromkeys(str(w) for w in waves))
    unknown = [w for w in req if w not in study]
    if unknown:
        raise PanelRequestError(
            f"--panel: wave {unknown[0]} is not a wave of the study ({', '.join(study)}) — "
            f"request waves that have data"
        )
    if len(req) < 2:
        raise PanelRequestError(
            f"--panel needs at least two waves (got {', '.join(req) or 'none'}) — request two or "
            f"more, e.g. --waves 1,2, or drop --panel for one wave"
        )
    req.sort(key=study.index)
    lo, hi = study.index(req[0]), study.index(req[-1])
    return tuple(req), tuple(study[lo : hi + 1])


def _ids_and_clusters(
    frame: pd.DataFrame, wave: str, id_column: str, cluster_column: str, source: str
) -> tuple[np.ndarray, np.ndarray]:
    try:
        ids = respondent_ids(frame, id_column, source, purpose="--panel", unique=True)
    except DataError as err:
        raise PanelDataError(str(err), path=err.path, column=err.column) from None
    if cluster_column not in frame.columns:
        raise PanelDataError(
            f"{source} has no {cluster_column!r} column — run `panelsynth prepare` to compute "
            f"the clusters",
            path=source,
            column=cluster_column,
        )
    cl = pd.to_numeric(frame[cluster_column], errors="coerce")
    if cl.isna().any() or (cl < 1).any() or (cl % 1 != 0).any():
        raise PanelDataError(
            f"{source}: column {cluster_column!r} has empty or non-integer labels — every "
            f"respondent needs a cluster (1..k)",
            path=source,
            column=cluster_column,
        )
    return ids.to_numpy(dtype=object), cl.to_numpy(dtype=np.int64)


def real_states(
    frames: Mapping[str, pd.DataFrame],
    waves: Sequence[str],
    *,
    id_column: str,
    cluster_column: str = "cluster",
    sources: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(ids, cluster matrix ids x waves with 0 = absent, K) of the real panel over ``waves``.

    Ids are ordered by first appearance; K is the largest cluster label seen.
    """
    per: list[tuple[np.ndarray, np.ndarray]] = []
    for w in waves:
        src = (sources or {}).get(w, f"Original data/wave{w}.csv")
        per.append(_ids_and_clusters(frames[w], w, id_column, cluster_column, src))
    all_ids = pd.unique(np.concatenate([ids for ids, _ in per]))
    index = pd.Index(all_ids)
    mat = np.zeros((len(all_ids), len(waves)), dtype=np.int64)
    for t, (ids, cl) in enumerate(per):
        mat[index.get_indexer(ids), t] = cl
    k = int(mat.max()) if mat.size else 0
    return np.asarray(all_ids, dtype=object), mat, k


def state_matrix(mat: np.ndarray, k: int) -> np.ndarray:
    """Markov states of a cluster matrix (0 = absent): ``c-1`` present, ``K+last-1`` absent after
    being seen, -1 not seen yet."""
    last = pd.DataFrame(np.where(mat > 0, mat, np.nan)).ffill(axis=1).to_numpy()
    seen = ~np.isnan(last)
    lastc = np.where(seen, last, 1).astype(np.int64)
    return np.where(mat > 0, mat - 1, np.where(seen, k + lastc - 1, -1))


def estimate_structure(
    frames: Mapping[str, pd.DataFrame],
    waves: Sequence[str],
    study_waves: Sequence[str],
    *,
    id_column: str,
    cluster_column: str = "cluster",
    prev_cluster_column: str = "prev_cluster",
    sources: Mapping[str, str] | None = None,
) -> PanelStructure:
    """Estimate the panel structure from the real waves (see the module docstring).

    Args:
        frames: Real frames by wave id (``Original data/wave{W}.csv`` as read, with the id
            column); every study wave from the first to the last requested one is needed.
        waves: The requested waves (any order, e.g. ``["1", "3", "5", "7"]``).
        study_waves: Every wave of the study, in study order.
        id_column: ``study.id_column``.
        sources: File names by wave for messages (default ``Original data/wave{W}.csv``).

    Raises:
        PanelRequestError: fewer than two waves, or a wave outside the study.
        PanelDataError: a wave without the id column or cluster labels, a needed wave without
            data, or two consecutive requested waves whose ids link no respondent.
    """
    requested, drawn = ordered_request(waves, study_waves)
    lacking = [w for w in drawn if w not in frames]
    if lacking:
        raise PanelDataError(
            f"--panel: wave {lacking[0]} lies between the requested waves {requested[0]} and "
            f"{requested[-1]} and its data are needed to draw the path through it — add "
            f"Original data/wave{lacking[0]}.csv (run `panelsynth prepare`)"
        )
    ids, mat, k = real_states(
        frames, drawn, id_column=id_column, cluster_column=cluster_column, sources=sources
    )
    pos = {w: i for i, w in enumerate(drawn)}
    for a, b in zip(requested, requested[1:], strict=False):
        linked = int(((mat[:, pos[a]] > 0) & (mat[:, pos[b]] > 0)).sum())
        if linked == 0:
            raise PanelDataError(
                f"--panel: no respondent of wave {a} is in wave {b} by {id_column!r} — the ids do "
                f"not link the waves; use the same id for a person in every wave "
                f"(study.id_column)",
                column=id_column,
            )
    states = state_matrix(mat, k)
    warnings: list[str] = []
    first = mat[:, 0]
    first_shares = np.bincount(first[first > 0] - 1, minlength=k).astype(float)
    first_shares /= first_shares.sum()
    dist = np.r_[first_shares, np.zeros(k)]
    transitions, counts = [], []
    for t in range(1, len(drawn)):
        s0, s1 = states[:, t - 1], states[:, t]
        ok = s0 >= 0
        cnt = np.bincount(s0[ok] * 2 * k + s1[ok], minlength=4 * k * k).reshape(2 * k, 2 * k)
        prob = _rows_with_fallback(cnt, k, dist, (drawn[t - 1], drawn[t]), warnings)
        transitions.append(prob)
        counts.append(cnt.astype(float))
        dist = dist @ prob
    first_prev = _first_prev(
        frames,
        requested[0],
        study_waves,
        mat[:, 0],
        ids,
        id_column,
        cluster_column,
        prev_cluster_column,
        k,
        warnings,
    )
    for note in warnings:
        log.warning(note)
    return PanelStructure(
        waves=drawn,
        requested=requested,
        k=k,
        first_shares=first_shares,
        transitions=tuple(transitions),
        counts=tuple(counts),
        first_prev=first_prev,
        warnings=tuple(warnings),
    )


def _rows_with_fallback(
    cnt: np.ndarray, k: int, reach: np.ndarray, pair: tuple[str, str], warnings: list[str]
) -> np.ndarray:
    """Row-normalised counts; an empty row the draw can reach gets its kind's pooled row."""
    prob = np.zeros((2 * k, 2 * k))
    kinds = {"present": range(k), "absent": range(k, 2 * k)}
    for kind, rows in kinds.items():
        pooled = cnt[list(rows)].sum(axis=0)
        # pooled move to "present j" / "absent" (the absent state keeps the row's own cluster)
        to_present = pooled[:k]
        to_absent = pooled[k:].sum()
        total = to_present.sum() + to_absent
        for r in rows:
            n = cnt[r].sum()
            if n > 0:
                prob[r] = cnt[r] / n
                continue
            own = r % k
            if total > 0:
                prob[r, :k] = to_present / total
                prob[r, k + own] = to_absent / total
                how = f"the wave's pooled {kind} row (its marginal)"
            else:  # nobody was absent in the real wave: no re-entry observed, stay absent
                prob[r, k + own] = 1.0
                how = "staying absent (no re-entry observed)"
            if kind == "present" or reach[r] > 0:
                warnings.append(
                    f"panel: no real respondent was {kind} in cluster {own + 1} in wave "
                    f"{pair[0]} — their move to wave {pair[1]} falls back to {how}"
                )
    return prob


def _first_prev(
    frames: Mapping[str, pd.DataFrame],
    wave: str,
    study_waves: Sequence[str],
    first: np.ndarray,
    ids: np.ndarray,
    id_column: str,
    cluster_column: str,
    prev_cluster_column: str,
    k: int,
    warnings: list[str],
) -> np.ndarray | None:
    """P(prev_cluster | cluster) in the first requested wave (last column: empty)."""
    study = [str(w) for w in study_waves]
    i = study.index(wave)
    if i == 0:
        return None
    present = first > 0
    prev_wave = study[i - 1]
    if prev_wave in frames and id_column in frames[prev_wave].columns:
        p_ids, p_cl = _ids_and_clusters(
            frames[prev_wave],
            prev_wave,
            id_column,
            cluster_column,
            f"Original data/wave{prev_wave}.csv",
        )
        lookup = pd.Series(p_cl, index=p_ids)
        prev = pd.Series(ids[present]).map(lookup).fillna(0).to_numpy(dtype=np.int64)
    elif prev_cluster_column in frames[wave].columns:
        f_ids, _ = _ids_and_clusters(
            frames[wave], wave, id_column, cluster_column, f"Original data/wave{wave}.csv"
        )
        col = pd.to_numeric(frames[wave][prev_cluster_column], errors="coerce")
        lookup = pd.Series(col.fillna(0).to_numpy(dtype=np.int64), index=f_ids)
        prev = pd.Series(ids[present]).map(lookup).to_numpy(dtype=np.int64)
    else:
        warnings.append(
            f"panel: neither wave {prev_wave}'s data nor a {prev_cluster_column!r} column in wave "
            f"{wave} — prev_cluster of the first generated wave is left empty"
        )
        out = np.zeros((k, k + 1))
        out[:, k] = 1.0
        return out
    cur = first[present]
    prev = np.where((prev >= 1) & (prev <= k), prev, 0)
    # column j-1 for cluster j, column k for empty
    col_idx = np.where(prev > 0, prev - 1, k)
    tab = np.zeros((k, k + 1))
    np.add.at(tab, (cur - 1, col_idx), 1.0)
    tot = tab.sum(axis=1, keepdims=True)
    return np.where(tot > 0, tab / np.where(tot > 0, tot, 1), np.r_[np.zeros(k), 1.0])
