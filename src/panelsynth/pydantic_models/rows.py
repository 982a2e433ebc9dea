"""The row-model factory of step 3.

Each wave gets a Pydantic model built from its variables, types and allowed response values:
``Literal`` codes for ordinal/categorical/binary items, bounds for continuous ones, ``None`` only
where the mode allows NA, plus ``cluster`` (and ``prev_cluster`` where the wave has it). A
workspace's own ``pydantic_models/`` folder may define ``Wave{W}Data`` to override it.

The LLM is asked for a *batch* whose JSON schema carries the strict row schema, while validation of
the batch is lenient: rows are validated one by one, so one bad row never costs the good ones.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import math
import re
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)

from panelsynth.dictionaries import CODED_TYPES, VariableMeta
from panelsynth.errors import MetadataError

if TYPE_CHECKING:
    from panelsynth.data import WaveData

log = logging.getLogger("panelsynth")

NA_STRINGS = frozenset({"", "na", "n/a", "nan", "null", "none", "missing", "-"})


@dataclass(frozen=True)
class RowSpec:
    """What one column of a synthetic row may hold."""

    name: str
    vtype: str
    codes: tuple[int | float | str, ...] = ()
    low: float | None = None
    high: float | None = None
    integer: bool = False
    nullable: bool = False

    def allows(self, value: Any) -> bool:
        """Whether ``value`` (as read back from CSV) is allowed for this column."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.nullable
        if self.codes:
            try:
                return float(value) in {float(c) for c in self.codes}
            except (TypeError, ValueError):
                return str(value) in {str(c) for c in self.codes}
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        if self.integer and not v.is_integer():
            return False
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)


def build_specs(
    var_types: dict[str, str],
    metadata: dict[str, VariableMeta],
    *,
    nullable: bool,
    frame: pd.DataFrame | None = None,
    cluster_column: str = "cluster",
    prev_cluster_column: str | None = None,
    clusters: Sequence[int] = (1, 2),
) -> list[RowSpec]:
    """Column specs of a wave: its variables, then the cluster columns.

    Continuous bounds come from the metadata ``range``; without one, from the observed data.
    """
    specs: list[RowSpec] = []
    for name, vtype in var_types.items():
        meta = metadata.get(name)
        if vtype in CODED_TYPES:
            codes = tuple(meta.codes()) if meta else ()
            if not codes:
                raise MetadataError(f"variable {name!r} is {vtype} but its metadata lists no codes")
            specs.append(RowSpec(name, vtype, codes=codes, nullable=nullable))
            continue
        low = high = None
        integer = False
        if meta is not None and meta.range is not None:
            low, high = meta.range
        if frame is not None and name in frame.columns:
            observed = pd.to_numeric(frame[name], errors="coerce").dropna()
            if len(observed):
                integer = bool((observed == observed.round()).all())
                if low is None:
                    low, high = float(observed.min()), float(observed.max())
        if low is not None and integer:
            integer = float(low).is_integer() and float(high).is_integer()
        specs.append(RowSpec(name, vtype, low=low, high=high, integer=integer, nullable=nullable))
    cl = tuple(int(c) for c in clusters)
    specs.append(RowSpec(cluster_column, "cluster", codes=cl))
    if prev_cluster_column:
        prev_nullable = bool(
            nullable
            and frame is not None
            and prev_cluster_column in frame.columns
            and frame[prev_cluster_column].isna().any()
        )
        specs.append(RowSpec(prev_cluster_column, "cluster", codes=cl, nullable=prev_nullable))
    return specs


def wave_row_specs(wd: WaveData) -> list[RowSpec]:
    """Column specs of a loaded wave: NA allowed only in the full mode."""
    return build_specs(
        wd.var_types,
        wd.metadata,
        nullable=wd.mode == "full",
        frame=wd.frame,
        cluster_column=wd.cluster_column,
        prev_cluster_column=wd.prev_cluster_column,
        clusters=wd.clusters,
    )


def _field_for(spec: RowSpec) -> tuple[Any, Any]:
    if spec.codes:
        typ: Any = Literal[spec.codes]  # type: ignore[valid-type]
        constraints: dict[str, Any] = {}
    else:
        typ = int if spec.integer else float
        constraints = {}
        if spec.low is not None:
            constraints["ge"] = int(spec.low) if spec.integer else spec.low
        if spec.high is not None:
            constraints["le"] = int(spec.high) if spec.integer else spec.high
    if spec.nullable:
        typ = typ | None
    return (typ, Field(..., **constraints))


def _coerce_cell(v: Any) -> Any:
    """Numeric strings become numbers; NA spellings become None (rejected unless nullable)."""
    if isinstance(v, str):
        s = v.strip()
        if s.lower() in NA_STRINGS:
            return None
        try:
            f = float(s)
        except ValueError:
            return v
        return int(f) if f.is_integer() else f
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class _RowBase(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: _coerce_cell(v) for k, v in data.items()}
        return data


def build_row_model(specs: Sequence[RowSpec], name: str = "Respondent") -> type[BaseModel]:
    """A Pydantic model validating one synthetic row against ``specs``."""
    fields = {s.name: _field_for(s) for s in specs}
    model = create_model(name, __base__=_RowBase, **fields)  # type: ignore[call-overload]
    model.__doc__ = "One synthetic survey respondent."
    return model


