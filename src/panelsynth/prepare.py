"""Step 0/1a (SPEC §3.1): from raw wave files to ``Original data/`` with aligned cluster labels.

:func:`prepare_workspace` reads the raw waves (``.csv``, ``.sav``/``.zsav``, ``.dta``; folder and
file pattern from ``[prepare]`` in ``panelsynth.toml``), links respondents across waves by the id
column, replaces survey missing codes with NA, selects variables, clusters each wave with a latent
class model (:mod:`panelsynth.clustering`), aligns the labels across waves and writes:

- ``Original data/wave{W}.csv`` — id, the wave's selected variables, ``cluster`` (1..k, the same
  meaning in every wave) and, after the first wave, ``prev_cluster`` (the respondent's label in the
  previous wave, empty if the respondent did not take part in it);
- ``Dictionaries/var_types/types_wave{W}.json`` (dense mode) and ``.../full/types_wave{W}.json``
  (full mode), and the matching ``Dictionaries/json_metadata/[full/]metadata_wave{W}.json`` cut from
  the study dictionary ``Dictionaries/dictionary.csv`` (so metadata keys == var-type keys);
- reports in ``Prepare/``: ``fit_wave{W}.json`` and ``fit_report.csv`` (class sizes, average
  posterior, entropy, BIC for k = 1..4), ``transitions.csv``, ``item_ranking.csv``,
  ``selection.csv``, ``types.csv`` (every variable's type, role and why), ``missing_codes.csv``
  (per wave, variable and missing code: values set to NA, or codes kept because the dictionary
  lists them as answers), ``warnings.txt`` and, when the workspace has a ``Ground truth/`` folder
  (the demo), ``truth_check.csv``.

Variable selection
------------------
- The id column, ``cluster``/``prev_cluster`` columns of the raw file and ``prepare.exclude`` are
  never used. Demographics (``prepare.demographics``; one the data lacks is matched to a column
  of its kind, e.g. ``gender`` for ``sex``: :mod:`panelsynth.demographics`) and the outcome
  (``study.outcome``) are carried into both modes where a wave has them, but are not clustered
  on.
- Items: ``prepare.include`` when given (these bypass the density threshold), otherwise every other
  variable whose response density — the share of the wave's respondents who answered — is at least
  ``prepare.density_threshold``. Free-text columns (non-numeric with more than 20 distinct answers)
  are skipped. A variable with no answer at all in a wave is dropped with a warning naming it.
- Full mode: every item of the wave + demographics + outcome. Dense mode: the wave's top
  ``prepare.n_dense_items`` items of the cross-wave ranking + demographics + outcome.
- Clustering uses the wave's items that have at least two distinct answers.

Variable types
--------------
A ``type`` column of the study dictionary (``ordinal``, ``categorical``, ``continuous``, ``binary``
or the phrases ``"an ordinal"``, ...) wins. Otherwise the dictionary's codes and the observed
codes decide together (:mod:`panelsynth.vartypes`): a range (``18-90``) is ``a continuous``, or
``an ordinal`` when it has at most 11 whole-number points (a count ``0-7``); codes are ``a
binary`` when there are two, ``an ordinal`` when there are three or more numbers (``a
categorical`` for a demographic) and ``a categorical`` when they are text. Without a dictionary
entry the answers decide: two distinct values → binary, text → categorical, whole numbers with at
most 11 distinct values → ordinal, anything else → continuous. ``Prepare/types.csv`` lists every
variable's type and why. Metadata for a variable the dictionary lacks is built from SPSS/Stata
labels, or from the observed codes/range, with a warning.

Cross-wave ranking
------------------
For every item and wave: the mutual information (bits) of its answers with the cluster label, and
— after the first wave — with the trajectory (previous label, current label) of the respondents
who took part in both waves. Each is averaged over the waves that have the item; the score is the
mean of the two averages (the label average alone if there is a single wave). Written to
``Prepare/item_ranking.csv`` with the per-wave values.

Safety
------
Nothing is written until every wave has been read and clustered. ``Original data/`` files, var
types and metadata that ``prepare`` did not write (or that were edited since) are not replaced
unless ``force=True``; with ``force`` the old file is first copied to ``Prepare/replaced/``.
``Prepare/manifest.json`` records what ``prepare`` wrote (a SHA-256 per file). One ``prepare``
runs per workspace (an OS lock), and its outputs are staged and switched in all at once, the
manifest last: a kill part-way leaves the old set, or a switch the next run completes
(:mod:`panelsynth.prepare_switch`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from panelsynth import clustering as cl
from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.data import clean_missing_by_variable, read_csv_any, read_labelled
from panelsynth.demographics import resolve_demographics
from panelsynth.dictionaries import (
    VariableMeta,
    metadata_to_json,
    read_csv_dictionary,
)
from panelsynth.errors import ConfigError, DataError, PanelsynthError, WorkspaceError
from panelsynth.io import atomic_write_text, remove_old_temporaries, remove_stale_temporaries_of
from panelsynth.missing import MissingTally, codes_for_variable, kept_warning
from panelsynth.prepare_switch import StagedOutputs, finish_interrupted_prepare, prepare_lock
from panelsynth.progress import Progress
from panelsynth.vartypes import explain_var_type
from panelsynth.workspace import Workspace, check_wave_id, wave_sort_key

log = logging.getLogger("panelsynth")


RAW_SUFFIXES = (".csv", ".tsv", ".txt", ".sav", ".zsav", ".dta")
MANIFEST = "manifest.json"
MAX_TEXT_LEVELS = 20
MIN_ANSWERS_TO_CLUSTER = 10

_KIND = {
    "an ordinal": "ordinal",
    "a categorical": "categorical",
    "a continuous": "continuous",
    "a binary": "binary",
}


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class TruthCheck:
    """Computed labels against the simulator's truth (demo workspaces).

    Attributes:
        wave: Wave id.
        n: Respondents compared.
        ari: Adjusted Rand index of the computed labels with the true classes.
        ari_bayes: The same for the Bayes-optimal assignment.
        accuracy: Share of respondents whose computed label equals their true class.
        accuracy_bayes: The same for the Bayes-optimal assignment.
    """

    wave: str
    n: int
    ari: float
    ari_bayes: float
    accuracy: float
    accuracy_bayes: float

    @property
    def ari_ratio(self) -> float:
        return self.ari / self.ari_bayes if self.ari_bayes > 0 else float("nan")

    @property
    def accuracy_ratio(self) -> float:
        return self.accuracy / self.accuracy_bayes if self.accuracy_bayes > 0 else float("nan")

    @property
    def passed(self) -> bool:
        """The issue's criterion: both ratios at least 0.8."""
        return self.ari >= 0.8 * self.ari_bayes and self.accuracy >= 0.8 * self.accuracy_bayes

    def as_row(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "n": self.n,
            "ari": round(self.ari, 4),
            "ari_bayes": round(self.ari_bayes, 4),
            "ari_ratio": round(self.ari_ratio, 4),
            "accuracy": round(self.accuracy, 4),
            "accuracy_bayes": round(self.accuracy_bayes, 4),
            "accuracy_ratio": round(self.accuracy_ratio, 4),
            "passed": self.passed,
        }


