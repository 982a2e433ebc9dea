"""``panelsynth run``: steps 1-3 for one or more waves and one model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from panelsynth.cli.app import app, echo


def run_waves_with_progress(
    workspace: Path,
    waves: list[str],
    client: Any,
    model_dir: str,
    options: Any,
    *,
    config: Any,
    show_progress: bool = True,
) -> list[Any]:
    """Run waves one after the other with a rich progress bar (rows, ETA, tokens)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from panelsynth.pipeline import run_wave
    from panelsynth.workspace import Workspace

    results = []
    ws = Workspace(workspace)
    for wave in waves:
        with Progress(
            TextColumn("[bold]wave {task.fields[wave]}[/] {task.fields[stage]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[tokens]} tokens"),
            transient=False,
            disable=not show_progress,
        ) as bar:
            task = bar.add_task("run", total=None, wave=wave, stage="step 1", tokens=0)

            def progress(ev: dict[str, Any], _task=task, _bar=bar) -> None:
                if "stage" in ev:
                    stage = {"step1": "step 1: descriptions", "step2": "step 2: metadata",
                             "step3": "step 3: rows"}.get(ev["stage"], ev["stage"])
                    _bar.update(_task, stage=stage, total=ev.get("wanted"))
                if "rows" in ev:
                    _bar.update(
                        _task,
                        completed=ev["rows"],
                        total=ev["wanted"],
                        tokens=ev["input_tokens"] + ev["output_tokens"],
                    )

            try:
                res = run_wave(ws.root, wave, client, model_dir, options, config=config, progress=progress)
            except KeyboardInterrupt:
                bar.stop()
                ckpt = ws.checkpoint(model_dir, wave)
                echo(
                    f"Interrupted. Every finished call is saved in {ws.rel(ckpt)}. Resume with: "
                    f"panelsynth run --workspace {ws.root} --wave {wave} --model {client.label} "
                    f"--model-dir {model_dir} --resume"
                )
                raise typer.Exit(130) from None
        m = res.manifest_data
        echo(
            f"wave {res.wave}: {res.rows}/{res.wanted} rows -> {ws.rel(res.output)} "
            f"({m['tokens']['input']} input + {m['tokens']['output']} output tokens, "
            f"{m['invalid_rows']} invalid rows, {m['failed_calls']} failed calls, "
            f"{m['wall_seconds']:.1f}s)"
        )
        results.append(res)
    return results


@app.command("run")
def run(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")] = Path("."),
    wave: Annotated[list[str] | None, typer.Option("--wave", help="Wave id (repeatable).")] = None,
    all_waves: Annotated[bool, typer.Option("--all", help="Every wave with data.")] = False,
    model: Annotated[str, typer.Option("--model", "-m", help="provider/model, e.g. local/smollm2.")] = "local/smollm2",
    model_dir: Annotated[str | None, typer.Option("--model-dir", help="Output folder name.")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="dense or full.")] = None,
    n_examples: Annotated[int | None, typer.Option(min=1, max=500, help="Examples per cluster.")] = None,
    n_outputs: Annotated[int | None, typer.Option(min=1, max=200, help="Rows per call.")] = None,
    n_batches: Annotated[int | None, typer.Option(min=1, help="Calls per wave.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Random state.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=256, help="Concurrent calls.")] = None,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.1, help="Requests per minute.")] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Start over (old checkpoint kept aside).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    api_key: Annotated[str | None, typer.Option("--api-key", help="API key (default: provider env var).", show_default=False)] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute steps 1-2.")] = False,
) -> None:
    """Generate synthetic respondents for waves of a workspace (steps 1-3)."""
    from panelsynth.config import load_config
    from panelsynth.errors import PanelsynthError, WorkspaceError
    from panelsynth.pipeline import RunOptions
    from panelsynth.runner import Confirmation, check_mode, default_model_dir, open_client
    from panelsynth.workspace import Workspace, check_model_dir, check_wave_id

    ws = Workspace(workspace)
    if not ws.root.is_dir():
        raise WorkspaceError(f"workspace not found: {ws.root} — create it with `panelsynth init`")
    config = load_config(ws.config_path)
    check_mode(mode)
    if all_waves:
        waves = config.study.waves or ws.waves_with_data()
    else:
        waves = [check_wave_id(w) for w in (wave or [])]
    if not waves:
        raise PanelsynthError("no wave given — pass --wave W (repeatable) or --all")
    md = check_model_dir(model_dir or default_model_dir(model, config))
    client = open_client(model, api_key=api_key, base_url=base_url, config=config)
    options = RunOptions(
        mode=mode, n_examples=n_examples, n_outputs=n_outputs, n_batches=n_batches, seed=seed,
        concurrency=concurrency, temperature=temperature, requests_per_minute=rpm,
        resume=resume, restart=restart, use_cache=not no_cache,
    )
    g = config.generation
    total_calls = (n_batches or g.n_batches) * len(waves)
    if not client.is_local:
        echo(
            f"About to send real survey rows as examples to {model} (a third-party provider): "
            f"{len(waves)} wave(s), about {total_calls} calls."
        )
        if not Confirmation(assume_yes=yes)("Continue?", echo):
            echo("Nothing was run.")
            raise typer.Exit(1)
    run_waves_with_progress(ws.root, waves, client, md, options, config=config)
