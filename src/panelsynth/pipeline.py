"""One wave through the three steps, with logs, checkpoint, lock and manifest (SPEC §3.2-§3.5)."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth import faultpoint
from panelsynth.cache import StepCache, fingerprint
from panelsynth.calibrate import CalibrationSetup, add_profile_rule, setup_calibration
from panelsynth.checkpoint import Checkpoint, RunLock, keep_aside
from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.data import WaveData, load_wave
from panelsynth.describe import (
    DEFAULT_N_EXAMPLES,
    Step1Result,
    describe_wave,
    encode_table,
    format_descriptions,
    format_statistics,
)
from panelsynth.errors import (
    ConfigError,
    ContextTooSmallError,
    GenerationExhaustedError,
    PanelsynthError,
)
from panelsynth.export import EXPORT_FORMATS, export_table, parse_formats, wave_labels
from panelsynth.generate import (
    GenerationPrompt,
    GenerationResult,
    GenerationSettings,
    build_prompt,
    estimate_output_tokens,
    fit_prompt,
    generate_rows,
    headerless_error,
    row_keys,
    write_csv_atomic,
)
from panelsynth.holdout import (
    HoldoutSplit,
    check_share,
    hold_out_respondents,
    spec_from_config,
    wave_split,
    write_ids_file,
)
from panelsynth.io import atomic_write_text, remove_stale_temporaries
from panelsynth.llm.base import LLMCallError, LLMClient, Usage
from panelsynth.llm.budget import BudgetedClient
from panelsynth.llm.keys import scrub, scrub_data
from panelsynth.metadata import Step2Result, format_metadata, format_wave_description
from panelsynth.prepare_switch import finish_interrupted_prepare
from panelsynth.progress import Progress
from panelsynth.pydantic_models.rows import row_model_for_wave, trusted_models_dir, wave_row_specs
from panelsynth.runner import stays_on_this_machine
from panelsynth.workspace import Mode, Workspace

log = logging.getLogger("panelsynth")


DEFAULT_CONCURRENCY_HOSTED = 8
#: Rows per step-3 call when neither the flag nor the config sets them. The original asked for 10;
#: a hosted model writes 20 rows (~2,000 output tokens) as easily, and every call re-sends the
#: codebook, the cluster descriptions and the examples, so 20 halves the input tokens per row. The
#: in-process model keeps 10: its context is small and its output slow.
DEFAULT_N_OUTPUTS = {"local": 10, "hosted": 20}
#: Rows of a wave when the number of calls is not set: the original's 70 calls x 10 rows.
DEFAULT_WAVE_ROWS = 700


@dataclass
class RunOptions:
    """Settings of ``panelsynth run``; ``None`` means: take the config's value."""

    mode: Mode | None = None
    n_examples: int | None = None
    n_outputs: int | None = None
    n_batches: int | None = None
    seed: int | None = None
    concurrency: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    resume: bool = False
    restart: bool = False
    use_cache: bool = True
    examples: str | None = None
    drop_copies: bool | None = None
    max_cost_usd: float | None = None
    calibrate: bool | None = None
    oversample: float | None = None
    anchors: list[str] | None = None
    #: Resume a checkpoint whose header is missing or unreadable (it cannot be checked).
    accept_headerless_checkpoint: bool = False
    #: Import the workspace's ``pydantic_models/*.py`` (code) — only when the user says so.
    trust_workspace_models: bool = False
    #: Output formats besides the CSV (always written): ``sav``, ``dta``, ``parquet``.
    formats: list[str] | None = None
    holdout: float | None = None


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
    g = config.generation
    mode: Mode = opts.mode or g.mode
    n_examples = opts.n_examples or g.n_examples or DEFAULT_N_EXAMPLES[mode]
    concurrency = (
        opts.concurrency or g.concurrency or (1 if client.is_local else DEFAULT_CONCURRENCY_HOSTED)
    )
    n_outputs = (
        opts.n_outputs or g.n_outputs or DEFAULT_N_OUTPUTS["local" if client.is_local else "hosted"]
    )
    settings = GenerationSettings(
        n_outputs=n_outputs,
        n_batches=opts.n_batches or g.n_batches or math.ceil(DEFAULT_WAVE_ROWS / n_outputs),
        seed=g.seed if opts.seed is None else opts.seed,
        temperature=g.temperature if opts.temperature is None else opts.temperature,
        max_tokens=opts.max_tokens or g.max_tokens,
        concurrency=concurrency,
        max_attempts_factor=g.max_attempts_factor,
        requests_per_minute=opts.requests_per_minute or g.requests_per_minute,
        tokens_per_minute=opts.tokens_per_minute or g.tokens_per_minute,
    )
    return mode, n_examples, settings


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
            c
            for c in range(1, config.clustering.k + 1)
            if c not in set(wd.frame[wd.cluster_column])
        ]
        if missing:
            where = ws.rel(wd.source) if wd.source else f"wave {wd.wave}"
            raise PanelsynthError(
                f"{where}: cluster {missing[0]} has no complete case in the dense mode — "
                f"use --mode full or choose variables with fewer missing answers"
            )
    return wd


