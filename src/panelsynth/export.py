"""Statistical file formats next to the CSV: SPSS ``.sav``, Stata ``.dta`` and Parquet.

``panelsynth run --format sav,dta`` writes, next to ``gen_data_wave{W}.csv`` (always written),
``gen_data_wave{W}.sav`` / ``.dta`` / ``.parquet``. The SPSS and Stata files carry the wave's
metadata as SPSS/Stata users and R's haven expect it: the question text as each variable's label
and the response options as value labels; a missing answer is system missing (``.`` in Stata,
``sysmis`` in SPSS, ``NA`` in haven). The cluster columns get labels too. The Parquet file keeps
the same labels as JSON in its schema metadata (key ``panelsynth.labels``). Every file is
written to a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from panelsynth.dictionaries import VariableMeta
from panelsynth.errors import PanelsynthError
from panelsynth.io import atomic_write_with
from panelsynth.values import as_number

log = logging.getLogger("panelsynth")

#: Every value of ``--format``; ``csv`` is always written.
EXPORT_FORMATS: tuple[str, ...] = ("csv", "sav", "dta", "parquet")
#: Longest variable label Stata stores.
STATA_LABEL_MAX = 80


def parse_formats(values: Iterable[str] | None) -> list[str]:
    """``--format`` values (repeatable, or comma lists) as a list starting with ``csv``.

    Raises:
        PanelsynthError: An unknown format, or parquet without pyarrow installed.
    """
    chosen = ["csv"]
    for value in values or ():
        for part in str(value).split(","):
            fmt = part.strip().lower().lstrip(".")
            if not fmt:
                continue
            if fmt not in EXPORT_FORMATS:
                raise PanelsynthError(
                    f"--format must be one of {', '.join(EXPORT_FORMATS)} (repeatable or "
                    f"comma-separated), not {part.strip()!r}"
                )
            if fmt not in chosen:
                chosen.append(fmt)
    if "parquet" in chosen:
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise PanelsynthError(
                "--format parquet needs pyarrow: install it with "
                "`pip install 'panelsynth[parquet]'`"
            )
    return chosen


@dataclass
class Labels:
    """Variable and value labels of a table's columns."""

    variables: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[int | float | str, str]] = field(default_factory=dict)


def wave_labels(
    metadata: dict[str, VariableMeta],
    columns: Iterable[str],
    cluster_column: str = "cluster",
    prev_cluster_column: str | None = "prev_cluster",
    clusters: Iterable[int] = (1, 2),
) -> Labels:
    """Labels of a wave's output columns from its metadata (question text, response options)."""
    labels = Labels()
    cluster_values = {int(c): f"Cluster {int(c)}" for c in clusters}
    for col in columns:
        meta = metadata.get(col)
        if meta is not None:
            labels.variables[col] = meta.question
            if meta.responses:
                labels.values[col] = {as_number(k): str(v) for k, v in meta.responses.items()}
        elif col == cluster_column:
            labels.variables[col] = "Behavioural cluster (panelsynth)"
            labels.values[col] = dict(cluster_values)
        elif prev_cluster_column and col == prev_cluster_column:
            labels.variables[col] = "Behavioural cluster in the previous wave (panelsynth)"
            labels.values[col] = dict(cluster_values)
    return labels


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as float64 (NaN = system missing), other columns as strings ('' missing)."""
    out = pd.DataFrame(index=range(len(frame)))
    for col in frame.columns:
        s = frame[col].reset_index(drop=True)
        num = pd.to_numeric(s, errors="coerce")
        if s.notna().sum() == num.notna().sum():
            out[col] = num.astype("float64")
        else:
            out[col] = s.map(lambda v: "" if v is None or v is pd.NA or v != v else str(v))
    return out


def _value_labels(
    data: pd.DataFrame, labels: Labels, *, integers_only: bool
) -> dict[str, dict[int | float | str, str]]:
    out: dict[str, dict[int | float | str, str]] = {}
    for col, mapping in labels.values.items():
        if col not in data.columns:
            continue
        numeric = data[col].dtype.kind == "f"
        keys = list(mapping)
        if numeric and all(isinstance(k, int | float) for k in keys):
            if integers_only and not all(float(k).is_integer() for k in keys):
                log.warning("%s: Stata value labels need integer codes; %s has none", col, col)
                continue
            out[col] = {(int(k) if integers_only else float(k)): v for k, v in mapping.items()}
        elif not numeric and not integers_only:
            out[col] = {str(k): v for k, v in mapping.items()}
        else:
            log.warning("%s: codes and values differ in type; no value labels written", col)
    return out


def write_sav(frame: pd.DataFrame, labels: Labels, path: Path) -> None:
    """An SPSS file with variable and value labels, written atomically."""
    import pyreadstat

    data = _typed(frame)
    column_labels = [labels.variables.get(c, c) for c in data.columns]
    values = _value_labels(data, labels, integers_only=False)
    atomic_write_with(
        path,
        lambda tmp: pyreadstat.write_sav(
            data, str(tmp), column_labels=column_labels, variable_value_labels=values
        ),
    )


def write_dta(frame: pd.DataFrame, labels: Labels, path: Path) -> None:
    """A Stata file with variable labels (at most 80 characters) and value labels."""
    import pyreadstat

    data = _typed(frame)
    column_labels = [labels.variables.get(c, c)[:STATA_LABEL_MAX] for c in data.columns]
    values = _value_labels(data, labels, integers_only=True)
    atomic_write_with(
        path,
        lambda tmp: pyreadstat.write_dta(
            data, str(tmp), column_labels=column_labels, variable_value_labels=values
        ),
    )


def write_parquet(frame: pd.DataFrame, labels: Labels, path: Path) -> None:
    """A Parquet file whose schema metadata holds the labels (``panelsynth.labels``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"panelsynth.labels"] = json.dumps(
        {
            "variables": labels.variables,
            "values": {c: {str(k): v for k, v in m.items()} for c, m in labels.values.items()},
        },
        ensure_ascii=False,
    ).encode()
    table = table.replace_schema_metadata(meta)
    atomic_write_with(path, lambda tmp: pq.write_table(table, str(tmp)))


_WRITERS: dict[str, Callable[[pd.DataFrame, Labels, Path], None]] = {
    "sav": write_sav,
    "dta": write_dta,
    "parquet": write_parquet,
}


def export_table(
    frame: pd.DataFrame, labels: Labels, csv_path: Path, formats: Iterable[str]
) -> list[Path]:
    """Write ``frame`` next to ``csv_path`` in every format of ``formats`` except ``csv``.

    Returns:
        The files written.

    Raises:
        PanelsynthError: A file could not be written (one line, with the reason).
    """
    written = []
    for fmt in formats:
        if fmt == "csv":
            continue
        path = csv_path.with_suffix(f".{fmt}")
        try:
            _WRITERS[fmt](frame, labels, path)
        except OSError as err:
            raise PanelsynthError(f"cannot write {path}: {err.strerror or err}") from None
        except Exception as err:  # noqa: BLE001 - pyreadstat/pyarrow errors: one line
            raise PanelsynthError(f"cannot write {path.name}: {err}") from None
        written.append(path)
    return written
