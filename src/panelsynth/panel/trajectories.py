"""Few-shot examples of real trajectories for a later panel wave, and their prompt text.

:func:`sample_trajectories` samples, for two consecutive waves' real frames, up to ``per_type``
real respondents for every transition type (previous cluster, current cluster) — stay in 1, stay
in 2, 1 -> 2, 2 -> 1 — seeded, as (previous answers, current answers). The text functions write
one example and one requested row in the step-3 prompt's conventions: CSV-like tables (one
header, one line, ``NA`` = no answer; :func:`panelsynth.tables.encode_table`) and clusters
named "cluster k".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.data import id_text
from panelsynth.panel.structure import PanelDataError
from panelsynth.tables import encode_table


@dataclass(frozen=True)
class Trajectory:
    """One real respondent followed from the previous wave to the current one."""

    respondent: str
    prev_cluster: int
    cluster: int
    previous: dict[str, Any]
    current: dict[str, Any]


def sample_trajectories(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    *,
    id_column: str,
    rng: np.random.Generator,
    per_type: int = 2,
    previous_variables: Sequence[str] | None = None,
    current_variables: Sequence[str] | None = None,
    cluster_column: str = "cluster",
    prev_cluster_column: str = "prev_cluster",
) -> list[Trajectory]:
    """Up to ``per_type`` real respondents per (previous cluster, current cluster) type.

    Respondents are linked by ``id_column`` (``1001`` and ``1001.0`` are the same person); types
    come in order (1 -> 1, 1 -> 2, 2 -> 1, ...), respondents within a type in sampled order.

    Args:
        previous, current: The two waves' real frames with the id and cluster columns.
        previous_variables, current_variables: Answers to carry (default: every column but the
            id, the cluster and the previous-cluster columns).

    Raises:
        PanelDataError: a frame without the id column, or no respondent in both waves.
    """
    for frame in (previous, current):
        if id_column not in frame.columns:
            raise PanelDataError(
                f"a wave has no id column {id_column!r}, which the panel's trajectory examples "
                f"need — add it or set study.id_column",
                column=id_column,
            )
    skip = {id_column, cluster_column, prev_cluster_column}
    pv = list(previous_variables or [c for c in previous.columns if c not in skip])
    cv = list(current_variables or [c for c in current.columns if c not in skip])
    prev = previous.set_index(previous[id_column].map(id_text))
    cur = current.set_index(current[id_column].map(id_text))
    prev = prev[~prev.index.duplicated()]
    cur = cur[~cur.index.duplicated()]
    keys = prev.index.intersection(cur.index, sort=False)
    if len(keys) == 0:
        raise PanelDataError(
            f"no respondent is in both waves by {id_column!r} — the trajectory examples need "
            f"linked respondents",
            column=id_column,
        )
    pc = prev.loc[keys, cluster_column].astype(int).to_numpy()
    cc = cur.loc[keys, cluster_column].astype(int).to_numpy()
    out: list[Trajectory] = []
    for a, b in sorted(set(zip(pc.tolist(), cc.tolist(), strict=True))):
        idx = np.flatnonzero((pc == a) & (cc == b))
        for i in rng.choice(idx, size=min(per_type, len(idx)), replace=False):
            key = keys[i]
            out.append(
                Trajectory(
                    respondent=str(key),
                    prev_cluster=int(a),
                    cluster=int(b),
                    previous={v: prev.at[key, v] for v in pv},
                    current={v: cur.at[key, v] for v in cv},
                )
            )
    return out


def trajectory_log(
    examples: Sequence[Trajectory], id_column: str = "respondent_id"
) -> pd.DataFrame:
    """One line per example (for ``Examples/<model_dir>/``): id, clusters and both answer sets,
    the previous wave's columns prefixed ``prev_``."""
    rows = []
    for ex in examples:
        row: dict[str, Any] = {
            id_column: ex.respondent,
            "prev_cluster": ex.prev_cluster,
            "cluster": ex.cluster,
        }
        row.update({f"prev_{k}": v for k, v in ex.previous.items()})
        row.update(ex.current)
        rows.append(row)
    return pd.DataFrame(rows)


def transition_label(prev_cluster: int | None, cluster: int) -> str:
    """``"stayed in cluster 1"`` / ``"moved from cluster 1 to cluster 2"``."""
    if prev_cluster is None:
        return f"back in the panel, in cluster {cluster}"
    if prev_cluster == cluster:
        return f"stayed in cluster {cluster}"
    return f"moved from cluster {prev_cluster} to cluster {cluster}"


def format_trajectory(
    example: Trajectory, *, previous_wave: str, wave: str, cluster_column: str = "cluster"
) -> str:
    """One real trajectory as prompt text: a heading and two one-line tables::

    Respondent who stayed in cluster 1:
    wave 2 (cluster 1):
    q1,q2
    3,NA
    wave 3 (cluster 1):
    q1,q2,cluster
    3,4,1
    """
    now = {**example.current, cluster_column: example.cluster}
    return "\n".join(
        [
            f"Respondent who {transition_label(example.prev_cluster, example.cluster)}:",
            f"wave {previous_wave} (cluster {example.prev_cluster}):",
            encode_table(pd.DataFrame([example.previous])),
            f"wave {wave} (cluster {example.cluster}):",
            encode_table(pd.DataFrame([now])),
        ]
    )


def format_requested_row(
    respondent: str,
    *,
    path: Sequence[tuple[str, int | None]],
    wave: str,
    cluster: int,
    previous: Mapping[str, Any] | None,
    previous_wave: str | None,
    id_column: str = "respondent_id",
    cluster_column: str = "cluster",
) -> str:
    """One requested synthetic respondent after the shared prefix::

        Respondent S00012 (respondent_id S00012): cluster path wave 1: 1, wave 2: absent,
        wave 3: 2; write their wave 3 answers in cluster 2.
        Their answers in wave 1:
        q1,q2
        3,4

    Args:
        path: (wave, cluster or ``None`` when absent) up to and including ``wave``.
        previous: The respondent's answers in ``previous_wave`` (their last wave answered), or
            ``None`` when they have none.
    """
    steps = ", ".join(f"wave {w}: {c if c is not None else 'absent'}" for w, c in path)
    lines = [
        f"Respondent {respondent} ({id_column} {respondent}): cluster path {steps}; write "
        f"their wave {wave} answers in {cluster_column} {cluster}."
    ]
    if previous is None or previous_wave is None:
        lines.append("They have no answers from an earlier wave.")
    else:
        lines += [f"Their answers in wave {previous_wave}:", encode_row(previous)]
    return "\n".join(lines)


def encode_row(values: Mapping[str, Any]) -> str:
    """One row as :func:`panelsynth.describe.encode_table` writes it (a header and one line,
    ``NA`` = no answer), without building a frame (a later wave formats one per respondent)."""
    return ",".join(values) + "\n" + ",".join(cell_text(v) for v in values.values())


def cell_text(v: Any) -> str:
    """A cell as the prompt tables write it (`NA` = no answer, whole numbers without `.0`)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "NA"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "NA"
    return str(int(f)) if f.is_integer() else str(f)