def with_run_holdout(config: PanelsynthConfig, opts: RunOptions, seed: int) -> PanelsynthConfig:
    """The config with ``--holdout`` applied and the split seeded by the run's seed."""
    g = config.generation
    share = check_share(g.holdout if opts.holdout is None else opts.holdout)
    if share == g.holdout and (not share or seed == g.seed):
        return config
    gen = g.model_copy(update={"holdout": share, "seed": seed})
    return config.model_copy(update={"generation": gen})


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
) -> RunResult:
    """Run steps 1-3 for one wave and write the outputs of SPEC §2.

    Raises:
        PanelsynthError: any user-fixable problem (data, metadata, lock, exhausted budget).
    """
    opts = options or RunOptions()
    ws = Workspace(workspace)
    ws.must_exist()
    finish_interrupted_prepare(ws)  # never read a half-switched set of prepare's outputs
    config = config or load_config(ws.config_path)
    mode, n_examples, settings = resolve_settings(config, opts, client)
    config = with_run_holdout(config, opts, settings.seed)
    g = config.generation
    examples_source = opts.examples or g.examples
    if examples_source not in ("real", "synthetic"):
        raise ConfigError(f"examples must be real or synthetic, not {examples_source!r}")
    drop_copies = g.drop_copies if opts.drop_copies is None else opts.drop_copies
    max_cost = g.max_cost_usd if opts.max_cost_usd is None else opts.max_cost_usd
    client = with_budget(client, config, max_cost)
    formats = parse_formats(opts.formats)
    wd = load_wave_for_run(ws, wave, config, mode)
    calib = calibration_setup(ws, config, opts, wd, settings, client)  # None unless --calibrate
    out_csv = ws.output_csv(model_dir, wd.wave)
    ckpt = Checkpoint(ws.checkpoint(model_dir, wd.wave))
    manifest_path = ws.manifest(model_dir, wd.wave)
    if opts.restart and opts.resume:
        raise PanelsynthError("--resume and --restart exclude each other — pick one")
    ws.refuse_links(*_written_paths(ws, model_dir, wd.wave))
    started = time.time()
    # The lock comes first: a second concurrent run is told who holds it, not about its files.
    with RunLock(ws.lock(model_dir, wd.wave), f"wave {wd.wave} of {model_dir}"):
        _remove_stale_temporaries(ws, model_dir, wd.wave)
        resume = opts.resume or _rebuild_manifest(ws, out_csv, manifest_path, ckpt, opts)
        if out_csv.exists() and not (resume or opts.restart):
            raise PanelsynthError(
                f"{ws.rel(out_csv)} already exists — pass --restart to generate it again (the old "
                f"checkpoint is kept aside) or use another --model-dir"
            )
        if ckpt.exists() and not (resume or opts.restart):
            _, recs = ckpt.load()
            raise PanelsynthError(
                f"an unfinished run of wave {wd.wave} for {model_dir} has {len(recs)} finished "
                f"calls in {ws.rel(ckpt.path)} — pass --resume to continue it or --restart to "
                f"start over"
            )
        if resume and ckpt.exists() and not opts.accept_headerless_checkpoint:
            old_header, records = ckpt.load()  # refused before steps 1-2 cost anything
            if old_header is None:
                raise headerless_error(ckpt, records)
        if opts.restart:
            _set_aside(ws, ckpt, manifest_path)
        cache = StepCache(ws.cache_dir(), enabled=opts.use_cache)
        cache.remove_stale()
        _emit(progress, {"stage": "step1"})
        fresh_context(client)
        try:
            s1 = describe_wave(
                client,
                wd,
                n_examples=n_examples,
                seed=settings.seed,
                cache=cache,
                examples_source=examples_source,
            )
        except LLMCallError as err:
            raise _step_failed(wd.wave, "step 1 (cluster descriptions)", err, client) from None
        _write_step1_logs(ws, model_dir, wd, s1)
        _emit(progress, {"stage": "step2"})
        fresh_context(client)
        try:
            s2 = format_metadata(
                client,
                wd,
                cache=cache,
                preferred_target=config.study.outcome,
                seed=settings.seed,
            )
        except LLMCallError as err:
            raise _step_failed(wd.wave, "step 2 (formatted metadata)", err, client) from None
        _write_step2_log(ws, model_dir, wd, s2)
        fresh_context(client)

        specs = wave_row_specs(wd)
        models_dir, models_note = trusted_models_dir(
            ws.user_models_dir(), wd.wave, opts.trust_workspace_models
        )
        row_model, row_source = row_model_for_wave(
            calib.row_specs() if calib else specs, models_dir, wd.wave
        )
        columns = [s.name for s in specs]
        prompt, max_tokens = step3_prompt(client, wd, s1, s2, settings, calib, row_model)
        header = {
            "wave": wd.wave,
            "mode": mode,
            "model": client.label,
            "n_outputs": settings.n_outputs,
            "n_batches": settings.n_batches,
            "seed": settings.seed,
        }
        # only when set, so checkpoints of earlier versions still resume
        if examples_source != "real":
            header["examples"] = examples_source
        if drop_copies:
            header["drop_copies"] = True
        if settings.temperature != GenerationSettings.temperature:
            header["temperature"] = settings.temperature
        if calib:
            header["calibrate"] = {**calib.settings(), "profiles": calib.profiles_fingerprint()}
        if getattr(client, "endpoint_host", None):  # where the rows go (--base-url)
            header["endpoint"] = client.endpoint_host
        split = run_holdout_split(ws, wd.wave, config)
        if split is not None:
            header["holdout"] = split.spec.to_json()
        header["fingerprint"] = fingerprint(header, prompt.prefix, row_model.model_json_schema())
        gen_settings = calib.pool_settings if calib else settings
        if split is not None:  # recorded before any step-3 call, so an unfinished run has it too
            write_ids_file(ws.holdout_ids(), split, model_dir)
        _emit(progress, {"stage": "step3", "wanted": gen_settings.wanted})
        base = {
            "wave": wd.wave,
            "model": client.label,
            "model_dir": model_dir,
            "mode": mode,
            "row_model": row_source,
            "target_variable": s2.description.target_variable,
            "settings": {
                "n_examples": n_examples,
                "n_examples_used": prompt.n_examples_used,
                "n_outputs": settings.n_outputs,
                "n_batches": settings.n_batches,
                "seed": settings.seed,
                "temperature": gen_settings.temperature,
                "max_tokens": max_tokens,
                "concurrency": settings.concurrency,
                "requests_per_minute": settings.requests_per_minute,
                "tokens_per_minute": settings.tokens_per_minute,
                "max_calls": settings.max_calls,
                "examples": examples_source,
                "drop_copies": drop_copies,
                "max_cost_usd": max_cost,
            },
            "warnings": (
                wd.notes
                + s1.warnings
                + s2.notes
                + _codebook_warning(s2)
                + prompt.notes
                + models_note
            ),
            "codebook_check": s2.codebook,
            "step1_calls": [{"clusters": cs, "variables": len(vs)} for cs, vs in s1.parts],
            "reproducibility": reproducibility(client, settings.concurrency),
            "real_rows_used": int(len(wd.frame)),
            "examples": {
                "source": examples_source,
                "rows": int(len(s1.examples)),
                "real_rows_in_prompt": int(len(s1.examples)) if examples_source == "real" else 0,
                "third_party": not stays_on_this_machine(client),
            },
            "calibration": calib.settings() if calib else {"enabled": False},
            "holdout": (
                {**split.summary(), "ids_file": ws.rel(ws.holdout_ids())}
                if split is not None
                else {"enabled": False}
            ),
        }
        try:
            gen = generate_rows(
                client,
                prompt,
                row_model,
                columns,
                gen_settings,
                ckpt,
                header=header,
                resume=resume,
                wave=wd.wave,
                progress=progress,
                max_tokens=max_tokens,
                exclude_rows=(
                    row_keys(wd.frame, columns) | row_keys(s1.examples, columns)
                    if drop_copies
                    else None
                ),
                accept_headerless=opts.accept_headerless_checkpoint,
            )
        except GenerationExhaustedError as err:
            _write_manifest(
                manifest_path,
                {**base, "status": "incomplete", "error": str(err)},
                s1,
                s2,
                err.result if isinstance(err.result, GenerationResult) else None,
                config,
                client,
                started,
            )
            raise
        if calib:
            gen, base["calibration"] = calib.apply(gen, prompt, examples=s1.examples)
        write_csv_atomic(gen.rows, out_csv)
        faultpoint.reach("after-csv")  # a kill here: the next run rebuilds the manifest
        if mode == "full":
            na = item_nonresponse(wd, gen.rows, calibrated=calib is not None)
            base["item_nonresponse"] = na
            if calib is None and na["gap"] <= -0.02:
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
        exports = export_table(gen.rows, labels, out_csv, formats)
        done = {"status": "complete", "output": ws.rel(out_csv)}
        if exports:
            done["exports"] = [ws.rel(p) for p in exports]
        data = _write_manifest(
            manifest_path,
            {**base, **done},
            s1,
            s2,
            gen,
            config,
            client,
            started,
        )
    return RunResult(
        wd.wave, model_dir, out_csv, manifest_path, len(gen.rows), settings.wanted, data
    )


