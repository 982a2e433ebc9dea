"""``panelsynth run``: steps 1-3 for one or more waves and one model."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from panelsynth.cli.app import app, echo
from panelsynth.cli.waves import run_waves_with_progress

#: Options a resume command never repeats (``--restart`` becomes ``--resume``; the key is never
#: printed).
_NOT_REPEATED = {
    "workspace",
    "wave",
    "all_waves",
    "model",
    "model_dir",
    "resume",
    "restart",
    "dry_run",
    "api_key",
}


def resume_command(
    ctx: Any,
    ws_root: Path,
    waves: list[str],
    model: str,
    model_dir: str,
    api_key_arg: str | None,
) -> Callable[[str], str]:
    """The shell command (quoted) that resumes the run from a wave on with every setting the
    user gave (``--base-url``, mode, calibration, examples, limits, ...)."""
    args: list[str] = []
    for param in ctx.command.params:  # typer's (vendored) click options
        name = param.name or ""
        if name in _NOT_REPEATED or getattr(param, "param_type_name", "") != "option":
            continue
        source = getattr(ctx.get_parameter_source(name), "name", "")
        if source not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        value = ctx.params.get(name)
        if param.is_flag:
            if param.secondary_opts:
                args.append(param.opts[0] if value else param.secondary_opts[0])
            elif value:
                args.append(param.opts[0])
            continue
        if value is None:
            continue
        for v in value if param.multiple else [value]:
            args += [param.opts[0], str(v)]
    if api_key_arg is not None and api_key_arg.strip().startswith("@"):
        args += ["--api-key", api_key_arg.strip()]
    elif api_key_arg is not None and api_key_arg.strip() == "-":
        args += ["--api-key", "-"]

    def hint(wave: str) -> str:
        rest = waves[waves.index(wave) :] if wave in waves else [wave]
        cmd = ["panelsynth", "run", "--workspace", str(ws_root)]
        for w in rest:
            cmd += ["--wave", w]
        cmd += ["--model", model, "--model-dir", model_dir, *args, "--resume"]
        text = shlex.join(cmd)
        if (
            api_key_arg is not None
            and not api_key_arg.strip().startswith("@")
            and (api_key_arg.strip() != "-")
        ):
            text += (
                " (give the key again: --api-key @FILE, --api-key - or its environment variable)"
            )
        return text

    return hint


@app.command("run")
def run(
    ctx: typer.Context,
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")] = Path(
        "."
    ),
    wave: Annotated[
        list[str] | None,
        typer.Option("--wave", "--waves", help="Wave id (repeatable or comma-separated)."),
    ] = None,
    all_waves: Annotated[bool, typer.Option("--all", help="Every wave with data.")] = False,
    model: Annotated[
        str, typer.Option("--model", "-m", help="provider/model, e.g. local/smollm2.")
    ] = "local/smollm2",
    model_dir: Annotated[
        str | None, typer.Option("--model-dir", help="Output folder name.")
    ] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="dense or full.")] = None,
    n_examples: Annotated[
        int | None, typer.Option(min=1, max=500, help="Examples per cluster.")
    ] = None,
    n_outputs: Annotated[int | None, typer.Option(min=1, max=200, help="Rows per call.")] = None,
    n_batches: Annotated[int | None, typer.Option(min=1, help="Calls per wave.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Random state.")] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=256, help="Concurrent calls.")
    ] = None,
    rpm: Annotated[
        float | None, typer.Option("--rpm", min=0.1, help="Requests per minute.")
    ] = None,
    tpm: Annotated[float | None, typer.Option("--tpm", min=1.0, help="Tokens per minute.")] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=2.0, help="Sampling temperature (default 0.7; the calibrated pool: 1.0)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start over (old checkpoint kept aside).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="API key: @FILE (read from a file), - (read from standard input), or "
            "the key itself (visible to other users in ps: avoid). Default: the provider's "
            "environment variable.",
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")
    ] = None,
    structured_output: Annotated[
        str | None,
        typer.Option(
            "--structured-output",
            help="With --base-url: how the server is asked for JSON: auto "
            "(default: json_schema, falling back to json, then md_json), json_schema, json, tools "
            "or md_json.",
        ),
    ] = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="Output formats besides the CSV (always written): sav, dta, parquet "
            "(repeatable or comma-separated); .sav/.dta carry question texts and response labels.",
        ),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute steps 1-2.")] = False,
    examples: Annotated[
        str | None,
        typer.Option(
            "--examples",
            help="Few-shot examples: real rows, or synthetic (drawn from the cluster "
            "statistics; no real row is sent).",
        ),
    ] = None,
    drop_copies: Annotated[
        bool | None,
        typer.Option(
            "--drop-copies/--keep-copies",
            help="Drop synthetic rows identical to a real row or an example, and top up.",
            show_default=False,
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            min=0.0,
            help="Spending limit per wave in USD, priced from the model's "
            "entry in the prices table of panelsynth.toml; no call starts that could exceed it.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the calls, tokens and cost each stage would use, then stop: "
            "no model call, nothing written, no API key needed.",
        ),
    ] = False,
    calibrate: Annotated[
        bool | None,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="Calibrated mode: the host draws each row's cluster "
            "and anchors (e.g. age band, sex) from the real data, and whole rows are selected from "
            "an oversampled pool to match the real per-cluster distributions.",
            show_default=False,
        ),
    ] = None,
    oversample: Annotated[
        float | None,
        typer.Option(
            "--oversample",
            min=1.0,
            max=20.0,
            help="Calibrated mode: valid rows generated per row kept (default 2.0).",
        ),
    ] = None,
    anchors: Annotated[
        str | None,
        typer.Option(
            "--anchors",
            help="Calibrated mode: comma-separated variables fixed in every profile "
            "(default: the demographics in the wave, e.g. age,sex).",
        ),
    ] = None,
    accept_headerless_checkpoint: Annotated[
        bool,
        typer.Option(
            "--accept-headerless-checkpoint",
            help="With --resume: take over the calls of a "
            "checkpoint whose header (the settings it was made with) is missing or damaged, "
            "unchecked.",
        ),
    ] = False,
    trust_workspace_models: Annotated[
        bool,
        typer.Option(
            "--trust-workspace-models",
            help="Import the workspace's pydantic_models/*.py (Python "
            "code: it runs with your rights) to use its row models. Without it the built row "
            "models are used.",
        ),
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Send step 3 through the provider's batch API (OpenAI, Anthropic): half the "
            "price, done within 24 hours; steps 1-2 stay online. The batch ids go to the "
            "checkpoint at once: --resume (or `panelsynth batch collect`) picks them up.",
        ),
    ] = False,
    top_up: Annotated[
        str | None,
        typer.Option(
            "--top-up",
            help="With --batch: invalid or missing rows are topped up by a follow-up batch "
            "(batch, default) or by online calls (online).",
        ),
    ] = None,
    holdout: Annotated[
        float | None,
        typer.Option(
            "--holdout",
            min=0.0,
            max=0.95,
            help="Hold this share of respondents (by study.id_column, "
            "the same people in every wave) out of steps 1-3; `panelsynth evaluate` then scores "
            "the run against them, e.g. 0.3.",
        ),
    ] = None,
    panel: Annotated[
        bool,
        typer.Option(
            "--panel",
            help="Synthetic panel: the same synthetic respondents (stable ids) through every "
            "requested wave, each later wave conditioned on their previous answers.",
        ),
    ] = False,
    respondents: Annotated[
        int | None,
        typer.Option(min=1, help="--panel: respondents (default: the first wave's row count)."),
    ] = None,
) -> None:
    """Generate synthetic respondents for waves of a workspace (steps 1-3)."""
    from panelsynth.config import load_config
    from panelsynth.errors import PanelsynthError
    from panelsynth.export import parse_formats
    from panelsynth.llm.keys import key_from_argument
    from panelsynth.run.plan import RunOptions, resolve_plan
    from panelsynth.runner import (
        Confirmation,
        default_model_dir,
        needs_yes_message,
        open_client,
        privacy_warning,
    )
    from panelsynth.workspace import Workspace, check_model_dir, check_wave_id

    ws = Workspace(workspace)
    ws.must_exist()
    config = load_config(ws.config_path)
    choices = RunOptions(
        mode=mode,
        examples=examples,
        structured_output=structured_output,
        batch=batch,
        top_up=top_up,
    )
    if all_waves:
        waves = config.study.waves or ws.waves_with_data()
    else:
        waves = list(  # --wave 2 --wave 2, --waves 1,3
            dict.fromkeys(check_wave_id(p) for w in (wave or []) for p in w.split(",") if p)
        )
    if not waves:
        raise PanelsynthError("no wave given — pass --wave W (repeatable) or --all")
    md = check_model_dir(model_dir or default_model_dir(model, config))
    options = RunOptions(
        **choices.model_dump(exclude_unset=True),
        n_examples=n_examples,
        n_outputs=n_outputs,
        n_batches=n_batches,
        seed=seed,
        concurrency=concurrency,
        temperature=temperature,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        resume=resume,
        restart=restart,
        use_cache=not no_cache,
        drop_copies=drop_copies,
        max_cost_usd=max_cost,
        calibrate=calibrate,
        oversample=oversample,
        anchors=None if anchors is None else [a.strip() for a in anchors.split(",") if a.strip()],
        accept_headerless_checkpoint=accept_headerless_checkpoint,
        trust_workspace_models=trust_workspace_models,
        formats=parse_formats(formats),
        holdout=holdout,
    )
    if panel or config.generation.panel:  # all of the panel's CLI logic is in panel_cmd
        from panelsynth.cli.panel_cmd import run_panel_command

        return run_panel_command(
            ws.root, config, waves, model=model, model_dir=md, options=options,
            respondents=respondents, dry_run=dry_run, api_key=api_key, base_url=base_url,
            structured_output=structured_output, yes=yes,
        )  # fmt: skip
    if dry_run:
        from panelsynth.api import dry_run as plan_one
        from panelsynth.run.dryrun import format_plans

        # hosted models: no key, no SDK, no network
        plans = [plan_one(ws.root, w, model, md, options, config=config) for w in waves]
        echo(format_plans(plans))
        echo("Dry run: no model was called and nothing was written.")
        return
    key, key_warning = key_from_argument(api_key)
    if key_warning:
        typer.echo(key_warning, err=True)
    client = open_client(
        model,
        api_key=key,
        base_url=base_url,
        config=config,
        structured_output=options.structured_output,
    )
    plan = resolve_plan(config, options, client)
    batch_api = None
    if plan.batch:
        from panelsynth.run.batch import batch_factory, check_batch

        check_batch(client)  # one line, exit 2, before anything is asked or called
        entry = config.model_entry(model)
        if key is None and entry is not None and entry.api_key_env:
            key = os.environ.get(entry.api_key_env) or None
        batch_api = batch_factory(model, key)
    total_calls = plan.total_calls(len(waves))  # a calibrated pool: oversample x the rows
    warning = privacy_warning(client, plan.examples)
    if warning:
        typer.echo(warning, err=True)  # once per run, whatever the number of waves
    if not client.is_local and not yes:
        echo(f"About to call {model}: {len(waves)} wave(s), about {total_calls} calls.")
        refusal = needs_yes_message(client, plan.examples)
        if not Confirmation(needs_yes=refusal)("Continue?", echo):
            echo("Nothing was run.")
            raise typer.Exit(1)
    hint = resume_command(ctx, ws.root, waves, model, md, api_key)
    run_waves_with_progress(
        ws.root,
        waves,
        client,
        md,
        options,
        config=config,
        resume_hint=hint,
        batch_api=batch_api,
    )
