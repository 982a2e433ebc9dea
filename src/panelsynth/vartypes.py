"""The type of a variable from its dictionary entry and its answers, with the reason.

Rules, first match wins:

1. a ``type`` column of the CSV dictionary (``ordinal``, ``categorical``, ``continuous``,
   ``binary``);
2. a declared numeric range (``18-90``): whole-number bounds spanning at most
   :data:`MAX_ORDINAL_LEVELS` points (a count ``0-7``, a ``0-10`` scale) make an ordinal (two
   points: a binary) — the same rule as for undocumented answers, so that a count is written with
   its exact codes; anything wider is continuous;
3. response codes: the dictionary's codes (less the missing codes that apply) together with the
   codes observed in the data: two or fewer → binary, text → categorical, three or more numbers
   → ordinal (categorical for a demographic such as a region code);
4. no dictionary entry: the answers alone — two distinct values → binary, text → categorical,
   whole numbers with at most :data:`MAX_ORDINAL_LEVELS` distinct values → ordinal
   (categorical for a demographic), anything else → continuous.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from panelsynth.dictionaries import VariableMeta
from panelsynth.missing import code_key

MAX_ORDINAL_LEVELS = 11


def explain_var_type(
    values: pd.Series,
    meta: VariableMeta | None = None,
    *,
    declared: str | None = None,
    demographic: bool = False,
    missing_codes: Iterable[int | float | str] = (),
) -> tuple[str, str]:
    """The type phrase of a variable and why (see the module docstring).

    Args:
        values: The variable's cleaned answers.
        meta: Its dictionary entry, if any.
        declared: A type from the dictionary's ``type`` column (wins).
        demographic: Coded demographics with 3+ codes are categorical, not ordinal.
        missing_codes: Missing codes that apply to this variable (ignored among its codes).

    Returns:
        ``(type phrase, reason)``, the reason a short phrase for the prepare report.
    """
    if declared:
        return declared, "declared in the dictionary's type column"
    obs = values.dropna()
    if meta is not None and meta.range is not None:
        lo, hi = meta.range
        points = hi - lo + 1
        nums = pd.to_numeric(obs, errors="coerce").dropna()
        whole = float(lo).is_integer() and float(hi).is_integer() and _whole(nums)
        span = f"dictionary range {_fmt(lo)}-{_fmt(hi)}"
        if whole and points == 2:
            return "a binary", f"{span}: two whole-number points"
        if whole and points <= MAX_ORDINAL_LEVELS:
            return "an ordinal", f"{span}: {int(points)} whole-number points (count or short scale)"
        return "a continuous", span
    if meta is not None and meta.responses:
        miss = {code_key(c) for c in missing_codes}
        listed = [code_key(c) for c in meta.responses if code_key(c) not in miss]
        seen = [code_key(v) for v in obs.unique()]
        codes = list(dict.fromkeys([*listed, *seen]))
        extra = len(codes) - len(listed)
        where = f"{len(listed)} in the dictionary" + (f", {extra} more observed" if extra else "")
        if len(codes) <= 2:
            return "a binary", f"{len(codes)} codes ({where})"
        if not all(_is_number(c) for c in codes):
            return "a categorical", f"{len(codes)} text categories ({where})"
        if demographic:
            return "a categorical", f"demographic with {len(codes)} numeric codes ({where})"
        return "an ordinal", f"{len(codes)} ordered numeric codes ({where})"
    num = pd.to_numeric(obs, errors="coerce")
    distinct = obs.nunique()
    if distinct <= 2:
        return "a binary", f"no dictionary codes; {distinct} distinct answers"
    if num.isna().any():
        return "a categorical", f"no dictionary codes; {distinct} text answers"
    if _whole(num) and distinct <= MAX_ORDINAL_LEVELS:
        if demographic:
            return "a categorical", f"no dictionary codes; demographic, {distinct} whole numbers"
        return "an ordinal", f"no dictionary codes; {distinct} distinct whole numbers"
    return "a continuous", f"no dictionary codes; {distinct} distinct numeric answers"


def _whole(num: pd.Series) -> bool:
    return bool(np.all(np.isclose(num, np.round(num)))) if len(num) else True


def _is_number(x: object) -> bool:
    try:
        float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
