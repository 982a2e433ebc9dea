"""Which columns are evaluated and how each is typed (``wave{W}_eval_meta.json``).

The evaluation metadata is an sdmetrics single-table metadata dict::

    {"columns": {"vaccimportant": {"sdtype": "categorical"}, "age": {"sdtype": "numerical"}, ...}}

When it is missing it is created from the wave's var types. **Ordinal items get the sdtype
``categorical``** (see :data:`ORDINAL_SDTYPE_NOTE`): it is what the reference study's sdmetrics runs
used, it is the only discrete sdtype that sdmetrics' ``LogisticDetection`` does not silently drop,
and for Column Shapes / Column Pair Trends sdmetrics 0.32 scores ``ordinal`` exactly like
``categorical`` anyway. The order of ordinal codes is still used by panelsynth's own metrics
(distance to closest record, gradient-boosting C2ST, TSTR), which encode ordinal items as numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from panelsynth.errors import WorkspaceError
from panelsynth.values import label_text

Role = Literal["variable", "cluster", "prev_cluster"]

SDTYPE_FOR_VAR_TYPE: dict[str, str] = {
    "an ordinal": "categorical",
    "a categorical": "categorical",
    "a binary": "categorical",
    "a continuous": "numerical",
}
DISCRETE_SDTYPES = frozenset({"categorical", "ordinal", "boolean"})
CONTINUOUS_SDTYPES = frozenset({"numerical"})
KNOWN_SDTYPES = DISCRETE_SDTYPES | CONTINUOUS_SDTYPES

ORDINAL_SDTYPE_NOTE = (
    "Ordinal items are given the sdmetrics sdtype 'categorical'. Reasons: (1) the reference "
    "study's sdmetrics evaluation typed survey codes as categorical; (2) sdmetrics' "
    "LogisticDetection drops every column whose sdtype is not numerical/datetime/categorical, so "
    "'ordinal' or 'boolean' items would be invisible to the C2ST; (3) in sdmetrics 0.32 Column "
    "Shapes (TVComplement) and Column Pair Trends (ContingencySimilarity) treat 'ordinal' exactly "
    "like 'categorical'. Treating the codes as 'numerical' instead would switch Column Shapes to "
    "the KS statistic, which is ill-suited to 4-7 discrete levels. The order of the codes is used "
    "by panelsynth's own metrics (DCR, gradient-boosting C2ST, TSTR), which encode ordinal items "
    "as numbers."
)


@dataclass(frozen=True)
class EvalColumn:
    """One evaluated column."""

    name: str
    sdtype: str
    var_type: str | None = None
    role: Role = "variable"

    @property
    def discrete(self) -> bool:
        return self.sdtype in DISCRETE_SDTYPES

    @property
    def ordered(self) -> bool:
        """Whether the values have an order used by distance/ML encodings."""
        return self.sdtype in CONTINUOUS_SDTYPES or self.var_type == "an ordinal"

    @property
    def nominal(self) -> bool:
        return self.discrete and not self.ordered


@dataclass(frozen=True)
class EvalColumns:
    """The evaluated columns of one (model dir, wave)."""

    columns: tuple[EvalColumn, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __iter__(self):
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def variables(self) -> list[str]:
        """The wave's survey variables (not the cluster labels)."""
        return [c.name for c in self.columns if c.role == "variable"]

    @property
    def cluster(self) -> str | None:
        return next((c.name for c in self.columns if c.role == "cluster"), None)

    @property
    def prev_cluster(self) -> str | None:
        return next((c.name for c in self.columns if c.role == "prev_cluster"), None)

    def get(self, name: str) -> EvalColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def subset(self, names: Iterable[str]) -> EvalColumns:
        keep = set(names)
        return EvalColumns(tuple(c for c in self.columns if c.name in keep), self.notes)

    def without(self, names: Iterable[str]) -> EvalColumns:
        drop = set(names)
        return EvalColumns(tuple(c for c in self.columns if c.name not in drop), self.notes)

    def sdmetrics_metadata(self) -> dict:
        """sdmetrics single-table metadata of these columns."""
        return {"columns": {c.name: {"sdtype": c.sdtype} for c in self.columns}}

    def describe(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for c in self.columns:
            out[c.name] = {"sdtype": c.sdtype, "role": c.role}
            if c.var_type:
                out[c.name]["var_type"] = c.var_type
        return out


def columns_from_var_types(
    var_types: Mapping[str, str],
    *,
    cluster_column: str | None = "cluster",
    prev_cluster_column: str | None = None,
) -> EvalColumns:
    """Evaluation columns built from a var-types mapping plus the cluster label columns."""
    cols = [
        EvalColumn(name, SDTYPE_FOR_VAR_TYPE.get(vtype, "categorical"), vtype, "variable")
        for name, vtype in var_types.items()
    ]
    if cluster_column:
        cols.append(EvalColumn(cluster_column, "categorical", None, "cluster"))
    if prev_cluster_column:
        cols.append(EvalColumn(prev_cluster_column, "categorical", None, "prev_cluster"))
    return EvalColumns(tuple(cols))


def eval_meta_dict(columns: EvalColumns) -> dict:
    """The JSON written to ``wave{W}_eval_meta.json`` (sdmetrics single-table metadata)."""
    return columns.sdmetrics_metadata()


def read_eval_meta(path: Path) -> dict[str, str]:
    """Read ``wave{W}_eval_meta.json``; returns column -> sdtype.

    Raises:
        WorkspaceError: the file is not valid sdmetrics single-table metadata.
    """
    fix = 'expected {"columns": {"<column>": {"sdtype": "categorical"}, ...}} — fix or delete it'
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise WorkspaceError(
            f"{path.name}: not valid JSON (line {err.lineno}: {err.msg}) — {fix}"
        ) from None
    cols = raw.get("columns") if isinstance(raw, dict) else None
    if not isinstance(cols, dict) or not cols:
        raise WorkspaceError(f"{path.name}: no 'columns' object — {fix}")
    out: dict[str, str] = {}
    for name, meta in cols.items():
        sdtype = meta.get("sdtype") if isinstance(meta, dict) else None
        if sdtype not in KNOWN_SDTYPES:
            raise WorkspaceError(
                f"{path.name}: column {name!r} has sdtype {sdtype!r} — use one of "
                f"{', '.join(sorted(KNOWN_SDTYPES))} (or delete the file to rebuild it)"
            )
        out[str(name)] = str(sdtype)
    return out


def resolve_columns(
    meta_sdtypes: Mapping[str, str],
    var_types: Mapping[str, str],
    available: Iterable[str],
    *,
    cluster_column: str,
    prev_cluster_column: str | None,
) -> EvalColumns:
    """Columns to evaluate: those of the evaluation metadata in both the real and synthetic data.

    Args:
        meta_sdtypes: column -> sdtype from the evaluation metadata.
        var_types: the wave's var types (for the mode the synthetic data was generated in).
        available: columns present in both the real and the synthetic frames.
        cluster_column: name of the cluster label column.
        prev_cluster_column: name of the previous-wave label column, if the wave has one.
    """
    avail = set(available)
    cols: list[EvalColumn] = []
    notes: list[str] = []
    for name, sdtype in meta_sdtypes.items():
        if name not in avail:
            if name in var_types or name in (cluster_column, prev_cluster_column):
                notes.append(
                    f"column {name!r} of the evaluation metadata is not in the data: skipped"
                )
            continue
        if name == cluster_column:
            role: Role = "cluster"
        elif prev_cluster_column and name == prev_cluster_column:
            role = "prev_cluster"
        else:
            role = "variable"
        cols.append(EvalColumn(name, sdtype, var_types.get(name), role))
    missing_vars = [v for v in var_types if v in avail and v not in meta_sdtypes]
    if missing_vars:
        notes.append(
            "variables not in the evaluation metadata (not evaluated): " + ", ".join(missing_vars)
        )
    return EvalColumns(tuple(cols), tuple(notes))


def harmonise(frames: Mapping[str, pd.DataFrame], columns: EvalColumns) -> dict[str, pd.DataFrame]:
    """Give every frame the same dtypes: numeric columns as float64, other codes as text.

    A frame lacking a column (e.g. a few-shot examples file) lacks it in the output too.

    A column is numeric when it is continuous or when at most 5% of its non-missing values (over
    all frames) fail to parse as numbers; those become NA and are counted in ``attrs``.
    """
    out = {k: pd.DataFrame(index=f.index) for k, f in frames.items()}
    coerced: dict[str, dict[str, int]] = {k: {} for k in frames}
    for col in columns:
        series = {k: f[col.name] for k, f in frames.items() if col.name in f.columns}
        nums = {k: pd.to_numeric(s, errors="coerce") for k, s in series.items()}
        bad = {k: int((series[k].notna() & nums[k].isna()).sum()) for k in series}
        total = sum(int(s.notna().sum()) for s in series.values())
        n_bad = sum(bad.values())
        numeric = col.sdtype in CONTINUOUS_SDTYPES or total == 0 or n_bad <= 0.05 * total
        for k in series:
            if numeric:
                out[k][col.name] = nums[k].astype("float64")
                if bad[k]:
                    coerced[k][col.name] = bad[k]
            else:
                s = series[k]
                out[k][col.name] = s.map(_as_text, na_action="ignore").astype(object)
    for k in out:
        out[k].attrs["coerced_to_na"] = coerced[k]
    return out


def _as_text(v: object) -> str:
    """A non-missing code as text, surrounding blanks removed (``3.0`` -> ``"3"``)."""
    return label_text(v).strip()
