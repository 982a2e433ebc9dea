"""Study dictionaries (SPEC §2): raw metadata, variable types and wave contexts.

Raw metadata JSON maps each variable to its question text and its possible responses::

    {"vaccimportant": {"question": "How important is ...?",
                       "responses": {"1": "Not at all important", ..., "5": "Very important"}},
     "age": {"question": "Age in years", "range": [18, 90]}}

It is built from a CSV dictionary (:func:`metadata_from_csv`, one row per variable: name, question
text, possible responses) or from the labels an SPSS/Stata file carries
(:func:`metadata_from_labelled`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from panelsynth.errors import MetadataError, quote
from panelsynth.io import csv_dialect, read_text
from panelsynth.readers import read_labelled
from panelsynth.values import as_number, number_text

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
        return [as_number(c) for c in (self.responses or {})]

    def responses_text(self) -> str:
        """Human-readable possible responses, as in a codebook."""
        if self.responses:
            return "; ".join(f"{k} = {v}" for k, v in self.responses.items())
        if self.range is not None:
            lo, hi = (number_text(x) for x in self.range)
            return f"a number from {lo} to {hi}"
        return self.note or "free response"


_RANGE_RE = re.compile(
    r"^\s*(?:from\s+)?(-?\d+(?:\.\d+)?)\s*(?:-|–|to|\.\.)\s*(-?\d+(?:\.\d+)?)\s*$", re.IGNORECASE
)
_PAIR_RE = re.compile(r"^\s*(-?[\w.]+)\s*[=:]\s*(.+?)\s*$")
#: ``1 = much worse ... 5 = much better`` (either label may be left out): the range of codes.
_ELLIPSIS_RE = re.compile(
    r"^\s*(-?\d+)\s*(?:[=:]\s*(.*?))?\s*(?:\.{3}|…)\s*(-?\d+)\s*(?:[=:]\s*(.*?))?\s*$"
)
#: Largest scale an ellipsis may span (``1 = low ... 100 = high`` is a range, not 100 codes).
MAX_ELLIPSIS_CODES = 101


def parse_responses(text: str, *, variable: str, source: str) -> VariableMeta | dict:
    """Parse a codebook cell into the keyword arguments of :class:`VariableMeta` (no question).

    Accepted forms:

    - coded answers ``1=Yes; 2=No`` (also ``1: Yes | 2: No``, one per line, or comma-separated);
      a code may be text with spaces and punctuation (``Social Democrat=Social Democrat``);
    - a list of plain labels ``Conservative; Labour; Social Democrat``: the labels are the codes;
    - an ellipsis scale ``1 = much worse ... 5 = much better``: codes 1..5, the end points with
      their labels, the codes between labelled by their number (may be combined with pairs:
      ``1=Low; 2=Fair ... 5=High``);
    - a numeric range ``18-90`` (``18 to 90``, ``0.5..2.5``);
    - an empty cell, one word describing a free value (``integer``, ``text``, ``id``, ...) or a
      single free-text remark: no codes (kept as a note).

    Raises:
        MetadataError: one line naming the file, the variable and the fix.
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
        comma = [p for p in text.split(",") if p.strip()]
        # not when the cell is one scale whose labels hold commas ("1 = bad, very ... 5 = good")
        if not _ELLIPSIS_RE.match(text) or any(_ELLIPSIS_RE.match(p) for p in comma):
            parts = comma
    if len(parts) == 1 and not _split_pair(parts[0]) and not _ELLIPSIS_RE.match(parts[0]):
        return {"note": text}  # "integer", "text", "Number of years", ...
    pairs = [_split_pair(p) for p in parts]
    scales = [_ELLIPSIS_RE.match(p) for p in parts]
    if not any(pairs) and not any(scales):  # plain labels: the categories themselves
        pairs = [(p.strip(), p.strip()) for p in parts]
    responses: dict[str, str] = {}

    def put(code_text: str, label: str, *, fill: bool = False) -> None:
        code = str(as_number(code_text))
        if code in responses:
            if fill:
                return
            raise MetadataError(
                f"{source}: variable {quote(variable)}: response code {quote(code)[1:-1]} appears "
                f"twice — give each "
                f"code one label"
            )
        responses[code] = label

    for part, pair, scale in zip(parts, pairs, scales, strict=True):
        if scale is not None:
            lo, lo_label, hi, hi_label = scale.groups()
            a, b = int(lo), int(hi)
            if a >= b or b - a + 1 > MAX_ELLIPSIS_CODES:
                raise MetadataError(
                    f"{source}: variable {quote(variable)}: cannot read the scale {quote(part)} "
                    f"— write it as 'low = label ... high = label' with low < high (at most "
                    f"{MAX_ELLIPSIS_CODES} points) or as a range '0-100'"
                )
            put(lo, lo_label or lo, fill=not lo_label)
            for code in range(a + 1, b):
                put(str(code), str(code), fill=True)
            put(hi, hi_label or hi)
        elif pair is not None:
            put(*pair)
        else:
            raise MetadataError(
                f"{source}: variable {quote(variable)}: cannot read response {quote(part)} — write "
                f"responses as '1=Label; 2=Label', a list of labels 'Label; Label', a scale "
                f"'1 = low ... 5 = high' or a range '18-90'"
            )
    return {"responses": responses}


