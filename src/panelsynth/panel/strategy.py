"""The panel's step-3 strategy: one requested synthetic respondent per row (issue 19, item 3).

The shared prefix of a panel wave holds the wave's formatted metadata, the cluster descriptions
and few-shot examples — real rows per cluster in the first generated wave, real *trajectories*
(a real respondent's previous answers beside their current ones, per transition type) in the
later ones — and the rules. It is the same for every call of the wave, so provider prompt
caching and llama.cpp prefix reuse apply. After it each call lists its requested respondents:
id, cluster path and their answers in the last generated wave they answered.

:class:`PanelPrompt` keeps the books like the calibrated prompt does: planned batches take fixed
slices of the requested respondents, top-up batches the respondents still without a row; a row is
kept only when it carries a requested id of its batch (once) and that respondent's cluster; the
previous cluster is the host's. Which respondents a call was asked for and got go into its
checkpoint record, so ``--resume`` continues with the same books.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field, create_model

from panelsynth.errors import PanelsynthError
from panelsynth.generate.prompt import context_lines
from panelsynth.panel._runpath import (
    SYSTEM_GENERATE,
    GenerationPrompt,
    GenerationSettings,
    Profile,
    encode_table,
    profiled_batch_model,
    with_request,
)
from panelsynth.panel.board import AnswerBoard
from panelsynth.panel.carry import PanelCarry, apply, keeps_text
from panelsynth.panel.trajectories import format_requested_row
from panelsynth.pydantic_models.rows import batch_model

Message = dict[str, str]


@dataclass(frozen=True)
class Requested:
    """One synthetic respondent to write in a wave: the host's id, clusters and cluster path, and
    the generated wave whose answers the request shows (their last one answered; ``None``: none).

    The request's text (:func:`panelsynth.panel.format_requested_row`) is written when the call
    is made, from those answers on the panel's :class:`AnswerBoard`.
    """

    respondent: str
    cluster: int
    prev_cluster: int | None
    path: tuple[tuple[str, int | None], ...] = ()
    previous_wave: str | None = None
    #: What the host fixes for the row besides its clusters
    #: (:meth:`panelsynth.panel.carry.PanelCarry.request_key`).
    fixed: str = ""

    def key(self) -> str:
        """What the host decided for this row (the checkpoint header's fingerprint covers it)."""
        parts = (self.respondent, self.cluster, self.prev_cluster, self.path, self.previous_wave)
        return "|".join(map(str, parts)) + (f"|{self.fixed}" if self.fixed else "")


@dataclass
class PanelSettings(GenerationSettings):
    """Step-3 settings of a panel wave: exactly ``rows`` rows (one per present respondent)."""

    rows: int = 0

    @property
    def wanted(self) -> int:  # type: ignore[override]
        return self.rows


def panel_row_model(row_model: type[BaseModel], id_column: str) -> type[BaseModel]:
    """``row_model`` with the id (text) as its first field."""
    fields: dict[str, Any] = {id_column: (str, Field(...))}
    for name, info in row_model.model_fields.items():
        if name != id_column:
            fields[name] = (info.annotation, info)
    base = row_model.__bases__[0] if row_model.__bases__ else BaseModel
    model = create_model("PanelRespondent", __base__=base, **fields)  # type: ignore[call-overload]
    model.__doc__ = "One synthetic panel respondent."
    return model


def panel_prefix(
    *,
    metadata_text: str,
    descriptions_text: str,
    shares: dict[int, float],
    examples: Sequence[str],
    examples_heading: str,
    wave: str,
    full: bool,
    id_column: str,
    cluster_column: str,
    prev_cluster_column: str | None,
) -> list[Message]:
    """Messages of the static prefix of a panel wave."""
    parts = [
        *context_lines(metadata_text, descriptions_text, shares),
        "",
        f"This is a panel: the same people answer wave after wave. Each respondent keeps their "
        f"`{id_column}` in every wave.",
    ]
    if prev_cluster_column:
        parts.append(
            f"`{prev_cluster_column}` is the respondent's cluster in the study's previous wave "
            f"(empty when they did not take part in it)."
        )
    parts += ["", examples_heading, *examples]
    rules = [
        "",
        "Rules:",
        "- Use only the codes listed for each variable; numbers stay inside their range.",
        f"- Each request lists respondents with their `{id_column}`, their cluster path and, "
        f"when they answered an earlier wave, those answers. Write each one's wave {wave} "
        f"answers: one row per respondent, in the order given, with their `{id_column}` and "
        f"`{cluster_column}` exactly as given.",
        "- Answer like the members of the respondent's cluster, and like the same person: "
        "people change few answers from one wave to the next, fewer when they stay in the same "
        "cluster.",
    ]
    if full:
        rules.append(
            "- A respondent may leave questions unanswered: write null, about as often as the "
            "cluster descriptions say."
        )
    else:
        rules.append("- Every answer must have a value (no null).")
    parts += rules
    return [
        {"role": "system", "content": SYSTEM_GENERATE},
        {"role": "user", "content": "\n".join(parts)},
    ]


def cluster_examples(examples: pd.DataFrame, cluster_column: str) -> list[str]:
    """Real example rows per cluster as prompt text (the first generated wave)."""
    out: list[str] = []
    for c in sorted(examples[cluster_column].dropna().unique()):
        sub = examples[examples[cluster_column] == c]
        out += [f"Cluster {int(c)}:", encode_table(sub)]
    return out


@dataclass
class PanelPrompt(GenerationPrompt):
    """A panel wave's prompt: a shared prefix and, per call, the requested respondents."""

    requests: list[Requested] = field(default_factory=list)
    n_outputs: int = 10
    wave: str = ""
    id_column: str = "respondent_id"
    cluster_column: str = "cluster"
    prev_cluster_column: str | None = None
    #: Set: each call's response schema fixes every row's id and clusters (schema-guided local
    #: decoders); ``None``: the shared schema (hosted models keep their prompt cache).
    fixed_row_model: type[BaseModel] | None = None
    shared_row_model: type[BaseModel] | None = None
    #: Where the previous answers come from and this wave's kept rows go (once saved).
    board: AnswerBoard = field(default_factory=AnswerBoard)
    #: This wave's answers (what a later wave's request shows).
    variables: list[str] = field(default_factory=list)
    #: What the host carries per respondent (``None``: nothing but ids and clusters).
    carry: PanelCarry | None = None
    #: Cells the host set in kept rows to keep their profile (``carry.apply``).
    carried_fixes: int = 0
    assigned: dict[int, list[int]] = field(default_factory=dict)
    fulfilled: set[int] = field(default_factory=set)
    rejected_rows: int = 0
    # derived, never copied by ``dataclasses.replace``: response models per set of respondents,
    # index of the ids, and each respondent's profile and request text (fixed once their
    # previous answers are on the board; built once, though a call asks for them several times)
    _models: dict[tuple[int, ...], type[BaseModel]] = field(
        default_factory=dict, init=False, repr=False
    )
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _profiles: dict[int, Profile | None] = field(default_factory=dict, init=False, repr=False)
    _texts: dict[int, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {r.respondent: i for i, r in enumerate(self.requests)}

    # -- books -------------------------------------------------------------------------------
    def request_ids(self, batch: int) -> list[int]:
        """The requested respondents (indices) of ``batch``; planned batches take fixed slices."""
        if batch not in self.assigned:
            start = batch * self.n_outputs
            stop = min(start + self.n_outputs, len(self.requests))
            # a planned slice, less respondents a top-up batch already wrote (a resumed run
            # whose planned call had failed)
            ids = [i for i in range(start, stop) if i not in self.fulfilled]
            if ids:
                self.assigned[batch] = ids
            else:  # a top-up batch not planned in this process (its books were lost)
                self.plan([batch])
        return self.assigned[batch]

    def plan(self, batches: Sequence[int]) -> None:
        """Top-up batches get the respondents still without a row, oldest first."""
        pending = [i for i in range(len(self.requests)) if i not in self.fulfilled]
        if not pending:
            pending = [0]  # never an empty call; a row of a fulfilled respondent is not kept
        for k, b in enumerate(batches):
            take = pending[k * self.n_outputs : (k + 1) * self.n_outputs]
            self.assigned[b] = take or pending[-1:]

    def restore(self, record: dict[str, Any]) -> None:
        b = int(record["batch"])
        if "panel_requested" in record:
            self.assigned[b] = [int(i) for i in record["panel_requested"]]
            self._check_context(b, record)
        self.fulfilled.update(int(i) for i in record.get("panel_fulfilled", []))
        self.rejected_rows += int(record.get("panel_rejected", 0))
        self.carried_fixes += int(record.get("panel_carried_fixes", 0))
        self.saved(record)

    def _check_context(self, batch: int, record: dict[str, Any]) -> None:
        """A restored call was written for the previous answers the board holds now."""
        want = record.get("panel_context")
        if want is None:
            return
        ids = self.assigned[batch]
        missing = [
            self.requests[i].respondent
            for i in ids
            if self.requests[i].previous_wave is not None
            and self.board.get(self.requests[i].previous_wave, self.requests[i].respondent) is None
        ]
        if missing or self._digest(ids) != want:
            raise PanelsynthError(
                f"wave {self.wave}: checkpointed call {batch + 1} was written for earlier-wave "
                f"answers that the earlier waves' checkpoints no longer hold"
                + (f" (respondent {missing[0]})" if missing else "")
                + " — pass --restart to generate the panel again (old checkpoints kept aside)"
            )

    # -- the answers the calls show and publish ----------------------------------------------
    def _previous(self, r: Requested) -> dict[str, Any] | None:
        previous = self.board.get(r.previous_wave, r.respondent) if r.previous_wave else None
        if r.previous_wave is not None and previous is None:  # pragma: no cover - ready() first
            raise PanelsynthError(f"respondent {r.respondent} has no wave {r.previous_wave} row")
        return previous

    def profile(self, i: int) -> Profile | None:
        """What respondent ``i``'s row must keep besides id and clusters (carried values,
        first-wave anchors, missingness pattern), from their previous answers on the board."""
        if self.carry is None:
            return None
        if i not in self._profiles:
            r = self.requests[i]
            self._profiles[i] = self.carry.row_profile(
                r.respondent, self.wave, r.cluster, self._previous(r), r.previous_wave
            )
        return self._profiles[i]

    def text(self, i: int) -> str:
        """The request text of respondent ``i`` (their previous answers must be published)."""
        if i not in self._texts:
            r = self.requests[i]
            keeps = keeps_text(self.profile(i))
            self._texts[i] = format_requested_row(
                r.respondent,
                path=r.path,
                wave=self.wave,
                cluster=r.cluster,
                previous=self._previous(r),
                previous_wave=r.previous_wave,
                id_column=self.id_column,
                cluster_column=self.cluster_column,
            ) + (f"\nThis respondent {keeps}." if keeps else "")
        return self._texts[i]

    def _digest(self, ids: Sequence[int]) -> str:
        body = "\n\n".join(self.text(i) for i in ids)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    async def ready(self, batch: int) -> None:
        reqs = [self.requests[i] for i in self.request_ids(batch)]
        await self.board.wait((r.previous_wave, r.respondent) for r in reqs if r.previous_wave)

    def saved(self, record: dict[str, Any]) -> None:
        for row in record.get("rows", []):
            answers = {v: row.get(v) for v in self.variables}
            self.board.publish(self.wave, str(row.get(self.id_column)), answers)

    # -- per call ----------------------------------------------------------------------------
    def for_batch(self, batch: int, n_rows: int) -> list[Message]:
        ids = self.request_ids(batch)
        head = (
            f"\n\nRequest {batch + 1}: write the wave {self.wave} answers of the {len(ids)} "
            f'respondents below as {{"rows": [...]}}, one row per respondent in this order; keep '
            f"each one's {self.id_column} and {self.cluster_column} exactly."
        )
        if self.carry is not None and any(self.profile(i) for i in ids):
            head += (
                " Where a respondent keeps values, write exactly those (a number inside the "
                "range given; null where it says no answer)."
            )
        body = "\n\n".join(self.text(i) for i in ids)
        return with_request(self.prefix, f"{head}\n\n{body}")

    def response_model(self, batch: int, default: type[BaseModel]) -> type[BaseModel]:
        ids = tuple(self.request_ids(batch))
        if ids not in self._models:
            if self.fixed_row_model is not None:
                self._models[ids] = profiled_batch_model(
                    self.fixed_row_model,
                    [self._profile(i) for i in ids],
                    self.cluster_column,
                    self.carry.pattern_columns.get(self.wave, ()) if self.carry else (),
                )
            elif len(ids) == self.n_outputs or self.shared_row_model is None:
                self._models[ids] = default
            else:
                self._models[ids] = batch_model(self.shared_row_model, len(ids))
        return self._models[ids]

    def _profile(self, i: int) -> Profile:
        """The schema's profile of respondent ``i``: id, clusters and what the host carries."""
        r = self.requests[i]
        anchors: list[tuple[str, Any]] = [(self.id_column, r.respondent)]
        if self.prev_cluster_column:
            anchors.append((self.prev_cluster_column, r.prev_cluster))
        carried = self.profile(i)
        if carried is None:
            return Profile(cluster=r.cluster, anchors=tuple(anchors))
        return Profile(r.cluster, (*anchors, *carried.anchors), carried.missing)

    def check_rows(
        self, batch: int, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        """Keep each requested respondent's first row that keeps their id and cluster."""
        ids = self.request_ids(batch)
        asked = set(ids)
        kept: list[dict[str, Any]] = []
        errors: list[str] = []
        got: list[int] = []
        fixes = 0
        for n, row in enumerate(rows):
            rid = str(row.get(self.id_column))
            i = self._index.get(rid)
            if i is None or i not in asked:
                errors.append(f"row {n}: {self.id_column} {rid!r} was not requested in this call")
                continue
            if i in self.fulfilled:
                errors.append(f"row {n}: respondent {rid} already has a row")
                continue
            want = self.requests[i]
            try:
                same = int(row.get(self.cluster_column)) == want.cluster
            except (TypeError, ValueError):
                same = False
            if not same:
                errors.append(
                    f"row {n}: respondent {rid} is in {self.cluster_column} {want.cluster}, "
                    f"not {row.get(self.cluster_column)}"
                )
                continue
            row, changed = apply(self.profile(i), row)  # the host's guarantee, never a reject
            fixes += changed
            row[self.cluster_column] = want.cluster
            if self.prev_cluster_column:
                row[self.prev_cluster_column] = want.prev_cluster
            self.fulfilled.add(i)
            got.append(i)
            kept.append(row)
        self.rejected_rows += len(errors)
        self.carried_fixes += fixes
        book = {
            "panel_requested": ids,
            "panel_fulfilled": got,
            "panel_rejected": len(errors),
            "panel_context": self._digest(ids),
        }
        if self.carry is not None:
            book["panel_carried_fixes"] = fixes
        return kept, errors, book
