"""Which survey missing codes apply to which variable (SPEC §3.1).

``study.missing_codes`` (default: -99, -98, -97, -9, -8, -1, "Refused", "Don't know", "DK", "NA"
and the empty string) are replaced by NA when data are read — except where the codebook says the
code is an answer. A code the dictionary lists as a response of a variable is that variable's
answer (the -1 of a -1/0/1 battery, the "NA" of a text category) unless its label says it is
missing ("Refused", "Don't know", "Not applicable", ...). A code inside a variable's declared
range (-1 of a range ``-5 - 5``) is an answer too.

This module only decides; :func:`panelsynth.data.clean_missing_by_variable` applies it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from panelsynth.dictionaries import VariableMeta
from panelsynth.values import number_text

#: Labels that say a listed code means "no answer" (the codebook lists it with the answers).
MISSING_LABEL_RE = re.compile(
    r"refus|don'?t know|do not know|dont know|\bdk\b|not applicable|\bn/?a\b|inapplicable|"
    r"no answer|not answered|missing|skipped|prefer not|rather not say|not asked|not stated|"
    r"no response|non-?response|unknown|can'?t say|cannot say|can'?t choose|"
    r"don'?t remember|\binvalid\b|not ascertained",
    re.IGNORECASE,
)


def looks_missing(label: str) -> bool:
    """Whether a response label says the code means missing (``Refused``, ``Don't know``)."""
    return bool(MISSING_LABEL_RE.search(label or ""))


def code_key(code: object) -> str:
    """A code as text for comparisons: ``-1.0`` and ``"-1"`` are ``-1``; text lower-cased."""
    if isinstance(code, bool):
        return str(code).lower()
    if isinstance(code, int | float):
        f = float(code)
        return number_text(f)
    text = str(code).strip()
    try:
        f = float(text)
    except ValueError:
        return text.lower()
    return number_text(f)


@dataclass
class CodesFor:
    """The missing codes of one variable.

    Attributes:
        applied: The configured codes that become NA in this variable.
        kept: Configured codes kept as answers: code -> why (the dictionary's label, or its range).
    """

    applied: list[int | float | str]
    kept: dict[str, str] = field(default_factory=dict)


def codes_for_variable(meta: VariableMeta | None, codes: Iterable[int | float | str]) -> CodesFor:
    """Split the configured missing codes into those that apply and those that are answers.

    Args:
        meta: The variable's dictionary entry (``None``: every code applies).
        codes: ``study.missing_codes``.
    """
    codes = list(codes)
    if meta is None or (not meta.responses and meta.range is None):
        return CodesFor(codes)
    labelled = {code_key(k): v for k, v in (meta.responses or {}).items()}
    applied: list[int | float | str] = []
    kept: dict[str, str] = {}
    for c in codes:
        key = code_key(c)
        label = labelled.get(key)
        if label is not None and not looks_missing(label):
            kept[key] = f"labelled {label!r}"
            continue
        if meta.range is not None and label is None:
            try:
                f = float(key)
            except ValueError:
                f = None
            if f is not None and meta.range[0] <= f <= meta.range[1]:
                kept[key] = (
                    f"inside its range {number_text(meta.range[0])}-{number_text(meta.range[1])}"
                )
                continue
        applied.append(c)
    return CodesFor(applied, kept)


def codes_by_variable(
    metadata: Mapping[str, VariableMeta], codes: Iterable[int | float | str]
) -> dict[str, CodesFor]:
    """:func:`codes_for_variable` for every variable of ``metadata``."""
    codes = list(codes)
    return {name: codes_for_variable(m, codes) for name, m in metadata.items()}


def kept_warning(variable: str, kept: Mapping[str, str], source: str) -> str:
    """The warning for configured missing codes kept as answers of one variable."""
    one = len(kept) == 1
    codes = ", ".join(kept)
    why = "; ".join(dict.fromkeys(kept.values()))
    return (
        f"variable {variable!r}: {codes} {'is an answer' if one else 'are answers'} in {source} "
        f"({why}) — kept as {'an answer' if one else 'answers'}, although study.missing_codes "
        f"lists {'it' if one else 'them'}; label {'it' if one else 'them'} 'Refused', "
        f'"Don\'t know", ... in the dictionary if {"it means" if one else "they mean"} missing'
    )


@dataclass
class MissingTally:
    """What the missing codes did in one wave, per variable.

    Attributes:
        to_na: Variable -> missing code (as configured) -> values set to NA.
        kept: Variable -> configured code kept as an answer -> why.
        kept_n: Variable -> kept code -> values kept.
    """

    to_na: dict[str, dict[str, int]] = field(default_factory=dict)
    kept: dict[str, dict[str, str]] = field(default_factory=dict)
    kept_n: dict[str, dict[str, int]] = field(default_factory=dict)

    def rows(self, wave: str, n_respondents: int) -> list[dict[str, object]]:
        """Rows of ``Prepare/missing_codes.csv``: wave, variable, code, action, n, share, why."""
        out: list[dict[str, object]] = []
        for var in dict.fromkeys([*self.to_na, *self.kept]):
            for code, n in self.to_na.get(var, {}).items():
                out.append(_row(wave, var, code, "set to NA", n, n_respondents, ""))
            for code, why in self.kept.get(var, {}).items():
                n = self.kept_n.get(var, {}).get(code, 0)
                out.append(_row(wave, var, code, "kept as answer", n, n_respondents, why))
        return out


def _row(
    wave: str, var: str, code: str, action: str, n: int, total: int, why: str
) -> dict[str, object]:
    return {
        "wave": wave,
        "variable": var,
        "code": code,
        "action": action,
        "n": n,
        "share": round(n / total, 4) if total else 0.0,
        "why": why,
    }
