"""One wave through the three steps, with logs, checkpoint, lock and manifest (SPEC §3.2-§3.5).

:func:`run_wave` reads as the sequence it is: resolve the settings once (:mod:`panelsynth.run.
plan`), load the wave once, step 1, step 2, step 3 through its strategy (:mod:`panelsynth.
generate.strategy`), write the outputs, write the manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth import faultpoint
from panelsynth.cache import StepCache, fingerprint
from panelsynth.calibrate.strategy import CalibratedStrategy
from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.data import WaveData, load_wave
from panelsynth.describe import Step1Result, describe_wave, format_descriptions
from panelsynth.errors import (
    ConfigError,
    ContextTooSmallError,
    GenerationExhaustedError,
    PanelsynthError,
)
from panelsynth.export import export_table, wave_labels
from panelsynth.generate import (
    GenerationPrompt,
    GenerationResult,
    GenerationSettings,
    build_prompt,
    estimate_output_tokens,
    fit_prompt,
    generate_rows,
    row_keys,
    write_csv_atomic,
)
from panelsynth.generate.strategy import BatchHooks, PlainStrategy, Step3Strategy
from panelsynth.holdout import (
    HoldoutSplit,
    hold_out_respondents,
    spec_from_config,
    wave_split,
    write_ids_file,
)
from panelsynth.llm.base import LLMCallError, LLMClient
from panelsynth.llm.budget import BudgetedClient
from panelsynth.metadata import Step2Result, format_metadata, format_wave_description
from panelsynth.prepare_switch import finish_interrupted_prepare
from panelsynth.progress import Progress, emit
from panelsynth.pydantic_models.rows import (
    RowSpec,
    row_model_for_wave,
    trusted_models_dir,
    wave_row_specs,
)
from panelsynth.run.batch import BatchApiFactory, BatchBooks, check_batch, step3_batch
from panelsynth.run.failures import step_failed as _step_failed
from panelsynth.run.files import WaveFiles, open_wave_run
from panelsynth.run.manifest import (
    codebook_warning,
    item_nonresponse,
    reproducibility,
    run_cost,
    write_manifest,
    write_step1_logs,
    write_step2_log,
)
from panelsynth.run.plan import RunOptions, RunPlan, resolve_plan, with_run_holdout
from panelsynth.runner import stays_on_this_machine
from panelsynth.workspace import Mode, Workspace

__all__ = [
    "RunOptions",
    "RunPlan",
    "RunResult",
    "item_nonresponse",
    "load_wave_for_run",
    "reproducibility",
    "resolve_plan",
    "run_cost",
    "run_wave",
    "step3_prompt",
    "step3_strategy",
    "with_run_holdout",
]

log = logging.getLogger("panelsynth")


@dataclass
class RunResult:
    wave: str
    model_dir: str
    output: Path
    manifest: Path
    rows: int
    wanted: int
    manifest_data: dict[str, Any] = field(default_factory=dict)


def resolve_settings(
    config: PanelsynthConfig, opts: RunOptions, client: LLMClient
) -> tuple[Mode, int, GenerationSettings]:
    """(mode, examples per cluster, step-3 settings) of :func:`resolve_plan`."""
    plan = resolve_plan(config, opts, client)
    return plan.mode, plan.n_examples, plan.settings


def load_wave_for_run(
    ws: Workspace, wave: str, config: PanelsynthConfig, mode: Mode, *, complete_cases: bool = True
) -> WaveData:
    """Load and check a wave; in the dense mode keep complete cases only.

    The dense mode asks for rows without NA (as the seed's dense datasets had none), so its
    statistics and examples come from respondents who answered every dense variable; the cluster
    shares of every respondent are kept (``WaveData.population_shares``).
    """
    s = config.study
    wd = load_wave(
        ws,
        wave,
        mode=mode,
        missing_codes=s.missing_codes,
        study_waves=s.waves,
        cluster_column=s.cluster_column,
        prev_cluster_column=s.prev_cluster_column,
        k=config.clustering.k,
    )
    hold_out_respondents(ws, wd, config)  # --holdout: held-out ids never reach steps 1-3
    if mode == "dense" and complete_cases:
        keep_complete_cases(ws, wd, config)
    return wd


def load_run_wave(
    ws: Workspace, wave: str, config: PanelsynthConfig, mode: Mode
) -> tuple[WaveData, pd.DataFrame]:
    """The wave, loaded once: (what steps 1-3 see, every real respondent of the wave).

    Cluster shares and calibration targets come from every respondent, not only the dense
    mode's complete cases (whose cluster shares differ where non-response depends on the cluster).
    """
    wd = load_wave_for_run(ws, wave, config, mode, complete_cases=False)
    every = wd.frame
    if mode == "dense":
        keep_complete_cases(ws, wd, config)
    return wd, every


def keep_complete_cases(ws: Workspace, wd: WaveData, config: PanelsynthConfig) -> None:
    """The dense mode's respondents: those who answered every dense variable."""
    before = len(wd.frame)
    # the prompt states the clusters' shares among all respondents, not the complete cases'
    # (they differ where non-response depends on the cluster)
    wd.population_shares = wd.cluster_shares()
    wd.frame = wd.frame.dropna(subset=wd.columns)
    dropped = before - len(wd.frame)
    if dropped:
        note = (
            f"wave {wd.wave}: dense mode uses the {len(wd.frame)} complete cases; {dropped} "
            f"respondents with a missing answer or previous cluster were left out"
        )
        log.info(note)
        wd.notes.append(note)
    missing = [
        c for c in range(1, config.clustering.k + 1) if c not in set(wd.frame[wd.cluster_column])
    ]
    if missing:
        where = ws.rel(wd.source) if wd.source else f"wave {wd.wave}"
        raise PanelsynthError(
            f"{where}: cluster {missing[0]} has no complete case in the dense mode — "
            f"use --mode full or choose variables with fewer missing answers"
        )


def run_holdout_split(ws: Workspace, wave: str, config: PanelsynthConfig) -> HoldoutSplit | None:
    """The wave's held-out respondents under the run's settings (``None`` without --holdout)."""
    spec = spec_from_config(config)
    if spec is None:
        return None
    path = ws.original_data(wave)
    return wave_split(path, wave, spec, ws.rel(path))


def with_budget(
    client: LLMClient, config: PanelsynthConfig, max_cost_usd: float | None
) -> LLMClient:
    """``client`` under a spending limit (:class:`BudgetedClient`); local models cost nothing.

    Raises:
        ConfigError: a limit is set but neither ``[prices]`` nor the default table has a price
            for the model.
    """
    if max_cost_usd is None or client.is_local:
        return client
    from panelsynth.prices import price_for

    price = price_for(client.label, config)
    if price is None:
        raise ConfigError(
            f"--max-cost (generation.max_cost_usd) needs the price of {client.label}, which the "
            f'default table does not know: add [prices."{client.label}"] with input_per_mtok and '
            f"output_per_mtok to panelsynth.toml"
        )
    return BudgetedClient(
        client,
        max_cost_usd=max_cost_usd,
        input_per_mtok=price.input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        price=price,
    )


def run_wave(
    workspace: str | Path,
    wave: str,
    client: LLMClient,
    model_dir: str,
    options: RunOptions | None = None,
    *,
    config: PanelsynthConfig | None = None,
    progress: Progress | None = None,
    batch_api: BatchApiFactory | None = None,
) -> RunResult:
    """Run steps 1-3 for one wave and write the outputs of SPEC §2.

    With ``--batch`` (``RunPlan.batch``) step 3 goes through the provider's batch API
    (:mod:`panelsynth.run.batch`; ``batch_api`` builds it, default: the label's, key from the
    environment).

    Raises:
        PanelsynthError: any user-fixable problem (data, metadata, lock, exhausted budget).
    """
    ws = Workspace(workspace)
    ws.must_exist()
    finish_interrupted_prepare(ws)  # never read a half-switched set of prepare's outputs
    plan = resolve_plan(config or load_config(ws.config_path), options, client)
    client = with_budget(client, plan.config, plan.max_cost_usd)
    if plan.batch:
        check_batch(client)  # before any call
    wd, every = load_run_wave(ws, wave, plan.config, plan.mode)
    specs = wave_row_specs(wd)
    strategy = step3_strategy(plan, wd, every, specs, client)  # checked before any model call
    files = WaveFiles(ws, model_dir, wd.wave)
    ckpt = files.checkpoint
    started = time.time()
    with open_wave_run(files, plan, ckpt) as resume:
        cache = StepCache(ws.cache_dir(), enabled=plan.use_cache)
        cache.remove_stale()
        s1, s2 = run_steps_1_2(client, files, wd, plan, cache, progress)
        step3 = prepare_step3(client, files, wd, specs, s1, s2, plan, strategy)
        emit(progress, {"stage": "step3", "wanted": strategy.loop_settings.wanted})
        transport, books = step3_batch(
            plan, client, ckpt, wd.wave, progress, batch_api, hooks=step3.hooks
        )
        try:
            gen = generate_rows(
                client,
                step3.hooks,  # type: ignore[arg-type]
                step3.row_model,
                [s.name for s in specs],
                strategy.loop_settings,
                ckpt,
                header=step3.header,
                resume=resume,
                wave=wd.wave,
                progress=progress,
                max_tokens=step3.max_tokens,
                exclude_rows=step3.exclude,
                accept_headerless=plan.accept_headerless_checkpoint,
                transport=transport,
            )
        except GenerationExhaustedError as err:
            so_far = err.result if isinstance(err.result, GenerationResult) else None
            base = {**step3.base, "status": "incomplete", "error": str(err)}
            write_manifest(
                files.manifest, base, s1, s2, so_far, plan.config, client, started, batch=books
            )
            raise
        gen, step3.base["calibration"] = strategy.select(gen, step3.hooks, examples=s1.examples)
        data = write_outputs(
            client, files, wd, gen, step3.base, s1, s2, plan, strategy, started, batch=books
        )
    wanted = strategy.settings.wanted
    return RunResult(wd.wave, model_dir, files.out_csv, files.manifest, len(gen.rows), wanted, data)


def step3_strategy(
    plan: RunPlan, wd: WaveData, every: pd.DataFrame, specs: list[RowSpec], client: LLMClient
) -> Step3Strategy:
    """The step-3 method of the run: plain, or calibrated (``--calibrate``).

    Local models (schema-guided decoding, no provider prompt cache) also get each calibrated
    row's profile fixed in the response schema.
    """
    cal = plan.calibration
    if cal is None:
        return PlainStrategy(plan.settings)
    return CalibratedStrategy.create(
        every,
        specs,
        plan.settings,
        oversample=cal.oversample,
        anchors=cal.anchors,
        temperature=cal.temperature,
        demographics=plan.config.prepare.demographics,
        cluster_column=wd.cluster_column,
        profiles_in_schema=client.is_local,
    )


def run_steps_1_2(
    client: LLMClient,
    files: WaveFiles,
    wd: WaveData,
    plan: RunPlan,
    cache: StepCache,
    progress: Progress | None,
) -> tuple[Step1Result, Step2Result]:
    """Step 1 (cluster descriptions and examples) and step 2 (formatted metadata), logged."""
    ws, md = files.ws, files.model_dir
    emit(progress, {"stage": "step1"})
    fresh_context(client)
    try:
        s1 = describe_wave(
            client,
            wd,
            n_examples=plan.n_examples,
            seed=plan.settings.seed,
            cache=cache,
            examples_source=plan.examples,
        )
    except LLMCallError as err:
        raise _step_failed(wd.wave, "step 1 (cluster descriptions)", err, client) from None
    write_step1_logs(ws, md, wd, s1)
    emit(progress, {"stage": "step2"})
    fresh_context(client)
    try:
        s2 = format_metadata(
            client,
            wd,
            cache=cache,
            preferred_target=plan.config.study.outcome,
            seed=plan.settings.seed,
        )
    except LLMCallError as err:
        raise _step_failed(wd.wave, "step 2 (formatted metadata)", err, client) from None
    write_step2_log(ws, md, wd, s2)
    fresh_context(client)
    return s1, s2


@dataclass
class Step3Setup:
    """What the step-3 loop of one wave needs, and the manifest's entries known before it."""

    hooks: BatchHooks
    row_model: type[BaseModel]
    max_tokens: int
    header: dict[str, Any]
    base: dict[str, Any]
    exclude: set[tuple[Any, ...]] | None


def prepare_step3(
    client: LLMClient,
    files: WaveFiles,
    wd: WaveData,
    specs: list[RowSpec],
    s1: Step1Result,
    s2: Step2Result,
    plan: RunPlan,
    strategy: Step3Strategy,
) -> Step3Setup:
    """The fitted prompt, the row model, the checkpoint header and the manifest's base."""
    ws, model_dir = files.ws, files.model_dir
    models_dir, models_note = trusted_models_dir(
        ws.user_models_dir(), wd.wave, plan.trust_workspace_models
    )
    row_model, row_source = row_model_for_wave(strategy.row_specs(specs), models_dir, wd.wave)
    prompt, max_tokens = step3_prompt(client, wd, s1, s2, strategy, specs)
    hooks = strategy.bind(prompt, row_model)
    settings = strategy.settings
    header: dict[str, Any] = {
        "wave": wd.wave,
        "mode": plan.mode,
        "model": client.label,
        "n_outputs": settings.n_outputs,
        "n_batches": settings.n_batches,
        "seed": settings.seed,
    }
    # only when set, so checkpoints of earlier versions still resume
    if plan.examples != "real":
        header["examples"] = plan.examples
    if plan.drop_copies:
        header["drop_copies"] = True
    if settings.temperature != GenerationSettings.temperature:
        header["temperature"] = settings.temperature
    header.update(strategy.header())
    if getattr(client, "endpoint_host", None):  # where the rows go (--base-url)
        header["endpoint"] = client.endpoint_host
    split = run_holdout_split(ws, wd.wave, plan.config)
    if split is not None:
        header["holdout"] = split.spec.to_json()
    header["fingerprint"] = fingerprint(header, hooks.prefix, row_model.model_json_schema())
    if split is not None:  # recorded before any step-3 call, so an unfinished run has it too
        write_ids_file(ws.holdout_ids(), split, model_dir)
    columns = [s.name for s in specs]
    exclude = (
        row_keys(wd.frame, columns) | row_keys(s1.examples, columns) if plan.drop_copies else None
    )
    base = _manifest_base(client, files, wd, s1, s2, plan, strategy, hooks, max_tokens)
    base["row_model"] = row_source
    base["warnings"] += models_note
    base["holdout"] = (
        {**split.summary(), "ids_file": ws.rel(ws.holdout_ids())}
        if split is not None
        else {"enabled": False}
    )
    return Step3Setup(hooks, row_model, max_tokens, header, base, exclude)


def _manifest_base(
    client: LLMClient,
    files: WaveFiles,
    wd: WaveData,
    s1: Step1Result,
    s2: Step2Result,
    plan: RunPlan,
    strategy: Step3Strategy,
    hooks: BatchHooks,
    max_tokens: int,
) -> dict[str, Any]:
    """The manifest's entries known before step 3 (settings, warnings, examples, ...)."""
    settings = strategy.settings
    n_real = int(len(s1.examples)) if plan.examples == "real" else 0
    return {
        "wave": wd.wave,
        "model": client.label,
        "model_dir": files.model_dir,
        "mode": plan.mode,
        "row_model": None,
        "target_variable": s2.description.target_variable,
        "settings": {
            "n_examples": plan.n_examples,
            "n_examples_used": hooks.n_examples_used,
            "n_outputs": settings.n_outputs,
            "n_batches": settings.n_batches,
            "seed": settings.seed,
            "temperature": strategy.loop_settings.temperature,
            "max_tokens": max_tokens,
            "concurrency": settings.concurrency,
            "requests_per_minute": settings.requests_per_minute,
            "tokens_per_minute": settings.tokens_per_minute,
            "max_calls": settings.max_calls,
            "examples": plan.examples,
            "drop_copies": plan.drop_copies,
            "max_cost_usd": plan.max_cost_usd,
        },
        "warnings": (wd.notes + s1.warnings + s2.notes + codebook_warning(s2) + list(hooks.notes)),
        "codebook_check": s2.codebook,
        "step1_calls": [{"clusters": cs, "variables": len(vs)} for cs, vs in s1.parts],
        "reproducibility": reproducibility(client, settings.concurrency),
        "real_rows_used": int(len(wd.frame)),
        "examples": {
            "source": plan.examples,
            "rows": int(len(s1.examples)),
            "real_rows_in_prompt": n_real,
            "third_party": not stays_on_this_machine(client),
        },
        "calibration": strategy.manifest_section(),
        "holdout": None,
    }


def write_outputs(
    client: LLMClient,
    files: WaveFiles,
    wd: WaveData,
    gen: GenerationResult,
    base: dict[str, Any],
    s1: Step1Result,
    s2: Step2Result,
    plan: RunPlan,
    strategy: Step3Strategy,
    started: float,
    batch: BatchBooks | None = None,
) -> dict[str, Any]:
    """The CSV (a kill after it: the next run rebuilds the manifest), exports and manifest."""
    ws, out_csv = files.ws, files.out_csv
    write_csv_atomic(gen.rows, out_csv)
    faultpoint.reach("after-csv")  # a kill here: the next run rebuilds the manifest
    if plan.mode == "full":
        calibrated = strategy.draws_missing_patterns
        na = item_nonresponse(wd, gen.rows, calibrated=calibrated)
        base["item_nonresponse"] = na
        if not calibrated and na["gap"] <= -0.02:
            note = (
                f"wave {wd.wave}: the synthetic rows leave {na['synthetic_mean_na_share']:.1%}"
                f" of answers missing, the real ones {na['real_mean_na_share']:.1%} "
                f"(item non-response gap; --calibrate draws the real patterns)"
            )
            log.warning(note)
            base["warnings"].append(note)
    labels = wave_labels(
        wd.metadata, gen.rows.columns, wd.cluster_column, wd.prev_cluster_column, wd.clusters
    )
    exports = export_table(gen.rows, labels, out_csv, plan.formats)
    done: dict[str, Any] = {"status": "complete", "output": ws.rel(out_csv)}
    if exports:
        done["exports"] = [ws.rel(p) for p in exports]
    return write_manifest(
        files.manifest, {**base, **done}, s1, s2, gen, plan.config, client, started, batch=batch
    )


def step3_prompt(
    client: LLMClient,
    wd: WaveData,
    s1: Step1Result,
    s2: Step2Result,
    strategy: Step3Strategy,
    specs: list[RowSpec] | None = None,
) -> tuple[GenerationPrompt, int]:
    """The step-3 prompt fitted into the model's context, and the output tokens per call.

    The strategy shapes the prefix (a calibrated run shows the examples in the row schema's
    order and adds the profile rule) and the room its per-call suffix needs. When even one
    example per cluster leaves no room for the rows, fewer rows are asked per call (in more
    calls). ``panelsynth run`` and its ``--dry-run`` both build the prompt here.
    """
    specs = specs if specs is not None else wave_row_specs(wd)
    metadata_text = format_wave_description(s2.description, wd)
    descriptions_text = format_descriptions(s1.descriptions)

    def build(ex: pd.DataFrame) -> list[dict[str, str]]:
        return strategy.build_prefix(
            lambda e: build_prompt(wd, metadata_text, descriptions_text, e, specs), ex
        )

    asked = strategy.settings
    rows = asked.n_outputs
    while True:
        max_tokens = asked.max_tokens or estimate_output_tokens(client, s1.examples, rows)
        try:
            prompt = fit_prompt(
                client,
                build,
                s1.examples,
                wd.cluster_column,
                rows,
                max_tokens + strategy.reserve_tokens(client),
                quiet=True,
            )
            break
        except ContextTooSmallError:
            # even one example per cluster leaves no room for the rows: ask for fewer per call
            if rows <= 1 or asked.max_tokens:
                raise
            rows = max(1, rows // 2)
    if rows != asked.n_outputs:
        strategy.fewer_rows(rows)
        prompt.notes.append(
            f"wave {wd.wave}: {asked.n_outputs} rows per step-3 call do not fit the "
            f"{getattr(client, 'context_window', None)}-token context of {client.label} even "
            f"with one example per cluster: {rows} rows per call instead, "
            f"{strategy.settings.n_batches} calls"
        )
    for note in prompt.notes:
        log.warning(note)
    return prompt, max_tokens


def fresh_context(client: LLMClient) -> None:
    """Clear an in-process model's reused prompt state before a stage (reproducibility).

    llama.cpp reuses the cached prefix of the previous prompt and evaluates only the rest; where
    the evaluation starts changes its batching and, with it, the last bits of the logits. A stage
    that starts from an empty context evaluates the same tokens the same way whatever ran before
    (another wave, or a step taken from the cache), so a seeded run is byte-identical.
    """
    reset = getattr(client, "reset_context", None)
    if callable(reset):
        reset()
