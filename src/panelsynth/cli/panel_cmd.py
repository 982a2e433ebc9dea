"""``panelsynth run --panel``: every piece of the panel's command line (called from ``run``)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from panelsynth.cli.app import echo


def run_panel_command(
    ws_root: Path,
    config: Any,
    waves: list[str],
    *,
    model: str,
    model_dir: str,
    options: Any,
    respondents: int | None,
    dry_run: bool,
    api_key: str | None,
    base_url: str | None,
    structured_output: str | None,
    yes: bool,
) -> None:
    """Draw the panel, then generate its waves (or, with ``dry_run``, print what it would cost).

    ``respondents`` None: ``generation.respondents`` of the config, else the first requested
    wave's real row count.
    """
    from panelsynth.errors import PanelsynthError
    from panelsynth.llm.keys import key_from_argument
    from panelsynth.panel import _runpath as rp
    from panelsynth.panel.run import run_panel
    from panelsynth.panel.setup import check_panel_options, panel_draw
    from panelsynth.runner import Confirmation, needs_yes_message, open_client, privacy_warning
    from panelsynth.workspace import Workspace

    ws = Workspace(ws_root)
    g = config.generation
    n = respondents or g.respondents
    check_panel_options(options, config)
    if dry_run:
        from panelsynth.panel.dryrun import plan_panel

        # hosted models: no key, no SDK, no network
        setup, plans = plan_panel(ws, config, waves, model, model_dir, options, respondents=n)
        echo(_draw_line(setup))
        echo(rp.format_plans(plans))
        if g.calibrate if options.calibrate is None else options.calibrate:
            echo(
                "Calibrated panel: the host draws the first wave's anchors (and, in the full "
                "mode, each wave's missingness patterns); no oversampled pool."
            )
        echo("Panel dry run: no model was called and nothing was written.")
        return
    # a bad request (one wave, no id column, ids that link nobody) fails before any key or call
    panel_draw(ws, config, waves, n, g.seed if options.seed is None else options.seed)
    key, key_warning = key_from_argument(api_key)
    if key_warning:
        typer.echo(key_warning, err=True)
    client = open_client(
        model, api_key=key, base_url=base_url, config=config, structured_output=structured_output
    )
    warning = privacy_warning(client, "real")
    if warning:
        typer.echo(warning, err=True)
    if not client.is_local and not yes:
        echo(f"About to call {model} for a synthetic panel over waves {', '.join(waves)}.")
        if not Confirmation(needs_yes=needs_yes_message(client, "real"))("Continue?", echo):
            echo("Nothing was run.")
            raise typer.Exit(1)
    try:
        with _PanelBar() as bar:
            res = run_panel(
                ws.root, waves, client, model_dir, options, respondents=n, config=config,
                progress=bar.event,
            )  # fmt: skip
    except KeyboardInterrupt:
        cmd = [
            "panelsynth", "run", "--panel", "--workspace", str(ws.root), "--waves",
            ",".join(waves), "--model", model, "--model-dir", model_dir, "--resume",
        ]  # fmt: skip
        echo(
            "Interrupted. Every finished call is saved in the waves' checkpoints; resume with: "
            + shlex.join(cmd)
            + " (and the same other options)"
        )
        raise typer.Exit(130) from None
    except PanelsynthError:
        raise
    m = res.manifest_data
    for w in res.waves:
        pw = m["per_wave"][w]
        echo(
            f"wave {w}: {pw['rows']}/{pw['wanted']} respondents -> {ws.rel(res.outputs[w])} "
            f"({pw['calls']} calls, {pw['input_tokens']} input + {pw['output_tokens']} output "
            f"tokens, {pw['rejected_rows']} rows rejected for a wrong id or cluster)"
        )
    echo(
        f"panel: {m['respondents']} respondents over waves {', '.join(res.waves)} -> "
        f"{ws.rel(res.long_output)}; manifest {ws.rel(res.manifest)}"
    )


class _PanelBar:
    """One progress bar per wave (they advance together: a later wave's calls start once its
    respondents' previous rows exist): respondents written, elapsed, remaining, tokens."""

    def __init__(self) -> None:
        from panelsynth.cli.waves import wave_bars

        self.bar = wave_bars("", "respondents")
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _PanelBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def event(self, ev: dict[str, Any]) -> None:
        wave = ev.get("wave")
        if wave is None:
            return
        if wave not in self.tasks:
            self.tasks[wave] = self.bar.add_task(
                "panel", total=ev.get("wanted"), wave=wave, tokens=0
            )
        if "rows" in ev:
            self.bar.update(
                self.tasks[wave],
                completed=ev["rows"],
                total=ev["wanted"],
                tokens=ev["input_tokens"] + ev["output_tokens"],
            )


def _draw_line(setup: Any) -> str:
    s = setup.draw.summary()
    parts = [f"wave {w['wave']}: {w['present']}" for w in s["waves"]]
    return (
        f"Panel: {s['respondents']} synthetic respondents drawn (seed {setup.seed}); present "
        + ", ".join(parts)
    )
