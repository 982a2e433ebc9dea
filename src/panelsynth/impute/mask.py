"""Seeded masking for the evaluation of imputation (issue 15).

:func:`mask_panel` hides

* ``cell_share`` of the observed answers (chosen uniformly among all observed cells of the
  requested waves' variables; a column never loses its last answer), and
* the last observed wave of ``wave_share`` of the respondents eligible for it: those whose last
  observed requested wave is not their first (so that an earlier wave remains to impute from).

The wave rows are hidden first and the cells are drawn among the answers that remain, so the two
kinds never overlap. The hidden answers come back as ``truth`` (one row per hidden answer) and
the masked panel is a copy: the caller's panel is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from panelsynth.impute.gaps import Panel

TRUTH_COLUMNS = ["wave", "respondent_id", "variable", "value", "kind"]


@dataclass
class Masked:
    """A masked panel and what was hidden.

    Attributes:
        panel: The panel with the hidden answers removed (cells set to NA, wave rows dropped).
        truth: Columns ``wave``, ``respondent_id``, ``variable``, ``value``, ``kind``
            (``"item"`` for a hidden answer, ``"wave"`` for an answer of a hidden wave row).
        hidden_rows: Columns ``wave``, ``respondent_id``, ``cluster``: the hidden wave rows.
    """

    panel: Panel
    truth: pd.DataFrame
    hidden_rows: pd.DataFrame


def mask_panel(
    panel: Panel, *, cell_share: float = 0.10, wave_share: float = 0.10, seed: int = 0
) -> Masked:
    """Hide a seeded share of observed answers and of respondents' last observed waves.

    Args:
        panel: The real panel (not modified).
        cell_share: Share of the observed answers to hide (rounded to whole cells).
        wave_share: Share of eligible respondents whose last observed wave is hidden.
        seed: Seed; the same seed hides the same answers.
    """
    for name, share in (("cell_share", cell_share), ("wave_share", wave_share)):
        if not 0.0 <= share < 1.0:
            raise ValueError(f"{name} must be in [0, 1), not {share}")
    rng = np.random.default_rng(seed)
    out = panel.copy()
    truth: list[tuple] = []
    hidden: list[tuple[str, str, int]] = []

    # 1. last observed waves
    seen: dict[str, list[str]] = {}
    for w, pw in panel.waves.items():
        for rid in pw.ids:
            seen.setdefault(rid, []).append(w)
    eligible = sorted(rid for rid, ws in seen.items() if len(ws) > 1)
    n_rows = int(round(wave_share * len(eligible)))
    chosen = rng.choice(len(eligible), size=n_rows, replace=False) if n_rows else []
    by_wave: dict[str, list[str]] = {}
    for i in sorted(chosen):
        rid = eligible[i]
        by_wave.setdefault(seen[rid][-1], []).append(rid)
    for w, rids in by_wave.items():
        pw = out.waves[w]
        rows = pw.frame.loc[rids]
        for v in pw.variables:
            col = rows[v]
            truth += [(w, rid, v, val, "wave") for rid, val in col.dropna().items()]
        hidden += [(w, rid, int(c)) for rid, c in rows[out.cluster_column].items()]
        pw.frame = pw.frame.drop(index=rids)

    # 2. cells among the remaining answers
    cells: list[tuple[str, str]] = []  # (wave, variable) per observed cell, with its row id
    rows_of: list[str] = []
    for w, pw in out.waves.items():
        for v in pw.variables:
            obs = pw.frame.index[pw.frame[v].notna().to_numpy()]
            cells += [(w, v)] * len(obs)
            rows_of += list(obs)
    n_cells = int(round(cell_share * len(cells)))
    left = {}
    for key in cells:
        left[key] = left.get(key, 0) + 1
    picked = []
    for i in rng.permutation(len(cells)):
        if len(picked) == n_cells:
            break
        key = cells[i]
        if left[key] > 1:  # never empty a column
            left[key] -= 1
            picked.append(i)
    for i in sorted(picked):
        w, v = cells[i]
        rid = rows_of[i]
        frame = out.waves[w].frame
        truth.append((w, rid, v, frame.at[rid, v], "item"))
        frame.at[rid, v] = np.nan
    return Masked(
        out,
        pd.DataFrame(truth, columns=TRUTH_COLUMNS),
        pd.DataFrame(hidden, columns=["wave", "respondent_id", "cluster"]),
    )
