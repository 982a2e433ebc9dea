"""``panelsynth evaluate``: parse arguments, draw progress, call the library, print the paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from panelsynth.cli.app import app, echo


@app.command("evaluate")
def evaluate(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")] = Path(
        "."
    ),
    model_dir: Annotated[
        list[str] | None,
        typer.Option("--model-dir", help="Model dir to evaluate (repeatable; default: all)."),
    ] = None,
    wave: Annotated[
        list[str] | None,
        typer.Option("--wave", help="Wave to evaluate (repeatable; default: all)."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of real halves, baselines, samples.")] = 42,
) -> None:
    """Score synthetic waves against the real ones (sdmetrics parity, references, baselines).

    Writes Evaluation/Evaluation results/*.csv (rows = waves, columns = model dirs, _real_holdout
    and the baselines), Evaluation/<model_dir>/wave{W}_metrics.json and _results.png, and
    Evaluation/report.html.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from panelsynth.api import evaluate as evaluate_workspace
    from panelsynth.cli.app import _err_console
    from panelsynth.errors import PanelsynthError

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=_err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("evaluating", total=None)

        def progress(desc: str, done: int, total: int) -> None:
            bar.update(task, description=f"evaluating {desc}", completed=done, total=total)

        summary = evaluate_workspace(
            workspace,
            model_dirs=model_dir or None,
            waves=wave or None,
            seed=seed,
            progress=progress,
        )
    for o in summary.outcomes:
        if o.error:
            continue
        shape = o.summary.get("density_shape", {})
        c2 = o.summary.get("c2st_gb", {})
        echo(
            f"{o.model_dir} wave {o.wave}: shapes {_f(shape.get('synthetic'))} "
            f"({o.floor_label} {_f(shape.get('_real_holdout'))}), gradient-boosting C2ST "
            f"{_f(c2.get('synthetic'))} ({o.floor_label} {_f(c2.get('_real_holdout'))})"
        )
    for p in summary.panels:
        if p.error:
            echo(f"{p.model_dir} panel: not evaluated — {p.error}")
            continue
        st, sp = (
            p.summary.get("stability_error_unchanged", {}),
            p.summary.get("stability_error_spearman", {}),
        )
        held = p.reference == "held-out respondents"  # a --holdout run
        floor, vs = ("training respondents", f" (vs {p.reference})") if held else ("real half", "")
        per = ", ".join(
            f"{label} {_f3(st.get(key))} | {_f3(sp.get(key))}"
            for key, label in (
                ("synthetic", "synthetic"),
                ("_baseline_unlinked", "unlinked baseline"),
                ("_baseline_cart_panel", "CART panel"),
                ("_real_holdout", floor),
            )
        )
        tf, c2 = p.summary.get("transition_fidelity", {}), p.summary.get("c2st_trajectory", {})
        echo(
            f"{p.model_dir} panel, waves {', '.join(p.waves)}{vs} — stability error "
            f"(unchanged share | Spearman): {per}"
        )
        echo(
            f"{p.model_dir} panel: transition fidelity {_f3(tf.get('synthetic'))} ({floor} "
            f"{_f3(tf.get('_real_holdout'))}), trajectory C2ST {_f3(c2.get('synthetic'))} "
            f"({floor} {_f3(c2.get('_real_holdout'))}, "
            f"unlinked {_f3(c2.get('_baseline_unlinked'))})"
        )
    results_dir = next(iter(summary.tables.values())).parent
    echo(f"Tables: {results_dir}")
    echo(f"Report: {summary.report}")
    echo(f"Evaluated {len(summary.evaluated)} wave(s) in {summary.seconds:.1f} s.")
    if summary.failures:
        details = "; ".join(f"{o.model_dir} wave {o.wave}: {o.error}" for o in summary.failures)
        raise PanelsynthError(f"{len(summary.failures)} evaluation(s) failed — {details}")


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _f3(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"
