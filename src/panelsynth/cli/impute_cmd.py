"""``panelsynth impute`` and ``panelsynth evaluate-imputation`` (issue 15)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from panelsynth.cli.app import app, echo

_Workspace = Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")]
_Waves = Annotated[
    list[str] | None,
    typer.Option("--waves", "--wave", help="Waves (repeatable or comma-separated; default: all)."),
]
_Items = Annotated[
    str | None,
    typer.Option("--items", help="Comma-separated variables to impute (default: every item)."),
]
_M = Annotated[int, typer.Option("--m", min=1, max=100, help="Completed data sets (imputations).")]
_Seed = Annotated[int, typer.Option(min=0, help="Random state (imputation k uses [seed, k]).")]
_Temperature = Annotated[
    float, typer.Option(min=0.0, max=2.0, help="Sampling temperature of the LLM imputation.")
]
_Examples = Annotated[
    int, typer.Option(min=1, max=100, help="Few-shot complete real respondents per cluster.")
]
_History = Annotated[
    int, typer.Option(min=0, max=20, help="Earlier waves shown per respondent (their answers).")
]
_Concurrency = Annotated[int, typer.Option(min=1, max=256, help="Concurrent calls.")]
_Key = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key: @FILE, - (standard input) or the key; default: the provider's "
        "environment variable.",
        show_default=False,
    ),
]
_BaseUrl = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")]


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [v.strip() for x in values for v in x.split(",") if v.strip()]
    return out or None


def _client(model: str, api_key: str | None, base_url: str | None, config: Any) -> Any:
    from panelsynth.impute import _runpath as rp
    from panelsynth.llm.keys import key_from_argument

    key, warning = key_from_argument(api_key)
    if warning:
        typer.echo(warning, err=True)
    return rp.open_client(model, api_key=key, base_url=base_url, config=config)


def _confirm(client: Any, what: str, yes: bool) -> None:
    from panelsynth.impute import _runpath as rp

    warning = rp.privacy_warning(client, "real")
    if warning:
        typer.echo(warning, err=True)
    if client.is_local or yes:
        return
    echo(f"About to call {client.label}: {what}.")
    if not rp.Confirmation(needs_yes=rp.needs_yes_message(client, "real"))("Continue?", echo):
        echo("Nothing was run.")
        raise typer.Exit(1)


@contextmanager
def _bar(show: bool) -> Iterator[Any]:
    """A progress bar of the LLM's calls: respondents done of the current wave and imputation."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from panelsynth.cli.app import _err_console

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("respondents, {task.fields[tokens]} tokens"),
        console=_err_console(),
        disable=not show,
    ) as bar:
        task = bar.add_task("imputing", total=None, tokens=0)

        def progress(ev: dict[str, Any]) -> None:
            if "rows" in ev:
                bar.update(
                    task,
                    description=f"wave {ev['wave']}, imputation {ev['k']} of {ev['m']}",
                    completed=ev["rows"],
                    total=ev["wanted"],
                    tokens=ev["input_tokens"] + ev["output_tokens"],
                )

        yield progress


@app.command("impute")
def impute(
    workspace: _Workspace = Path("."),
    model: Annotated[
        str, typer.Option("--model", "-m", help="provider/model, e.g. local/smollm2.")
    ] = "local/smollm2",
    model_dir: Annotated[
        str | None, typer.Option("--model-dir", help="Folder under 'Imputed data/'.")
    ] = None,
    waves: _Waves = None,
    items: _Items = None,
    m: _M = 5,
    dropouts: Annotated[
        bool,
        typer.Option(
            "--dropouts/--no-dropouts",
            help="Also impute the waves a respondent missed after answering an earlier one.",
        ),
    ] = True,
    method: Annotated[
        str, typer.Option("--method", help="llm, hot-deck, locf, mice or mice-pmm.")
    ] = "llm",
    seed: _Seed = 42,
    temperature: _Temperature = 1.0,
    n_examples: _Examples = 5,
    history: _History = 2,
    concurrency: _Concurrency = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start over (old checkpoints kept aside).")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the calls, tokens and cost, then stop (no model call)."
        ),
    ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute steps 1-2.")] = False,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", min=0.0, help="Spending limit in USD.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    api_key: _Key = None,
    base_url: _BaseUrl = None,
) -> None:
    """Fill the gaps of the real respondents (skipped answers, missed waves) m times.

    Writes Imputed data/<model_dir>/wave{W}_imp{k}.csv (every respondent; the answers they gave
    kept byte for byte), wave{W}_imputed_cells.csv (every imputed cell) and manifest.json.
    """
    from panelsynth.config import load_config
    from panelsynth.impute import _runpath as rp
    from panelsynth.impute.run import (
        check_method,
        impute_workspace,
        plan_imputation,
    )
    from panelsynth.workspace import Workspace, check_model_dir

    ws = Workspace(workspace)
    ws.must_exist()
    config = load_config(ws.config_path)
    check_method(method)
    llm = method == "llm"
    md = check_model_dir(model_dir or (rp.default_model_dir(model, config) if llm else method))
    options = _options(
        waves, items, m, seed, temperature, n_examples, history, concurrency, resume,
        dropouts=dropouts, method=method, restart=restart, max_cost_usd=max_cost,
        use_cache=not no_cache,
    )  # fmt: skip
    if dry_run:
        if not llm:
            echo(f"--method {method} calls no model: nothing to plan. Dry run: nothing written.")
            return
        plans = plan_imputation(ws.root, model, md, options, config=config)
        echo(rp.format_plans(plans) if plans else "No gap to impute in these waves.")
        echo("Dry run: no model was called and nothing was written.")
        return
    client = _client(model, api_key, base_url, config) if llm else None
    if client is not None:
        _confirm(client, f"one call per respondent with a gap, wave and imputation (m = {m})", yes)
    try:
        with _bar(show=llm) as progress:
            res = impute_workspace(ws.root, client, md, options, config=config, progress=progress)
    except KeyboardInterrupt:
        echo(
            f"Interrupted. Every finished call is saved under "
            f"{ws.rel(ws.imputed_dir(md) / 'checkpoints')}; run the same command with --resume."
        )
        raise typer.Exit(130) from None
    data = res.manifest_data
    cells = data.get("imputed_cells", {})
    echo(
        f"{sum(cells.values())} cells imputed in {len(cells)} wave(s), m = {m} -> "
        f"{ws.rel(res.folder)} (manifest: {ws.rel(res.manifest)})"
    )


