"""Cell values as panelsynth reads, writes and prompts them: the one normalisation.

A survey cell arrives as a pandas/numpy scalar, a Python number, text or a missing value
(``None``, ``NaN``, ``pd.NA``). Everywhere a cell is shown to a model, written to JSON or compared
as a code, ``3.0`` is the code ``3`` and a missing value is ``None``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def is_missing(v: Any) -> bool:
    """``None``, ``NaN``, ``NaT`` and ``pd.NA`` (never raises on lists or odd objects)."""
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def plain(v: Any) -> Any:
    """A JSON-able Python value: missing -> ``None``, numpy scalars unwrapped, ``3.0`` -> ``3``."""
    if is_missing(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def number_text(x: float) -> str:
    """A number as a code is written: ``3.0`` -> ``"3"``, ``2.5`` -> ``"2.5"``."""
    return str(int(x)) if float(x).is_integer() else str(x)


def as_number(text: str) -> int | float | str:
    """A code's text as a number where it is one (``"3"``/``"3.0"`` -> 3, ``"2.5"`` -> 2.5),
    otherwise the text unchanged."""
    try:
        f = float(text)
    except ValueError:
        return text
    return int(f) if f.is_integer() else f


def label_text(v: Any) -> str:
    """A code as a label: ``3.0`` -> ``"3"``, a float NaN or ``None`` -> ``"NA"``, anything else
    as its text (``2.5`` -> ``"2.5"``, ``"yes"`` -> ``"yes"``)."""
    import numpy as np

    if v is None or (isinstance(v, float) and v != v):  # v != v: NaN
        return "NA"
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)
