"""``panelsynth batch status|collect|cancel``: the provider batches recorded in a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from panelsynth.cli.app import _Group, app, echo

batch_app = typer.Typer(
    cls=_Group,
    help="Provider batches (OpenAI Batch, Anthropic Message Batches) recorded in the wave "
    "checkpoints: status, collect, cancel.",
    no_args_is_help=True,
)
app.add_typer(batch_app, name="batch")

Workspace_ = Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")]
ModelDir = Annotated[
    str | None, typer.Option("--model-dir", help="Model dir (default: every model dir).")
]
Waves = Annotated[
    list[str] | None,
    typer.Option("--wave", "--waves", help="Wave id (repeatable; default: every wave)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key: @FILE, - (standard input) or the key itself. Default: the provider's "
        "environment variable (OPENAI_API_KEY, ANTHROPIC_API_KEY).",
        show_default=False,
    ),
]
BaseUrl = Annotated[
    str | None, typer.Option("--base-url", help="API root (default: the provider's).")
]


def _setup(workspace: Path, model_dir: str | None, wave: list[str] | None, api_key: str | None):
    from panelsynth.batch_ops import find_jobs
    from panelsynth.llm.keys import key_from_argument
    from panelsynth.workspace import Workspace

    ws = Workspace(workspace)
    ws.must_exist()
    found = find_jobs(ws, model_dir, wave)
    key, warning = key_from_argument(api_key)
    if warning:
        typer.echo(warning, err=True)
    return ws, found, key


def _print_statuses(rows: list[Any]) -> None:
    from panelsynth.batch_ops import describe_status

    for wj, job, status, error in rows:
        line = (
            f"{wj.model_dir} wave {wj.wave}: {job.provider} batch {job.batch_id} "
            f"({len(job.custom_ids)} requests, submitted {job.submitted_at}): "
            f"{describe_status(status, job)}"
        )
        echo(line + (f" — could not be polled: {error}" if error else ""))


@batch_app.command("status")
def status(
    workspace: Workspace_ = Path("."),
    model_dir: ModelDir = None,
    wave: Waves = None,
    api_key: ApiKey = None,
    base_url: BaseUrl = None,
) -> None:
    """Where every recorded provider batch stands (requests done, failed, not run)."""
    from panelsynth.batch_ops import poll_all

    ws, found, key = _setup(workspace, model_dir, wave, api_key)
    rows = poll_all(found, key, base_url)
    _print_statuses(rows)
    if any(s is not None and not s.terminal for _, _, s, _ in rows):
        echo(
            "Running batches finish within 24 hours; `panelsynth batch collect` (or the run "
            "with --resume) takes their results over once they have ended."
        )
    if any(err for *_, err in rows):
        raise typer.Exit(2)


@batch_app.command("collect")
def collect(
    workspace: Workspace_ = Path("."),
    model_dir: ModelDir = None,
    wave: Waves = None,
    api_key: ApiKey = None,
    base_url: BaseUrl = None,
    trust_workspace_models: Annotated[
        bool,
        typer.Option(
            "--trust-workspace-models",
            help="Validate rows with the workspace's pydantic_models/*.py, as the run did "
            "with this flag (Python code: it runs with your rights).",
        ),
    ] = False,
) -> None:
    """Download the results of ended batches into the wave checkpoints.

    Rows are validated as a run does; `panelsynth run ... --resume` takes the calls over without
    paying for them again.
    """
    from panelsynth.batch_ops import Collected, collect_wave, describe_status
    from panelsynth.config import load_config
    from panelsynth.errors import PanelsynthError

    ws, found, key = _setup(workspace, model_dir, wave, api_key)
    config = load_config(ws.config_path)
    problems = 0
    for wj in found:
        where = f"{wj.model_dir} wave {wj.wave}"
        try:
            done = collect_wave(
                ws, config, wj, key, base_url, trust_workspace_models=trust_workspace_models
            )
        except PanelsynthError as err:
            echo(f"{where}: not collected: {err}")
            problems += 1
            continue
        for item in done:
            if isinstance(item, Collected):
                failed = ", ".join(f"{k} {v}" for k, v in sorted(item.failed.items()))
                cost = "" if item.cost_usd is None else f"; ${item.cost_usd:.4f} at batch prices"
                echo(
                    f"{where}: batch {item.job.batch_id} ({item.job.status}): "
                    f"{item.with_rows} calls with {item.rows} rows ({item.invalid_rows} invalid "
                    f"rows dropped), {sum(item.failed.values())} failed"
                    + (f" ({failed})" if failed else "")
                    + f", {item.not_run} not run, {item.already} already in the checkpoint"
                    + cost
                )
            else:
                job, st, error = item
                if error:
                    problems += 1
                    echo(f"{where}: batch {job.batch_id} could not be collected: {error}")
                else:
                    echo(f"{where}: batch {job.batch_id} is {describe_status(st, job)}; not yet")
    echo(
        "Resume the run (same command with --resume) to take the collected calls over; failed "
        "and not-run calls are made again."
    )
    if problems:
        raise typer.Exit(2)


@batch_app.command("cancel")
def cancel(
    workspace: Workspace_ = Path("."),
    model_dir: ModelDir = None,
    wave: Waves = None,
    api_key: ApiKey = None,
    base_url: BaseUrl = None,
) -> None:
    """Cancel the recorded batches that have not ended.

    What they finished stays collectable (and is paid for); what they did not run is not.
    """
    from panelsynth.batch_ops import cancel_all

    ws, found, key = _setup(workspace, model_dir, wave, api_key)
    rows = cancel_all(found, key, base_url)
    _print_statuses(rows)
    echo(
        "`panelsynth batch collect` takes over what the batches finished; the run with --resume "
        "submits the rest again."
    )
    if any(err for *_, err in rows):
        raise typer.Exit(2)
