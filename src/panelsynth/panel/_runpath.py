"""The one place the panel run reaches into the per-wave run path (generate, run, ...).

Issue 14 restructures ``generate.py`` / ``pipeline.py`` / ``plan.py`` / ``calibrate.py`` into
packages; every import of those modules by :mod:`panelsynth.panel` is here, so re-pointing them
after the restructure is a change to this file only.
"""

from __future__ import annotations

from panelsynth.cache import StepCache, fingerprint
from panelsynth.calibrate import Profile, profiled_batch_model
from panelsynth.checkpoint import Checkpoint, RunLock
from panelsynth.data import read_csv_any
from panelsynth.describe import Step1Result, describe_wave, encode_table, format_descriptions
from panelsynth.export import parse_formats
from panelsynth.generate import (
    SYSTEM_GENERATE,
    Generation,
    GenerationPrompt,
    GenerationResult,
    GenerationSettings,
    estimate_output_tokens,
    generate_rows,
    headerless_error,
    row_keys,
    run_together,
    shared_throttle,
    with_request,
    write_csv_atomic,
)
from panelsynth.metadata import Step2Result, format_metadata, format_wave_description
from panelsynth.pydantic_models.rows import RowSpec, build_row_model, wave_row_specs
from panelsynth.run.dryrun import (
    Projector,
    ReadOnlyCache,
    StagePlan,
    WavePlan,
    count_messages,
    finished_batches,
    project_cost,
    rows_output,
    stage_plan,
)
from panelsynth.run.files import set_aside
from panelsynth.run.manifest import (
    item_nonresponse,
    reproducibility,
    write_manifest,
    write_step1_logs,
    write_step2_log,
)
from panelsynth.run.plan import RunOptions, with_run_holdout
from panelsynth.run.wave import fresh_context, load_wave_for_run, resolve_settings, with_budget


def planning_client(label: str):  # noqa: ANN201
    """The token-counting client of ``--dry-run`` (no key, no model loaded)."""
    from panelsynth.run.dryrun import planning_client as make

    return make(label)


def format_plans(plans):  # noqa: ANN001, ANN201
    from panelsynth.run.dryrun import format_plans as fmt

    return fmt(plans)


__all__ = [
    "SYSTEM_GENERATE",
    "Checkpoint",
    "Generation",
    "GenerationPrompt",
    "GenerationResult",
    "GenerationSettings",
    "Profile",
    "Projector",
    "ReadOnlyCache",
    "RowSpec",
    "RunLock",
    "RunOptions",
    "StagePlan",
    "Step1Result",
    "Step2Result",
    "StepCache",
    "WavePlan",
    "build_row_model",
    "count_messages",
    "describe_wave",
    "encode_table",
    "estimate_output_tokens",
    "finished_batches",
    "fingerprint",
    "format_descriptions",
    "format_metadata",
    "format_plans",
    "format_wave_description",
    "fresh_context",
    "generate_rows",
    "headerless_error",
    "item_nonresponse",
    "load_wave_for_run",
    "parse_formats",
    "planning_client",
    "profiled_batch_model",
    "project_cost",
    "read_csv_any",
    "reproducibility",
    "row_keys",
    "rows_output",
    "resolve_settings",
    "run_together",
    "shared_throttle",
    "stage_plan",
    "set_aside",
    "wave_row_specs",
    "with_budget",
    "with_request",
    "with_run_holdout",
    "write_csv_atomic",
    "write_manifest",
    "write_step1_logs",
    "write_step2_log",
]
