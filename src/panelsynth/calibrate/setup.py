"""One calibrated run: the setup (anchors, profile design, pool size) and the final selection."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth.calibrate.profiles import ProfileDesign, profile_first, resolve_anchors
from panelsynth.calibrate.prompt import CalibratedPrompt
from panelsynth.calibrate.select import Selection, select_rows
from panelsynth.config import POOL_TEMPERATURE
from panelsynth.errors import ConfigError
from panelsynth.generate import (
    GenerationPrompt,
    GenerationResult,
    GenerationSettings,
    row_key,
)
from panelsynth.pydantic_models.rows import RowSpec

log = logging.getLogger("panelsynth")


# ----------------------------------------------------------------------------------------------
# one calibrated run
@dataclass
class CalibrationSetup:
    """Everything a calibrated run of one wave needs besides the plain pipeline.

    Build it with :func:`setup_calibration`.
    """

    real: pd.DataFrame
    specs: list[RowSpec]
    columns: list[str]
    cluster_column: str
    anchors: list[str]
    oversample: float
    n_rows: int
    pool_settings: GenerationSettings
    design: ProfileDesign
    seed: int
    profiles_in_schema: bool = False

    @property
    def pool_rows(self) -> int:
        """Valid rows the loop collects: ``ceil(oversample x n_rows)``, in whole calls."""
        return self.pool_settings.wanted

    def prompt_columns(self) -> list[str]:
        """Column order of the examples and the row schema: cluster and anchors first.

        The model writes the profile, then answers in its light (measured with SmolLM2-135M and
        the profile fixed in the schema, the plain order was no better: mixed over two seeds).
        """
        return profile_first(self.columns, self.cluster_column, self.anchors)

    def row_specs(self) -> list[RowSpec]:
        """The wave's specs in :meth:`prompt_columns` order (the LLM writes the profile first)."""
        by_name = {s.name: s for s in self.specs}
        return [by_name[c] for c in self.prompt_columns()]

    def wrap(
        self, prompt: GenerationPrompt, *, row_model: type[BaseModel] | None = None
    ) -> CalibratedPrompt:
        """The calibrated prompt over ``prompt``'s prefix, with the planned profiles.

        Args:
            prompt: The fitted step-3 prompt (its prefix is kept as it is).
            row_model: Given, the profiles are also fixed in each call's response schema.
        """
        return CalibratedPrompt.wrap(
            prompt,
            self.design,
            self.pool_rows,
            self.pool_settings.n_outputs,
            row_model=row_model if self.profiles_in_schema else None,
        )

    def profiles_fingerprint(self) -> str:
        """A hash of the planned profiles (part of the checkpoint's fingerprint)."""
        from panelsynth.cache import fingerprint

        return fingerprint([p.to_json() for p in self.design.draw(self.pool_rows)])

    def suffix_tokens(self, client: Any) -> int:
        """Tokens the profile lines add to a call (room kept when the prompt is fitted)."""
        lines = [
            f"Respondent {k + 1}: {p.text(self.cluster_column)}"
            for k, p in enumerate(self.design.draw(self.pool_settings.n_outputs))
        ]
        return int(client.count_tokens("\n".join(lines))) + 40

    def apply(
        self,
        gen: GenerationResult,
        prompt: GenerationPrompt,
        *,
        examples: pd.DataFrame,
    ) -> tuple[GenerationResult, dict[str, Any]]:
        """Select the rows of a finished pool; returns the result to write and the manifest entry.

        The manifest entry holds the settings, the pool and selected sizes, the marginal distance
        of the pool (``marginal_distance_before``) and of the selection (``..._after``), copy
        counts, and the profile books (off-profile rows, fulfilled profiles).
        """
        sel, report = self.select(gen.rows, examples=examples)
        books = prompt.summary() if isinstance(prompt, CalibratedPrompt) else {}
        before, after = sel.before["mean_tvd"], sel.after["mean_tvd"]
        log.info(
            "calibrated selection: %d of %d rows; mean TVD per variable and cluster %.4f -> %.4f",
            len(sel.rows),
            len(gen.rows),
            before,
            after,
        )
        return replace(gen, rows=sel.rows), {**self.settings(), **books, **report}

    def settings(self) -> dict[str, Any]:
        """The calibration settings (checkpoint header and manifest)."""
        return {
            "enabled": True,
            "oversample": self.oversample,
            "anchors": list(self.anchors),
            "rows": self.n_rows,
            "pool_rows": self.pool_rows,
            "pool_batches": self.pool_settings.n_batches,
            "profiles_in_schema": self.profiles_in_schema,
            "missingness_patterns": bool(self.design.pattern_columns),
            "temperature": self.pool_settings.temperature,
            "selection": "greedy + swap search on per-cluster marginals (L1), copies last",
            "real_cluster_shares": {str(k): round(v, 6) for k, v in self.design.shares.items()},
        }

    def select(
        self,
        pool: pd.DataFrame,
        *,
        examples: pd.DataFrame,
    ) -> tuple[Selection, dict[str, Any]]:
        """Select the run's rows from the pool; returns the selection and its manifest report.

        A copy is a row equal to a real row or a few-shot example on every survey variable
        (cluster labels aside, as the evaluation counts copies).

        Args:
            pool: The valid rows the loop collected.
            examples: The few-shot examples of the prompt.
        """
        keys_on = self.key_columns()
        real_keys = {row_key(r) for r in self.real[keys_on].itertuples(index=False)}
        example_keys = {row_key(r) for r in examples[keys_on].itertuples(index=False)}
        sel = select_rows(
            pool,
            self.real,
            self.specs,
            min(self.n_rows, len(pool)),
            cluster_column=self.cluster_column,
            seed=self.seed,
            avoid=real_keys | example_keys,
            key_columns=keys_on,
        )
        report = sel.report()
        report["copies"] = {
            "compared_on": keys_on,
            "of_examples": {
                "pool": _count_keys(pool, keys_on, example_keys),
                "selected": _count_keys(sel.rows, keys_on, example_keys),
            },
            "of_real_rows": {
                "pool": _count_keys(pool, keys_on, real_keys),
                "selected": _count_keys(sel.rows, keys_on, real_keys),
            },
        }
        return sel, report

    def key_columns(self) -> list[str]:
        """The survey variables (not the cluster labels): what a copy is compared on."""
        return [s.name for s in self.specs if s.vtype != "cluster"]


