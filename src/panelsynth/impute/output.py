"""Write completed data sets without touching a real answer (issue 15).

``Imputed data/<model_dir>/wave{W}_imp{k}.csv`` is the wave's ``Original data`` file with only its
empty cells filled: the file's text is tokenised into cells and the imputed values are spliced into
the spans of the missing ones, so every other byte — observed answers as written, quoting,
separator, encoding, line endings — stays as it was. Respondents absent from the wave (dropouts
and skipped waves) are appended as new lines: their id, the imputed answers, the drawn cluster and
their observed cluster in the previous wave (empty when they missed it too).

``wave{W}_imputed_cells.csv`` lists every cell an imputation wrote, one line per
(respondent, variable, imputation): ``<id column>, variable, imputation, value``, the drawn
cluster of an absent row included. All files are written atomically.
"""

from __future__ import annotations

import csv
import io
import logging
import numbers
from pathlib import Path

import pandas as pd

from panelsynth.impute.completed import CompletedSet
from panelsynth.impute.csvtext import data_rows
from panelsynth.impute.gaps import Panel
from panelsynth.io import atomic_write_text, csv_dialect, decode_bytes
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")


def imputed_csv(ws: Workspace, model_dir: str, wave: str, k: int) -> Path:
    return ws.imputed_dir(model_dir) / f"wave{wave}_imp{k}.csv"


def imputed_cells_csv(ws: Workspace, model_dir: str, wave: str) -> Path:
    return ws.imputed_dir(model_dir) / f"wave{wave}_imputed_cells.csv"


def plain_value(value: object) -> str:
    """A value as text: whole numbers without ``.0``, other numbers as Python writes them."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def format_value(value: object, sep: str, decimal: str) -> str:
    """A value as a cell of a file with this separator and decimal mark (quoted when needed)."""
    s = plain_value(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return s.replace(".", ",") if decimal == "," else s
    if any(c in s for c in (sep, '"', "\n", "\r")):
        return '"' + s.replace('"', '""') + '"'
    return s


def fill_text(text: str, panel: Panel, wave: str, done: CompletedSet) -> str:
    """The wave file's text with the missing cells of ``done`` filled and absent rows appended."""
    sep, decimal = csv_dialect(text)
    header = next(csv.reader(io.StringIO(text), delimiter=sep))
    names = [h.strip() for h in header]
    col = {name: j for j, name in enumerate(names)}
    rows = data_rows(text, sep)
    pw = panel.waves[wave]
    if len(rows) != len(pw.frame):
        raise ValueError(
            f"wave {wave}: {len(rows)} rows in the file but {len(pw.frame)} in the panel"
        )
    row_of = {rid: r for rid, r in zip(pw.ids, rows, strict=True)}
    cells = done.cells[done.cells["wave"] == wave]
    present = cells["respondent_id"].isin(row_of)
    edits: list[tuple[int, int, str]] = []
    for rid, var, value in cells.loc[present, ["respondent_id", "variable", "value"]].itertuples(
        index=False
    ):
        start, end = row_of[rid][col[var]]
        edits.append((start, end, format_value(value, sep, decimal)))
    pieces = []
    pos = 0
    for start, end, new in sorted(edits):
        pieces += [text[pos:start], new]
        pos = end
    pieces.append(text[pos:])
    out = "".join(pieces)

    drawn = done.clusters.get(wave)
    if drawn is not None and len(drawn):
        newline = "\r\n" if "\r\n" in text[: text.find("\n") + 1] else "\n"
        if out and not out.endswith(("\n", "\r")):
            out += newline
        absent = cells.loc[~present].pivot(
            index="respondent_id", columns="variable", values="value"
        )
        prev = panel.previous(wave)
        prev_obs = panel.waves[prev].frame[panel.cluster_column] if prev else pd.Series(dtype=int)
        lines = []
        for rid, cluster in drawn.items():
            line = [""] * len(names)
            line[col[panel.id_column]] = format_value(panel.id_text(rid), sep, decimal)
            for var in pw.variables:
                if rid in absent.index and var in absent.columns:
                    line[col[var]] = format_value(absent.at[rid, var], sep, decimal)
            line[col[panel.cluster_column]] = format_value(int(cluster), sep, decimal)
            if panel.prev_cluster_column in col and rid in prev_obs.index:
                line[col[panel.prev_cluster_column]] = format_value(
                    int(prev_obs.at[rid]), sep, decimal
                )
            lines.append(sep.join(line))
        out += newline.join(lines) + newline
    return out


def cells_table(panel: Panel, wave: str, sets: list[CompletedSet]) -> str:
    """The ``wave{W}_imputed_cells.csv`` text of every imputation of ``wave``."""
    parts = []
    for done in sets:
        cells = done.cells[done.cells["wave"] == wave]
        part = pd.DataFrame(
            {
                panel.id_column: [panel.id_text(r) for r in cells["respondent_id"]],
                "variable": cells["variable"].to_numpy(),
                "imputation": done.k,
                "value": [plain_value(v) for v in cells["value"]],
            }
        )
        drawn = done.clusters.get(wave)
        if drawn is not None and len(drawn):
            part = pd.concat(
                [
                    part,
                    pd.DataFrame(
                        {
                            panel.id_column: [panel.id_text(r) for r in drawn.index],
                            "variable": panel.cluster_column,
                            "imputation": done.k,
                            "value": [str(int(c)) for c in drawn.to_numpy()],
                        }
                    ),
                ],
                ignore_index=True,
            )
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    return table.to_csv(index=False, lineterminator="\n")


def write_imputed(
    ws: Workspace, panel: Panel, sets: list[CompletedSet], model_dir: str
) -> list[Path]:
    """Write ``wave{W}_imp{k}.csv`` for every wave and imputation, and the cells files.

    Returns:
        The paths written, in order.
    """
    written = []
    for w, pw in panel.waves.items():
        source = pw.source or ws.original_data(w)
        try:
            text, encoding = decode_bytes(Path(source).read_bytes())
        except OSError as err:
            from panelsynth.errors import DataError

            raise DataError(f"cannot read {ws.rel(Path(source))} ({err.strerror})") from None
        for done in sets:
            path = imputed_csv(ws, model_dir, w, done.k)
            atomic_write_text(path, fill_text(text, panel, w, done), encoding=encoding)
            written.append(path)
        path = imputed_cells_csv(ws, model_dir, w)
        atomic_write_text(path, cells_table(panel, w, sets))
        written.append(path)
        log.info("wave %s: %d completed sets written to %s", w, len(sets), ws.rel(path.parent))
    return written