def step3_prompt(
    client: LLMClient,
    wd: WaveData,
    s1: Step1Result,
    s2: Step2Result,
    settings: GenerationSettings,
    calib: CalibrationSetup | None,
    row_model: type[BaseModel],
) -> tuple[GenerationPrompt, int]:
    """The step-3 prompt fitted into the model's context, and the output tokens per call.

    Calibrated runs show the examples in the row schema's order (cluster and anchors first), add
    the profile rule and keep room for the per-call profile lines. ``panelsynth run`` and its
    ``--dry-run`` both build the prompt here.
    """
    specs = wave_row_specs(wd)
    metadata_text = format_wave_description(s2.description, wd)
    descriptions_text = format_descriptions(s1.descriptions)

    def build(ex: pd.DataFrame) -> list[dict[str, str]]:
        if calib is None:
            return build_prompt(wd, metadata_text, descriptions_text, ex, specs)
        ex = ex[calib.prompt_columns()]
        return add_profile_rule(
            build_prompt(wd, metadata_text, descriptions_text, ex, specs),
            patterns=bool(calib.design.pattern_columns),
        )

    rows = settings.n_outputs
    while True:
        max_tokens = settings.max_tokens or estimate_output_tokens(client, s1.examples, rows)
        try:
            prompt = fit_prompt(
                client,
                build,
                s1.examples,
                wd.cluster_column,
                rows,
                max_tokens + (calib.suffix_tokens(client) if calib else 0),
                quiet=True,
            )
            break
        except ContextTooSmallError:
            # even one example per cluster leaves no room for the rows: ask for fewer per call
            if rows <= 1 or settings.max_tokens:
                raise
            rows = max(1, rows // 2)
    if rows != settings.n_outputs:
        prompt.notes.append(_fewer_rows(client, wd.wave, settings, rows, calib))
    for note in prompt.notes:
        log.warning(note)
    if calib:
        prompt = calib.wrap(prompt, row_model=row_model)
    return prompt, max_tokens


def _fewer_rows(
    client: LLMClient,
    wave: str,
    settings: GenerationSettings,
    rows: int,
    calib: CalibrationSetup | None,
) -> str:
    """Ask for ``rows`` rows per step-3 call, in more calls (the wave keeps its rows)."""
    note = (
        f"wave {wave}: {settings.n_outputs} rows per step-3 call do not fit the "
        f"{getattr(client, 'context_window', None)}-token context of {client.label} even with "
        f"one example per cluster: {rows} rows per call instead"
    )
    for s in (settings, *((calib.pool_settings,) if calib else ())):
        wanted = s.wanted
        s.n_outputs = rows
        s.n_batches = math.ceil(wanted / rows)
    return note + f", {settings.n_batches} calls"


def calibration_setup(
    ws: Workspace,
    config: PanelsynthConfig,
    opts: RunOptions,
    wd: WaveData,
    settings: GenerationSettings,
    client: LLMClient,
) -> CalibrationSetup | None:
    """The calibrated mode's setup (``None`` when off), checked before any model call.

    Cluster shares and anchors come from every respondent of the wave, not only the dense mode's
    complete cases (whose cluster shares differ where non-response depends on the cluster).
    Local models (schema-guided decoding, no provider prompt cache) also get each row's profile
    fixed in the response schema. Without a temperature set by the user, the pool is sampled at
    ``calibrate.POOL_TEMPERATURE`` (a more diverse pool gives the selection more to choose from).
    """
    g = config.generation
    if not (g.calibrate if opts.calibrate is None else opts.calibrate):
        return None
    every = load_wave_for_run(ws, wd.wave, config, wd.mode, complete_cases=False).frame
    specs = wave_row_specs(wd)
    return setup_calibration(
        every,
        specs,
        settings,
        oversample=opts.oversample or g.oversample,
        anchors=opts.anchors if opts.anchors is not None else g.anchors,
        demographics=config.prepare.demographics,
        cluster_column=wd.cluster_column,
        profiles_in_schema=client.is_local,
        # a temperature the user set is kept; otherwise the pool is sampled more diversely
        temperature=(
            settings.temperature
            if opts.temperature is not None or "temperature" in g.model_fields_set
            else None
        ),
    )


def _wave_files(ws: Workspace, model_dir: str, wave: str) -> tuple[Path, ...]:
    """Every file a run of ``wave`` writes: outputs (exports included), logs, checkpoint."""
    out_csv = ws.output_csv(model_dir, wave)
    return (
        out_csv,
        *(out_csv.with_suffix(f".{f}") for f in EXPORT_FORMATS),
        ws.manifest(model_dir, wave),
        ws.cluster_descriptions_log(model_dir, wave),
        ws.examples_log(model_dir, wave),
        ws.examples_csv(model_dir, wave),
        ws.gen_metadata_log(model_dir, wave),
        ws.checkpoint(model_dir, wave),
    )


def _remove_stale_temporaries(ws: Workspace, model_dir: str, wave: str) -> None:
    """Remove half-written temporary files a killed run left next to this wave's outputs.

    Called with the wave's lock held, so no living writer owns them.
    """
    for path in _wave_files(ws, model_dir, wave):
        remove_stale_temporaries(path)


def _written_paths(ws: Workspace, model_dir: str, wave: str) -> tuple[Path, ...]:
    """Every path a run of ``wave`` writes (none of them, nor their folders, may be a link)."""
    return (*_wave_files(ws, model_dir, wave), ws.lock(model_dir, wave), ws.cache_dir())


def _rebuild_manifest(
    ws: Workspace, out_csv: Path, manifest_path: Path, ckpt: Checkpoint, opts: RunOptions
) -> bool:
    """Whether a plain run finds a CSV without its manifest (a run killed between the two) and a
    checkpoint to rebuild it from: then it resumes, which pays no call again."""
    if opts.resume or opts.restart or not out_csv.exists() or manifest_path.exists():
        return False
    if not ckpt.exists():
        return False
    log.warning(
        "%s has no manifest (its run was stopped after writing it): rebuilding the manifest from "
        "the checkpoint %s, as --resume does — no call is paid again",
        ws.rel(out_csv),
        ws.rel(ckpt.path),
    )
    return True


def _set_aside(ws: Workspace, ckpt: Checkpoint, manifest_path: Path) -> None:
    """``--restart``: move the checkpoint aside and keep a copy of the manifest next to it, so a
    restart that fails keeps the previous run's books (settings, tokens, cost)."""
    moved = ckpt.archive() if ckpt.exists() else None
    if moved is not None:
        log.info("previous checkpoint kept as %s", ws.rel(moved))
    kept = keep_aside(manifest_path, moved or ckpt.path)
    if kept is not None:
        log.info("previous manifest kept as %s", ws.rel(kept))


def _step_failed(
    wave: str, step: str, err: LLMCallError, client: LLMClient | None = None
) -> PanelsynthError:
    """One actionable line for a step-1/2 call that failed for good (retries exhausted).

    The hint fits the step and the model: steps 1-2 write descriptions, not rows, so a reply cut
    off by the token limit is about the number of variables and the model's context; a local
    model has no key or server to check.
    """
    local = bool(getattr(client, "is_local", False))
    text = scrub(str(err))
    if err.kind == "unsupported_request":  # the line already names the field and the mode
        return PanelsynthError(f"wave {wave}: {step} failed: {text}")
    if err.kind in ("truncated", "context_overflow"):
        text = text.split("; ", 1)[0] if err.kind == "truncated" else text.split("; use ", 1)[0]
        window = getattr(client, "context_window", None)
        room = f"the {window}-token context of the model" if window else "the model's output limit"
        what = "descriptions" if step.startswith("step 1") else "formatted metadata"
        hint = (
            f"the {what} of this wave's variables do not fit {room}; use fewer variables in "
            f"types_wave{wave}.json or a model with a longer context, and rerun"
        )
    elif local:
        hint = (
            "check the model file and free memory (`panelsynth run --dry-run` shows whether the "
            "prompts fit), and rerun"
        )
    elif err.kind == "auth":
        hint = "fix the API key and rerun"
    elif err.kind in ("connection", "timeout", "server_error", "rate_limit"):
        hint = "check the server or the provider's status (and --base-url), and rerun"
    else:
        hint = "fix the cause (key, model name, server) and rerun"
    return PanelsynthError(
        f"wave {wave}: {step} failed: {text} — {hint}; nothing was generated yet"
    )


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


def reproducibility(client: LLMClient, concurrency: int) -> dict[str, Any]:
    """Whether the same inputs and ``--seed`` give the same outputs with ``client`` (manifest)."""
    seeded = bool(getattr(client, "supports_seed", False))
    if client.is_local:
        ordered = concurrency <= 1
        return {
            "reproducible": ordered and seeded,
            "seeded_calls": seeded,
            "note": (
                "in-process model: every call's sampler is seeded from --seed and its batch "
                "index, calls run in order; the same inputs, seed and model file give "
                "byte-identical outputs"
                if ordered
                else f"in-process model with --concurrency {concurrency}: calls are seeded but "
                "their order (and so the reused prompt state) varies; use --concurrency 1"
            ),
        }
    if seeded:
        return {
            "reproducible": False,
            "seeded_calls": True,
            "note": "hosted model: the seed is sent with every call, but the provider does not "
            "guarantee identical replies (best effort)",
        }
    return {
        "reproducible": False,
        "seeded_calls": False,
        "note": f"{client.label} takes no seed: replies vary between runs",
    }


def item_nonresponse(wd: WaveData, rows: pd.DataFrame, *, calibrated: bool) -> dict[str, Any]:
    """NA share of every variable, real vs synthetic, and the mean gap (full-mode manifest).

    The plain mode leaves item non-response to the model, which rarely writes a missing answer:
    the gap is reported, not hidden. The calibrated mode draws each row's pattern of missing
    answers from the real respondents of its cluster.
    """
    per: dict[str, dict[str, float]] = {}
    for v in wd.variables:
        real = float(wd.frame[v].isna().mean()) if len(wd.frame) else 0.0
        syn = float(rows[v].isna().mean()) if v in rows.columns and len(rows) else 0.0
        per[v] = {"real": round(real, 4), "synthetic": round(syn, 4)}
    real_mean = sum(d["real"] for d in per.values()) / max(1, len(per))
    syn_mean = sum(d["synthetic"] for d in per.values()) / max(1, len(per))
    return {
        "method": (
            "calibrated: each row's missing answers follow the pattern of a real respondent of "
            "its cluster"
            if calibrated
            else "plain: the model decides which answers are missing (it rarely leaves one "
            "blank); compare the shares below, or use --calibrate"
        ),
        "real_mean_na_share": round(real_mean, 4),
        "synthetic_mean_na_share": round(syn_mean, 4),
        "gap": round(syn_mean - real_mean, 4),
        "per_variable": per,
    }


def _codebook_warning(s2: Step2Result) -> list[str]:
    if not s2.codebook:
        return []
    return [
        f"step 2 disagrees with the codebook in {len(s2.codebook)} place(s); the step-3 prompt "
        f"uses the codebook's questions and labels (see codebook_check)"
    ]


def _emit(progress: Progress | None, event: dict[str, Any]) -> None:
    if progress:
        progress(event)


def _write_step1_logs(ws: Workspace, model_dir: str, wd: WaveData, s1: Step1Result) -> None:
    lines = [f"Wave {wd.wave} cluster descriptions ({wd.mode} mode)", ""]
    if len(s1.parts) > 1:
        lines[1:1] = [f"Described in {len(s1.parts)} calls (per cluster / group of variables)."]
    lines.append("Summary statistics:")
    for c, per_var in s1.statistics.items():
        lines.append(f"Cluster {c}:")
        lines += [f"- {v}: {format_statistics(s)}" for v, s in per_var.items()]
    lines += ["", "Descriptions:", format_descriptions(s1.descriptions), ""]
    atomic_write_text(ws.cluster_descriptions_log(model_dir, wd.wave), scrub("\n".join(lines)))
    ex_lines = [f"Wave {wd.wave} examples ({len(s1.examples)} rows)", ""]
    if s1.examples_source == "synthetic":
        ex_lines[1:1] = [
            "Synthetic examples: each variable drawn from its cluster's statistics (NA share "
            "included); no real respondent's row.",
        ]
    for c in wd.clusters:
        sub = s1.examples[s1.examples[wd.cluster_column] == c]
        ex_lines += [f"Cluster {c} ({len(sub)} examples):", encode_table(sub), ""]
    ex_lines += [f"Warning: {w}" for w in s1.warnings]
    atomic_write_text(ws.examples_log(model_dir, wd.wave), "\n".join(ex_lines) + "\n")
    atomic_write_text(ws.examples_csv(model_dir, wd.wave), s1.examples.to_csv(index=False))


def _write_step2_log(ws: Workspace, model_dir: str, wd: WaveData, s2: Step2Result) -> None:
    text = (
        f"Wave {wd.wave} generated metadata\n\n"
        + format_wave_description(s2.description, wd)
        + "\n\nStructured output (WaveDescription):\n"
        + s2.description.model_dump_json(indent=2)
        + "\n"
    )
    if s2.codebook:
        text += "\nChecked against the codebook (the codebook is used in step 3):\n" + "".join(
            f"- {line}\n" for line in s2.codebook
        )
    elif s2.description.features:
        text += "\nChecked against the codebook: no disagreement.\n"
    atomic_write_text(ws.gen_metadata_log(model_dir, wd.wave), scrub(text))


def _stage_usage(usage: Usage, calls: int, cached: bool) -> dict[str, Any]:
    d = usage.to_dict()
    d.update({"calls": calls, "cached": cached})
    return d


def _write_manifest(
    path: Path,
    base: dict[str, Any],
    s1: Step1Result,
    s2: Step2Result,
    gen: GenerationResult | None,
    config: PanelsynthConfig,
    client: LLMClient,
    started: float,
) -> dict[str, Any]:
    calls = []
    if s1.calls:
        calls.append({"stage": "step1", "batch": None, "ok": True, **s1.usage.to_dict()})
    if s2.calls:
        calls.append({"stage": "step2", "batch": None, "ok": True, **s2.usage.to_dict()})
    step3 = Usage(attempts=0)
    if gen is not None:
        for c in sorted(gen.calls, key=lambda c: c.batch or 0):
            calls.append(
                {
                    "stage": "step3",
                    "batch": c.batch,
                    "ok": c.ok,
                    "kind": c.kind,
                    **c.usage.to_dict(),
                }
            )
            step3.add(c.usage)
    stages = {
        "step1": _stage_usage(s1.usage, s1.calls, s1.cached),
        "step2": _stage_usage(s2.usage, s2.calls, s2.cached),
        "step3": _stage_usage(step3, len(gen.calls) if gen else 0, False),
    }
    total_in = sum(c["input_tokens"] for c in calls)
    total_out = sum(c["output_tokens"] for c in calls)
    cost = run_cost(config, client, stages)
    data = {
        **base,
        "rows": int(len(gen.rows)) if gen else None,
        "wanted": base["settings"]["n_outputs"] * base["settings"]["n_batches"],
        "invalid_rows": gen.invalid_rows if gen else None,
        "returned_rows": gen.returned_rows if gen else None,
        "failed_calls": gen.failed_calls if gen else None,
        "faults": gen.faults if gen else {},
        "throttle": gen.throttle if gen else {},
        "copies_dropped": gen.copies_dropped if gen else None,
        "resumed_batches": gen.resumed_batches if gen else 0,
        # replies whose token usage was missing or implausible and estimated from the text
        "usage_estimated": sum(int(c.get("estimated", 0)) for c in calls),
        "retries": sum(c["retries"] for c in calls),
        "reasks": sum(c["reasks"] for c in calls),
        "tokens": {"input": total_in, "output": total_out, "per_stage": stages},
        "cost": cost,
        "wall_seconds": round(time.time() - started, 3),
        **_structured_output(client),
        "calls": calls,
    }
    atomic_write_text(path, json.dumps(scrub_data(data), indent=2, default=str) + "\n")
    return data


def run_cost(
    config: PanelsynthConfig, client: LLMClient, stages: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The manifest's ``cost``: USD per stage at the price of :func:`panelsynth.prices.price_for`
    (cached input tokens at the cached rate), its source and date, and what the provider's
    prompt cache saved."""
    from panelsynth.prices import price_for, unknown_price

    if client.is_local:
        return {"usd": 0.0, "basis": "local model"}
    if getattr(client, "on_this_machine", False) and client.label not in config.prices:
        # a server on this machine does not charge a provider's list price
        return {"usd": None, "basis": "server on this machine: no list price (set [prices])"}
    price = price_for(client.label, config)
    if price is None:
        return {"usd": None, "basis": unknown_price(client.label)}
    per_stage = {
        k: price.cost(v["input_tokens"], v["output_tokens"], v.get("cached_input_tokens", 0))
        for k, v in stages.items()
    }
    cached = sum(v.get("cached_input_tokens", 0) for v in stages.values())
    return {
        "usd": sum(per_stage.values()),
        "per_stage": per_stage,
        "basis": price.cited,
        "source": price.source,
        "date": price.date,
        "prices": price.to_dict(),
        "cached_input_tokens": cached,
        "prefix_cache_saving_usd": price.saving(cached),
    }


def _structured_output(client: LLMClient) -> dict[str, Any]:
    """The structured-output mode of an OpenAI-compatible server client, for the manifest."""
    mode = getattr(client, "structured_output", None)
    return {"structured_output": mode} if isinstance(mode, str) else {}


def read_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)
