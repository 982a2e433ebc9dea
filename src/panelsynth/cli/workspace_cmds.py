"""Commands that create and fill workspaces: init, demo, metadata."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from panelsynth.cli.app import app, echo, metadata_app


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder of the new workspace.")],
) -> None:
    """Create an empty workspace: its folders (Raw data/, Original data/, Dictionaries/, ...),
    a commented panelsynth.toml and the original study's run script."""
    from panelsynth.scaffold import init_workspace

    ws, created = init_workspace(directory)
    echo(f"Workspace ready at {ws.root} ({len(created)} new paths).")
    echo("Next steps:")
    echo(
        "  1. Put one raw file per wave in 'Raw data/' (wave1.csv, wave2.sav, ...; one row per "
        "respondent, linked across waves by an id column: set study.id_column)."
    )
    echo(
        "  2. Describe every variable in 'Dictionaries/dictionary.csv' with the columns "
        "variable,question,responses[,type] (responses: '1=Agree; 2=Disagree', "
        "'1 = low ... 5 = high', 'Labour; Conservative' or a range '18-90')."
    )
    echo(
        "  3. Run `panelsynth prepare --workspace DIR`, write each wave's context in "
        "'Dictionaries/wave_contexts/wave{W}_context.txt', then `panelsynth run`."
    )
    echo(
        "  (Waves that already have cluster labels go straight into 'Original data/' with "
        "their dictionaries; see the README.)"
    )


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo workspace.")] = Path(
        "panelsynth-demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the simulated panel.")] = 2024,
    respondents: Annotated[int, typer.Option(min=50, max=200_000, help="Panel size.")] = 2000,
    build_only: Annotated[
        bool, typer.Option("--build-only", help="Only build the demo workspace; do not run.")
    ] = False,
) -> None:
    """Build the demo workspace (a simulated FluPaths-like panel), run the pipeline on it with
    the embedded local model, and evaluate the result."""
    if build_only:
        from panelsynth.demo import build_demo

        result = build_demo(directory, seed=seed, n_respondents=respondents)
        for wave, acc in result.bayes_accuracy.items():
            echo(f"wave {wave}: Bayes-optimal class accuracy {acc:.3f}")
        echo(f"Demo workspace written to {result.workspace.root}")
        return

    from panelsynth.cli.waves import run_waves_with_progress
    from panelsynth.config import load_config
    from panelsynth.demo.pipeline import DEMO_PANEL, DEMO_PLAN, run_demo

    # the demo resumes its own runs: after Ctrl-C, the same command continues it
    again = shlex.join(
        [
            "panelsynth",
            "demo",
            str(Path(directory).resolve()),
            "--seed",
            str(seed),
            "--respondents",
            str(respondents),
        ]
    )

    def hook(root, wave, client, model_dir, options):
        cfg = load_config(Path(root) / "panelsynth.toml")
        return run_waves_with_progress(
            root, [wave], client, model_dir, options, config=cfg, resume_hint=lambda _w: again
        )[0]

    plan = ", ".join(
        f"wave {p.wave} {p.mode}{' calibrated' if p.calibrate else ''} "
        f"({p.n_outputs * p.n_batches} rows)"
        for p in DEMO_PLAN
    )
    p = DEMO_PANEL
    plan += (
        f", and a synthetic panel of {p.respondents} respondents through waves "
        f"{', '.join(p.waves)} ({p.mode}, {p.model_dir})"
    )
    echo(f"Building the demo panel in {directory} and generating {plan} with local/smollm2 ...")
    outcome = run_demo(directory, seed=seed, n_respondents=respondents, run=hook)
    ws = outcome.demo.workspace
    for wave, acc in outcome.demo.bayes_accuracy.items():
        echo(f"wave {wave}: Bayes-optimal class accuracy {acc:.3f}")
    echo("")
    echo(f"Demo workspace: {ws.root}")
    for r in outcome.runs:
        echo(f"  synthetic wave {r.wave} ({r.model_dir}): {ws.rel(r.output)}")
    if outcome.panel is not None:
        pr = outcome.panel
        rows = ", ".join(f"wave {w} {pr.rows[w]}" for w in pr.waves)
        secs = pr.manifest_data.get("wall_seconds")
        took = f", {secs:.0f} s" if isinstance(secs, int | float) else ""
        echo(
            f"  synthetic panel ({pr.model_dir}; respondents per wave: {rows}{took}): "
            f"{ws.rel(pr.long_output)}"
        )
    if outcome.evaluation is not None:
        report = ws.report_html()
        echo(f"  evaluation tables: {ws.rel(ws.eval_table('density_overall').parent)}")
        if report.exists():
            echo(f"  report: {report}")
        for p in getattr(outcome.evaluation, "panels", []):
            echo(_panel_line(p))


def _panel_line(p) -> str:  # noqa: ANN001 - a panelsynth.evaluate.panel_eval.PanelOutcome
    """One line of the panel's longitudinal figures (as ``panelsynth evaluate`` prints them)."""
    if p.error:
        return f"  panel {p.model_dir}: not evaluated — {p.error}"
    sp = p.summary.get("stability_error_spearman", {})
    tf = p.summary.get("transition_fidelity", {})

    def f(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    return (
        f"  panel {p.model_dir}, waves {', '.join(p.waves)}: stability error (Spearman) "
        f"{f(sp.get('synthetic'))} (unlinked baseline {f(sp.get('_baseline_unlinked'))}, real "
        f"half {f(sp.get('_real_holdout'))}); transition fidelity {f(tf.get('synthetic'))}"
    )


@metadata_app.command("from-csv")
def metadata_from_csv_cmd(
    dictionary: Annotated[Path, typer.Argument(help="CSV: variable, question, responses.")],
    wave: Annotated[str, typer.Option("--wave", help="Wave id the metadata is for.")],
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")] = Path(
        "."
    ),
    mode: Annotated[
        str | None,
        typer.Option(help="Write the full mode's own file (Dictionaries/json_metadata/full/)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing metadata file.")] = False,
) -> None:
    """Convert a CSV dictionary to Dictionaries/json_metadata/metadata_wave{W}.json."""
    from panelsynth.scaffold import write_metadata

    out = write_metadata(workspace, wave, dictionary, mode=mode, force=force, kind="csv")
    echo(f"Wrote {out}")


@metadata_app.command("from-labels")
def metadata_from_labels_cmd(
    data_file: Annotated[Path, typer.Argument(help="SPSS .sav or Stata .dta file.")],
    wave: Annotated[str, typer.Option("--wave", help="Wave id the metadata is for.")],
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")] = Path(
        "."
    ),
    mode: Annotated[str | None, typer.Option(help="Write the full mode's own file.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing metadata file.")] = False,
) -> None:
    """Build metadata JSON from the question text and value labels inside a .sav/.dta file."""
    from panelsynth.scaffold import write_metadata

    out = write_metadata(workspace, wave, data_file, mode=mode, force=force, kind="labels")
    echo(f"Wrote {out}")
