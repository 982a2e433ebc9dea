"""Load, clean and check wave data (SPEC §2, §3.1).

Reads CSV (any common encoding and separator), SPSS ``.sav`` and Stata ``.dta`` (through
pyreadstat, keeping question text and value labels: :mod:`panelsynth.readers`, whose readers are
importable from here too), replaces survey missing codes with NA, and checks a wave against its
dictionaries. Every error names the file and the column.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.dictionaries import (
    CODED_TYPES,
    VariableMeta,
    check_metadata_covers,
    load_context,
    load_metadata,
    load_var_types,
    warn_long_texts,
)
from panelsynth.errors import ConfigError, DataError, quote
from panelsynth.missing import MissingTally, code_key, codes_for_variable, kept_warning
from panelsynth.readers import READABLE_SUFFIXES as READABLE_SUFFIXES
from panelsynth.readers import read_csv_any as read_csv_any
from panelsynth.readers import read_labelled as read_labelled
from panelsynth.readers import read_table as read_table
from panelsynth.values import number_text
from panelsynth.workspace import Mode, Workspace, check_wave_id, wave_sort_key

log = logging.getLogger("panelsynth")


def clean_missing(df: pd.DataFrame, codes: Iterable[int | float | str]) -> pd.DataFrame:
    """Replace survey missing codes (numbers and strings) with NA; numeric-looking text
    becomes numeric."""
    codes = list(codes)
    num_codes = {float(c) for c in codes if isinstance(c, int | float) and not isinstance(c, bool)}
    str_codes = {str(c).strip().lower() for c in codes if isinstance(c, str)}
    num_codes |= {f for c in str_codes if (f := _num(c)) is not None}  # "-99" written as text
    str_codes |= {number_text(c) for c in num_codes}
    out = {}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            if num_codes:
                s = s.mask(s.isin(num_codes))
        else:
            lowered = s.astype("string").str.strip().str.lower()
            s = s.mask(lowered.isin(str_codes) & s.notna())
            as_num = pd.to_numeric(s, errors="coerce")
            if s.notna().any() and as_num.notna().sum() == s.notna().sum():
                s = as_num
        out[col] = s
    return pd.DataFrame(out, index=df.index)


def clean_missing_by_variable(
    df: pd.DataFrame,
    codes: Iterable[int | float | str],
    metadata: Mapping[str, VariableMeta],
) -> tuple[pd.DataFrame, MissingTally]:
    """:func:`clean_missing` per variable: a code the variable's metadata lists as an answer
    (or that lies inside its declared range) is kept (see :mod:`panelsynth.missing`).

    Returns:
        The cleaned frame and, per variable, how many values each code set to NA (and which
        configured codes were kept as answers, how often).
    """
    codes = list(codes)
    plans = {c: codes_for_variable(metadata.get(str(c)), codes) for c in df.columns}
    groups: dict[tuple[str, ...], list[Any]] = {}
    for c, plan in plans.items():
        groups.setdefault(tuple(code_key(x) for x in plan.applied), []).append(c)
    cleaned: dict[Any, pd.Series] = {}
    for cols in groups.values():
        part = clean_missing(df[cols], plans[cols[0]].applied)
        cleaned.update({c: part[c] for c in cols})
    out = pd.DataFrame({c: cleaned[c] for c in df.columns}, index=df.index)
    tally = MissingTally()
    for c, plan in plans.items():
        spelled = {code_key(x): (str(x) if str(x).strip() else "(empty)") for x in plan.applied}
        changed = out[c].isna().to_numpy() & df[c].notna().to_numpy()
        if changed.any():
            counts: dict[str, int] = {}
            for value, n in df[c][changed].value_counts(dropna=True).items():
                key = spelled.get(code_key(value), str(value))
                counts[key] = counts.get(key, 0) + int(n)
            tally.to_na[str(c)] = counts
        if plan.kept:
            tally.kept[str(c)] = dict(plan.kept)
            seen: dict[str, int] = {}
            for value, n in df[c].value_counts(dropna=True).items():
                key = code_key(value)
                if key in plan.kept:
                    seen[key] = seen.get(key, 0) + int(n)
            tally.kept_n[str(c)] = seen
    return out, tally


@dataclass
class WaveData:
    """One wave, cleaned and checked against its dictionaries."""

    wave: str
    mode: Mode
    frame: pd.DataFrame
    var_types: dict[str, str]
    metadata: dict[str, VariableMeta]
    context: str
    cluster_column: str = "cluster"
    prev_cluster_column: str | None = None
    source: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: Warnings about texts (questions, answer labels) long enough to make every call costly.
    size_warnings: list[str] = field(default_factory=list)
    #: Cluster shares among every respondent of the wave, kept when a subset (the dense mode's
    #: complete cases) replaces ``frame``; ``None``: ``frame`` is every respondent.
    population_shares: dict[int, float] | None = None

    def cluster_shares(self) -> dict[int, float]:
        """Share of each cluster among the wave's respondents (all of them, not a subset)."""
        if self.population_shares is not None:
            return dict(self.population_shares)
        return cluster_shares(self.frame[self.cluster_column])

    @property
    def variables(self) -> list[str]:
        return list(self.var_types)

    @property
    def columns(self) -> list[str]:
        """Output columns: the wave's variables, cluster, and prev_cluster where present."""
        cols = [*self.var_types, self.cluster_column]
        if self.prev_cluster_column:
            cols.append(self.prev_cluster_column)
        return cols

    @property
    def clusters(self) -> list[int]:
        return sorted(int(c) for c in self.frame[self.cluster_column].dropna().unique())