@app.command("evaluate-imputation")
def evaluate_imputation(
    workspace: _Workspace = Path("."),
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Also evaluate the LLM imputation with this model."),
    ] = None,
    model_dir: Annotated[
        str | None, typer.Option("--model-dir", help="Folder under Evaluation/.")
    ] = None,
    methods: Annotated[
        str,
        typer.Option("--methods", help="Comma-separated baselines (llm is added with --model)."),
    ] = "hot-deck,locf,mice",
    waves: _Waves = None,
    items: _Items = None,
    m: _M = 5,
    masks: Annotated[int, typer.Option(min=1, max=100, help="Seeded masks.")] = 1,
    cell_share: Annotated[
        float, typer.Option(min=0.0, max=0.95, help="Share of observed answers to hide.")
    ] = 0.10,
    wave_share: Annotated[
        float,
        typer.Option(min=0.0, max=0.95, help="Share of respondents whose last wave is hidden."),
    ] = 0.10,
    bayes_item: Annotated[
        str, typer.Option(help="Demo only: the item scored against the Bayes-optimal imputation.")
    ] = "vaccimportant",
    seed: _Seed = 42,
    temperature: _Temperature = 1.0,
    n_examples: _Examples = 5,
    history: _History = 2,
    concurrency: _Concurrency = 1,
    resume: Annotated[
        bool, typer.Option("--resume", help="Take over the LLM's finished calls.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    api_key: _Key = None,
    base_url: _BaseUrl = None,
) -> None:
    """Hide answers and waves, impute them with every method, score against the hidden truth.

    Writes Evaluation/<model_dir>/imputation_metrics.json and imputation_report.html.
    """
    from panelsynth.config import load_config
    from panelsynth.impute import _runpath as rp
    from panelsynth.impute.evaluation import EvalSettings
    from panelsynth.impute.evaluation import evaluate_imputation as run_eval
    from panelsynth.workspace import Workspace, check_model_dir

    ws = Workspace(workspace)
    ws.must_exist()
    config = load_config(ws.config_path)
    chosen = _split([methods]) or []
    client = None
    if model:
        chosen = [x for x in chosen if x != "llm"] + ["llm"]
        client = _client(model, api_key, base_url, config)
        _confirm(client, f"{masks} mask(s), one call per masked respondent and imputation", yes)
    md = check_model_dir(
        model_dir or (rp.default_model_dir(model, config) if model else "imputation-baselines")
    )
    options = _options(waves, items, m, seed, temperature, n_examples, history, concurrency, resume)
    settings = EvalSettings(
        masks=masks, cell_share=cell_share, wave_share=wave_share, bayes_item=bayes_item
    )
    doc = run_eval(
        ws.root, chosen, client, md, options, settings, progress=lambda s: echo(f"imputing {s}")
    )
    for row in doc["table"]:
        acc, tvd = row["accuracy (hidden answers)"], row["TVD"]
        echo(
            f"{row['method']}: accuracy {_f(acc)}, TVD {_f(tvd)}, "
            f"coverage {_f(row['coverage 95% (Rubin)'])}"
        )
    echo(f"Metrics: {doc['paths']['json']}")
    echo(f"Report: {doc['paths']['report']}")


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _options(
    waves: list[str] | None,
    items: str | None,
    m: int,
    seed: int,
    temperature: float | None,
    n_examples: int | None,
    history: int,
    concurrency: int | None,
    resume: bool,
    *,
    use_cache: bool = True,
    **more: Any,
) -> Any:
    """The ``ImputeOptions`` of ``impute`` and ``evaluate-imputation`` (``more``: the fields only
    ``impute`` has)."""
    from panelsynth.impute.llm import LLMSettings
    from panelsynth.impute.run import ImputeOptions

    return ImputeOptions(
        waves=_split(waves),
        items=_split([items] if items else None),
        m=m,
        seed=seed,
        llm=LLMSettings(
            temperature=temperature,
            n_examples=n_examples,
            history=history,
            concurrency=concurrency,
            use_cache=use_cache,
            resume=resume,
        ),
        **more,
    )