def _split_pair(part: str) -> tuple[str, str] | None:
    """``code=label`` (the code may hold spaces and punctuation) or ``code: label``."""
    if _ELLIPSIS_RE.match(part):
        return None
    if "=" in part:
        code, label = part.split("=", 1)
        if code.strip() and label.strip():
            return code.strip(), label.strip()
        return None
    pm = _PAIR_RE.match(part)
    return (pm.group(1), pm.group(2)) if pm else None


_COLUMN_ALIASES = {
    "variable": ("variable", "name", "var", "variable_name", "varname"),
    "question": ("question", "question_text", "label", "description", "text"),
    "responses": (
        "responses",
        "possible_responses",
        "values",
        "value_labels",
        "options",
        "answers",
    ),
}


#: The optional ``type`` column of a CSV dictionary: its words -> type phrases.
DECLARED_TYPE_WORDS: dict[str, str] = {
    **{t: t for t in VAR_TYPES},
    "ordinal": "an ordinal",
    "ordered": "an ordinal",
    "likert": "an ordinal",
    "categorical": "a categorical",
    "nominal": "a categorical",
    "category": "a categorical",
    "continuous": "a continuous",
    "numeric": "a continuous",
    "scale": "a continuous",
    "interval": "a continuous",
    "ratio": "a continuous",
    "binary": "a binary",
    "dichotomous": "a binary",
}
_TYPE_COLUMNS = ("type", "var_type", "variable_type", "vartype")


@dataclass
class CsvDictionary:
    """A CSV dictionary read in full: metadata per variable and the declared types, if any.

    Attributes:
        meta: Variable -> question text and responses.
        declared: Variable -> type phrase, from the optional ``type`` column.
        bare: Variables whose row gives neither a question nor responses (a row that only
            declares a type): a labelled data file's own texts are kept for them.
    """

    meta: dict[str, VariableMeta]
    declared: dict[str, str]
    bare: frozenset[str] = frozenset()


def read_csv_dictionary(path: str | Path) -> CsvDictionary:
    """Read a CSV dictionary: columns ``variable``, ``question``, ``responses`` and optionally
    ``type`` (ordinal, categorical, continuous, binary; empty: inferred).

    Every problem of the file is collected first and reported together, one line each.

    Raises:
        MetadataError: the message has one line per problem (file, line, variable, fix).
    """
    p = Path(path)
    text = read_text(p)
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
    tcol = next((header[a] for a in _TYPE_COLUMNS if a in header), None)
    errors: list[str] = []
    meta: dict[str, VariableMeta] = {}
    declared: dict[str, str] = {}
    bare: set[str] = set()
    seen: set[str] = set()
    for i, row in enumerate(rows, start=2):
        name = (row.get(cols["variable"]) or "").strip()
        if any((c or "").strip() for c in row.get(None) or []):  # cells beyond the header
            errors.append(
                f"{p.name}: line {i} (variable {quote(name)}) has more cells than the header — put "
                f"double quotes around cells that contain the separator"
            )
            continue
        if not name:
            if any((c or "").strip() for c in row.values() if isinstance(c, str)):
                errors.append(f"{p.name}: line {i} has no variable name — fill it in or delete it")
            continue
        if name in seen:
            errors.append(
                f"{p.name}: line {i}: variable {quote(name)} appears twice — keep one row"
            )
            continue
        seen.add(name)
        question = (row.get(cols["question"]) or "").strip()
        cell = (row.get(cols["responses"]) or "").strip()
        if not question and not cell:
            bare.add(name)
        question = question or name
        try:
            extra = parse_responses(cell, variable=name, source=p.name)
            meta[name] = VariableMeta(question=question, **extra)
        except MetadataError as err:
            errors.append(str(err))
        except ValidationError as err:
            errors.append(
                f"{p.name}: line {i}: variable {quote(name)}: {err.errors()[0]['msg']} — fix its "
                f"responses"
            )
        word = (row.get(tcol) or "").strip().lower() if tcol else ""
        if word:
            phrase = DECLARED_TYPE_WORDS.get(word)
            if phrase is None:
                errors.append(
                    f"{p.name}: line {i}: type {quote(word)} of {quote(name)} is not one of "
                    f"ordinal, categorical, continuous, binary — fix the type column or leave it "
                    f"empty"
                )
            else:
                declared[name] = phrase
    if errors:
        raise MetadataError("\n".join(errors))
    warn_long_texts(meta, p.name)
    return CsvDictionary(meta, declared, frozenset(bare))