def cluster_shares(labels: pd.Series) -> dict[int, float]:
    """Share of each cluster among the respondents with a label, by cluster number.

    The one computation of cluster shares (the wave's prompt, calibration's profiles and
    targets): labels that are missing or not numbers are left out.
    """
    counts = pd.to_numeric(labels, errors="coerce").dropna().astype(int).value_counts()
    total = float(counts.sum())
    return {int(c): float(counts[c]) / total for c in sorted(counts.index)}


def is_first_wave(wave: str, waves: Sequence[str]) -> bool:
    """Whether ``wave`` is the first of the study (it then has no previous cluster)."""
    ordered = sorted(waves, key=wave_sort_key) if waves else []
    return not ordered or ordered[0] == wave


def load_wave(
    ws: Workspace,
    wave: str,
    *,
    mode: Mode = "dense",
    missing_codes: Iterable[int | float | str] = (),
    study_waves: Sequence[str] = (),
    cluster_column: str = "cluster",
    prev_cluster_column: str = "prev_cluster",
    k: int = 2,
) -> WaveData:
    """Load ``Original data/wave{W}.csv`` with its metadata, var types and context, and check them.

    Raises:
        DataError / MetadataError / WorkspaceError: one line naming the file, the column and
            the fix.
    """
    wave = check_wave_id(wave)
    waves = list(study_waves) or ws.waves_with_data()
    path = ws.original_data(wave)
    if not path.exists():
        known = ", ".join(ws.waves_with_data()) or "none"
        raise DataError(
            f"unknown wave {wave!r}: {ws.rel(path)} does not exist (waves with data: {known}) — "
            f"check --wave or run `panelsynth prepare`",
            path=str(path),
        )
    types_path = ws.var_types(wave, mode)
    meta_path = ws.metadata_json(wave, mode)
    var_types = load_var_types(types_path)
    metadata = load_metadata(meta_path)
    check_metadata_covers(metadata, var_types, ws.rel(meta_path), ws.rel(types_path))
    context = load_context(ws.wave_context(wave))

    raw = read_csv_any(path)
    name = ws.rel(path)
    used = {*var_types, cluster_column, prev_cluster_column}
    dups = [c for c in raw.attrs.get("duplicate_columns", []) if c in used]
    if dups:
        raise DataError(
            f"{name}: the column {dups[0]!r} appears twice in the header — keep one of them",
            path=name,
            column=dups[0],
        )
    check_variable_names(var_types, ws.rel(types_path))
    check_missing_codes(missing_codes, cluster_column, k)
    # a code the wave's metadata lists as an answer (-1 = Disagree) stays an answer
    df, tally = clean_missing_by_variable(raw, missing_codes, metadata)
    _log_kept_codes(tally, ws.rel(meta_path), str(meta_path.resolve()))
    check_wave_frame(
        df,
        var_types,
        metadata,
        source=name,
        cluster_column=cluster_column,
        # required after the first wave; checked wherever present (wave 1 may carry an empty one)
        prev_cluster_column=prev_cluster_column
        if prev_cluster_column in df.columns or not is_first_wave(wave, waves)
        else None,
        k=k,
    )
    prev = prev_cluster_column if prev_cluster_column in df.columns else None
    keep = [*var_types, cluster_column] + ([prev] if prev else [])
    frame = df[keep].copy()
    frame[cluster_column] = frame[cluster_column].astype(int)
    if prev:
        frame[prev] = frame[prev].astype("Int64")
    long_texts = warn_long_texts(metadata, ws.rel(meta_path))
    return WaveData(
        wave=wave,
        mode=mode,
        frame=frame,
        notes=list(long_texts),
        size_warnings=long_texts,
        var_types=var_types,
        metadata=metadata,
        context=context,
        cluster_column=cluster_column,
        prev_cluster_column=prev,
        source=path,
    )


