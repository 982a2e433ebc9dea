"""Waves run one after the other with a rich progress bar: the renderer of the library's progress
events (:mod:`panelsynth.progress`) that ``panelsynth run``, ``panelsynth demo`` and the seed
script share, and what it says after Ctrl-C (where the answers are, the command that resumes)."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from panelsynth.cli.app import echo


def run_waves_with_progress(
    workspace: Path,
    waves: list[str],
    client: Any,
    model_dir: str,
    options: Any,
    *,
    config: Any,
    show_progress: bool = True,
    resume_hint: Callable[[str], str] | None = None,
    batch_api: Callable[[], Any] | None = None,
) -> list[Any]:
    """Run waves one after the other with a rich progress bar (rows, ETA, tokens).

    ``resume_hint(wave)`` is the command that resumes from ``wave`` on after Ctrl-C (default:
    ``panelsynth run`` with the workspace, wave, model and model dir).
    """
    from panelsynth.api import run_wave
    from panelsynth.errors import PanelsynthError
    from panelsynth.workspace import Workspace

    results = []
    ws = Workspace(workspace)
    for wave in waves:
        with wave_bars("{task.fields[stage]}", "rows", disable=not show_progress) as bar:
            task = bar.add_task("run", total=None, wave=wave, stage="step 1", tokens=0)
            reached: set[str] = set()  # stages this wave has started

            def progress(ev: dict[str, Any], _task=task, _bar=bar, _reached=reached) -> None:
                if "stage" in ev:
                    _reached.add(ev["stage"])
                    stage = {
                        "step1": "step 1: descriptions",
                        "step2": "step 2: metadata",
                        "step3": "step 3: rows",
                    }.get(ev["stage"], ev["stage"])
                    _bar.update(_task, stage=stage, total=ev.get("wanted"))
                if ev.get("event") == "batch-poll":  # --batch: the provider batch's state
                    done = ev["succeeded"] + ev["failed"]
                    _bar.update(
                        _task,
                        stage=f"step 3: batch {ev['state']} {done}/{ev['requests']} requests, "
                        f"up to ${ev['expected_cost_usd']:.4f}",
                    )
                if "rows" in ev:
                    _bar.update(
                        _task,
                        completed=ev["rows"],
                        total=ev["wanted"],
                        tokens=ev["input_tokens"] + ev["output_tokens"],
                    )

            try:
                res = run_wave(
                    ws.root,
                    wave,
                    client,
                    model_dir,
                    options,
                    config=config,
                    progress=progress,
                    batch_api=batch_api,
                )
            except PanelsynthError:
                bar.update(task, visible=False)  # the error line says it all
                raise
            except KeyboardInterrupt:
                bar.stop()
                ckpt = ws.checkpoint(model_dir, wave)
                if "step3" not in reached and not ckpt.exists():
                    echo(
                        f"Interrupted during steps 1-2 of wave {wave}: no row was generated yet, "
                        f"so there is no checkpoint. Run the same command again (answers already "
                        f"received for steps 1-2 are cached)."
                    )
                    raise typer.Exit(130) from None
                hint = (
                    resume_hint(wave)
                    if resume_hint
                    else shlex.join(
                        [
                            "panelsynth",
                            "run",
                            "--workspace",
                            str(ws.root),
                            "--wave",
                            wave,
                            "--model",
                            client.label,
                            "--model-dir",
                            model_dir,
                            "--resume",
                        ]
                    )
                )
                echo(f"Interrupted. {_saved_calls(ws, model_dir, wave)} Resume with: {hint}")
                left = _running_batches(ws, model_dir, wave, hint)
                if left:
                    echo(left)
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


def wave_bars(label: str, unit: str, *, disable: bool = False) -> Any:
    """A rich progress display with a bar per task: ``wave W <label>``, the bar, done/total
    ``unit``, elapsed, remaining and tokens (fields ``wave``, ``tokens`` and those of ``label``).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]wave {{task.fields[wave]}}[/] {label}".rstrip()),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[tokens]} tokens"),
        transient=False,
        disable=disable,
    )


def _saved_calls(ws: Any, model_dir: str, wave: str) -> str:
    """What is really on disk after an interruption (read back from the checkpoint)."""
    from panelsynth.checkpoint import Checkpoint
    from panelsynth.errors import PanelsynthError

    ckpt = Checkpoint(ws.checkpoint(model_dir, wave))
    try:
        if not ckpt.exists():
            return "No generation (step 3) call of this wave had finished yet, so none is lost."
        _, records = ckpt.load()
    except (OSError, PanelsynthError):
        return f"The checkpoint {ws.rel(ckpt.path)} could not be read back."
    done = sum(1 for r in records if not r.get("failed"))
    return f"Every finished call is saved in {ws.rel(ckpt.path)} ({done} calls with rows)."


def _running_batches(ws: Any, model_dir: str, wave: str, hint: str) -> str:
    """``--batch``: the provider batches of the wave that may still run, and what to do."""
    from panelsynth.checkpoint import Checkpoint
    from panelsynth.run.batch import interrupt_message

    ckpt = Checkpoint(ws.checkpoint(model_dir, wave))
    return interrupt_message(ckpt, str(ws.root), model_dir, wave, hint)
