"""``panelsynth run --panel``: every piece of the panel's command line (called from ``run``)."""

from __future__ import annotations

import math
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
    from panelsynth.api import dry_run as plan_one_wave
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
    seed = g.seed if options.seed is None else options.seed
    setup = panel_draw(ws, config, waves, n, seed)  # a bad request fails before any key or call
    if dry_run:
        echo(_draw_line(setup))
        local = model.startswith("local/")
        n_out = options.n_outputs or g.n_outputs or (10 if local else 20)
        plans = []
        for w in setup.structure.requested:
            present = int(setup.draw.present[:, setup.draw.waves.index(w)].sum())
            opts = _with(  # a calibrated panel has no pool: one row per respondent and wave
                options,
                n_outputs=n_out,
                n_batches=max(1, math.ceil(present / n_out)),
                calibrate=False,
            )
            plans.append(plan_one_wave(ws.root, w, model, model_dir, opts, config=config))
        echo(rp.format_plans(plans))
        for line in _request_tokens(ws, config, options, setup, model):
            echo(line)
        if g.calibrate if options.calibrate is None else options.calibrate:
            echo(
                "Calibrated panel: the host draws the first wave's anchors (and, in the full "
                "mode, each wave's missingness patterns); no oversampled pool."
            )
        echo(
            "Panel dry run: calls per wave = present respondents / rows per call. No model was "
            "called and nothing was written."
        )
        return
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
        res = run_panel(ws.root, waves, client, model_dir, options, respondents=n, config=config)
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


def _request_tokens(ws: Any, config: Any, options: Any, setup: Any, model: str) -> list[str]:
    """Per later wave, the input tokens of the requested respondents' lines (id, cluster path,
    previous answers) that the per-wave projection above does not count (estimated from one real
    respondent's answers)."""
    from panelsynth.panel import _runpath as rp
    from panelsynth.panel.trajectories import format_requested_row

    client = rp.planning_client(model)
    mode = options.mode or config.generation.mode
    draw, requested = setup.draw, list(setup.structure.requested)
    out = []
    for prev, wave in zip(requested, requested[1:], strict=False):
        wd = rp.load_wave_for_run(ws, prev, config, mode)
        answers = wd.frame.iloc[0][wd.variables].to_dict() if len(wd.frame) else {}
        t = draw.waves.index(wave)
        path = [(w, 1) for w in draw.waves[: t + 1]]
        text = format_requested_row(
            str(draw.ids[-1]), path=path, wave=wave, cluster=1, previous=answers,
            previous_wave=prev, id_column=config.study.id_column,
        )  # fmt: skip
        present = int(draw.present[:, t].sum())
        tokens = present * (client.count_tokens(text) + 2)
        out.append(
            f"wave {wave}: plus about {tokens} input tokens for its {present} requested "
            f"respondents' ids, cluster paths and previous answers (not in the table above)"
        )
    return out


def _with(options: Any, **changes: Any) -> Any:
    return options.model_copy(update=changes)


def _draw_line(setup: Any) -> str:
    s = setup.draw.summary()
    parts = [f"wave {w['wave']}: {w['present']}" for w in s["waves"]]
    return (
        f"Panel: {s['respondents']} synthetic respondents drawn (seed {setup.seed}); present "
        + ", ".join(parts)
    )