def check_variable_names(names: Iterable[str], source: str) -> None:
    """Refuse variable names that cannot be fields of the response models (checked before any
    model call): a leading underscore (a private attribute to Pydantic), or a name of
    ``BaseModel`` itself (``model_config``, ``json``, ...), which Pydantic rejects or warns about.

    Raises:
        DataError: one line naming the first such variable and the fix.
    """
    import warnings

    from pydantic import BaseModel, create_model

    reserved = set(dir(BaseModel))
    for name in names:
        problem = None
        if name.startswith("_"):
            problem = "starts with an underscore"
        elif name in reserved:
            problem = "is the name of a Pydantic model attribute"
        elif name.startswith("model_"):  # Pydantic's protected namespace: probe this version
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    fields: dict[str, Any] = {name: (int, ...)}
                    probe = create_model("Probe", **fields)  # type: ignore[call-overload]
                    if name not in probe.model_fields or caught:
                        problem = "is reserved by Pydantic"
                except Exception:  # noqa: BLE001 - a name Pydantic refuses outright
                    problem = "is reserved by Pydantic"
        if problem:
            raise DataError(
                f"{source}: the variable name {quote(name)} {problem}, so it cannot be a field of "
                f"the response models — rename the variable "
                f"(e.g. {quote('v' + name.lstrip('_'))}) "
                f"in the data, var types and metadata",
                path=source,
                column=name,
            )


def check_missing_codes(
    missing_codes: Iterable[int | float | str], cluster_column: str, k: int
) -> None:
    """Refuse missing codes that are also cluster labels (1..k): every label would become NA.

    Raises:
        ConfigError: one line naming the clashing codes.
    """
    labels = set(range(1, k + 1))
    clash = sorted({int(f) for f in map(_num, missing_codes) if f is not None and f in labels})
    if clash:
        shown = ", ".join(map(str, clash))
        raise ConfigError(
            f"study.missing_codes lists {shown}, which {'is a' if len(clash) == 1 else 'are'} "
            f"cluster label{'s' if len(clash) > 1 else ''} of the column {cluster_column!r} "
            f"(1..{k}) and a valid answer — remove {'it' if len(clash) == 1 else 'them'} from "
            f"study.missing_codes (survey missing codes are usually negative, e.g. -9)"
        )


