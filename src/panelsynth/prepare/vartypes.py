"""Variable types and metadata: the type of a variable with the reason, and its metadata per wave.

Types (:func:`explain_var_type`) —
rules, first match wins:

1. a ``type`` column of the CSV dictionary (``ordinal``, ``categorical``, ``continuous``,
   ``binary``);
2. the measurement level an SPSS file gives the variable (:func:`measure_type`): ``nominal`` →
   categorical, ``ordinal`` → ordinal, ``scale`` → continuous; two codes → binary, text answers
   → categorical whatever the level. Stata files carry no level, nor do SPSS variables saved
   without one (``unknown``): the rules below decide;
3. a declared numeric range (``18-90``): whole-number bounds spanning at most
   :data:`MAX_ORDINAL_LEVELS` points (a count ``0-7``, a ``0-10`` scale) make an ordinal (two
   points: a binary) — the same rule as for undocumented answers, so that a count is written with
   its exact codes; anything wider is continuous;
4. response codes: the dictionary's codes (less the missing codes that apply) together with the
   codes observed in the data: two or fewer → binary, text → categorical, three or more numbers
   → ordinal (categorical for a demographic such as a region code). That order is assumed, not
   read: :func:`order_assumed` tells these apart, and ``prepare`` lists them;
5. no dictionary entry: the answers alone — two distinct values → binary, text → categorical,
   whole numbers with at most :data:`MAX_ORDINAL_LEVELS` distinct values → ordinal
   (categorical for a demographic), anything else → continuous.

Metadata (:func:`build_metadata`): the study dictionary's entry (or the file's labels), less the
missing codes, completed with observed codes it lacks (with a warning) or an observed range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from panelsynth.dictionaries import MEASURE_TYPES, VariableMeta
from panelsynth.missing import code_key
from panelsynth.values import number_text

if TYPE_CHECKING:
    from panelsynth.prepare.raw import StudyDictionary

MAX_ORDINAL_LEVELS = 11

#: Type phrase -> the item kind the clustering encodes.
KIND = {
    "an ordinal": "ordinal",
    "a categorical": "categorical",
    "a continuous": "continuous",
    "a binary": "binary",
}

#: The reason given when numeric codes are taken as ordered for want of a type or a level.
ASSUMED_ORDER = "ordered numeric codes"


def explain_var_type(
    values: pd.Series,
    meta: VariableMeta | None = None,
    *,
    declared: str | None = None,
    measure: str | None = None,
    demographic: bool = False,
    missing_codes: Iterable[int | float | str] = (),
) -> tuple[str, str]:
    """The type phrase of a variable and why (see the module docstring).

    Args:
        values: The variable's cleaned answers.
        meta: Its dictionary entry, if any.
        declared: A type from the dictionary's ``type`` column (wins).
        measure: The measurement level its SPSS file gives it (``nominal``, ``ordinal``,
            ``scale``; :func:`panelsynth.dictionaries.labelled_measures`), if any.
        demographic: Coded demographics with 3+ codes are categorical, not ordinal.
        missing_codes: Missing codes that apply to this variable (ignored among its codes).

    Returns:
        ``(type phrase, reason)``, the reason a short phrase for the prepare report.
    """
    if declared:
        return declared, "declared in the dictionary's type column"
    obs = values.dropna()
    if measure in MEASURE_TYPES:
        return measure_type(obs, meta, measure, missing_codes)
    if meta is not None and meta.range is not None:
        lo, hi = meta.range
        points = hi - lo + 1
        nums = pd.to_numeric(obs, errors="coerce").dropna()
        whole = float(lo).is_integer() and float(hi).is_integer() and _whole(nums)
        span = f"dictionary range {number_text(lo)}-{number_text(hi)}"
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
        return "an ordinal", f"{len(codes)} {ASSUMED_ORDER} ({where})"
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


def measure_type(
    obs: pd.Series,
    meta: VariableMeta | None,
    measure: str,
    missing_codes: Iterable[int | float | str] = (),
) -> tuple[str, str]:
    """The type an SPSS measurement level gives a variable, and why.

    ``nominal`` → categorical, ``ordinal`` → ordinal, ``scale`` → continuous; but two codes (the
    file's labels, less missing codes, with the observed answers) are a binary, and text answers
    are categorical: SPSS would order text alphabetically, and text has no scale.
    """
    level = f"measurement level {measure} in the SPSS file"
    miss = {code_key(c) for c in missing_codes}
    labels = (meta.responses or {}) if meta is not None else {}
    listed = [code_key(c) for c in labels if code_key(c) not in miss]
    seen = obs.unique()
    n_codes = len(seen) if len(seen) > 2 else len({*listed, *(code_key(v) for v in seen)})
    if n_codes <= 2:
        return "a binary", f"{level}; {n_codes} codes"
    text = pd.to_numeric(obs, errors="coerce").isna().any()
    if text or not all(_is_number(c) for c in listed):
        if measure == "nominal":
            return "a categorical", level
        return "a categorical", f"{level}, but the answers are text"
    labelled = len(seen) <= len(listed) and {code_key(v) for v in seen} <= set(listed)
    if measure == "scale" and labelled:
        # SPSS gives new numeric variables this level by default: say what contradicts it
        return "a continuous", f"{level}, though every answer has a value label — declare its type"
    return MEASURE_TYPES[measure], level


def order_assumed(vtype: str, reason: str) -> bool:
    """Whether :func:`explain_var_type` typed a variable ordinal only because its codes are
    numbers (no ``type`` in the dictionary, no measurement level in the file)."""
    return vtype == "an ordinal" and ASSUMED_ORDER in reason


def _whole(num: pd.Series) -> bool:
    return bool(np.all(np.isclose(num, np.round(num)))) if len(num) else True


def _is_number(x: object) -> bool:
    try:
        float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def infer_var_type(
    values: pd.Series,
    meta: VariableMeta | None = None,
    *,
    declared: str | None = None,
    demographic: bool = False,
    missing_codes: Sequence[int | float | str] = (),
) -> str:
    """The type phrase of a variable (rules: :func:`panelsynth.vartypes.explain_var_type`).

    Args:
        values: The variable's cleaned answers.
        meta: Its dictionary entry, if any.
        declared: A type from the dictionary's ``type`` column (wins).
        demographic: Coded demographics with 3+ codes are categorical, not ordinal.
        missing_codes: Codes in the dictionary's responses that mean missing (ignored).
    """
    return explain_var_type(
        values, meta, declared=declared, demographic=demographic, missing_codes=missing_codes
    )[0]


def build_metadata(
    name: str,
    values: pd.Series,
    vtype: str,
    dictionary: StudyDictionary,
    labelled: dict[str, VariableMeta],
    *,
    missing_codes: Sequence[int | float | str],
    wave: str,
    warn: Callable[[str], None],
    told: set[str],
) -> VariableMeta:
    """Metadata of one variable for one wave: the dictionary's entry, completed if needed."""
    meta = dictionary.meta.get(name) or labelled.get(name)
    if meta is None:
        if name not in told and dictionary.found and name not in dictionary.bare:
            warn(
                f"{dictionary.source} lacks variable {name!r} — its metadata lists only the "
                f"observed codes; add a row (variable, question, responses) to describe it"
            )
            told.add(name)
        meta = VariableMeta(question=name)
    miss = {code_text(c) for c in missing_codes}
    obs = values.dropna()
    if vtype == "a continuous":
        if meta.range is None and len(obs):
            num = pd.to_numeric(obs, errors="coerce").dropna()
            if len(num):
                meta = meta.model_copy(update={"range": (float(num.min()), float(num.max()))})
        return meta.model_copy(update={"responses": None}) if meta.responses else meta
    whole = meta.range is not None and all(float(x).is_integer() for x in meta.range)
    if meta.range is not None and not meta.responses and whole:
        lo, hi = (int(x) for x in meta.range)  # a count 0-7 typed ordinal: its points are its codes
        meta = meta.model_copy(update={"responses": {str(c): str(c) for c in range(lo, hi + 1)}})
    responses = {k: v for k, v in (meta.responses or {}).items() if code_text(k) not in miss}
    seen = sorted({code_text(v) for v in obs.unique()}, key=code_sort_key)
    unlisted = [c for c in seen if c not in responses]
    if unlisted and meta.responses:
        warn(
            f"wave {wave}: variable {name!r} has values {', '.join(unlisted[:5])} that "
            f"{dictionary.source} does not list — added as unlabelled codes; add them to "
            f"study.missing_codes if they mean missing"
        )
    for c in unlisted:
        responses[c] = c
    responses = dict(sorted(responses.items(), key=lambda kv: code_sort_key(kv[0])))
    return meta.model_copy(update={"responses": responses, "range": None})


def code_sort_key(code: str) -> tuple[int, float, str]:
    try:
        return (0, float(code), "")
    except ValueError:
        return (1, 0.0, code)


def code_text(v: Any) -> str:
    """A code as metadata writes it: numbers as :func:`~panelsynth.values.number_text`, text as
    it is."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return number_text(f)