def setup_calibration(
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    settings: GenerationSettings,
    *,
    oversample: float,
    anchors: Sequence[str] | None,
    demographics: Sequence[str],
    cluster_column: str,
    profiles_in_schema: bool = False,
    temperature: float | None = None,
) -> CalibrationSetup:
    """Resolve the anchors, the profile design and the pool size of a calibrated run.

    Args:
        real: Every real respondent of the wave (cluster shares and anchors come from here).
        specs: Column specs of the wave (their order is the CSV's).
        settings: The run's settings (rows = ``n_outputs x n_batches``).
        oversample: Pool size as a multiple of the rows kept (>= 1).
        anchors: Anchor variables (``None``: the demographics present in the wave).
        demographics: Config ``prepare.demographics``.
        cluster_column: The cluster column.
        profiles_in_schema: Also fix each row's profile in the response schema of every call
            (for schema-guided decoders such as local models; hosted models keep one shared
            schema so that provider prompt caching applies).
        temperature: Sampling temperature of the pool (``None``: :data:`POOL_TEMPERATURE`).

    Raises:
        ConfigError: an anchor is unknown, ``oversample`` is below 1, or a cluster has no
            respondent with every anchor.
    """
    if not oversample >= 1.0:
        raise ConfigError(f"--oversample must be at least 1 (got {oversample}) — use e.g. 2.0")
    names = resolve_anchors(
        anchors, specs, demographics=demographics, cluster_column=cluster_column
    )
    n_rows = settings.wanted
    pool = math.ceil(round(oversample * n_rows, 9))
    pool_settings = replace(
        settings,
        n_batches=max(1, math.ceil(pool / settings.n_outputs)),
        temperature=POOL_TEMPERATURE if temperature is None else temperature,
    )
    pattern_columns = [
        s.name
        for s in specs
        if s.nullable and s.vtype != "cluster" and s.name != cluster_column and s.name not in names
    ]
    design = ProfileDesign.from_frame(
        real,
        specs,
        names,
        cluster_column=cluster_column,
        seed=settings.seed,
        pattern_columns=pattern_columns,
        exact_values=profiles_in_schema,
    )
    return CalibrationSetup(
        real=real,
        specs=list(specs),
        columns=[s.name for s in specs],
        cluster_column=cluster_column,
        anchors=names,
        oversample=float(oversample),
        n_rows=n_rows,
        pool_settings=pool_settings,
        design=design,
        seed=settings.seed,
        profiles_in_schema=profiles_in_schema,
    )


def _count_keys(frame: pd.DataFrame, columns: Sequence[str], keys: set[tuple[Any, ...]]) -> int:
    if not keys or frame.empty:
        return 0
    return int(sum(row_key(r) in keys for r in frame[list(columns)].itertuples(index=False)))
