r"""Reading data files as users bring them: CSV in any encoding and separator, SPSS and Stata.

Shared by every stage (prepare reads raw waves, run and evaluate read ``Original data/``); the
decoding and the CSV dialect are :mod:`panelsynth.io`'s. Errors are one-line
:class:`~panelsynth.errors.DataError`\ s naming the file.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pandas as pd

from panelsynth.errors import DataError
from panelsynth.io import csv_dialect, decode_bytes

READABLE_SUFFIXES = (".csv", ".txt", ".tsv", ".sav", ".zsav", ".dta")
_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_csv_any(path: Path) -> pd.DataFrame:
    """Read a CSV whatever its encoding (UTF-8 with or without BOM, Latin-1) and separator."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}", path=str(path)) from None
    text, _ = decode_bytes(raw)
    if not text.strip():
        raise DataError(f"{path.name} is empty — export the wave again", path=str(path))
    sep, decimal = csv_dialect(text)  # decimal commas ("45,5") in some locales' ; files
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, decimal=decimal, low_memory=False)
    except (pd.errors.ParserError, ValueError) as err:
        msg = str(err).splitlines()[0]
        found = _FIELDS_RE.search(msg)
        if found:
            want, line, saw = found.groups()
            raise DataError(
                f"{path.name}: line {line} has {saw} cells but the header has {want} — put "
                f"double quotes around cells that contain {sep!r}, or fix that row",
                path=str(path),
            ) from None
        raise DataError(
            f"{path.name}: cannot parse as CSV ({msg}) — check the file", path=str(path)
        ) from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas takes the first column as the index when every row has one cell more than the
        # header: the columns would silently shift by one.
        raise DataError(
            f"{path.name}: the rows have more cells than the header ({df.shape[1]} names) — add "
            f"the missing column name to the header or remove the extra cells",
            path=str(path),
        )
    header = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    names = [h.strip() for h in header]
    df.attrs["duplicate_columns"] = sorted({h for h in names if h and names.count(h) > 1})
    return df


def read_labelled(path: Path) -> tuple[pd.DataFrame, Any]:
    """Read ``.sav``/``.zsav``/``.dta`` with pyreadstat; returns (frame, pyreadstat metadata)."""
    import pyreadstat

    suffix = path.suffix.lower()
    reader = pyreadstat.read_dta if suffix == ".dta" else pyreadstat.read_sav
    if not path.exists():
        raise DataError(f"file not found: {path}", path=str(path))
    try:
        return reader(str(path), user_missing=False)
    except Exception as err:  # pyreadstat raises its own ReadstatError and others
        raise DataError(
            f"{path.name}: cannot read ({err}) — check the file", path=str(path)
        ) from None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one wave file (.csv/.tsv/.txt, .sav/.zsav, .dta) into a DataFrame."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".sav", ".zsav", ".dta"):
        df, _ = read_labelled(p)
        return df
    if suffix in (".csv", ".txt", ".tsv"):
        return read_csv_any(p)
    raise DataError(
        f"{p.name}: unsupported file type {suffix!r} — use .csv, .sav or .dta", path=str(p)
    )