_TOLD_KEPT: set[str] = set()


def _log_kept_codes(tally: MissingTally, source: str, key: str) -> None:
    """Say once per process and metadata file (``key``) which missing codes were kept."""
    used = {v: k for v, k in tally.kept.items() if tally.kept_n.get(v)}
    if not used or key in _TOLD_KEPT:
        return
    _TOLD_KEPT.add(key)
    if len(used) == 1:
        var, kept = next(iter(used.items()))
        log.info(kept_warning(var, kept, source))
        return
    codes = ", ".join(dict.fromkeys(c for k in used.values() for c in k))
    names = ", ".join(list(used)[:5]) + (f" and {len(used) - 5} more" if len(used) > 5 else "")
    log.info(
        "%s lists the missing code(s) %s as answers of %d variables (%s) — kept as answers",
        source,
        codes,
        len(used),
        names,
    )


def check_wave_frame(
    df: pd.DataFrame,
    var_types: dict[str, str],
    metadata: dict[str, VariableMeta],
    *,
    source: str,
    cluster_column: str = "cluster",
    prev_cluster_column: str | None = None,
    k: int = 2,
) -> None:
    """Check columns, cluster labels and response codes of a cleaned wave frame."""
    if df.empty:
        raise DataError(f"{source} has no rows — export the wave again", path=source)
    if cluster_column not in df.columns:
        raise DataError(
            f"{source} has no {cluster_column!r} column — add cluster labels (1/2) or run "
            f"`panelsynth prepare` to compute them",
            path=source,
            column=cluster_column,
        )
    labels = df[cluster_column]
    if labels.isna().any():
        n = int(labels.isna().sum())
        raise DataError(
            f"{source}: column {cluster_column!r} has {n} empty labels — every respondent needs a "
            f"cluster (1..{k})",
            path=source,
            column=cluster_column,
        )
    allowed = set(range(1, k + 1))
    bad = sorted({quote(str(v))[1:-1] for v in labels.unique() if _num(v) not in allowed})
    if bad:
        raise DataError(
            f"{source}: column {cluster_column!r} has labels {', '.join(bad[:5])} — use "
            f"{', '.join(map(str, sorted(allowed)))} (same meaning in every wave)",
            path=source,
            column=cluster_column,
        )
    present = {int(_num(v)) for v in labels.unique()}
    empty = sorted(allowed - present)
    if empty:
        raise DataError(
            f"{source}: cluster {empty[0]} has no respondents — every one of the {k} clusters "
            f"needs rows (re-run clustering or set clustering.k)",
            path=source,
            column=cluster_column,
        )
    if prev_cluster_column is not None:
        if prev_cluster_column not in df.columns:
            raise DataError(
                f"{source} has no {prev_cluster_column!r} column — a wave after the first needs "
                f"each respondent's previous-wave cluster (run `panelsynth prepare`)",
                path=source,
                column=prev_cluster_column,
            )
        prev = df[prev_cluster_column].dropna()
        badp = sorted({quote(str(v))[1:-1] for v in prev.unique() if _num(v) not in allowed})
        if badp:
            raise DataError(
                f"{source}: column {prev_cluster_column!r} has labels {', '.join(badp[:5])} — use "
                f"{', '.join(map(str, sorted(allowed)))} or leave empty",
                path=source,
                column=prev_cluster_column,
            )
    missing = [v for v in var_types if v not in df.columns]
    if missing:
        raise DataError(
            f"{source} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} listed "
            f"in the var types — add {'them' if len(missing) > 1 else 'it'} or remove "
            f"{'them' if len(missing) > 1 else 'it'} from types and metadata",
            path=source,
            column=missing[0],
        )
    for var, vtype in var_types.items():
        s = df[var]
        if s.notna().sum() == 0:
            raise DataError(
                f"{source}: column {var!r} has no answers (all NA) — drop it from the var types "
                f"and metadata",
                path=source,
                column=var,
            )
        nums = pd.to_numeric(s, errors="coerce")
        nonnum = s[s.notna() & nums.isna()]
        meta = metadata.get(var)
        if vtype in CODED_TYPES:
            codes = meta.codes() if meta else []
            numeric_codes = all(isinstance(c, int | float) for c in codes)
            if numeric_codes and len(nonnum):
                raise DataError(
                    f"{source}: column {var!r} ({vtype}) has non-numeric values such as "
                    f"{quote(str(nonnum.iloc[0]))} — recode them to the metadata codes or add "
                    f"them to "
                    f"study.missing_codes",
                    path=source,
                    column=var,
                )
            if codes:
                allowed_codes = {float(c) if isinstance(c, int | float) else c for c in codes}
                vals = nums.dropna() if numeric_codes else s.dropna().astype(str)
                outside = sorted({v for v in vals.unique() if v not in allowed_codes}, key=str)
                if outside:
                    shown = ", ".join(
                        number_text(v) if isinstance(v, float) else quote(str(v))[1:-1]
                        for v in outside[:5]
                    )
                    raise DataError(
                        f"{source}: column {var!r} has values {shown} that the metadata does not "
                        f"list — add them to its responses or to study.missing_codes",
                        path=source,
                        column=var,
                    )
        elif vtype == "a continuous" and len(nonnum):
            raise DataError(
                f"{source}: column {var!r} (a continuous) has non-numeric values such as "
                f"{quote(str(nonnum.iloc[0]))} — recode them or add them to study.missing_codes",
                path=source,
                column=var,
            )
        elif vtype == "a continuous" and meta is not None and meta.range is not None:
            # e.g. an unlisted missing code such as 999 for a refused age
            lo, hi = meta.range
            vals = nums.dropna()
            outside = sorted(vals[(vals < lo) | (vals > hi)].unique())
            if outside:
                shown = ", ".join(number_text(float(v)) for v in outside[:5])
                raise DataError(
                    f"{source}: column {var!r} has values {shown} outside its metadata range "
                    f"[{number_text(lo)}, {number_text(hi)}] — widen the range or add them to "
                    f"study.missing_codes",
                    path=source,
                    column=var,
                )


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(f) else f