def metadata_from_csv(path: str | Path) -> dict[str, VariableMeta]:
    """Read a CSV dictionary (one row per variable: name, question text, possible responses).

    See :func:`read_csv_dictionary`; every problem of the file is reported at once.
    """
    return read_csv_dictionary(path).meta


def metadata_from_labelled(path: str | Path) -> dict[str, VariableMeta]:
    """Question text and value labels from an SPSS ``.sav`` or Stata ``.dta`` file's own labels."""
    _, meta = read_labelled(Path(path))
    return labelled_metadata(meta)


def labelled_metadata(meta: Any) -> dict[str, VariableMeta]:
    """Question text and value labels of every variable of a file read by pyreadstat (its
    metadata object); codes as :func:`~panelsynth.values.number_text` writes them."""
    out: dict[str, VariableMeta] = {}
    for name, question in (meta.column_names_to_labels or {}).items():
        labels = (meta.variable_value_labels or {}).get(name)
        if labels:
            responses = {str(as_number(str(k))): str(v) for k, v in labels.items()}
            out[name] = VariableMeta(question=question or name, responses=responses)
        else:
            out[name] = VariableMeta(question=question or name)
    return out


#: SPSS measurement levels (pyreadstat's ``variable_measure``) -> type phrases. Stata files and
#: variables saved without a level read as ``unknown``: they are typed by their codes.
MEASURE_TYPES: dict[str, str] = {
    "nominal": "a categorical",
    "ordinal": "an ordinal",
    "scale": "a continuous",
}


def labelled_measures(meta: Any) -> dict[str, str]:
    """Variable -> measurement level (``nominal``, ``ordinal``, ``scale``) of a file read by
    pyreadstat, for the variables that have one (an SPSS file's; a Stata file has none)."""
    levels = getattr(meta, "variable_measure", None) or {}
    return {
        str(name): level.lower()
        for name, level in levels.items()
        if isinstance(level, str) and level.lower() in MEASURE_TYPES
    }


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
        raw = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise MetadataError(
            f"{path.name}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}) "
            f"— fix it"
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
                f'{{"question": ..., "responses": {{"1": "label"}}}} or '
                f'{{"question": ..., "range": [lo, hi]}}'
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
            f'var types file not found: {path} — write {{"variable": "an ordinal", ...}} there'
        )
    try:
        raw = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise MetadataError(
            f"{path.name}: not valid JSON (line {err.lineno}: {err.msg}) — fix it"
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise MetadataError(f"{path.name}: expected a non-empty object variable -> type")
    for name, t in raw.items():
        if t not in VAR_TYPES:
            raise MetadataError(
                f"{path.name}: variable {name!r} has type {t!r} "
                f"— use one of: {', '.join(VAR_TYPES)}"
            )
    return dict(raw)


def load_context(path: Path) -> str:
    """Read a wave context text; it must not be empty."""
    if not path.exists():
        raise MetadataError(
            f"wave context not found: {path} — describe the wave's purpose, time, target variable "
            f"and previous wave there"
        )
    text = read_text(path).strip()
    if not text:
        raise MetadataError(
            f"{path.name} is empty — describe the wave's purpose, time, target variable and "
            f"previous wave"
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
            f"{meta_name} lacks variables: {', '.join(missing)} — add them or drop them from "
            f"{types_name}"
        )
    if extra:
        raise MetadataError(
            f"{meta_name} has variables not in {types_name}: {', '.join(extra)} — remove them or "
            f"add them to {types_name}"
        )
    for v, t in types.items():
        m = meta[v]
        if t in CODED_TYPES and not m.responses:
            raise MetadataError(
                f"{meta_name}: variable {v!r} is {t} but lists no response codes — add "
                f'"responses": {{"1": "label", ...}}'
            )


def _sniff_dialect(text: str) -> type[csv.Dialect]:
    """Excel dialect with the separator :func:`panelsynth.io.csv_dialect` sniffs; only the
    separator is taken from the sniffer, whose quote guess mistakes apostrophes in question text
    ("'best' option") for quotes."""
    delimiter, _ = csv_dialect(text)
    return type("_Dictionary", (csv.excel,), {"delimiter": delimiter})
