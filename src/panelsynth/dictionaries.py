"""Study dictionaries (SPEC §2): raw metadata, variable types and wave contexts.

Raw metadata JSON maps each variable to its question text and its possible responses::

    {"vaccimportant": {"question": "How important is ...?",
                       "responses": {"1": "Not at all important", ..., "5": "Very important"}},
     "age": {"question": "Age in years", "range": [18, 90]}}

It is built from a CSV dictionary (:func:`metadata_from_csv`, one row per variable: name, question
text, possible responses) or from the labels an SPSS/Stata file carries (:func:`metadata_from_labelled`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from panelsynth.errors import MetadataError, quote

log = logging.getLogger("panelsynth")

VarType = Literal["an ordinal", "a categorical", "a continuous", "a binary"]
VAR_TYPES: tuple[str, ...] = ("an ordinal", "a categorical", "a continuous", "a binary")
CODED_TYPES: frozenset[str] = frozenset({"an ordinal", "a categorical", "a binary"})


class VariableMeta(BaseModel):
    """One variable of the raw metadata."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., min_length=1, description="Question text or variable description.")
    responses: dict[str, str] | None = Field(
        None, description="Response code -> label, for coded (ordinal/categorical/binary) items."
    )
    range: tuple[float, float] | None = Field(
        None, description="Inclusive [min, max] for continuous items."
    )
    note: str | None = Field(None, description="Free-text remark kept for the LLM.")

    @model_validator(mode="after")
    def _check(self) -> VariableMeta:
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"range {list(self.range)} has min > max")
        return self

    def codes(self) -> list[int | float | str]:
        """Response codes as numbers where they are numeric (JSON keys are strings)."""
        return [_as_number(c) for c in (self.responses or {})]

    def responses_text(self) -> str:
        """Human-readable possible responses, as in a codebook."""
        if self.responses:
            return "; ".join(f"{k} = {v}" for k, v in self.responses.items())
        if self.range is not None:
            lo, hi = (_fmt_num(x) for x in self.range)
            return f"a number from {lo} to {hi}"
        return self.note or "free response"


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _as_number(code: str) -> int | float | str:
    try:
        f = float(code)
    except ValueError:
        return code
    return int(f) if f.is_integer() else f


_RANGE_RE = re.compile(
    r"^\s*(?:from\s+)?(-?\d+(?:\.\d+)?)\s*(?:-|–|to|\.\.)\s*(-?\d+(?:\.\d+)?)\s*$", re.IGNORECASE
)
_PAIR_RE = re.compile(r"^\s*(-?[\w.]+)\s*[=:]\s*(.+?)\s*$")


def parse_responses(text: str, *, variable: str, source: str) -> VariableMeta | dict:
    """Parse a codebook cell: ``1=Yes; 2=No`` or ``18-90`` (a numeric range).

    Returns the keyword arguments of :class:`VariableMeta` except ``question``.
    """
    text = (text or "").strip()
    if not text:
        return {"note": None}
    m = _RANGE_RE.match(text)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        if lo > hi:
            raise MetadataError(
                f"{source}: variable {quote(variable)}: range {quote(text)} runs from a larger to "
                f"a smaller number — write it as '{m.group(2)}-{m.group(1)}'"
            )
        return {"range": (lo, hi)}
    parts = [p for p in re.split(r"\s*[;|\n]\s*", text) if p.strip()]
    if len(parts) == 1 and "," in text and "=" in text:
        parts = [p for p in text.split(",") if p.strip()]
    responses: dict[str, str] = {}
    for part in parts:
        pm = _PAIR_RE.match(part)
        if not pm:
            raise MetadataError(
                f"{source}: variable {quote(variable)}: cannot read response {quote(part)} — "
                f"write "
                f"responses "
                f"as '1=Label; 2=Label' or a range '18-90'"
            )
        code = str(_as_number(pm.group(1)))
        if code in responses:
            raise MetadataError(
                f"{source}: variable {quote(variable)}: response code {quote(code)[1:-1]} appears twice "
                f"— give each "
                f"code one label"
            )
        responses[code] = pm.group(2)
    return {"responses": responses}


_COLUMN_ALIASES = {
    "variable": ("variable", "name", "var", "variable_name", "varname"),
    "question": ("question", "question_text", "label", "description", "text"),
    "responses": ("responses", "possible_responses", "values", "value_labels", "options", "answers"),
}


def metadata_from_csv(path: str | Path) -> dict[str, VariableMeta]:
    """Read a CSV dictionary (one row per variable: name, question text, possible responses)."""
    p = Path(path)
    text = _read_text(p)
    rows = list(csv.DictReader(io.StringIO(text), dialect=_sniff_dialect(text)))
    if not rows:
        raise MetadataError(f"{p.name}: the CSV dictionary has no rows — add one row per variable")
    header = {h.strip().lower(): h for h in rows[0].keys() if h is not None}
    cols: dict[str, str] = {}
    for key, aliases in _COLUMN_ALIASES.items():
        found = next((header[a] for a in aliases if a in header), None)
        if found is None:
            raise MetadataError(
                f"{p.name}: no {key!r} column (found: {', '.join(header.values())}) — name the "
                f"columns variable, question, responses"
            )
        cols[key] = found
    meta: dict[str, VariableMeta] = {}
    for i, row in enumerate(rows, start=2):
        name = (row.get(cols["variable"]) or "").strip()
        if any((c or "").strip() for c in row.get(None) or []):  # cells beyond the header
            raise MetadataError(
                f"{p.name}: line {i} (variable {quote(name)}) has more cells than the header — "
                f"put "
                f"double quotes around cells that contain the separator"
            )
        if not name:
            raise MetadataError(f"{p.name}: line {i} has no variable name — fill it in or delete it")
        if name in meta:
            raise MetadataError(f"{p.name}: variable {quote(name)} appears twice — keep one row")
        question = (row.get(cols["question"]) or "").strip() or name
        extra = parse_responses(row.get(cols["responses"]) or "", variable=name, source=p.name)
        meta[name] = VariableMeta(question=question, **extra)
    warn_long_texts(meta, p.name)
    return meta