class _BatchBase(BaseModel):
    """Base of the step-3 response models: their JSON schema is built once per class.

    Instructor asks for the schema on every call; for a 10-row batch building it costs about as
    much CPU as the rest of the request, and concurrent calls share one event loop.
    """

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        built = _SCHEMAS.setdefault(cls, {})
        try:
            key = (args, tuple(sorted(kwargs.items())))
            schema = built.get(key)
        except TypeError:  # an unhashable argument: no caching
            return super().model_json_schema(*args, **kwargs)
        if schema is None:
            schema = built[key] = super().model_json_schema(*args, **kwargs)
        return copy.deepcopy(schema)  # callers may edit their copy


#: Built schemas per response-model class (weak: models built for one run are not kept alive).
_SCHEMAS: weakref.WeakKeyDictionary[type, dict[Any, dict[str, Any]]] = weakref.WeakKeyDictionary()


def batch_model(row_model: type[BaseModel], n_rows: int) -> type[BaseModel]:
    """The step-3 response model: a strict JSON schema, lenient validation.

    Its schema asks for exactly ``n_rows`` rows of ``row_model``; validating it only checks that
    ``rows`` is a list of objects, so the caller can validate each row on its own.
    """
    row_schema = row_model.model_json_schema()
    row_schema.pop("title", None)
    list_schema = {"type": "array", "items": row_schema, "minItems": n_rows, "maxItems": n_rows}
    rows_type = Annotated[list[dict[str, Any]], WithJsonSchema(list_schema)]
    model = create_model(
        "SyntheticRespondents",
        __base__=_BatchBase,
        rows=(rows_type, Field(..., description=f"Exactly {n_rows} synthetic respondents.")),
    )
    model.__doc__ = f"A batch of {n_rows} synthetic survey respondents."
    return model


def validate_rows(
    rows: Sequence[Any], row_model: type[BaseModel], columns: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Validate rows one by one; return the good rows (ordered by ``columns``) and the errors."""
    good: list[dict[str, Any]] = []
    errors: list[str] = []
    for i, row in enumerate(rows):
        try:
            obj = row_model.model_validate(row)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "row"
            errors.append(f"row {i}: {loc}: {first['msg']}")
            continue
        dumped = obj.model_dump()
        good.append({c: dumped.get(c) for c in columns})
    return good, errors


def user_model_file(models_dir: Path, wave: str) -> Path | None:
    """The file of ``models_dir`` that defines ``Wave{W}Data`` (found by reading, not importing)."""
    if not models_dir.is_dir():
        return None
    pattern = re.compile(rf"^\s*class\s+Wave{re.escape(wave)}Data\b", re.MULTILINE)
    for path in sorted(models_dir.glob("*.py")):
        if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
            return path
    return None


_untrusted_warned: set[str] = set()


def trusted_models_dir(models_dir: Path, wave: str, trusted: bool) -> tuple[Path | None, list[str]]:
    """Where to look for the workspace's own row models, and the notes for the manifest.

    A workspace's ``pydantic_models/*.py`` is Python code: importing it runs it. It is imported
    only when the user trusts it outside the workspace (``--trust-workspace-models``), never
    because the workspace says so. Otherwise the built row model is used, with one warning per
    workspace and process.
    """
    if trusted:
        return models_dir, []
    found = user_model_file(models_dir, wave)
    if found is None:
        return None, []
    note = (
        f"{found.parent.name}/{found.name} defines Wave{wave}Data, but code from a workspace is "
        f"only run when you trust it: the built row model is used — pass "
        f"--trust-workspace-models to use it"
    )
    if str(models_dir) not in _untrusted_warned:
        _untrusted_warned.add(str(models_dir))
        log.warning(note)
    return None, [note]


def load_user_row_model(models_dir: Path, wave: str) -> type[BaseModel] | None:
    """Find ``Wave{W}Data`` in a workspace's ``pydantic_models/`` folder, if defined."""
    if not models_dir.is_dir():
        return None
    class_name = f"Wave{wave}Data"
    pattern = re.compile(rf"^\s*class\s+{re.escape(class_name)}\b", re.MULTILINE)
    for path in sorted(models_dir.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if not pattern.search(text):
            continue
        mod_name = f"_panelsynth_user_models_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:  # pragma: no cover
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise MetadataError(
                f"{path.name}: cannot import ({type(err).__name__}: {err}) — fix the model file"
            ) from None
        model = getattr(module, class_name, None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
        raise MetadataError(
            f"{path.name}: {class_name} is not a pydantic BaseModel — subclass BaseModel"
        )
    return None


def row_model_for_wave(
    specs: Sequence[RowSpec], models_dir: Path | None, wave: str
) -> tuple[type[BaseModel], str]:
    """The wave's row model and where it came from (``"workspace"`` or ``"factory"``)."""
    if models_dir is not None:
        user = load_user_row_model(models_dir, wave)
        if user is not None:
            missing = [s.name for s in specs if s.name not in user.model_fields]
            if missing:
                raise MetadataError(
                    f"pydantic_models: Wave{wave}Data lacks fields {', '.join(missing)} — add them"
                )
            return user, "workspace"
    return build_row_model(specs, name=f"Wave{wave}Row"), "factory"
