"""Step 3 as a strategy: what varies between ways of generating a wave's rows.

A wave run (:func:`panelsynth.run.wave.run_wave`) always does the same: load the wave once,
describe the clusters (step 1), format the metadata (step 2), fit the step-3 prompt, run the
checkpointed loop of calls (:func:`panelsynth.generate.generate_rows`), write the CSV and the
manifest. What a *method* of step 3 decides is collected in :class:`Step3Strategy`:

* before the loop: the column order of the row schema (:meth:`~Step3Strategy.row_specs`), the
  static prompt prefix (:meth:`~Step3Strategy.build_prefix`), the tokens its per-call suffix
  needs (:meth:`~Step3Strategy.reserve_tokens`), how many rows the loop collects
  (:meth:`~Step3Strategy.loop_settings`, :meth:`~Step3Strategy.fewer_rows`);
* during the loop, per batch (:class:`BatchHooks`, returned by :meth:`~Step3Strategy.bind`):
  the request suffix (``for_batch``), the plan of a round of top-up calls (``plan``), the
  response model (``response_model``), a check of a call's valid rows (``check_rows``) and the
  restoring of a checkpointed call's books (``restore``);
* after the loop: the final selection (:meth:`~Step3Strategy.select`: plain keeps the first rows
  in batch order, calibrated selects whole rows to match the real marginals) and the books —
  the checkpoint header's entry (:meth:`~Step3Strategy.header`), the manifest section
  (:meth:`~Step3Strategy.manifest_section`) and how missing answers arise
  (:attr:`~Step3Strategy.draws_missing_patterns`).

:class:`PlainStrategy` is the original method; :class:`panelsynth.calibrate.strategy.
CalibratedStrategy` is the calibrated one. :func:`panelsynth.run.wave.step3_strategy` picks one
from the :class:`~panelsynth.run.plan.RunPlan`.

Adding a variant (none of these edits the plain path):

* **a panel wave conditioned on the previous wave** (issue 19): a ``PanelStrategy`` whose
  ``build_prefix`` adds the previous wave's rows of the same people, whose ``bind`` returns hooks
  that put each person's previous answers in ``for_batch`` and fix the id in
  ``response_model``, and whose ``select`` keeps one row per person; a field in ``RunPlan`` and
  one branch in ``step3_strategy`` choose it;
* **an imputation pass** (issue 15): a strategy whose hooks ask, per batch, for the missing
  cells of given real rows (``for_batch``/``response_model``) and whose ``select`` merges the
  answers back (its own output writer, since it writes no new respondents);
* **a provider batch** (issue 17): not a strategy but a transport — the loop takes every call
  through an object with ``async def call(batch, messages, response_model, **kw) ->
  Completion`` (:class:`panelsynth.generate.OnlineTransport` sends it at once with the client's
  retries); a batch transport (:class:`panelsynth.llm.batch.transport.BatchTransport` has this
  ``call``) collects the calls, submits them as one provider batch and answers each awaiting
  call when the batch is done: ``generate_rows(..., transport=...)``. Any strategy runs over any
  transport.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import pandas as pd
from pydantic import BaseModel

from panelsynth.generate import GenerationPrompt, GenerationResult, GenerationSettings
from panelsynth.llm.base import LLMClient, Message
from panelsynth.pydantic_models.rows import RowSpec

#: Builds the static prompt prefix from a set of few-shot examples.
PrefixBuilder = Callable[[pd.DataFrame], list[Message]]


class BatchHooks(Protocol):
    """What the step-3 loop asks its prompt per batch (:class:`GenerationPrompt` is the plain
    implementation; :class:`panelsynth.calibrate.CalibratedPrompt` keeps books per batch)."""

    prefix: list[Message]
    n_examples_used: int
    notes: list[str]

    def for_batch(self, batch: int, n_rows: int) -> list[Message]:
        """The messages of one call: the shared prefix and the per-batch request."""
        ...

    def plan(self, batches: Sequence[int]) -> None:
        """Called before a round of top-up batches is started."""
        ...

    def response_model(self, batch: int, default: type[BaseModel]) -> type[BaseModel]:
        """The response model of a batch (its ``rows`` are validated one by one)."""
        ...

    def check_rows(
        self, batch: int, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        """Filter a call's valid rows: (kept rows, one error per rejected row, record fields)."""
        ...

    def restore(self, record: dict[str, Any]) -> None:
        """Take the books of a checkpointed successful call."""
        ...

    async def ready(self, batch: int) -> None:
        """Wait until the call of ``batch`` can be written (its inputs exist)."""
        ...

    def saved(self, record: dict[str, Any]) -> None:
        """A successful call's checkpoint line is on disk."""
        ...


