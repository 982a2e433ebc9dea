"""The calibrated step-3 prompt: profile lines per call, profile checks, profiled schemas."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from panelsynth.calibrate.profiles import Band, Profile, ProfileDesign, _is_na
from panelsynth.generate import (
    GenerationPrompt,
    with_request,
)
from panelsynth.llm.base import Message
from panelsynth.values import plain

PROFILE_RULE = (
    "- Each request lists one profile per respondent: the cluster and some answers are fixed in "
    "advance. Respondent i of your answer completes profile i: it keeps that cluster and those "
    "values exactly (a number given as a range must lie inside the range) and answers every other "
    "question like a member of that cluster."
)


PATTERN_RULE = (
    "- A profile's questions given as null (no answer) stay null: the respondent skipped them. "
    "Answer every other question."
)


def add_profile_rule(prefix: list[Message], patterns: bool = False) -> list[Message]:
    """The step-3 prefix with the profile rule appended (static: prompt caching still applies).

    ``patterns``: the profiles carry missingness patterns (full mode), and a rule says so.
    """
    msgs = [dict(m) for m in prefix]
    msgs[-1]["content"] += "\n" + PROFILE_RULE + ("\n" + PATTERN_RULE if patterns else "")
    return msgs


# ----------------------------------------------------------------------------------------------
# the prompt of a calibrated run
@dataclass
class CalibratedPrompt(GenerationPrompt):
    """A step-3 prompt whose per-batch suffix lists the profiles to complete.

    Batch ``b`` of the planned ones completes profiles ``b*n .. b*n+n-1`` of :attr:`profiles`;
    top-up batches complete the profiles still unfulfilled (those whose rows were invalid,
    off-profile or copies), so the pool keeps the planned composition. Which profiles a batch was
    asked for and which it fulfilled go into its checkpoint record, so ``--resume`` continues with
    the same books.
    """

    profiles: list[Profile] = field(default_factory=list)
    design: ProfileDesign | None = None
    n_outputs: int = 10
    cluster_column: str = "cluster"
    assigned: dict[int, list[int]] = field(default_factory=dict)
    fulfilled: set[int] = field(default_factory=set)
    off_profile_rows: int = 0
    blanked_cells: int = 0  # answers to questions the profile leaves unanswered, set to NA
    unplanned_na: int = 0  # questions the profile answers that a row left NA (kept)
    row_model: type[BaseModel] | None = None  # set: profiles are also written into the schema
    _models: dict[tuple[Profile, ...], type[BaseModel]] = field(default_factory=dict, repr=False)

    @classmethod
    def wrap(
        cls,
        prompt: GenerationPrompt,
        design: ProfileDesign,
        n_profiles: int,
        n_outputs: int,
        *,
        row_model: type[BaseModel] | None = None,
    ) -> CalibratedPrompt:
        """A calibrated prompt with the prefix of ``prompt`` and ``n_profiles`` planned profiles.

        With ``row_model``, each call's response schema also fixes every row's profile (see
        :func:`profiled_batch_model`); without it the schema is the shared one and only the
        prompt and the validator hold rows to their profiles.
        """
        return cls(
            prefix=prompt.prefix,
            n_examples_used=prompt.n_examples_used,
            notes=list(prompt.notes),
            profiles=design.draw(n_profiles),
            design=design,
            n_outputs=n_outputs,
            cluster_column=design.cluster_column,
            row_model=row_model,
        )

    def profile(self, index: int) -> Profile:
        if index < len(self.profiles):
            return self.profiles[index]
        assert self.design is not None
        return self.design.extra(index)

    def profile_ids(self, batch: int) -> list[int]:
        """The profiles batch ``batch`` completes (planned batches: a fixed slice)."""
        if batch not in self.assigned:
            start = batch * self.n_outputs
            if start < len(self.profiles):
                self.assigned[batch] = list(range(start, start + self.n_outputs))
            else:  # a top-up batch that was not planned (e.g. its books were lost): fresh ones
                self.plan([batch])
        return self.assigned[batch]

    def plan(self, batches: Sequence[int]) -> None:
        """Give top-up batches the unfulfilled profiles, oldest first, then fresh ones.

        Called between rounds, when every batch asked so far has finished: a profile of a
        finished batch that got no row is free again. A batch that already has its profiles
        (a call submitted before a resume, its books restored) keeps them.
        """
        asked = {i for b in batches if b in self.assigned for i in self.assigned[b]}
        pending = [
            i for i in range(len(self.profiles)) if i not in self.fulfilled and i not in asked
        ]
        fresh = max([len(self.profiles), *(max(ids) + 1 for ids in self.assigned.values() if ids)])
        for b in batches:
            if b in self.assigned:
                continue
            take, pending = pending[: self.n_outputs], pending[self.n_outputs :]
            while len(take) < self.n_outputs:
                take.append(fresh)
                fresh += 1
            self.assigned[b] = take

    def response_model(self, batch: int, default: type[BaseModel]) -> type[BaseModel]:
        """The shared batch model, or one whose schema fixes each row's profile."""
        if self.row_model is None:
            return default
        profiles = tuple(self.profile_ids(batch))
        key = tuple(self.profile(i) for i in profiles)
        if key not in self._models:
            self._models[key] = profiled_batch_model(
                self.row_model,
                [self.profile(i) for i in profiles],
                self.cluster_column,
                self.design.pattern_columns if self.design else (),
            )
        return self._models[key]

    def for_batch(self, batch: int, n_rows: int) -> list[Message]:
        ids = self.profile_ids(batch)[:n_rows]
        lines = [
            f"\n\nRequest {batch + 1}: generate exactly {len(ids)} new, distinct respondents as "
            f'{{"rows": [...]}}, one per profile below and in this order; keep each profile '
            f"exactly. Do not copy the examples.",
        ]
        lines += [
            f"Respondent {k + 1}: {self.profile(i).text(self.cluster_column)}"
            for k, i in enumerate(ids)
        ]
        return with_request(self.prefix, "\n".join(lines))

    def check_rows(
        self, batch: int, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        """Keep the rows that keep a profile of the batch (each profile at most once).

        A row is matched to its own position's profile when it keeps it, else to the first
        unmatched profile of the batch it keeps (rows before it may have been dropped as invalid,
        so positions are only a hint); a row that keeps none is rejected.

        Returns:
            The kept rows, one error per rejected row, and the fields for the checkpoint record.
        """
        ids = self.profile_ids(batch)
        used: set[int] = set()
        kept: list[dict[str, Any]] = []
        matched: list[int] = []
        errors: list[str] = []
        for pos, row in enumerate(rows):
            order = ([pos] if pos < len(ids) else []) + list(range(len(ids)))
            hit = next(
                (
                    k
                    for k in order
                    if k not in used and self.profile(ids[k]).keeps(row, self.cluster_column)
                ),
                None,
            )
            if hit is None:
                want = self.profile(ids[pos]).text(self.cluster_column) if pos < len(ids) else "-"
                errors.append(f"row {pos}: does not keep its profile ({want})")
                continue
            used.add(hit)
            kept.append(row)
            matched.append(ids[hit])
        blanked, unplanned = self._apply_patterns(kept, matched)
        self.fulfilled.update(matched)
        self.off_profile_rows += len(errors)
        book: dict[str, Any] = {"profiles": ids, "fulfilled": matched, "off_profile": len(errors)}
        if blanked or unplanned:
            book.update(blanked_cells=blanked, unplanned_na=unplanned)
        if errors:
            book["off_profile_errors"] = errors[:3]
        return kept, errors, book

    def _apply_patterns(self, rows: list[dict[str, Any]], matched: list[int]) -> tuple[int, int]:
        """Give every kept row its profile's missingness pattern (full mode).

        The pattern is the host's: an answer to a question the profile leaves unanswered is set
        to NA (a schema-guided decoder cannot write one); a question the profile answers that the
        row left NA stays NA and is counted. Returns (blanked cells, unplanned NA cells).
        """
        columns = self.design.pattern_columns if self.design else []
        if not columns:
            return 0, 0
        blanked = unplanned = 0
        for row, i in zip(rows, matched, strict=True):
            gaps = set(self.profile(i).missing)
            for col in columns:
                value = row.get(col)
                empty = value is None or _is_na(value)
                if col in gaps and not empty:
                    row[col] = None
                    blanked += 1
                elif col not in gaps and empty:
                    unplanned += 1
        self.blanked_cells += blanked
        self.unplanned_na += unplanned
        return blanked, unplanned

    def call_books(self, batch: int) -> dict[str, Any]:
        """What a call must keep while it waits in a provider batch: the profiles it asks for
        (recorded with the batch when it is submitted)."""
        return {"profiles": list(self.profile_ids(batch))}

    def restore_call_books(self, batch: int, books: Mapping[str, Any]) -> None:
        """Take the books of a call submitted by an earlier process (its answer is pending):
        the rows it returns are checked against the profiles it asked for."""
        if "profiles" in books:
            self.assigned[batch] = [int(i) for i in books["profiles"]]

    def restore(self, record: Mapping[str, Any]) -> None:
        """Take the books of a checkpointed call (its profiles and which it fulfilled)."""
        b = int(record["batch"])
        if "profiles" in record:
            self.assigned[b] = [int(i) for i in record["profiles"]]
        self.fulfilled.update(int(i) for i in record.get("fulfilled", ()))
        self.off_profile_rows += int(record.get("off_profile", 0))
        self.blanked_cells += int(record.get("blanked_cells", 0))
        self.unplanned_na += int(record.get("unplanned_na", 0))

    def summary(self) -> dict[str, Any]:
        planned = len(self.profiles)
        out: dict[str, Any] = {
            "planned_profiles": planned,
            "fulfilled_planned_profiles": len([i for i in self.fulfilled if i < planned]),
            "off_profile_rows": self.off_profile_rows,
        }
        if self.design is not None and self.design.pattern_columns:
            out["missingness_patterns"] = {
                "items": list(self.design.pattern_columns),
                "source": "each profile's pattern of unanswered items is that of the real "
                "respondent of its cluster its anchors come from",
                "answers_set_to_na": self.blanked_cells,
                "unplanned_na_cells": self.unplanned_na,
            }
        if self.design is not None and self.design.values is not None:
            out["exact_anchor_values"] = (
                "the response schema fixes each profile, so a banded anchor is an exact value: "
                "a real value of the profile's cluster inside its band, drawn per profile"
            )
        return out


class _ProfiledRows(BaseModel):
    """Base of :func:`profiled_batch_model`: ``rows`` lists the respondents in order."""

    model_config = ConfigDict(extra="ignore")

    @property
    def rows(self) -> list[dict[str, Any]]:
        names = sorted(
            (k for k in type(self).model_fields if k.startswith("respondent_")),
            key=lambda k: int(k.rsplit("_", 1)[1]),
        )
        return [getattr(self, k) for k in names]


def profiled_batch_model(
    row_model: type[BaseModel],
    profiles: Sequence[Profile],
    cluster_column: str = "cluster",
    pattern_columns: Sequence[str] = (),
) -> type[BaseModel]:
    """A response model whose schema fixes each row's profile (for schema-guided decoders).

    The schema is an object ``respondent_1 .. respondent_n``; in respondent ``k`` the cluster and
    the coded anchors of profile ``k`` are constants and a banded anchor is a number inside its
    band (a decoder given a range writes its floor: designs for schema-fixed profiles give exact
    values instead, see :meth:`~panelsynth.calibrate.profiles.ProfileDesign.exact`). Validation
    stays lenient (each respondent is a plain object, validated row by row by the caller through
    ``.rows``), like :func:`~panelsynth.pydantic_models.rows.batch_model`.
    Constrained decoders (llama.cpp, vLLM, Ollama) then cannot leave the profile, which small
    models otherwise rarely keep; hosted models keep the shared schema so that prompt caching
    applies. With ``pattern_columns`` (full mode), a question the profile leaves unanswered is
    ``null`` and every other question of the pattern must be answered (no ``null`` option).
    """
    base = row_model.model_json_schema()
    if "$defs" in base:  # a workspace row model with references: keep its schema as it is
        return _profiled_model(
            [copy.deepcopy({k: v for k, v in base.items() if k != "title"})] * len(profiles),
            base.get("$defs"),
        )
    schemas = []
    for p in profiles:
        row = copy.deepcopy({k: v for k, v in base.items() if k != "title"})
        props = row.get("properties", {})
        gaps = set(p.missing)
        for name in pattern_columns:
            if name in props and name not in gaps:
                props[name] = _not_null(props[name])
        fixed = {cluster_column: p.cluster, **dict(p.anchors), **{m: None for m in p.missing}}
        for name, value in fixed.items():
            if name not in props:
                continue
            if value is None:
                props[name] = {"type": "null"}
            elif isinstance(value, Band):
                kind = "integer" if value.integer else "number"
                lo, hi = (
                    (int(value.low), int(value.high)) if value.integer else (value.low, value.high)
                )
                props[name] = {"type": kind, "minimum": lo, "maximum": hi}
            else:
                props[name] = {"const": plain(value)}
        schemas.append(row)
    return _profiled_model(schemas, None)


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A property schema without its ``null`` option."""
    options = prop.get("anyOf")
    if not options:
        return prop
    rest = [o for o in options if o.get("type") != "null"]
    if len(rest) != 1:
        return prop
    out = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**out, **rest[0]}


def _profiled_model(schemas: list[dict[str, Any]], defs: dict[str, Any] | None) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for k, schema in enumerate(schemas):
        extra = {"$defs": defs} if defs else {}
        typ = Annotated[dict[str, Any], WithJsonSchema({**schema, **extra})]
        fields[f"respondent_{k + 1}"] = (typ, Field(...))
    model = create_model("ProfiledRespondents", __base__=_ProfiledRows, **fields)
    model.__doc__ = f"{len(schemas)} synthetic survey respondents, each completing its profile."
    return model
