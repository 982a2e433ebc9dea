"""The model x wave tables of ``Evaluation/Evaluation results/``: this run's figures merged into
what is on disk, under an OS lock."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from panelsynth.errors import PanelsynthError
from panelsynth.evaluate.document import read_json
from panelsynth.evaluate.outcome import PairOutcome
from panelsynth.evaluate.protocol import CANDIDATES, SYNTHETIC
from panelsynth.io import atomic_write_text
from panelsynth.oslock import OsLock
from panelsynth.workspace import Workspace, wave_sort_key

log = logging.getLogger("panelsynth")

#: The four tables of the reference study -> summary key.
TABLE_KEYS: dict[str, str] = {
    "c2st": "c2st",
    "density_overall": "density_overall",
    "density_shape": "density_shape",
    "density_trend": "density_trend",
}
#: Extra tables (same layout) so that no table is silently empty and the non-linear C2ST is kept.
EXTRA_TABLE_KEYS: dict[str, str] = {
    "density_trend_unthresholded": "density_trend_unthresholded",
    "c2st_gb": "c2st_gb",
}


def extra_table_path(ws: Workspace, name: str) -> Path:
    """Path of an extra evaluation table (see ``workspace.EXTRA_EVAL_TABLES``)."""
    if name not in EXTRA_TABLE_KEYS:
        raise ValueError(f"unknown extra table {name!r}")
    return ws.eval_table(name)


def write_tables(ws: Workspace, outcomes: Sequence[PairOutcome]) -> dict[str, Path]:
    """Merge this run's figures into the model x wave tables (other cells are kept).

    The reference columns hold one figure per wave while the references are size-matched per
    model dir: they are taken from the wave's first model dir (in name order) with a metrics
    JSON, so they do not depend on which model dirs an evaluation run included.
    """
    paths: dict[str, Path] = {}
    specs = [(name, ws.eval_table(name), key) for name, key in TABLE_KEYS.items()]
    specs += [(name, extra_table_path(ws, name), key) for name, key in EXTRA_TABLE_KEYS.items()]
    # Another evaluate may merge its own columns at the same time: read-modify-write under an OS
    # lock (waiting for it), or one run's columns would be lost.
    with OsLock(ws.eval_tables_lock(), _tables_busy, wait=True):
        refs = _table_references(ws, outcomes)  # read under the lock: other runs' JSONs too
        _merge_tables(specs, outcomes, paths, refs)
    return paths


def _tables_busy(holder: dict[str, Any] | None) -> PanelsynthError:  # pragma: no cover - waits
    return PanelsynthError("the results tables are locked by another evaluate")


def _merge_tables(
    specs: list[tuple[str, Path, str]],
    outcomes: Sequence[PairOutcome],
    paths: dict[str, Path],
    refs: dict[str, dict[str, dict[str, float | None]]],
) -> None:
    for name, path, key in specs:
        table = _read_table(path)
        for o in outcomes:
            row = o.summary.get(key, {})
            table.loc[o.wave, o.model_dir] = _nan(row.get(SYNTHETIC))
            ref_row = refs.get(o.wave, {}).get(key, row)
            for cand in CANDIDATES[1:]:
                table.loc[o.wave, cand] = _nan(ref_row.get(cand))
        table = _order(table)
        buf = io.StringIO()
        table.to_csv(buf, index_label="wave", float_format="%.4f")
        atomic_write_text(path, buf.getvalue())
        paths[name] = path


def _table_references(
    ws: Workspace, outcomes: Sequence[PairOutcome]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per wave, the summary whose reference figures go into the tables (see write_tables)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    mine = {(o.model_dir, o.wave): o.summary for o in outcomes}
    for wave in {o.wave for o in outcomes}:
        for md in sorted({*ws.model_dirs_with_output(), *(m for m, _ in mine)}):
            if (md, wave) in mine:
                out[wave] = mine[(md, wave)]
                break
            doc = read_json(ws.eval_metrics_json(md, wave))
            if isinstance(doc.get("summary"), dict):
                out[wave] = doc["summary"]
                break
    return out


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(dtype="float64")
    try:
        t = pd.read_csv(path, dtype={"wave": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        log.warning("rewriting unreadable table %s", path)
        return pd.DataFrame(dtype="float64")
    if "wave" not in t.columns:
        return pd.DataFrame(dtype="float64")
    return t.set_index("wave").astype("float64")


def _order(table: pd.DataFrame) -> pd.DataFrame:
    refs = [c for c in CANDIDATES[1:] if c in table.columns]
    models = sorted(c for c in table.columns if c not in refs)
    rows = sorted(table.index.astype(str), key=wave_sort_key)
    table.index = table.index.astype(str)
    return table.loc[rows, models + refs]
