"""One wave through the three steps, with logs, checkpoint, lock and manifest (SPEC §3.2-§3.5)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth.cache import StepCache, fingerprint
from panelsynth.calibrate import CalibrationSetup, add_profile_rule, setup_calibration
from panelsynth.checkpoint import Checkpoint, RunLock
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
from panelsynth.errors import ConfigError, GenerationExhaustedError, PanelsynthError, WorkspaceError
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
from panelsynth.holdout import (
    HoldoutSplit,
    check_share,
    hold_out_respondents,
    spec_from_config,
    wave_split,
    write_ids_file,
)
from panelsynth.llm.base import LLMCallError, LLMClient, Usage
from panelsynth.llm.budget import BudgetedClient
from panelsynth.llm.keys import scrub
from panelsynth.metadata import Step2Result, format_metadata, format_wave_description
from panelsynth.pydantic_models.rows import row_model_for_wave, wave_row_specs
from panelsynth.runner import stays_on_this_machine
from panelsynth.scaffold import atomic_write_text, remove_stale_temporaries
from panelsynth.workspace import Mode, Workspace

log = logging.getLogger("panelsynth")

Progress = Callable[[dict[str, Any]], None]

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


def resolve_settings(config: PanelsynthConfig, opts: RunOptions, client: LLMClient) -> tuple[Mode, int, GenerationSettings]:
    g = config.generation
    mode: Mode = opts.mode or g.mode
    n_examples = opts.n_examples or g.n_examples or DEFAULT_N_EXAMPLES[mode]
    concurrency = opts.concurrency or g.concurrency or (1 if client.is_local else DEFAULT_CONCURRENCY_HOSTED)
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
        missing = [c for c in range(1, config.clustering.k + 1) if c not in set(wd.frame[wd.cluster_column])]
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
        ConfigError: a limit is set but ``[prices]`` has no price for the model.
    """
    if max_cost_usd is None or client.is_local:
        return client
    price = config.prices.get(client.label)
    if price is None:
        raise ConfigError(
            f'--max-cost (generation.max_cost_usd) needs the price of {client.label}: add '
            f'[prices."{client.label}"] with input_per_mtok and output_per_mtok to panelsynth.toml'
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
    if not ws.root.is_dir():
        raise WorkspaceError(f"workspace not found: {ws.root} — create it with `panelsynth init`")
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
    wd = load_wave_for_run(ws, wave, config, mode)
    calib = calibration_setup(ws, config, opts, wd, settings, client)  # None unless --calibrate
    out_csv = ws.output_csv(model_dir, wd.wave)
    ckpt = Checkpoint(ws.checkpoint(model_dir, wd.wave))
    if opts.restart and opts.resume:
        raise PanelsynthError("--resume and --restart exclude each other — pick one")
    started = time.time()
    # The lock comes first: a second concurrent run is told who holds it, not about its files.
    with RunLock(ws.lock(model_dir, wd.wave), f"wave {wd.wave} of {model_dir}"):
        _remove_stale_temporaries(ws, model_dir, wd.wave)
        if out_csv.exists() and not (opts.resume or opts.restart):
            raise PanelsynthError(
                f"{ws.rel(out_csv)} already exists — pass --restart to generate it again (the old "
                f"checkpoint is kept aside) or use another --model-dir"
            )
        if ckpt.exists() and not (opts.resume or opts.restart):
            _, recs = ckpt.load()
            raise PanelsynthError(
                f"an unfinished run of wave {wd.wave} for {model_dir} has {len(recs)} finished "
                f"calls in {ws.rel(ckpt.path)} — pass --resume to continue it or --restart to "
                f"start over"
            )
        if opts.restart and ckpt.exists():
            moved = ckpt.archive()
            log.info("previous checkpoint kept as %s", ws.rel(moved))
        cache = StepCache(ws.cache_dir(), enabled=opts.use_cache)
        _emit(progress, {"stage": "step1"})
        try:
            s1 = describe_wave(
                client, wd, n_examples=n_examples, seed=settings.seed, cache=cache,
                examples_source=examples_source,
            )
        except LLMCallError as err:
            raise _step_failed(wd.wave, "step 1 (cluster descriptions)", err) from None
        _write_step1_logs(ws, model_dir, wd, s1)
        _emit(progress, {"stage": "step2"})
        try:
            s2 = format_metadata(client, wd, cache=cache, preferred_target=config.study.outcome)
        except LLMCallError as err:
            raise _step_failed(wd.wave, "step 2 (formatted metadata)", err) from None
        _write_step2_log(ws, model_dir, wd, s2)

        specs = wave_row_specs(wd)
        row_model, row_source = row_model_for_wave(
            calib.row_specs() if calib else specs, ws.user_models_dir(), wd.wave
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
        split = run_holdout_split(ws, wd.wave, config)
        if split is not None:
            header["holdout"] = split.spec.to_json()
        header["fingerprint"] = fingerprint(header, prompt.prefix, row_model.model_json_schema())
        gen_settings = calib.pool_settings if calib else settings
        if split is not None:  # recorded before any step-3 call, so an unfinished run has it too
            write_ids_file(ws.holdout_ids(), split, model_dir)
        _emit(progress, {"stage": "step3", "wanted": gen_settings.wanted})
        manifest_path = ws.manifest(model_dir, wd.wave)
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
            "warnings": wd.notes + s1.warnings + s2.notes + prompt.notes,
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
                resume=opts.resume,
                wave=wd.wave,
                progress=progress,
                max_tokens=max_tokens,
                exclude_rows=(
                    row_keys(wd.frame, columns) | row_keys(s1.examples, columns)
                    if drop_copies
                    else None
                ),
            )
        except GenerationExhaustedError as err:
            _write_manifest(
                manifest_path, {**base, "status": "incomplete", "error": str(err)}, s1, s2,
                err.result if isinstance(err.result, GenerationResult) else None,
                config, client, started,
            )
            raise
        if calib:
            gen, base["calibration"] = calib.apply(gen, prompt, examples=s1.examples)
        write_csv_atomic(gen.rows, out_csv)
        data = _write_manifest(
            manifest_path, {**base, "status": "complete", "output": ws.rel(out_csv)}, s1, s2, gen,
            config, client, started,
        )
    return RunResult(wd.wave, model_dir, out_csv, manifest_path, len(gen.rows), settings.wanted, data)


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
    max_tokens = settings.max_tokens or estimate_output_tokens(
        client, s1.examples, settings.n_outputs
    )

    def build(ex: pd.DataFrame) -> list[dict[str, str]]:
        if calib is None:
            return build_prompt(wd, metadata_text, descriptions_text, ex, specs)
        ex = ex[calib.prompt_columns()]
        return add_profile_rule(build_prompt(wd, metadata_text, descriptions_text, ex, specs))

    prompt = fit_prompt(
        client,
        build,
        s1.examples,
        wd.cluster_column,
        settings.n_outputs,
        max_tokens + (calib.suffix_tokens(client) if calib else 0),
    )
    if calib:
        prompt = calib.wrap(prompt, row_model=row_model)
    return prompt, max_tokens


def calibration_setup(
    ws: Workspace, config: PanelsynthConfig, opts: RunOptions, wd: WaveData,
    settings: GenerationSettings, client: LLMClient,
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
        every, specs, settings,
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


def _remove_stale_temporaries(ws: Workspace, model_dir: str, wave: str) -> None:
    """Remove half-written temporary files a killed run left next to this wave's outputs.

    Called with the wave's lock held, so no living writer owns them.
    """
    outputs = (
        ws.output_csv(model_dir, wave),
        ws.manifest(model_dir, wave),
        ws.cluster_descriptions_log(model_dir, wave),
        ws.examples_log(model_dir, wave),
        ws.examples_csv(model_dir, wave),
        ws.gen_metadata_log(model_dir, wave),
    )
    for path in outputs:
        remove_stale_temporaries(path)


def _step_failed(wave: str, step: str, err: LLMCallError) -> PanelsynthError:
    """One actionable line for a step-1/2 call that failed for good (retries exhausted)."""
    return PanelsynthError(
        f"wave {wave}: {step} failed: {scrub(str(err))} — fix the cause (key, model name, server) "
        f"and rerun; nothing was generated yet"
    )


def _emit(progress: Progress | None, event: dict[str, Any]) -> None:
    if progress:
        progress(event)


def _write_step1_logs(ws: Workspace, model_dir: str, wd: WaveData, s1: Step1Result) -> None:
    lines = [f"Wave {wd.wave} cluster descriptions ({wd.mode} mode)", ""]
    lines.append("Summary statistics:")
    for c, per_var in s1.statistics.items():
        lines.append(f"Cluster {c}:")
        lines += [f"- {v}: {format_statistics(s)}" for v, s in per_var.items()]
    lines += ["", "Descriptions:", format_descriptions(s1.descriptions), ""]
    atomic_write_text(ws.cluster_descriptions_log(model_dir, wd.wave), "\n".join(lines))
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
    atomic_write_text(ws.gen_metadata_log(model_dir, wd.wave), text)


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
            calls.append({"stage": "step3", "batch": c.batch, "ok": c.ok, "kind": c.kind, **c.usage.to_dict()})
            step3.add(c.usage)
    stages = {
        "step1": _stage_usage(s1.usage, s1.calls, s1.cached),
        "step2": _stage_usage(s2.usage, s2.calls, s2.cached),
        "step3": _stage_usage(step3, len(gen.calls) if gen else 0, False),
    }
    total_in = sum(c["input_tokens"] for c in calls)
    total_out = sum(c["output_tokens"] for c in calls)
    price = config.prices.get(client.label)
    cost: dict[str, Any]
    if client.is_local:
        cost = {"usd": 0.0, "basis": "local model"}
    elif price is not None:
        per_stage = {
            k: (v["input_tokens"] * price.input_per_mtok + v["output_tokens"] * price.output_per_mtok) / 1e6
            for k, v in stages.items()
        }
        cost = {"usd": sum(per_stage.values()), "per_stage": per_stage, "basis": "config prices"}
    else:
        cost = {"usd": None, "basis": f"no price for {client.label} in [prices] of panelsynth.toml"}
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
        "retries": sum(c["retries"] for c in calls),
        "reasks": sum(c["reasks"] for c in calls),
        "tokens": {"input": total_in, "output": total_out, "per_stage": stages},
        "cost": cost,
        "wall_seconds": round(time.time() - started, 3),
        "calls": calls,
    }
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
    return data


def read_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)