@dataclass
class WaveReport:
    """What ``prepare`` did with one wave.

    Attributes:
        wave: Wave id.
        source: Raw file read.
        n_respondents: Rows (respondents) of the wave.
        items: Items clustered on.
        full_vars: Variables of the full mode (its var types, in file order).
        dense_vars: Variables of the dense mode.
        dropped: Variables dropped (all NA) in this wave.
        class_sizes: Respondents per cluster (1..k).
        average_posterior: Mean posterior of their own class, per cluster.
        entropy: Scaled relative entropy of the posteriors (1 = perfectly separated).
        bic: LCA BIC per number of classes.
        n_fit: Respondents the model was fitted on.
        alignment: How cluster 1 was chosen.
        truth: Comparison with the true classes, when the workspace has them.
        demographics: Demographic variables used (configured, or found under another name).
        missing_codes: Rows of ``Prepare/missing_codes.csv`` (values each code set to NA, codes
            kept as answers).
        type_reasons: Why each variable of the full mode has its type.
        var_types: The full mode's var types.
    """

    wave: str
    source: Path
    n_respondents: int
    items: list[str]
    full_vars: list[str]
    dense_vars: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    class_sizes: dict[int, int] = field(default_factory=dict)
    average_posterior: dict[int, float] = field(default_factory=dict)
    entropy: float = float("nan")
    bic: dict[int, float] = field(default_factory=dict)
    bic_n: int = 0
    n_fit: int = 0
    method: str = "lca"
    converged: bool = True
    alignment: str = ""
    n_linked: int = 0
    truth: TruthCheck | None = None
    demographics: list[str] = field(default_factory=list)
    missing_codes: list[dict[str, Any]] = field(default_factory=list)
    type_reasons: dict[str, str] = field(default_factory=dict)
    var_types: dict[str, str] = field(default_factory=dict)


@dataclass
class PrepareResult:
    """Everything :func:`prepare_workspace` produced.

    Attributes:
        workspace: The workspace.
        waves: One report per wave, in study order.
        ranking: The cross-wave item ranking (also in ``Prepare/item_ranking.csv``).
        transitions: Transition counts between consecutive waves.
        written: Files written, relative to the workspace.
        replaced: Files that existed, were not written by ``prepare`` and were backed up.
        warnings: Every warning logged during the run.
    """

    workspace: Workspace
    waves: list[WaveReport]
    ranking: pd.DataFrame
    transitions: pd.DataFrame
    written: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def truth(self) -> list[TruthCheck]:
        return [w.truth for w in self.waves if w.truth is not None]


# ----------------------------------------------------------------------------------------------
# Raw files
# ----------------------------------------------------------------------------------------------
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
) -> tuple[pd.DataFrame, dict[str, VariableMeta], MissingTally]:
    """Read one raw wave, check its id column and clean missing codes.

    A missing code that the variable's entry in ``dictionary`` (or in the file's own labels)
    lists as an answer is kept (:mod:`panelsynth.missing`).

    Returns:
        The cleaned frame (id column first, ids normalised), the metadata carried by a
        ``.sav``/``.dta`` file (empty for CSV) and what the missing codes did per variable.

    Raises:
        DataError: the id column is missing, or an id appears twice.
    """
    labelled: dict[str, VariableMeta] = {}
    if path.suffix.lower() in (".sav", ".zsav", ".dta"):
        df, meta = read_labelled(path)
        labelled = _labelled_meta(meta)
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
    ids = _normalise_ids(df[id_column])
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
    return frame, labelled, tally


def _labelled_meta(meta: Any) -> dict[str, VariableMeta]:
    out: dict[str, VariableMeta] = {}
    for name, question in (meta.column_names_to_labels or {}).items():
        labels = (meta.variable_value_labels or {}).get(name)
        responses = {_fmt_code(k): str(v) for k, v in labels.items()} if labels else None
        out[name] = VariableMeta(question=question or name, responses=responses)
    return out


