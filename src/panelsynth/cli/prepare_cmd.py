"""``panelsynth prepare``: raw waves -> Original data/ with aligned cluster labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from panelsynth.cli.app import app, echo


@app.command("prepare")
def prepare(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")] = Path(
        "."
    ),
    method: Annotated[
        str | None,
        typer.Option(help="lca (latent class analysis), kmodes or kmeans; overrides the config."),
    ] = None,
    k: Annotated[int | None, typer.Option(help="Number of clusters; overrides the config.")] = None,
    seed: Annotated[int | None, typer.Option(help="Clustering seed; overrides the config.")] = None,
    missing: Annotated[
        str | None,
        typer.Option(
            help="Missing answers in the latent class model: auto (own category for items "
            "missing <= 25%, FIML otherwise), fiml or category."
        ),
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="LCA estimator: numpy (fast) or stepmix (reference, slow).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace Original data/, var types and metadata files not written by prepare "
            "(old files are copied to Prepare/replaced/ first).",
        ),
    ] = False,
) -> None:
    """Clean raw waves, cluster respondents into latent classes aligned across waves, and write
    Original data/, the dense and full var types and metadata, and reports in Prepare/."""
    from panelsynth.api import prepare as prepare_workspace
    from panelsynth.config import load_config
    from panelsynth.errors import ConfigError
    from panelsynth.workspace import Workspace

    ws = Workspace(workspace)
    cfg = load_config(ws.config_path)
    for flag, value, choices in (
        ("--method", method, ("lca", "kmodes", "kmeans")),
        ("--missing", missing, ("auto", "fiml", "category")),
        ("--engine", engine, ("numpy", "stepmix")),
    ):
        if value is not None and value not in choices:
            raise ConfigError(f"{flag} must be one of {', '.join(choices)}, not {value!r}")
    from pydantic import ValidationError

    try:
        if method is not None:
            cfg.clustering.method = method  # type: ignore[assignment]
        if k is not None:
            cfg.clustering.k = k
        if seed is not None:
            cfg.clustering.seed = seed
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"clustering.{first['loc'][-1]}: {first['msg']}") from None

    from rich.progress import Progress

    console = _console()
    with Progress(transient=True, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("preparing", total=None)

        def on_event(event: dict[str, Any]) -> None:
            if event.get("stage") == "wave":
                bar.update(
                    task,
                    total=event["total"],
                    completed=event["done"],
                    description=f"wave {event['wave']}",
                )
            elif event.get("stage") == "write":
                bar.update(task, completed=event["done"], description="writing")

        result = prepare_workspace(
            ws,
            cfg,
            progress=on_event,
            force=force,
            engine=engine,
            missing=missing,  # type: ignore[arg-type]
        )

    for r in result.waves:
        sizes = "/".join(str(n) for n in r.class_sizes.values())
        post = "/".join(f"{a:.2f}" for a in r.average_posterior.values())
        best = min(r.bic, key=r.bic.get) if r.bic else "-"
        echo(
            f"wave {r.wave}: {r.n_respondents} respondents, {len(r.items)} items, "
            f"clusters {sizes}, avg posterior {post}, entropy {r.entropy:.2f}, "
            f"best k by BIC {best}, dense: {', '.join(r.dense_vars)}"
        )
        if r.truth is not None:
            t = r.truth
            echo(
                f"  truth: ARI {t.ari:.3f} (Bayes {t.ari_bayes:.3f}, ratio {t.ari_ratio:.2f}), "
                f"accuracy {t.accuracy:.3f} (Bayes {t.accuracy_bayes:.3f}, ratio "
                f"{t.accuracy_ratio:.2f}) — {'ok' if t.passed else 'BELOW 0.8 x Bayes'}"
            )
    used = list(dict.fromkeys(d for r in result.waves for d in r.demographics))
    echo(
        f"Demographics: {', '.join(used)} (not clustered on; calibration anchors)"
        if used
        else "Demographics: none found — set prepare.demographics to the data's names"
    )
    for line in _assumed_order_lines(result.assumed_ordinals(), ws.rel(ws.study_dictionary())):
        echo(line)
    if result.replaced:
        echo(f"Backed up {len(result.replaced)} replaced files to Prepare/replaced/.")
    if result.warnings:
        echo(f"{len(result.warnings)} warnings — see Prepare/warnings.txt.")
    echo(
        f"Wrote Original data/ for {len(result.waves)} waves; reports in "
        f"{ws.rel(ws.prepare_dir())}/ (fit_report.csv, item_ranking.csv, transitions.csv, "
        f"types.csv, missing_codes.csv)."
    )


#: Variables named in the report of assumed orders; the rest are in Prepare/types.csv.
SHOWN_ASSUMED = 8


def _assumed_order_lines(names: list[str], dictionary: str) -> list[str]:
    """The report of the variables typed ordinal only because their codes are numbers, and how
    to override it."""
    if not names:
        return []
    shown = ", ".join(names[:SHOWN_ASSUMED])
    more = len(names) - SHOWN_ASSUMED
    if more > 0:
        shown += f" and {more} more (Prepare/types.csv)"
    first = names[0]
    return [
        f"Typed ordinal because their codes are numbers (no type in the dictionary, no "
        f"measurement level in the file): {shown}.",
        f"  If one is unordered (a party, a region), write categorical in its type column in "
        f"{dictionary} (columns variable,question,responses,type; a row "
        f"'{first},,,categorical' keeps the file's labels).",
    ]


def _console():
    from rich.console import Console

    return Console(stderr=True)