def id_text(value: Any) -> str:
    """A respondent id as text: ``1001`` and ``1001.0`` (a column read as float) are the same
    person; text ids are kept as written (stripped), so ``007`` keeps its zeros."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def respondent_ids(
    raw: pd.DataFrame, id_column: str, source: str, *, purpose: str, unique: bool = False
) -> pd.Series:
    """The ids of a wave file's rows as text (:func:`id_text`), in file order, checked.

    Args:
        raw: The wave file as read.
        id_column: ``study.id_column``.
        source: The file's name in messages.
        purpose: What needs the ids, for the messages (``--holdout``, ``imputation``).
        unique: Refuse an id that appears twice.

    Raises:
        DataError: no such column, a row without an id, or (``unique``) an id twice.
    """
    if id_column not in raw.columns:
        raise DataError(
            f"{source} has no id column {id_column!r}, which {purpose} needs (the same id in "
            f"every wave) — add it or set study.id_column in panelsynth.toml",
            path=source,
            column=id_column,
        )
    col = raw[id_column]
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0]) + 2
        raise DataError(
            f"{source}: column {id_column!r} is empty on line {row} "
            f"({int(col.isna().sum())} rows without an id) — every respondent needs an id for "
            f"{purpose}",
            path=source,
            column=id_column,
        )
    ids = col.map(id_text).rename(id_column)
    dup = ids[ids.duplicated()]
    if unique and len(dup):
        raise DataError(
            f"{source}: id {dup.iloc[0]} appears more than once in column {id_column!r} — each "
            f"respondent needs one row per wave",
            path=source,
            column=id_column,
        )
    return ids
