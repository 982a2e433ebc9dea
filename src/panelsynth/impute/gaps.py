"""The gaps of a real panel (issue 15): item non-response and waves a respondent missed.

A :class:`Panel` is the requested waves of ``Original data/`` read through :func:`data.load_wave`
(same cleaning and checks as generation) and indexed by the respondent id, so a respondent can be
followed across waves. :func:`find_gaps` lists

* **item gaps**: cells ``(wave, respondent, variable)`` a respondent who took part left empty;
* **absent rows**: respondents missing from a requested wave after answering an earlier one.
  Panels are re-entry aware: an absent respondent who answers a later requested wave again is
  ``"skipped"``, one who never comes back is ``"dropped"``.

The cluster of an absent respondent in the wave they missed is drawn (seeded) by
:func:`draw_missing_clusters` from the real transition table of the previous requested wave to
that wave, estimated over the respondents present in both (SPEC: clusters of missing waves come
from the host, never from a model).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.data import load_wave, read_csv_any, respondent_ids
from panelsynth.dictionaries import VariableMeta
from panelsynth.errors import DataError
from panelsynth.impute.csvtext import data_rows, field_spans, unquote
from panelsynth.io import csv_dialect, decode_bytes
from panelsynth.workspace import Mode, Workspace, check_wave_id, wave_sort_key

log = logging.getLogger("panelsynth")

GAP_COLUMNS = ["wave", "respondent_id", "variable"]
ABSENT_COLUMNS = ["wave", "respondent_id", "kind", "last_wave"]


@dataclass
class PanelWave:
    """One wave of a real panel, indexed by respondent id (ids as text, as in the file).

    Attributes:
        wave: Wave id.
        frame: The wave's variables (cleaned: missing codes are NA), the cluster column and, after
            the first wave, the previous-cluster column; index = respondent id in file order.
        var_types: Variable -> type of the variables to impute (the mode's var types, optionally
            narrowed to ``items``).
        metadata: Variable -> metadata (codes or range).
        source: The wave's ``Original data`` file.
        id_text: Respondent id -> the id exactly as the file writes it (e.g. ``"007"`` for the
            id ``"7"``), where it differs.
    """

    wave: str
    frame: pd.DataFrame
    var_types: dict[str, str]
    metadata: dict[str, VariableMeta]
    source: Path | None = None
    id_text: dict[str, str] = field(default_factory=dict)

    @property
    def variables(self) -> list[str]:
        return list(self.var_types)

    @property
    def ids(self) -> pd.Index:
        return self.frame.index


@dataclass
class Panel:
    """Several waves of one panel, in study order, linked by the respondent id."""

    waves: dict[str, PanelWave]
    id_column: str = "respondent_id"
    cluster_column: str = "cluster"
    prev_cluster_column: str = "prev_cluster"

    @property
    def order(self) -> list[str]:
        return list(self.waves)

    def previous(self, wave: str) -> str | None:
        """The requested wave before ``wave`` (``None`` for the first)."""
        i = self.order.index(wave)
        return self.order[i - 1] if i else None

    def id_text(self, rid: str) -> str:
        """The id as the files write it (the latest wave that has the respondent)."""
        for pw in reversed(list(self.waves.values())):
            if rid in pw.id_text:
                return pw.id_text[rid]
        return rid

    def copy(self) -> Panel:
        waves = {
            w: PanelWave(
                pw.wave, pw.frame.copy(), dict(pw.var_types), pw.metadata, pw.source, pw.id_text
            )
            for w, pw in self.waves.items()
        }
        return Panel(waves, self.id_column, self.cluster_column, self.prev_cluster_column)


@dataclass
class Gaps:
    """What is missing in a panel.

    Attributes:
        cells: Item gaps of respondents who took part: columns ``wave``, ``respondent_id``,
            ``variable``.
        absent: Respondents absent from a wave after answering an earlier requested one: columns
            ``wave``, ``respondent_id``, ``kind`` (``"dropped"``: never back; ``"skipped"``:
            answers a later requested wave) and ``last_wave`` (their last wave before it).
    """

    cells: pd.DataFrame
    absent: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ABSENT_COLUMNS))

    def absent_ids(self, wave: str) -> list[str]:
        return self.absent.loc[self.absent["wave"] == wave, "respondent_id"].tolist()

    def all_cells(self, panel: Panel) -> pd.DataFrame:
        """Every cell to impute: item gaps (``kind="item"``) and every variable of each absent
        row (``kind="wave"``), in wave order."""
        parts = []
        for w, pw in panel.waves.items():
            items = self.cells[self.cells["wave"] == w].assign(kind="item")
            ids = self.absent_ids(w)
            rows = pd.DataFrame(
                [(w, i, v) for i in ids for v in pw.variables], columns=GAP_COLUMNS
            ).assign(kind="wave")
            parts += [items, rows]
        if not parts:
            return pd.DataFrame(columns=[*GAP_COLUMNS, "kind"])
        return pd.concat(parts, ignore_index=True)


def load_panel(
    ws: Workspace,
    waves: Sequence[str] | None = None,
    *,
    mode: Mode = "full",
    items: Sequence[str] | None = None,
    config: PanelsynthConfig | None = None,
) -> Panel:
    """Read the requested waves of ``Original data/`` into a :class:`Panel`.

    Args:
        ws: The workspace.
        waves: Wave ids (default: ``study.waves`` of the config, else every wave with data).
        mode: Which var types name the variables to impute (``full``: every kept item).
        items: Impute only these variables (each must be in at least one requested wave).
        config: The study config (default: the workspace's ``panelsynth.toml``).

    Raises:
        DataError: a wave lacks the id column, has empty or repeated ids, or an unknown item.
    """
    cfg = config if config is not None else load_config(ws.config_path)
    st = cfg.study
    study_waves = list(st.waves) or ws.waves_with_data()
    wanted = [check_wave_id(w) for w in (waves or study_waves)]
    wanted = sorted(dict.fromkeys(wanted), key=wave_sort_key)
    out: dict[str, PanelWave] = {}
    for w in wanted:
        wd = load_wave(
            ws,
            w,
            mode=mode,
            missing_codes=st.missing_codes,
            study_waves=study_waves,
            cluster_column=st.cluster_column,
            prev_cluster_column=st.prev_cluster_column,
            k=cfg.clustering.k,
        )
        name = ws.rel(ws.original_data(w))
        raw = read_csv_any(ws.original_data(w))
        ids = respondent_ids(raw, st.id_column, name, purpose="imputation", unique=True)
        frame = wd.frame.copy()
        frame.index = pd.Index(ids.to_numpy(), name=st.id_column)
        types = dict(wd.var_types)
        if items:
            types = {v: t for v, t in types.items() if v in set(items)}
        out[w] = PanelWave(w, frame, types, wd.metadata, wd.source, _id_texts(ws, w, ids))
    if items:
        known = {v for pw in out.values() for v in pw.var_types}
        unknown = [i for i in items if i not in known]
        if unknown:
            raise DataError(
                f"--items: {', '.join(unknown)} not among the variables of waves "
                f"{', '.join(wanted)} ({mode} mode) — check the names or the mode",
                column=unknown[0],
            )
    return Panel(out, st.id_column, st.cluster_column, st.prev_cluster_column)


def _id_texts(ws: Workspace, wave: str, ids: pd.Series) -> dict[str, str]:
    """Ids whose text in the file differs from the normalised id (leading zeros, ``.0``)."""
    text, _ = decode_bytes(ws.original_data(wave).read_bytes())
    sep, _ = csv_dialect(text)
    header = [unquote(text[a:b]) for a, b in field_spans(text.split("\n", 1)[0], sep)[0]]
    j = header.index(ids.name) if ids.name in header else None
    rows = data_rows(text, sep)
    if j is None or len(rows) != len(ids):
        return {}
    written = [unquote(text[r[j][0] : r[j][1]]) if j < len(r) else "" for r in rows]
    return {rid: w for rid, w in zip(ids, written, strict=True) if w and w != rid}


def find_gaps(panel: Panel, *, dropouts: bool = True) -> Gaps:
    """Item gaps of every requested wave and (with ``dropouts``) the absent rows."""
    cells = []
    for w, pw in panel.waves.items():
        for v in pw.variables:
            miss = pw.frame.index[pw.frame[v].isna().to_numpy()]
            cells += [(w, i, v) for i in miss]
    absent_rows: list[tuple[str, str, str, str]] = []
    if dropouts:
        order = panel.order
        last_seen: dict[str, str] = {}
        for t, w in enumerate(order):
            present = set(panel.waves[w].ids)
            later: set[str] = set()
            for w2 in order[t + 1 :]:
                later |= set(panel.waves[w2].ids)
            for rid in sorted((set(last_seen) - present), key=_id_key):
                kind = "skipped" if rid in later else "dropped"
                absent_rows.append((w, rid, kind, last_seen[rid]))
            for rid in present:
                last_seen[rid] = w
    return Gaps(
        pd.DataFrame(cells, columns=GAP_COLUMNS),
        pd.DataFrame(absent_rows, columns=ABSENT_COLUMNS),
    )


def _id_key(rid: str) -> tuple[int, float, str]:
    try:
        return (0, float(rid), rid)
    except ValueError:
        return (1, 0.0, rid)


def transition_table(panel: Panel, prev_wave: str, wave: str) -> pd.DataFrame:
    """P(cluster in ``wave`` | cluster in ``prev_wave``) over respondents present in both.

    A previous cluster none of whose members took part in ``wave`` gets the wave's cluster shares.
    """
    cc = panel.cluster_column
    a = panel.waves[prev_wave].frame[cc]
    b = panel.waves[wave].frame[cc]
    both = a.index.intersection(b.index)
    labels = sorted({int(x) for x in a.unique()} | {int(x) for x in b.unique()})
    counts = pd.crosstab(a.loc[both].astype(int), b.loc[both].astype(int))
    counts = counts.reindex(index=labels, columns=labels, fill_value=0).astype(float)
    shares = b.astype(int).value_counts(normalize=True).reindex(labels, fill_value=0.0)
    for c in labels:
        total = counts.loc[c].sum()
        if total > 0:
            counts.loc[c] = counts.loc[c] / total
        else:
            log.warning(
                "no respondent of cluster %s in wave %s took part in wave %s: its dropouts get "
                "the wave's cluster shares",
                c,
                prev_wave,
                wave,
            )
            counts.loc[c] = shares.to_numpy()
    return counts


def draw_missing_clusters(panel: Panel, gaps: Gaps, seed: int) -> dict[str, pd.Series]:
    """Draw the cluster of every absent respondent in each wave they missed.

    The draw follows the real transition table wave by wave: from the respondent's cluster in the
    previous requested wave (observed there, or drawn there when they missed it too).

    Returns:
        Wave -> Series (index respondent id, value cluster label) of the absent respondents.
    """
    rng = np.random.default_rng(seed)
    cc = panel.cluster_column
    drawn: dict[str, pd.Series] = {}
    for w in panel.order:
        ids = gaps.absent_ids(w)
        prev = panel.previous(w)
        if not ids or prev is None:
            drawn[w] = pd.Series([], dtype="int64", index=pd.Index([], dtype=object))
            continue
        table = transition_table(panel, prev, w)
        before = pd.concat([panel.waves[prev].frame[cc].astype("int64"), drawn[prev]])
        start = before.reindex(ids).to_numpy()
        labels = table.columns.to_numpy()
        cdf = np.cumsum(table.loc[start].to_numpy(), axis=1)
        u = rng.random(len(ids))
        pick = np.minimum((u[:, None] >= cdf).sum(axis=1), len(labels) - 1)
        drawn[w] = pd.Series(labels[pick].astype("int64"), index=pd.Index(ids, dtype=object))
    return drawn


def cluster_of(panel: Panel, wave: str, drawn: dict[str, pd.Series]) -> pd.Series:
    """Cluster of every respondent of ``wave``: observed, or drawn for the absent ones."""
    obs = panel.waves[wave].frame[panel.cluster_column].astype("int64")
    return pd.concat([obs, drawn.get(wave, pd.Series([], dtype="int64"))])