def _normalise_ids(s: pd.Series) -> pd.Series:
    """Numeric ids as integers where they are whole (``1.0`` in a .sav file is ``1``); text ids
    stay text (so ``007`` keeps its zeros)."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        vals = s.dropna().to_numpy(dtype=float)
        if len(vals) and bool(np.all(vals == np.round(vals))):
            return s.round().astype("Int64")
        return s
    return s.astype("string").str.strip().replace("", pd.NA)


def _fmt_code(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else str(f)


# ----------------------------------------------------------------------------------------------
# Study dictionary and types
# ----------------------------------------------------------------------------------------------
@dataclass
class StudyDictionary:
    """The study dictionary (question text, responses, optional declared type per variable)."""

    meta: dict[str, VariableMeta]
    declared: dict[str, str]
    source: str
    found: bool = True

    @classmethod
    def load(cls, ws: Workspace) -> StudyDictionary:
        path = ws.study_dictionary()
        if not path.exists():
            return cls({}, {}, ws.rel(path), found=False)
        read = read_csv_dictionary(path)  # every error of the file at once
        return cls(read.meta, read.declared, ws.rel(path))


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
        if name not in told and dictionary.found:
            warn(
                f"{dictionary.source} lacks variable {name!r} — its metadata lists only the "
                f"observed codes; add a row (variable, question, responses) to describe it"
            )
            told.add(name)
        meta = VariableMeta(question=name)
    miss = {_fmt_code(c) for c in missing_codes}
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
    responses = {k: v for k, v in (meta.responses or {}).items() if _fmt_code(k) not in miss}
    seen = sorted({_fmt_code(v) for v in obs.unique()}, key=_code_sort_key)
    unlisted = [c for c in seen if c not in responses]
    if unlisted and meta.responses:
        warn(
            f"wave {wave}: variable {name!r} has values {', '.join(unlisted[:5])} that "
            f"{dictionary.source} does not list — added as unlabelled codes; add them to "
            f"study.missing_codes if they mean missing"
        )
    for c in unlisted:
        responses[c] = c
    responses = dict(sorted(responses.items(), key=lambda kv: _code_sort_key(kv[0])))
    return meta.model_copy(update={"responses": responses, "range": None})


def _code_sort_key(code: str) -> tuple[int, float, str]:
    try:
        return (0, float(code), "")
    except ValueError:
        return (1, 0.0, code)


# ----------------------------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """Variables of one wave."""

    items: list[str]
    carried: list[str]
    full_vars: list[str]
    cluster_items: list[str]
    dropped: list[str]
    density: dict[str, float]


def select_variables(
    frame: pd.DataFrame,
    cfg: PanelsynthConfig,
    types: dict[str, str],
    *,
    wave: str,
    source: str,
    warn: Callable[[str], None],
    demographics: Sequence[str] | None = None,
) -> Selection:
    """Choose the items, carried variables and clustering items of one wave.

    ``demographics``: the demographic columns (default: ``prepare.demographics``).
    """
    st, pr = cfg.study, cfg.prepare
    reserved = {st.id_column, st.cluster_column, st.prev_cluster_column}
    excluded = set(pr.exclude)
    columns = [c for c in frame.columns if c not in reserved and c not in excluded]
    demo = pr.demographics if demographics is None else demographics
    carried_names = list(dict.fromkeys([*demo, *([st.outcome] if st.outcome else [])]))
    density = {c: float(frame[c].notna().mean()) if len(frame) else 0.0 for c in columns}

    dropped = [c for c in columns if density[c] == 0.0]
    for c in dropped:
        warn(f"wave {wave}: variable {c!r} has no answers (all NA) in {source} — dropped")
    usable = [c for c in columns if c not in dropped]

    carried = [c for c in usable if c in carried_names]
    include = set(pr.include)
    items: list[str] = []
    for c in usable:
        if c in carried:
            continue
        if include and c not in include:
            continue
        if types.get(c) == "a categorical" and _is_free_text(frame[c]):
            log.info("wave %s: %r looks like free text — not used as an item", wave, c)
            continue
        if c in include or density[c] >= pr.density_threshold:
            items.append(c)
        else:
            log.debug("wave %s: %r answered by %.0f%% — below density", wave, c, 100 * density[c])
    cluster_items = [
        c
        for c in items
        if frame[c].nunique() >= 2 and frame[c].notna().sum() >= MIN_ANSWERS_TO_CLUSTER
    ]
    full_vars = [c for c in usable if c in items or c in carried]
    return Selection(items, carried, full_vars, cluster_items, dropped, density)


def _is_free_text(s: pd.Series) -> bool:
    obs = s.dropna()
    return pd.to_numeric(obs, errors="coerce").isna().any() and obs.nunique() > MAX_TEXT_LEVELS


# ----------------------------------------------------------------------------------------------
# Writing with a safety net
# ----------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_path(ws: Workspace) -> Path:
    return ws.prepare_dir() / MANIFEST


def _read_manifest(ws: Workspace) -> dict[str, str]:
    try:
        data = json.loads(_manifest_path(ws).read_text(encoding="utf-8"))
        return dict(data.get("files", {}))
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return {}


def check_targets(ws: Workspace, targets: Sequence[Path], *, force: bool) -> list[Path]:
    """Files among ``targets`` that exist and were not written by ``prepare`` (or were edited).

    Raises:
        WorkspaceError: there are such files and ``force`` is false.
    """
    manifest = _read_manifest(ws)
    foreign = [p for p in targets if p.exists() and manifest.get(_relposix(ws, p)) != _sha256(p)]
    if foreign and not force:
        names = ", ".join(_relposix(ws, p) for p in foreign[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        one = len(foreign) == 1
        raise WorkspaceError(
            f"{names}{more} {'exists' if one else 'exist'} and {'was' if one else 'were'} not "
            f"written by `panelsynth prepare` — move {'it' if one else 'them'} away or pass "
            f"--force (old files are then copied to Prepare/replaced/)"
        )
    return foreign


def _relposix(ws: Workspace, p: Path) -> str:
    return Path(ws.rel(p)).as_posix()


def _backup(ws: Workspace, path: Path) -> Path:
    rel = Path(_relposix(ws, path))
    dest = ws.prepare_dir() / "replaced" / rel
    i = 1
    while dest.exists():
        dest = ws.prepare_dir() / "replaced" / rel.with_name(f"{rel.stem}.{i}{rel.suffix}")
        i += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, dest)
    return dest


def _csv_text(df: pd.DataFrame) -> str:
    """``df.to_csv(index=False)`` (``\\n`` line ends, minimal quoting), except that a float column
    whose values are all whole numbers is written as integers (``3``, not ``3.0``).

    Cells are formatted a column at a time with numpy (pandas formats nullable integer columns
    value by value: a 100,000-respondent wave took ~1 s to write).
    """
    header = ",".join(_csv_quote(str(c)) for c in df.columns)
    if df.empty:
        return header + "\n"
    cells = [_csv_cells(df[c]) for c in df.columns]
    if len(cells) == 1:  # an empty line would be a blank line: quote it, as the csv module does
        cells = [[c or '""' for c in cells[0]]]
    return header + "\n" + "\n".join(map(",".join, zip(*cells, strict=True))) + "\n"


def _csv_cells(s: pd.Series) -> list[str]:
    """The CSV cells of one column (missing values as empty cells)."""
    if s.dtype.kind in "mM":  # dates and durations: pandas' own formatting
        return s.to_frame().to_csv(index=False, header=False, lineterminator="\n").splitlines()
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
        return ["" if pd.isna(v) else _csv_quote(str(v)) for v in s.tolist()]
    na = s.isna().to_numpy()
    if pd.api.types.is_float_dtype(s):
        vals = s.to_numpy(dtype=float, na_value=np.nan)
        seen = vals[~na]
        if not bool(np.all(np.isfinite(seen) & (seen == np.round(seen)))):
            cells = vals.astype(str).astype(object)
            cells[na] = ""
            return cells.tolist()
        ints = np.where(na, 0, vals).round().astype(np.int64)
    else:  # integers, nullable or not
        ints = s.to_numpy(dtype=np.int64, na_value=0)
    return _int_cells(ints, na)


def _int_cells(ints: np.ndarray, na: np.ndarray) -> list[str]:
    """Integers as text, missing ones empty: survey codes span a few values, so each distinct
    value is spelled once (numpy's int-to-text conversion costs ~30 ms per 100,000 cells)."""
    observed = ints[~na]
    lo, hi = (int(observed.min()), int(observed.max())) if len(observed) else (0, 0)
    if hi - lo > max(100_000, 2 * len(ints)):
        cells = ints.astype(str).astype(object)
        cells[na] = ""
        return cells.tolist()
    table = np.array([str(v) for v in range(lo, hi + 1)] + [""], dtype=object)
    index = ints - lo
    index[na] = hi - lo + 1
    return table[index].tolist()


def _csv_quote(text: str) -> str:
    """Quote a cell the way the csv module's minimal quoting does."""
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


# ----------------------------------------------------------------------------------------------
# Ground truth (demo)
# ----------------------------------------------------------------------------------------------
def truth_check(
    ws: Workspace, wave: str, ids: pd.Series, labels: np.ndarray, id_column: str
) -> TruthCheck | None:
    """Compare computed labels with ``Ground truth/truth_wave{W}.csv`` when it exists."""
    path = ws.ground_truth_dir() / f"truth_wave{wave}.csv"
    if not path.exists():
        return None
    truth = read_csv_any(path)
    key = id_column if id_column in truth.columns else "respondent_id"
    if key not in truth.columns or "true_class" not in truth.columns:
        log.warning("%s lacks %r or 'true_class' — no truth check", ws.rel(path), key)
        return None
    if "bayes_class" in truth.columns:
        bayes = truth["bayes_class"]
    elif "posterior_class1" in truth.columns:
        bayes = pd.Series(np.where(truth["posterior_class1"] >= 0.5, 1, 2), index=truth.index)
    else:
        bayes = None
    t = pd.DataFrame({"key": _normalise_ids(truth[key]).astype(str), "true": truth["true_class"]})
    t["bayes"] = bayes if bayes is not None else np.nan
    mine = pd.DataFrame({"key": ids.astype(str).to_numpy(), "label": labels})
    m = mine.merge(t, on="key", how="inner").dropna(subset=["true"])
    if m.empty:
        return None
    true = m["true"].astype(int).to_numpy()
    lab = m["label"].astype(int).to_numpy()
    has_bayes = m["bayes"].notna().all() and bayes is not None
    b = m["bayes"].astype(int).to_numpy() if has_bayes else true
    return TruthCheck(
        wave=wave,
        n=len(m),
        ari=float(cl.adjusted_rand_index(true, lab)),
        ari_bayes=float(cl.adjusted_rand_index(true, b)),
        accuracy=float(np.mean(lab == true)),
        accuracy_bayes=float(np.mean(b == true)),
    )


# ----------------------------------------------------------------------------------------------
# The whole step
# ----------------------------------------------------------------------------------------------
@dataclass
class _WaveWork:
    report: WaveReport
    types: dict[str, str]
    meta: dict[str, VariableMeta]
    mi_cluster: dict[str, float]
    mi_traj: dict[str, float]


def prepare_workspace(
    workspace: str | Path | Workspace,
    config: PanelsynthConfig | None = None,
    *,
    progress: Progress | None = None,
    force: bool = False,
    engine: cl.Engine | None = None,
    missing: cl.MissingMode | None = None,
    max_fit_rows: int | None = -1,
) -> PrepareResult:
    """Prepare a workspace from its raw waves (SPEC §3.1); see the module docstring.

    Args:
        workspace: The workspace folder.
        config: The study configuration (default: the workspace's ``panelsynth.toml``).
        progress: Called with event dicts (``{"stage": "wave", "wave": "3", "done": 2,
            "total": 7}``, ``{"stage": "write"}``).
        force: Replace ``Original data/``, var types and metadata files that ``prepare`` did not
            write (they are copied to ``Prepare/replaced/`` first).
        engine: LCA estimator (``numpy`` or ``stepmix``); default: ``clustering.engine``.
        missing: ``auto``, ``fiml`` or ``category`` (see
            :func:`panelsynth.clustering.fit_clusters`); default: ``clustering.missing``.
        max_fit_rows: Fit on a seeded subsample of at most this many respondents per wave;
            default (-1): ``clustering.max_fit_rows``; ``None``: fit on everyone.

    Returns:
        Per-wave reports, the item ranking, the transitions and the files written.

    Raises:
        WorkspaceError / DataError / ConfigError: one actionable line; nothing is written then.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.must_exist()
    with prepare_lock(ws):  # one prepare per workspace; outputs switched in all at once
        finish_interrupted_prepare(ws, locked=True)
        return _prepare_locked(ws, config, progress, force, engine, missing, max_fit_rows)


def _prepare_locked(
    ws: Workspace,
    config: PanelsynthConfig | None,
    progress: Progress | None,
    force: bool,
    engine: cl.Engine | None,
    missing: cl.MissingMode | None,
    max_fit_rows: int | None,
) -> PrepareResult:
    cfg = config if config is not None else load_config(ws.config_path)
    st, pr, cc = cfg.study, cfg.prepare, cfg.clustering
    engine = engine or cc.engine
    missing = missing or cc.missing
    if max_fit_rows == -1:
        max_fit_rows = cc.max_fit_rows
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log.warning(msg)

    files = find_raw_files(ws, cfg)
    waves = list(files)
    targets = [
        p
        for w in waves
        for p in (
            ws.original_data(w),
            ws.var_types_for_write(w, None),
            ws.var_types_for_write(w, "full"),
            ws.metadata_json_for_write(w, None),
            ws.metadata_json_for_write(w, "full"),
        )
    ]
    foreign = check_targets(ws, targets, force=force)
    # what killed predecessors left: hidden temporaries full of real rows
    remove_stale_temporaries_of([*targets, _manifest_path(ws)])
    remove_old_temporaries(ws.prepare_dir(), older_than=0)
    dictionary = StudyDictionary.load(ws)
    if not dictionary.found:
        warn(
            f"{dictionary.source} not found — metadata lists only observed codes; write it "
            f"(variable, question, responses) for question texts"
        )

    staging = StagedOutputs(ws)
    works: list[_WaveWork] = []
    transitions: list[pd.DataFrame] = []
    told: set[str] = set()
    told_notes: set[str] = set()
    told_kept: set[str] = set()
    orientation_seen = False
    prev_ids: pd.Series | None = None
    prev_labels: np.ndarray | None = None
    prev_profiles: dict[str, pd.DataFrame] | None = None
    prev_wave: str | None = None
    jobs = [_FitJob(w, files[w], ws.rel(files[w])) for w in waves]
    fit_settings = _FitSettings(cfg, dictionary, engine, missing, max_fit_rows)
    workers = _fit_workers(jobs)
    fitted_waves = (
        _parallel_fits(jobs, fit_settings, workers)
        if workers > 1
        else (_read_and_fit(job, fit_settings) for job in jobs)
    )
    try:
        for i, wave in enumerate(waves):
            _emit(progress, {"stage": "wave", "wave": wave, "done": i, "total": len(waves)})
            fitted = next(fitted_waves)  # in this process, or from a worker
            path = files[wave]
            source = ws.rel(path)
            for note in fitted.notes:
                warn(note)
            for note in fitted.demographic_notes:
                if note not in told_notes:
                    told_notes.add(note)
                    warn(note)
            for var, kept in fitted.missing.kept.items():
                if var not in told_kept:
                    told_kept.add(var)
                    where = dictionary.source if var in dictionary.meta else f"{source}'s labels"
                    warn(kept_warning(var, kept, where))
            frame, labelled, types_all = fitted.frame, fitted.labelled, fitted.types_all
            sel, enc, fit = fitted.sel, fitted.enc, fitted.fit

            # ----- alignment -------------------------------------------------------------
            orient = cc.orientation_item
            if orient and orient in frame.columns and frame[orient].notna().any():
                orientation_seen = True
                means = cl.class_means(frame, orient, fit.labels, cc.k)
                order = cl.orientation_order(means, cc.orientation_higher_is_positive)
                how = f"orientation item {orient!r}"
            else:
                order = None
                if orient:
                    warn(
                        f"wave {wave}: orientation item {orient!r} has no answers in {source} — "
                        f"labels matched to the previous wave's profiles instead"
                    )
                if prev_profiles is not None:
                    cur = cl.profiles_by_item(_profile_subset(enc), fit.labels, cc.k)
                    order = cl.match_profiles(prev_profiles, cur)
                    how = f"profiles matched to wave {prev_wave}"
                if order is None:
                    order = cl.reference_order(enc, fit.labels, cc.k)
                    how = "higher average answers = cluster 1 (set clustering.orientation_item)"
                    if prev_profiles is not None:
                        warn(f"wave {wave} shares no item with wave {prev_wave}; {how}")
            fit = fit.permute(order)
            labels = fit.labels + 1
            prev_profiles = cl.profiles_by_item(_profile_subset(enc), fit.labels, cc.k)

            # ----- previous label via the id ----------------------------------------------
            ids = frame[st.id_column]
            out = pd.DataFrame({st.id_column: ids})
            for c in sel.full_vars:
                out[c] = frame[c]  # whole-number floats are written as integers
            out[st.cluster_column] = pd.array(labels, dtype="Int64")
            prev_lab = None
            n_linked = 0
            if prev_ids is not None and prev_labels is not None:
                lookup = pd.Series(prev_labels, index=prev_ids.astype(str).to_numpy())
                prev_lab = ids.astype(str).map(lookup).astype("Int64")
                out[st.prev_cluster_column] = prev_lab.to_numpy()
                n_linked = int(prev_lab.notna().sum())
                transitions.append(
                    _transition_table(prev_wave, wave, prev_ids, prev_labels, ids, labels, cc.k)
                )
            staging.write(ws.original_data(wave), _csv_text(out))

            # ----- per-item association ---------------------------------------------------
            mi_cluster = {
                item: cl.mutual_information(enc.codes[:, j], fit.labels)
                for j, item in enumerate(enc.items)
            }
            mi_traj: dict[str, float] = {}
            if prev_lab is not None and n_linked:
                p = prev_lab.fillna(0).astype(int).to_numpy() - 1
                traj = np.where(p >= 0, p * cc.k + fit.labels, -1)
                mi_traj = {
                    item: cl.mutual_information(enc.codes[:, j], traj)
                    for j, item in enumerate(enc.items)
                }

            types = {c: types_all[c] for c in sel.full_vars}
            meta = {
                c: build_metadata(
                    c,
                    frame[c],
                    types[c],
                    dictionary,
                    labelled,
                    missing_codes=codes_for_variable(
                        dictionary.meta.get(c) or labelled.get(c), st.missing_codes
                    ).applied,
                    wave=wave,
                    warn=warn,
                    told=told,
                )
                for c in sel.full_vars
            }
            avg = fit.average_posterior()
            report = WaveReport(
                wave=wave,
                source=path,
                n_respondents=len(frame),
                items=list(sel.cluster_items),
                full_vars=list(sel.full_vars),
                dropped=list(sel.dropped),
                class_sizes={c + 1: int(n) for c, n in enumerate(fit.sizes)},
                average_posterior={c + 1: float(a) for c, a in enumerate(avg)},
                entropy=fit.relative_entropy(),
                bic=dict(fit.bic),
                bic_n=fit.bic_n,
                n_fit=fit.n_fit,
                method=fit.method,
                converged=fit.converged,
                alignment=how,
                n_linked=n_linked,
                truth=truth_check(ws, wave, ids, labels, st.id_column),
                demographics=[c for c in fitted.demographics if c in sel.full_vars],
                missing_codes=fitted.missing.rows(wave, len(frame)),
                type_reasons={c: fitted.reasons.get(c, "") for c in sel.full_vars},
                var_types=dict(types),
            )
            works.append(_WaveWork(report, types, meta, mi_cluster, mi_traj))
            if not fit.converged:
                warn(f"wave {wave}: the latent class model did not converge — see the fit report")
            prev_ids, prev_labels, prev_wave = ids, labels, wave
            del frame, enc, out, fitted
        fitted_waves.close()  # the workers' files and processes are gone

        if cc.orientation_item and not orientation_seen:
            raise ConfigError(
                f"clustering.orientation_item {cc.orientation_item!r} is not a column of any raw "
                f"wave — check its spelling or remove it"
            )
        for name in pr.include:
            if not any(name in w.report.full_vars or name in w.report.dropped for w in works):
                warn(f"prepare.include lists {name!r} but no raw wave has it — check the spelling")

        ranking = rank_items(
            {w.report.wave: w.mi_cluster for w in works},
            {w.report.wave: w.mi_traj for w in works},
        )
        scores = dict(zip(ranking["item"], ranking["score"], strict=True))
        for w in works:
            r = w.report
            top = sorted(r.items, key=lambda it: (-scores.get(it, 0.0), r.items.index(it)))
            top = top[: pr.n_dense_items]
            r.dense_vars = top + [c for c in r.full_vars if c not in r.items]
        _emit(progress, {"stage": "write", "done": len(waves), "total": len(waves)})

        # ----- dictionaries --------------------------------------------------------------
        for w in works:
            r = w.report
            dense_types = {c: w.types[c] for c in r.dense_vars}
            for mode, types in ((None, dense_types), ("full", w.types)):
                meta = {c: w.meta[c] for c in types}
                staging.write(
                    ws.var_types_for_write(r.wave, mode), json.dumps(types, indent=2) + "\n"
                )
                staging.write(
                    ws.metadata_json_for_write(r.wave, mode), metadata_to_json(meta) + "\n"
                )

        replaced = [_relposix(ws, _backup(ws, p)) for p in foreign]
    except BaseException:
        staging.discard()
        fitted_waves.close()  # stops the fitting workers, if any
        raise

    no_context = [w for w in waves if not ws.wave_context(w).exists()]
    if no_context:
        warn(
            f"no wave context for wave{'s' if len(no_context) > 1 else ''} "
            f"{', '.join(no_context)} — write Dictionaries/wave_contexts/wave{{W}}_context.txt "
            f"(purpose, time, target variable, previous wave) before `panelsynth run`"
        )
    _stale_outputs(ws, waves, warn)
    trans = pd.concat(transitions, ignore_index=True) if transitions else _empty_transitions()
    reports = [w.report for w in works]
    try:
        _write_reports(ws, reports, ranking, trans, cfg, engine, missing, warnings, staging)
        _write_manifest(ws, staging.targets(), staging)
    except BaseException:
        staging.discard()
        raise
    written = [p for p in staging.switch() if p != _manifest_path(ws)]  # the manifest last
    return PrepareResult(
        workspace=ws,
        waves=reports,
        ranking=ranking,
        transitions=trans,
        written=[_relposix(ws, p) for p in written],
        replaced=replaced,
        warnings=warnings,
    )


# ----------------------------------------------------------------------------------------------
# Reading and clustering the waves: independent of each other, so large panels use two processes
# ----------------------------------------------------------------------------------------------
#: Raw waves of at least this size on average are read and clustered in worker processes (one
#: per core, at most :data:`MAX_FIT_WORKERS`); a worker's start-up (importing pandas, numpy and
#: scipy: ~2 s) is not worth it for small waves.
PARALLEL_MIN_RAW_BYTES = 2_000_000
MAX_FIT_WORKERS = 2


@dataclass(frozen=True)
class _FitJob:
    wave: str
    path: Path
    source: str


@dataclass(frozen=True)
class _FitSettings:
    cfg: PanelsynthConfig
    dictionary: StudyDictionary
    engine: cl.Engine
    missing: cl.MissingMode
    max_fit_rows: int | None


@dataclass
class _FittedWave:
    """A wave read, typed, with its variables selected and its respondents clustered."""

    frame: pd.DataFrame
    labelled: dict[str, VariableMeta]
    types_all: dict[str, str]
    sel: Selection
    enc: cl.EncodedItems
    fit: cl.ClusterFit
    notes: list[str]  # warnings, in the order they arose
    missing: MissingTally = field(default_factory=MissingTally)
    reasons: dict[str, str] = field(default_factory=dict)  # variable -> why its type
    demographics: list[str] = field(default_factory=list)
    demographic_notes: list[str] = field(default_factory=list)  # the same in every wave


def _read_and_fit(job: _FitJob, s: _FitSettings) -> _FittedWave:
    """The part of preparing a wave that needs no other wave (label alignment comes after)."""
    st, pr, cc = s.cfg.study, s.cfg.prepare, s.cfg.clustering
    notes: list[str] = []
    frame, labelled, tally = read_raw_wave(
        job.path, st.id_column, st.missing_codes, source=job.source, dictionary=s.dictionary.meta
    )
    if frame.empty:
        raise DataError(f"{job.source} has no rows — export the wave again", path=job.source)
    demo = resolve_demographics(pr.demographics, [c for c in frame.columns if c != st.id_column])
    explained: dict[str, tuple[str, str]] = {}
    for c in frame.columns:
        if c == st.id_column:
            continue
        entry = s.dictionary.meta.get(c) or labelled.get(c)
        explained[c] = explain_var_type(
            frame[c],
            entry,
            declared=s.dictionary.declared.get(c),
            demographic=c in demo.used,
            missing_codes=codes_for_variable(entry, st.missing_codes).applied,
        )
    types_all = {c: t for c, (t, _) in explained.items()}
    sel = select_variables(
        frame,
        s.cfg,
        types_all,
        wave=job.wave,
        source=job.source,
        warn=notes.append,
        demographics=demo.used,
    )
    if not sel.cluster_items:
        raise DataError(
            f"{job.source}: no item to cluster on (every candidate is excluded, empty or "
            f"below prepare.density_threshold={pr.density_threshold}) — check "
            f"prepare.include/exclude",
            path=job.source,
        )
    kinds = {c: _KIND[types_all[c]] for c in sel.cluster_items}
    enc = cl.encode_items(frame, sel.cluster_items, kinds)
    if enc.n < cc.k:
        raise DataError(
            f"{job.source} has {enc.n} respondents — too few for {cc.k} clusters",
            path=job.source,
        )
    fit = cl.fit_clusters(
        enc,
        k=cc.k,
        method=cc.method,
        seed=cc.seed,
        n_init=cc.n_init,
        max_fit_rows=s.max_fit_rows,
        engine=s.engine,
        missing=s.missing,
    )
    return _FittedWave(
        frame,
        labelled,
        types_all,
        sel,
        enc,
        fit,
        notes,
        missing=tally,
        reasons={c: why for c, (_, why) in explained.items()},
        demographics=demo.used,
        demographic_notes=demo.notes("the raw waves"),
    )


def _fit_workers(jobs: Sequence[_FitJob]) -> int:
    """Worker processes for these waves: 1 (in-process) unless the raw waves are large."""
    if len(jobs) < 2:
        return 1
    sizes = [job.path.stat().st_size for job in jobs]
    if sum(sizes) / len(sizes) < PARALLEL_MIN_RAW_BYTES:
        return 1
    return max(1, min(MAX_FIT_WORKERS, os.cpu_count() or 1, len(jobs)))


def _parallel_fits(
    jobs: Sequence[_FitJob], settings: _FitSettings, workers: int
) -> Iterator[_FittedWave]:
    """:func:`_read_and_fit` of every job in ``workers`` processes, yielded in the jobs' order.

    Worker ``i`` takes every ``workers``-th wave and hands each result over as a file as soon as
    it is done, so the caller aligns wave 1 while later waves are still being fitted. A wave's
    error is raised when its turn comes (as in one process); closing the generator stops the
    workers.
    """
    import pickle
    import subprocess
    import sys
    import tempfile
    import time

    from panelsynth.workers import worker_env

    with tempfile.TemporaryDirectory(prefix="panelsynth-prepare-") as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(workers):
                job_file = Path(tmp) / f"jobs{i}.pkl"
                job_file.write_bytes(pickle.dumps((list(jobs[i::workers]), settings)))
                cmd = [sys.executable, "-m", "panelsynth.prepare_worker", str(job_file), tmp]
                procs.append(subprocess.Popen(cmd, env=worker_env()))
            for n, job in enumerate(jobs):
                proc, out = procs[n % workers], Path(tmp) / f"wave-{job.wave}.pkl"
                while not out.exists():
                    if proc.poll() is not None and not out.exists():
                        raise PanelsynthError(
                            f"the worker process preparing wave {job.wave} stopped (exit code "
                            f"{proc.returncode}) — run `panelsynth prepare` again"
                        )
                    time.sleep(0.02)
                ok, value = pickle.loads(out.read_bytes())
                out.unlink()
                if not ok:
                    raise value
                yield value
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()


def fit_worker_main(argv: Sequence[str]) -> int:
    """Body of ``python -m panelsynth.prepare_worker JOBS OUT_DIR``: fit the waves of ``JOBS``
    in order, each result (or the error that stopped it) written to ``OUT_DIR/wave-{W}.pkl``."""
    import pickle

    from panelsynth.io import atomic_write_bytes

    job_file, out_dir = argv
    jobs, settings = pickle.loads(Path(job_file).read_bytes())
    for job in jobs:
        ok = True
        try:
            payload = pickle.dumps((True, _read_and_fit(job, settings)))
        except Exception as err:  # noqa: BLE001 - handed to the parent, which raises it
            ok = False
            try:
                payload = pickle.dumps((False, err))
            except Exception:  # noqa: BLE001 - an error that cannot be pickled
                payload = pickle.dumps((False, RuntimeError(f"{type(err).__name__}: {err}")))
        atomic_write_bytes(Path(out_dir) / f"wave-{job.wave}.pkl", payload)
        if not ok:
            return 1
    return 0


def _stale_outputs(ws: Workspace, waves: list[str], warn: Callable[[str], None]) -> None:
    """Remove fit reports of waves no longer prepared; warn about their Original data files."""
    current = set(waves)
    for p in sorted(ws.prepare_dir().glob("fit_wave*.json")):
        if p.stem[len("fit_wave") :] not in current:
            p.unlink()
    manifest = _read_manifest(ws)
    stale = [
        w
        for w in ws.waves_with_data()
        if w not in current and _relposix(ws, ws.original_data(w)) in manifest
    ]
    if stale:
        warn(
            f"Original data/ still holds wave{'s' if len(stale) > 1 else ''} "
            f"{', '.join(stale)} from an earlier prepare run (not in this run) — delete "
            f"{'them' if len(stale) > 1 else 'it'} if the study no longer has "
            f"{'these waves' if len(stale) > 1 else 'this wave'}"
        )


def _profile_subset(enc: cl.EncodedItems) -> cl.EncodedItems:
    """Items whose answer categories are comparable across waves (not binned continuous)."""
    keep = [j for j, k in enumerate(enc.kinds) if k != "continuous"]
    return cl.EncodedItems(
        [enc.items[j] for j in keep],
        enc.codes[:, keep],
        [enc.levels[j] for j in keep],
        [enc.kinds[j] for j in keep],
    )


def _emit(progress: Progress | None, event: dict[str, Any]) -> None:
    if progress is not None:
        progress(event)


def _empty_transitions() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["from_wave", "to_wave", "from_cluster", "to_cluster", "n", "share_of_from"]
    )


def _transition_table(
    w_from: str | None,
    w_to: str,
    ids_from: pd.Series,
    lab_from: np.ndarray,
    ids_to: pd.Series,
    lab_to: np.ndarray,
    k: int,
) -> pd.DataFrame:
    """Counts of (previous cluster, current cluster), with ``absent`` for entries and exits."""
    a = pd.Series(lab_from, index=ids_from.astype(str).to_numpy(), name="from")
    b = pd.Series(lab_to, index=ids_to.astype(str).to_numpy(), name="to")
    both = pd.concat([a, b], axis=1)
    fr = both["from"].fillna(0).astype(int).to_numpy()  # 0 = absent
    to = both["to"].fillna(0).astype(int).to_numpy()
    grid = np.bincount(fr * (k + 1) + to, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
    cats = [str(c) for c in range(1, k + 1)] + ["absent"]
    order = [*range(1, k + 1), 0]
    counts = pd.DataFrame(grid[np.ix_(order, order)], index=cats, columns=cats)
    rows = []
    for f in cats:
        total = int(counts.loc[f].sum())
        for t in cats:
            if f == "absent" and t == "absent":
                continue
            n = int(counts.loc[f, t])
            rows.append(
                {
                    "from_wave": w_from,
                    "to_wave": w_to,
                    "from_cluster": f,
                    "to_cluster": t,
                    "n": n,
                    "share_of_from": round(n / total, 4) if total else 0.0,
                }
            )
    return pd.DataFrame(rows)


def rank_items(
    mi_cluster: dict[str, dict[str, float]], mi_traj: dict[str, dict[str, float]]
) -> pd.DataFrame:
    """Rank items by mutual information with the cluster label and the trajectory.

    Args:
        mi_cluster: wave -> item -> MI (bits) with the wave's cluster label.
        mi_traj: wave -> item -> MI (bits) with (previous, current) label (empty for wave 1).

    Returns:
        One row per item, best first: ``rank``, ``item``, ``score``, ``mi_cluster_mean``,
        ``mi_trajectory_mean``, ``n_waves`` and per-wave ``mi_cluster_w{W}`` /
        ``mi_trajectory_w{W}`` columns.
    """
    waves = list(mi_cluster)
    items = list(dict.fromkeys(it for w in waves for it in mi_cluster[w]))
    rows = []
    any_traj = any(mi_traj.get(w) for w in waves)
    for it in items:
        lab = [mi_cluster[w][it] for w in waves if it in mi_cluster[w]]
        trj = [mi_traj[w][it] for w in waves if it in mi_traj.get(w, {})]
        lab_mean = float(np.mean(lab)) if lab else 0.0
        trj_mean = float(np.mean(trj)) if trj else float("nan")
        if any_traj:
            score = (lab_mean + (trj_mean if trj else 0.0)) / 2
        else:
            score = lab_mean
        row: dict[str, Any] = {
            "item": it,
            "score": round(score, 6),
            "mi_cluster_mean": round(lab_mean, 6),
            "mi_trajectory_mean": round(trj_mean, 6) if trj else np.nan,
            "n_waves": len(lab),
        }
        for w in waves:
            row[f"mi_cluster_w{w}"] = round(mi_cluster[w][it], 6) if it in mi_cluster[w] else np.nan
        for w in waves:
            if mi_traj.get(w):
                row[f"mi_trajectory_w{w}"] = (
                    round(mi_traj[w][it], 6) if it in mi_traj[w] else np.nan
                )
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["rank", "item", "score"])
    df = df.sort_values(["score", "item"], ascending=[False, True], kind="stable")
    df.insert(0, "rank", range(1, len(df) + 1))
    return df.reset_index(drop=True)


def _write_reports(
    ws: Workspace,
    reports: list[WaveReport],
    ranking: pd.DataFrame,
    transitions: pd.DataFrame,
    cfg: PanelsynthConfig,
    engine: str,
    missing: str,
    warnings: list[str],
    staging: StagedOutputs | None = None,
) -> list[Path]:
    d = ws.prepare_dir()
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        p = d / name
        if staging is not None:
            staging.write(p, text)
        else:
            atomic_write_text(p, text)
        written.append(p)

    rows = []
    sel_rows = []
    for r in reports:
        doc = {
            "wave": r.wave,
            "source": _relposix(ws, r.source),
            "method": r.method,
            "engine": engine if r.method == "lca" else r.method,
            "missing": missing,
            "k": cfg.clustering.k,
            "seed": cfg.clustering.seed,
            "n_init": cfg.clustering.n_init,
            "n_respondents": r.n_respondents,
            "n_fit": r.n_fit,
            "n_linked_to_previous_wave": r.n_linked,
            "items": r.items,
            "class_sizes": {str(c): n for c, n in r.class_sizes.items()},
            "class_shares": {
                str(c): round(n / r.n_respondents, 4) for c, n in r.class_sizes.items()
            },
            "average_posterior": {str(c): _round(a) for c, a in r.average_posterior.items()},
            "relative_entropy": _round(r.entropy),
            "bic": {str(k): _round(b, 2) for k, b in r.bic.items()},
            "bic_n": r.bic_n,
            "best_k_by_bic": min(r.bic, key=r.bic.get) if r.bic else None,
            "converged": r.converged,
            "alignment": r.alignment,
            "dense_vars": r.dense_vars,
            "full_vars": r.full_vars,
            "dropped_all_na": r.dropped,
            "demographics": r.demographics,
        }
        if r.truth is not None:
            doc["truth_check"] = r.truth.as_row()
        put(f"fit_wave{r.wave}.json", json.dumps(doc, indent=2) + "\n")
        row: dict[str, Any] = {
            "wave": r.wave,
            "method": r.method,
            "n_respondents": r.n_respondents,
            "n_items": len(r.items),
        }
        for c, n in r.class_sizes.items():
            row[f"cluster{c}_n"] = n
            row[f"cluster{c}_share"] = round(n / r.n_respondents, 4)
        for c, a in r.average_posterior.items():
            row[f"cluster{c}_avg_posterior"] = _round(a)
        row["relative_entropy"] = _round(r.entropy)
        for k, b in r.bic.items():
            row[f"bic_k{k}"] = _round(b, 2)
        row["best_k_by_bic"] = doc["best_k_by_bic"]
        row["alignment"] = r.alignment
        rows.append(row)
        for v in r.full_vars:
            sel_rows.append(
                {
                    "wave": r.wave,
                    "variable": v,
                    "clustered": v in r.items,
                    "dense": v in r.dense_vars,
                    "full": True,
                }
            )
        for v in r.dropped:
            sel_rows.append(
                {"wave": r.wave, "variable": v, "clustered": False, "dense": False, "full": False}
            )
    put("fit_report.csv", _csv_text(pd.DataFrame(rows)))
    put("selection.csv", _csv_text(pd.DataFrame(sel_rows)))
    put("types.csv", _csv_text(_types_table(reports, cfg)))
    missing_rows = [row for r in reports for row in r.missing_codes]
    columns = ["wave", "variable", "code", "action", "n", "share", "why"]
    put("missing_codes.csv", _csv_text(pd.DataFrame(missing_rows, columns=columns)))
    put("item_ranking.csv", _csv_text(ranking))
    put("transitions.csv", _csv_text(transitions))
    checks = [r.truth.as_row() for r in reports if r.truth is not None]
    if checks:
        put("truth_check.csv", _csv_text(pd.DataFrame(checks)))
    put("warnings.txt", "".join(f"{w}\n" for w in warnings))
    return written


def _types_table(reports: list[WaveReport], cfg: PanelsynthConfig) -> pd.DataFrame:
    """``Prepare/types.csv``: every variable of every wave, its type, its role and why."""
    rows = []
    for r in reports:
        for v in r.full_vars:
            if v in r.demographics:
                role = "demographic"
            elif v == cfg.study.outcome:
                role = "outcome"
            else:
                role = "item (clustered)" if v in r.items else "item"
            rows.append(
                {
                    "wave": r.wave,
                    "variable": v,
                    "type": r.var_types.get(v, ""),
                    "role": role,
                    "dense": v in r.dense_vars,
                    "why": r.type_reasons.get(v, ""),
                }
            )
    return pd.DataFrame(rows, columns=["wave", "variable", "type", "role", "dense", "why"])


def _round(x: float | None, digits: int = 4) -> float | None:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return None
    return round(float(x), digits)


def _write_manifest(
    ws: Workspace, written: list[Path], staging: StagedOutputs | None = None
) -> None:
    files = _read_manifest(ws)
    for p in written:
        files[_relposix(ws, p)] = (staging.digest(p) if staging else None) or _sha256(p)
    doc = {"written_by": "panelsynth prepare", "files": dict(sorted(files.items()))}
    text = json.dumps(doc, indent=2) + "\n"
    if staging is not None:
        staging.write(_manifest_path(ws), text)  # staged last: switched in last
    else:
        atomic_write_text(_manifest_path(ws), text)