def metadata_from_labelled(path: str | Path) -> dict[str, VariableMeta]:
    """Question text and value labels from an SPSS ``.sav`` or Stata ``.dta`` file's own labels."""
    from panelsynth.data import read_labelled

    _, meta = read_labelled(Path(path))
    out: dict[str, VariableMeta] = {}
    for name, question in meta.column_names_to_labels.items():
        labels = meta.variable_value_labels.get(name)
        if labels:
            responses = {str(_as_number(str(k))): str(v) for k, v in labels.items()}
            out[name] = VariableMeta(question=question or name, responses=responses)
        else:
            out[name] = VariableMeta(question=question or name)
    return out


def metadata_to_json(meta: dict[str, VariableMeta]) -> str:
    return json.dumps(
        {k: v.model_dump(exclude_none=True) for k, v in meta.items()}, indent=2, ensure_ascii=False
    )


def load_metadata(path: Path) -> dict[str, VariableMeta]:
    """Read raw metadata JSON; errors name the file and the variable."""
    if not path.exists():
        raise MetadataError(
            f"metadata file not found: {path} — create it with `panelsynth metadata from-csv`"
        )
    try:
        raw = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise MetadataError(
            f"{path.name}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}) — fix it"
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise MetadataError(f"{path.name}: expected an object mapping variable -> description")
    out: dict[str, VariableMeta] = {}
    for name, entry in raw.items():
        if isinstance(entry, str):  # seed-style free text: keep it as the question
            entry = {"question": entry}
        try:
            out[name] = VariableMeta.model_validate(entry)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            where = f"{loc}: " if loc else ""
            raise MetadataError(
                f"{path.name}: variable {quote(name)}: {where}{first['msg']} — expected "
                f'{{"question": ..., "responses": {{"1": "label"}}}} or {{"question": ..., "range": [lo, hi]}}'
            ) from None
    return out


#: Question texts longer than this get a warning: each is sent in every call of a wave.
LONG_TEXT_CHARS = 10_000


def warn_long_texts(meta: dict[str, VariableMeta], source: str) -> list[str]:
    """Warn (once per variable) about question or response texts above :data:`LONG_TEXT_CHARS`
    characters; returns the warnings."""
    notes = []
    for name, m in meta.items():
        size = len(m.question) + sum(len(v) for v in (m.responses or {}).values())
        if size > LONG_TEXT_CHARS:
            note = (
                f"{source}: the texts of variable {quote(name)} have {size:,} characters (more "
                f"than {LONG_TEXT_CHARS:,}) and are sent in every call — shorten them"
            )
            log.warning(note)
            notes.append(note)
    return notes


def load_var_types(path: Path) -> dict[str, str]:
    """Read ``types_wave{W}.json`` ({variable: "an ordinal" | ...})."""
    if not path.exists():
        raise MetadataError(
            f"var types file not found: {path} — write {{\"variable\": \"an ordinal\", ...}} there"
        )
    try:
        raw = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise MetadataError(f"{path.name}: not valid JSON (line {err.lineno}: {err.msg}) — fix it") from None
    if not isinstance(raw, dict) or not raw:
        raise MetadataError(f"{path.name}: expected a non-empty object variable -> type")
    for name, t in raw.items():
        if t not in VAR_TYPES:
            raise MetadataError(
                f"{path.name}: variable {name!r} has type {t!r} — use one of: {', '.join(VAR_TYPES)}"
            )
    return dict(raw)


def load_context(path: Path) -> str:
    """Read a wave context text; it must not be empty."""
    if not path.exists():
        raise MetadataError(
            f"wave context not found: {path} — describe the wave's purpose, time, target variable "
            f"and previous wave there"
        )
    text = _read_text(path).strip()
    if not text:
        raise MetadataError(
            f"{path.name} is empty — describe the wave's purpose, time, target variable and previous wave"
        )
    return text


def check_metadata_covers(
    meta: dict[str, VariableMeta], types: dict[str, str], meta_name: str, types_name: str
) -> None:
    """Metadata must cover exactly the variables of the var types (SPEC §2)."""
    missing = [v for v in types if v not in meta]
    extra = [v for v in meta if v not in types]
    if missing:
        raise MetadataError(
            f"{meta_name} lacks variables: {', '.join(missing)} — add them or drop them from {types_name}"
        )
    if extra:
        raise MetadataError(
            f"{meta_name} has variables not in {types_name}: {', '.join(extra)} — remove them or add "
            f"them to {types_name}"
        )
    for v, t in types.items():
        m = meta[v]
        if t in CODED_TYPES and not m.responses:
            raise MetadataError(
                f"{meta_name}: variable {v!r} is {t} but lists no response codes — add "
                f'"responses": {{"1": "label", ...}}'
            )


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _sniff_dialect(text: str) -> type[csv.Dialect]:
    """Excel dialect with the sniffed separator; only the separator is taken from the sniffer,
    whose quote guess mistakes apostrophes in question text ("'best' option") for quotes."""
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
    except csv.Error:
        return csv.excel
    return type("_Dictionary", (csv.excel,), {"delimiter": delimiter})
