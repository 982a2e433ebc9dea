"""Rows as step 3 compares and writes them: keys of rows (copies), the final CSV."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from panelsynth.io import atomic_write_text


def row_key(values: Iterable[Any]) -> tuple[Any, ...]:
    """A row as a comparable tuple: numbers as floats, NA as ``None``, anything else as text."""
    return tuple(_key_cell(v) for v in values)


def row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> set[tuple[Any, ...]]:
    """:func:`row_key` of every row of ``frame`` over ``columns``."""
    return {row_key(r) for r in frame[list(columns)].itertuples(index=False)}


def _key_cell(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def write_csv_atomic(frame: pd.DataFrame, path) -> None:
    """Write the final CSV through a temporary file and a rename: never half-written."""
    buf = io.StringIO()
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        num = pd.to_numeric(s, errors="coerce")
        if (
            s.notna().sum() == num.notna().sum()
            and len(num.dropna())
            and (num.dropna() % 1 == 0).all()
        ):
            out[col] = num.astype("Int64")
    out.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())
