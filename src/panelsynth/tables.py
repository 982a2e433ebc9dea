"""Compact tables of respondents as the prompts show them (steps 1 and 3 share these)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from panelsynth.values import number_text


def code_text(v: Any) -> str:
    """A code as the prompts write it: ``3.0`` -> ``"3"``, ``2.5`` -> ``"2.5"``, text as is."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return number_text(f)


def encode_table(frame: pd.DataFrame) -> str:
    """Compact CSV-like table: one header, one line per row, NA written as ``NA``."""
    lines = [",".join(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append(",".join(_cell(v) for v in row))
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return "NA"
    return code_text(v)