class Step3Strategy(ABC):
    """A method of step 3 (see the module docstring for the life cycle)."""

    #: Whether each row's missing answers follow a real respondent's pattern (manifest's
    #: ``item_nonresponse``); else the model decides, and a large gap is warned about.
    draws_missing_patterns: bool = False

    def __init__(self, settings: GenerationSettings) -> None:
        #: The run's rows (``n_outputs`` per call x ``n_batches``).
        self.settings = settings

    # -- before the loop ---------------------------------------------------------------------
    def row_specs(self, specs: Sequence[RowSpec]) -> list[RowSpec]:
        """The row schema's columns, in the order the model writes them."""
        return list(specs)

    def build_prefix(self, build: PrefixBuilder, examples: pd.DataFrame) -> list[Message]:
        """The static prompt prefix for ``examples`` (``build`` is the plain builder)."""
        return build(examples)

    def reserve_tokens(self, client: LLMClient) -> int:
        """Tokens the per-call suffix adds beyond the plain request (kept free when fitting)."""
        return 0

    @property
    def loop_settings(self) -> GenerationSettings:
        """The settings of the loop of calls (the rows it collects)."""
        return self.settings

    def fewer_rows(self, rows: int) -> None:
        """Ask for ``rows`` rows per call, in more calls (the prompt does not fit otherwise)."""
        self.settings = _per_call(self.settings, rows)

    # -- the loop ----------------------------------------------------------------------------
    @abstractmethod
    def bind(self, prompt: GenerationPrompt, row_model: type[BaseModel]) -> BatchHooks:
        """The per-batch hooks over the fitted ``prompt``."""

    # -- after the loop ----------------------------------------------------------------------
    @abstractmethod
    def select(
        self, gen: GenerationResult, hooks: BatchHooks, *, examples: pd.DataFrame
    ) -> tuple[GenerationResult, dict[str, Any]]:
        """The rows to write, and the manifest section that describes how they were chosen."""

    def header(self) -> dict[str, Any]:
        """Entries of the checkpoint header (part of its fingerprint); none by default."""
        return {}

    def manifest_section(self) -> dict[str, Any]:
        """The manifest's ``calibration`` entry before the selection (also for failed runs)."""
        return {"enabled": False}

    def plan_notes(self) -> list[str]:
        """Lines ``--dry-run`` adds about this method."""
        return []


class PlainStrategy(Step3Strategy):
    """The original method: one prompt for every call, the first rows in batch order kept."""

    def bind(self, prompt: GenerationPrompt, row_model: type[BaseModel]) -> BatchHooks:
        return prompt

    def select(
        self, gen: GenerationResult, hooks: BatchHooks, *, examples: pd.DataFrame
    ) -> tuple[GenerationResult, dict[str, Any]]:
        wanted = self.settings.wanted
        if len(gen.rows) > wanted:
            gen = replace(gen, rows=gen.rows.head(wanted))
        return gen, self.manifest_section()


def _per_call(settings: GenerationSettings, rows: int) -> GenerationSettings:
    """``settings`` asking for ``rows`` rows per call, with as many calls as keep its rows."""
    wanted = settings.wanted
    return replace(settings, n_outputs=rows, n_batches=-(-wanted // rows))
