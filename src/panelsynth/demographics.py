"""Demographic variables under the names real surveys give them.

``prepare.demographics`` (default ``["age", "sex"]``) names the demographics: carried into both
modes, not clustered on, categorical when coded, and the calibrated mode's default anchors. Real
files call them ``gender``, ``age_group``, ``agecat``, ``educ``...: a configured demographic that
is not a column of the data is matched to a column of the same kind (sex/gender, age/age group/
age band, education/qualification). A column that looks like a demographic no one configured is
pointed out; a configured one with no match is reported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_PREFIX = r"(?:respondent_?|resp_?|r_|dem_?|demo_?)?"
#: kind -> pattern of the (normalised) column names of that kind
KINDS: dict[str, re.Pattern[str]] = {
    "age": re.compile(
        rf"^{_PREFIX}age(?:_?(?:years?|yrs|group|grp|groups|band|bands|cat|cats|category|"
        rf"range|bracket|class|[0-9]{{1,2}}))?$"
    ),
    "sex": re.compile(rf"^{_PREFIX}(?:sex|gender)(?:_?(?:at_?birth|identity|id|binary|[0-9]))?$"),
    "education": re.compile(
        rf"^{_PREFIX}(?:education|educ|edu|edlevel|schooling|qualification|qualifications|"
        rf"highest_?qualification|hiqual|degree)(?:_?(?:level|lvl|cat|group|grp|[0-9]))?$"
    ),
}


def kind_of(name: str) -> str | None:
    """``age``, ``sex``, ``education`` or ``None``: the kind of demographic a name denotes."""
    norm = re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")
    return next((kind for kind, rx in KINDS.items() if rx.match(norm)), None)


@dataclass
class Demographics:
    """The demographics used for a set of columns.

    Attributes:
        used: Columns used as demographics, in the configured order.
        matched: Configured name -> the column used for it under another name.
        missing: Configured names with no column of their kind.
        unconfigured: Columns that look like a demographic of a kind nobody configured.
    """

    used: list[str] = field(default_factory=list)
    matched: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unconfigured: list[str] = field(default_factory=list)

    def notes(self, where: str) -> list[str]:
        """Warnings for the prepare report (one per finding)."""
        out = [
            f"demographic {name!r} (prepare.demographics) is not in {where}; {col!r} is used as "
            f"the {kind_of(name) or name} demographic (list it in prepare.demographics to say so)"
            for name, col in self.matched.items()
        ]
        out += [
            f"demographic {name!r} (prepare.demographics) is not in {where} and no column looks "
            f"like it — it is not used; set prepare.demographics to the data's names"
            for name in self.missing
        ]
        out += [
            f"{col!r} in {where} looks like a demographic ({kind_of(col)}) — add it to "
            f"prepare.demographics to keep it out of the clustering and use it as a calibration "
            f"anchor"
            for col in self.unconfigured
        ]
        return out


def resolve_demographics(configured: Sequence[str], columns: Sequence[str]) -> Demographics:
    """The configured demographics present in ``columns``, each absent one matched by kind.

    Args:
        configured: ``prepare.demographics``.
        columns: The data's columns (or a wave's variables).
    """
    cols = [str(c) for c in columns]
    out = Demographics()
    taken = {c for c in configured if c in cols}
    for name in configured:
        if name in cols:
            out.used.append(name)
            continue
        kind = kind_of(name)
        hit = next(
            (c for c in cols if kind is not None and kind_of(c) == kind and c not in taken), None
        )
        if hit is None:
            out.missing.append(name)
            continue
        taken.add(hit)
        out.used.append(hit)
        out.matched[name] = hit
    kinds = {kind_of(c) for c in out.used} | {kind_of(c) for c in configured}
    out.unconfigured = [
        c for c in cols if c not in out.used and (k := kind_of(c)) is not None and k not in kinds
    ]
    return out
