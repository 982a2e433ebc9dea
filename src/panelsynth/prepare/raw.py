"""Reading the raw waves: finding their files, the id column, missing codes, the dictionary.

Raw files are ``.csv`` (any encoding and separator), ``.sav``/``.zsav`` or ``.dta``, found in
``prepare.raw_dir`` by ``prepare.raw_pattern``. Survey missing codes become NA unless the
variable's dictionary entry (or the file's own labels) lists the code as an answer
(:mod:`panelsynth.missing`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.data import clean_missing_by_variable, id_text, read_csv_any, read_labelled
from panelsynth.dictionaries import (
    VariableMeta,
    labelled_measures,
    labelled_metadata,
    read_csv_dictionary,
)
from panelsynth.errors import DataError, WorkspaceError
from panelsynth.missing import MissingTally
from panelsynth.workspace import Workspace, check_wave_id, wave_sort_key

log = logging.getLogger("panelsynth")

RAW_SUFFIXES = (".csv", ".tsv", ".txt", ".sav", ".zsav", ".dta")


def raw_folder(ws: Workspace, cfg: PanelsynthConfig) -> Path:
    """The raw data folder: ``prepare.raw_dir`` relative to the workspace (or absolute)."""
    p = Path(cfg.prepare.raw_dir).expanduser()
    return p if p.is_absolute() else ws.root / p


def find_raw_files(ws: Workspace, cfg: PanelsynthConfig) -> dict[str, Path]:
    """Wave id -> raw file, for ``study.waves`` or every file that matches ``prepare.raw_pattern``.

    The pattern's extension may be swapped for any readable one (``wave{W}.csv`` also finds
    ``wave3.sav``), the pattern's own extension first.

    Raises:
        WorkspaceError: the folder or a listed wave's file is missing, or no file matches.
    """
    folder = raw_folder(ws, cfg)
    if not folder.is_dir():
        raise WorkspaceError(
            f"raw data folder not found: {ws.rel(folder)} — put the raw wave files there or set "
            f"prepare.raw_dir in panelsynth.toml"
        )
    prefix, suffix = cfg.prepare.raw_pattern.split("{W}", 1)
    ext = next((e for e in RAW_SUFFIXES if suffix.lower().endswith(e)), "")
    stem_suffix = suffix[: len(suffix) - len(ext)]
    exts = [ext] if ext else []
    exts += [e for e in RAW_SUFFIXES if e not in exts]
    by_name = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}

    def lookup(wave: str) -> Path | None:
        for e in exts:
            hit = by_name.get(f"{prefix}{wave}{stem_suffix}{e}".lower())
            if hit is not None:
                return hit
        return None

    waves = [check_wave_id(w) for w in cfg.study.waves]
    if waves:
        out: dict[str, Path] = {}
        for w in waves:
            hit = lookup(w)
            if hit is None:
                expected = f"{prefix}{w}{suffix}"
                raise WorkspaceError(
                    f"raw file of wave {w} not found: {ws.rel(folder / expected)} — add it (.csv, "
                    f".sav or .dta) or remove wave {w} from study.waves"
                )
            out[w] = hit
        return out

    rx = re.compile(
        rf"^{re.escape(prefix)}([0-9A-Za-z][0-9A-Za-z_-]*?){re.escape(stem_suffix)}"
        rf"({'|'.join(re.escape(e) for e in RAW_SUFFIXES)})$",
        re.IGNORECASE,
    )
    found = sorted({m.group(1) for p in folder.iterdir() if (m := rx.match(p.name))})
    if not found:
        raise WorkspaceError(
            f"no raw wave files matching {cfg.prepare.raw_pattern!r} in {ws.rel(folder)} — name "
            f"them like {cfg.prepare.raw_pattern.replace('{W}', '1')} or set prepare.raw_pattern"
        )
    return {w: lookup(w) for w in sorted(found, key=wave_sort_key)}  # type: ignore[misc]


def read_raw_wave(
    path: Path,
    id_column: str,
    missing_codes: Sequence[int | float | str],
    *,
    source: str,
    dictionary: dict[str, VariableMeta] | None = None,
) -> tuple[pd.DataFrame, dict[str, VariableMeta], dict[str, str], MissingTally]:
    """Read one raw wave, check its id column and clean missing codes.

    A missing code that the variable's entry in ``dictionary`` (or in the file's own labels)
    lists as an answer is kept (:mod:`panelsynth.missing`).

    Returns:
        The cleaned frame (id column first, ids normalised), the metadata carried by a
        ``.sav``/``.dta`` file (empty for CSV), the measurement levels of an SPSS file
        (variable -> ``nominal``/``ordinal``/``scale``; empty for CSV and Stata) and what the
        missing codes did per variable.

    Raises:
        DataError: the id column is missing, or an id appears twice.
    """
    labelled: dict[str, VariableMeta] = {}
    measures: dict[str, str] = {}
    if path.suffix.lower() in (".sav", ".zsav", ".dta"):
        df, meta = read_labelled(path)
        labelled = labelled_metadata(meta)
        measures = labelled_measures(meta)
    else:
        df = read_csv_any(path)
    df.columns = [str(c).strip() for c in df.columns]
    if id_column not in df.columns:
        shown = ", ".join(list(df.columns)[:8]) + (", ..." if len(df.columns) > 8 else "")
        raise DataError(
            f"{source} has no id column {id_column!r} (columns: {shown}) — add it or set "
            f"study.id_column in panelsynth.toml",
            path=source,
            column=id_column,
        )
    ids = normalise_ids(df[id_column])
    entries = {**labelled, **(dictionary or {})}
    rest, tally = clean_missing_by_variable(df.drop(columns=[id_column]), missing_codes, entries)
    keep = ids.notna().to_numpy()
    if not keep.all():
        log.warning("%s: %d rows without an id were skipped", source, int((~keep).sum()))
    frame = pd.concat([ids.rename(id_column), rest], axis=1)[keep].reset_index(drop=True)
    dup = frame[id_column].duplicated(keep=False)
    if dup.any():
        first = frame.loc[dup, id_column].iloc[0]
        times = int((frame[id_column] == first).sum())
        raise DataError(
            f"{source}: id {first} appears {times} times in column {id_column!r} — each "
            f"respondent needs one row per wave",
            path=source,
            column=id_column,
        )
    return frame, labelled, {str(k).strip(): v for k, v in measures.items()}, tally


def normalise_ids(s: pd.Series) -> pd.Series:
    """The id column as ``Original data/`` writes it: numeric ids as integers where they are
    whole (``1.0`` in a .sav file is ``1``); text ids stay text (so ``007`` keeps its zeros).

    Respondents are matched across files by :func:`id_keys` (:func:`panelsynth.data.id_text`).
    """
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        vals = s.dropna().to_numpy(dtype=float)
        if len(vals) and bool(np.all(vals == np.round(vals))):
            return s.round().astype("Int64")
        return s
    return s.astype("string").str.strip().replace("", pd.NA)


def id_keys(ids: pd.Series) -> np.ndarray:
    """Each id as the text that matches a respondent across files (:func:`~panelsynth.data.id_text`:
    ``1001`` and ``1001.0`` are the same person)."""
    return ids.map(id_text).to_numpy()


@dataclass
class StudyDictionary:
    """The study dictionary (question text, responses, optional declared type per variable).

    A row with neither question nor responses (one that only declares a type) has no entry in
    ``meta``: a labelled file's own texts describe that variable; it is in ``bare``.
    """

    meta: dict[str, VariableMeta]
    declared: dict[str, str]
    source: str
    found: bool = True
    bare: frozenset[str] = frozenset()

    @classmethod
    def load(cls, ws: Workspace) -> StudyDictionary:
        path = ws.study_dictionary()
        if not path.exists():
            return cls({}, {}, ws.rel(path), found=False)
        read = read_csv_dictionary(path)  # every error of the file at once
        meta = {k: v for k, v in read.meta.items() if k not in read.bare}
        return cls(meta, read.declared, ws.rel(path), bare=read.bare)
