"""The one place the imputation reaches into the run path (steps 1-2, step-3 calls, plans).

Every import of the run path (``generate``, ``run``) by :mod:`panelsynth.impute` is here, so a
change of the run path is one edit. What is used:

* steps 1-2 exactly as ``panelsynth run`` makes them, through the same step cache
  (:func:`steps_1_2`), on a :class:`WaveData` built from the panel's (possibly masked) frame;
* the step-3 call machinery (:func:`generate_rows`: concurrency, retries, the circuit breaker,
  the fsync'ed checkpoint and resume) with a :class:`GenerationPrompt` subclass as the strategy;
* the dry-run projection of ``panelsynth run --dry-run`` (placeholder answers, token counts,
  prices) and the manifest's cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from panelsynth.cache import StepCache, fingerprint
from panelsynth.checkpoint import Checkpoint, RunLock
from panelsynth.config import DEFAULT_N_EXAMPLES, PanelsynthConfig
from panelsynth.data import WaveData, load_wave
from panelsynth.describe import describe_wave, encode_table
from panelsynth.describe import format_descriptions as _format_descriptions
from panelsynth.errors import GenerationExhaustedError
from panelsynth.generate import (
    GenerationPrompt,
    GenerationResult,
    GenerationSettings,
    fit_prompt,
    generate_rows,
    with_request,
)
from panelsynth.impute.gaps import PanelWave
from panelsynth.llm.base import LLMClient, Usage
from panelsynth.metadata import format_metadata, format_wave_description
from panelsynth.pydantic_models.rows import RowSpec, batch_model, build_row_model, build_specs
from panelsynth.run.dryrun import (
    Projector,
    ReadOnlyCache,
    StagePlan,
    WavePlan,
    count_messages,
    format_plans,
    planning_client,
    project_cost,
    stage_plan,
)
from panelsynth.run.manifest import reproducibility, run_cost
from panelsynth.run.wave import fresh_context, with_budget
from panelsynth.runner import (
    Confirmation,
    default_model_dir,
    needs_yes_message,
    open_client,
    privacy_warning,
)
from panelsynth.workspace import Workspace

__all__ = [
    "DEFAULT_N_EXAMPLES",
    "Checkpoint",
    "Confirmation",
    "GenerationExhaustedError",
    "GenerationPrompt",
    "GenerationResult",
    "GenerationSettings",
    "RowSpec",
    "RunLock",
    "StagePlan",
    "Steps12",
    "Usage",
    "WavePlan",
    "batch_model",
    "build_row_model",
    "build_specs",
    "count_messages",
    "default_model_dir",
    "encode_table",
    "fingerprint",
    "fit_prompt",
    "format_plans",
    "fresh_context",
    "generate_rows",
    "needs_yes_message",
    "open_client",
    "plan_cost",
    "planning_client",
    "privacy_warning",
    "projected_stage",
    "projector",
    "readonly_cache",
    "reproducibility",
    "run_cost",
    "step_cache",
    "steps_1_2",
    "wave_data",
    "with_budget",
    "with_request",
]


def wave_data(ws: Workspace, pw: PanelWave, config: PanelsynthConfig) -> WaveData:
    """The wave as ``run`` loads it (full mode: metadata, context, clusters), its frame replaced
    by the panel's, so steps 1-2 see exactly the answers the imputation sees (a masked panel's
    hidden answers never reach them)."""
    st = config.study
    wd = load_wave(
        ws,
        pw.wave,
        mode="full",
        missing_codes=st.missing_codes,
        study_waves=list(st.waves) or ws.waves_with_data(),
        cluster_column=st.cluster_column,
        prev_cluster_column=st.prev_cluster_column,
        k=config.clustering.k,
    )
    wd.frame = pw.frame.reset_index(drop=True)
    return wd


@dataclass
class Steps12:
    """What the imputation prompt takes from steps 1-2, and what they cost."""

    metadata_text: str
    descriptions_text: str
    usage: dict[str, dict[str, Any]]
    notes: list[str]


def steps_1_2(
    client: LLMClient,
    wd: WaveData,
    *,
    cache: StepCache | None,
    seed: int,
    outcome: str | None,
) -> Steps12:
    """Cluster descriptions (step 1) and formatted metadata (step 2) as ``run`` makes them."""
    fresh_context(client)
    s1 = describe_wave(client, wd, n_examples=DEFAULT_N_EXAMPLES["full"], seed=seed, cache=cache)
    fresh_context(client)
    s2 = format_metadata(client, wd, cache=cache, preferred_target=outcome, seed=seed)
    fresh_context(client)

    def stage(usage: Usage, calls: int, cached: bool) -> dict[str, Any]:
        return {**usage.to_dict(), "calls": calls, "cached": cached}

    return Steps12(
        format_wave_description(s2.description, wd),
        _format_descriptions(s1.descriptions),
        {
            "step1": stage(s1.usage, s1.calls, s1.cached),
            "step2": stage(s2.usage, s2.calls, s2.cached),
        },
        list(s1.warnings) + list(s2.notes),
    )


def step_cache(ws: Workspace, enabled: bool) -> StepCache:
    """The workspace's step-1/2 cache (the one ``run`` uses)."""
    cache = StepCache(ws.cache_dir(), enabled=enabled)
    cache.remove_stale()
    return cache


def projector(label: str) -> Any:
    """A dry run's client: answers with placeholders and records the requests (no model is
    loaded or called, no key needed)."""
    return Projector(planning_client(label))


def readonly_cache(ws: Workspace, enabled: bool) -> StepCache:
    """The step cache for a dry run: read, never written."""
    return ReadOnlyCache(ws.cache_dir(), enabled=enabled)


def projected_stage(proj: Any, name: str, first: int, window: int | None) -> StagePlan:
    """The plan of the requests ``proj`` recorded from index ``first`` on (steps 1-2);
    ``window`` is the projected client's context (the one :func:`stage_plan` reads)."""
    return stage_plan(proj.inner, name, proj.requests[first:])


def plan_cost(
    config: PanelsynthConfig,
    client: Any,
    stages: list[StagePlan],
    prefix_tokens: int,
    concurrency: int,
) -> tuple[float | None, str, dict[str, Any] | None, float | None, str]:
    """Cost of planned stages (the last one gets the projected prompt-cache saving)."""
    return project_cost(config, client, stages, prefix_tokens, concurrency)
