"""The calibrated method as a step-3 strategy (:mod:`panelsynth.generate.strategy`).

The host draws each row's cluster and anchors from the real data (the profiles), the model
completes them in an oversampled pool, and :meth:`CalibrationSetup.select` keeps whole rows that
match the real per-cluster marginals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth.calibrate.prompt import add_profile_rule
from panelsynth.calibrate.setup import CalibrationSetup, setup_calibration
from panelsynth.generate import GenerationPrompt, GenerationResult, GenerationSettings
from panelsynth.generate.strategy import (
    BatchHooks,
    PrefixBuilder,
    Step3Strategy,
    _per_call,
)
from panelsynth.llm.base import LLMClient, Message
from panelsynth.pydantic_models.rows import RowSpec


class CalibratedStrategy(Step3Strategy):
    """Host-drawn profiles, an oversampled pool, whole rows selected to the real marginals."""

    draws_missing_patterns = True

    def __init__(self, setup: CalibrationSetup, settings: GenerationSettings) -> None:
        super().__init__(settings)
        self.setup = setup

    @classmethod
    def create(
        cls,
        every: pd.DataFrame,
        specs: Sequence[RowSpec],
        settings: GenerationSettings,
        *,
        oversample: float,
        anchors: Sequence[str] | None,
        temperature: float | None,
        demographics: Sequence[str],
        cluster_column: str,
        profiles_in_schema: bool,
    ) -> CalibratedStrategy:
        """Set up the calibration from every real respondent of the wave (see
        :func:`setup_calibration`; ``ConfigError`` for an unknown anchor or a bad oversample)."""
        setup = setup_calibration(
            every,
            specs,
            settings,
            oversample=oversample,
            anchors=anchors,
            demographics=demographics,
            cluster_column=cluster_column,
            profiles_in_schema=profiles_in_schema,
            temperature=temperature,
        )
        return cls(setup, settings)

    def row_specs(self, specs: Sequence[RowSpec]) -> list[RowSpec]:
        return self.setup.row_specs()

    def build_prefix(self, build: PrefixBuilder, examples: pd.DataFrame) -> list[Message]:
        return add_profile_rule(
            build(examples[self.setup.prompt_columns()]),
            patterns=bool(self.setup.design.pattern_columns),
        )

    def reserve_tokens(self, client: LLMClient) -> int:
        return self.setup.suffix_tokens(client)

    @property
    def loop_settings(self) -> GenerationSettings:
        return self.setup.pool_settings

    def fewer_rows(self, rows: int) -> None:
        super().fewer_rows(rows)
        self.setup.pool_settings = _per_call(self.setup.pool_settings, rows)

    def bind(self, prompt: GenerationPrompt, row_model: type[BaseModel]) -> BatchHooks:
        return self.setup.wrap(prompt, row_model=row_model)

    def select(
        self, gen: GenerationResult, hooks: BatchHooks, *, examples: pd.DataFrame
    ) -> tuple[GenerationResult, dict[str, Any]]:
        return self.setup.apply(gen, hooks, examples=examples)  # type: ignore[arg-type]

    def header(self) -> dict[str, Any]:
        return {
            "calibrate": {**self.setup.settings(), "profiles": self.setup.profiles_fingerprint()}
        }

    def manifest_section(self) -> dict[str, Any]:
        return self.setup.settings()

    def plan_notes(self) -> list[str]:
        pool = self.setup.pool_settings
        return [
            f"--calibrate: a pool of {pool.wanted} rows ({pool.n_batches} calls) for "
            f"{self.settings.wanted} kept rows"
        ]
