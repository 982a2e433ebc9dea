"""The public library API: the functions ``panelsynth`` commands call, for scripts and notebooks.

Everything here is importable from the package itself::

    from panelsynth import build_demo, open_workspace, prepare, run_wave, evaluate, read_metrics

    ws = open_workspace("my-study")
    prepare(ws)                                   # = panelsynth prepare
    result = run_wave(ws, "1", "local/smollm2", options=RunOptions(n_batches=2))  # = panelsynth run
    panel = run_panel(ws, ["1", "3", "5"], "local/smollm2", respondents=60)  # = run --panel
    summary = evaluate(ws, model_dirs=["smollm2"])  # = panelsynth evaluate
    metrics = read_metrics(ws, "smollm2", "1")

Errors a user can fix raise :class:`~panelsynth.errors.PanelsynthError` (one line); the
command line prints that line and exits with code 2.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.errors import PanelsynthError
from panelsynth.llm.base import LLMClient
from panelsynth.progress import Progress
from panelsynth.run.plan import RunOptions
from panelsynth.run.wave import RunResult
from panelsynth.workspace import Workspace

WorkspaceLike = Workspace | str | Path
T = TypeVar("T")


def open_workspace(path: WorkspaceLike) -> Workspace:
    """Open an existing workspace folder (``panelsynth init`` or ``build_demo`` made it).

    Raises:
        WorkspaceError: The folder does not exist.
    """
    ws = path if isinstance(path, Workspace) else Workspace(Path(path))
    ws.must_exist()
    return ws


def workspace_config(workspace: WorkspaceLike) -> PanelsynthConfig:
    """The workspace's ``panelsynth.toml`` (defaults where it is silent)."""
    return load_config(open_workspace(workspace).config_path)


def prepare(
    workspace: WorkspaceLike,
    config: PanelsynthConfig | None = None,
    *,
    progress: Progress | None = None,
    force: bool = False,
    engine: str | None = None,
    missing: str | None = None,
) -> Any:
    """Step 0, ``panelsynth prepare``: clean the raw waves, cluster them (aligned across waves)
    and write ``Original data/``, the var types, metadata and the ``Prepare/`` reports.

    Args:
        workspace: The workspace (object or folder).
        config: Settings (default: the workspace's ``panelsynth.toml``).
        progress: Called with ``{"stage": ..., ...}`` events.
        force: Replace files ``prepare`` did not write (backed up in ``Prepare/replaced/``).
        engine: ``numpy`` (default) or ``stepmix``.
        missing: ``auto``, ``fiml`` or ``category`` (missing answers in the latent class model).

    Returns:
        A :class:`panelsynth.prepare.PrepareResult` (per-wave fit figures, warnings).
    """
    from panelsynth.prepare import prepare_workspace

    ws = open_workspace(workspace)
    cfg = config if config is not None else load_config(ws.config_path)
    return prepare_workspace(
        ws,
        cfg,
        progress=progress,
        force=force,
        engine=engine,
        missing=missing,  # type: ignore[arg-type]
    )


def open_model(
    model: str = "local/smollm2",
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    structured_output: str | None = None,
    config: PanelsynthConfig | None = None,
) -> LLMClient:
    """The client of a model label (``local/smollm2``, ``anthropic/claude-sonnet-4-20250514``,
    ``openai/<name>`` with ``base_url`` for an OpenAI-compatible server).

    Keys come from ``api_key`` or the provider's environment variable; ``structured_output``
    chooses how an OpenAI-compatible server is asked for JSON (default ``auto``).

    Raises:
        ProviderError: Malformed label, unknown provider, missing SDK, key or model file.
    """
    from panelsynth.runner import open_client

    return open_client(
        model,
        api_key=api_key,
        base_url=base_url,
        config=config,
        structured_output=structured_output,
    )


def run_wave(
    workspace: WorkspaceLike,
    wave: str,
    model: str | LLMClient = "local/smollm2",
    model_dir: str | None = None,
    options: RunOptions | None = None,
    *,
    config: PanelsynthConfig | None = None,
    progress: Progress | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    structured_output: str | None = None,
    batch_api: Callable[[], Any] | None = None,
) -> RunResult:
    """Steps 1-3 for one wave, ``panelsynth run --wave W``: cluster descriptions, formatted
    metadata, then validated synthetic rows in ``Final_gen_data/<model_dir>/`` with a manifest.

    Args:
        workspace: The workspace (object or folder).
        wave: The wave id (``"1"``, ``"8a"``).
        model: A model label, or a client from :func:`open_model`.
        model_dir: Output folder name (default: from ``[[models]]`` or the label).
        options: Run settings (rows per call, calls, ``formats=["sav"]``, resume, ...); unset
            fields take the config's values.
        config: Settings (default: the workspace's ``panelsynth.toml``).
        progress: Called with progress events (``{"stage": ...}``, ``{"rows": ..., ...}``).
        api_key, base_url, structured_output: See :func:`open_model` (labels only).
        batch_api: With ``options.batch``: builds the provider's batch API (default: the
            label's, with ``api_key`` or the provider's environment variable).

    Returns:
        The :class:`~panelsynth.run.wave.RunResult`: output CSV, manifest path and content.
    """
    from panelsynth.run import wave as pipeline

    ws, cfg, client, md = _open_run(
        workspace, model, model_dir, api_key, base_url, structured_output, config
    )
    if batch_api is None and options is not None and options.batch:
        from panelsynth.run.batch import batch_factory

        batch_api = batch_factory(client.label, api_key)
    return _outside_event_loop(
        pipeline.run_wave,
        ws.root,
        wave,
        client,
        md,
        options,
        config=cfg,
        progress=progress,
        batch_api=batch_api,
    )


def run_panel(
    workspace: WorkspaceLike,
    waves: Sequence[str],
    model: str | LLMClient = "local/smollm2",
    model_dir: str | None = None,
    options: RunOptions | None = None,
    *,
    respondents: int | None = None,
    config: PanelsynthConfig | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    structured_output: str | None = None,
) -> Any:
    """A synthetic panel, ``panelsynth run --panel --waves 1,3,5``: ``respondents`` synthetic
    respondents (default ``generation.respondents``, else the first wave's real row count) with
    stable ids, their cluster paths and presence drawn from the real panel, each later wave
    written conditioned on their previous answers.

    Args:
        workspace: The workspace (object or folder); its waves need ``study.id_column``.
        waves: At least two wave ids of the study (any order; generated in study order).
        model, model_dir, options, config, progress, api_key, base_url, structured_output:
            As for :func:`run_wave` (``options.resume`` continues a panel after a stop).

    Returns:
        A :class:`~panelsynth.panel.run.PanelRunResult`: per-wave CSVs, ``gen_panel.csv`` (long
        format), the panel manifest and the rows per wave.

    Raises:
        PanelsynthError: One wave, no id column, ids that link nobody, options a panel does not
            support (``--calibrate``), an existing panel without resume/restart.
    """
    from panelsynth.panel.run import run_panel as generate_panel

    ws, cfg, client, md = _open_run(
        workspace, model, model_dir, api_key, base_url, structured_output, config
    )
    n = respondents if respondents is not None else cfg.generation.respondents
    return _outside_event_loop(
        generate_panel,
        ws.root,
        list(waves),
        client,
        md,
        options,
        respondents=n,
        config=cfg,
        progress=progress,
    )


def _outside_event_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, in a worker thread when this thread runs an event loop.

    The generation step runs its concurrent calls with ``asyncio.run``, which cannot start inside
    a running loop — the case in Jupyter notebooks and async applications.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="panelsynth-run") as pool:
        return pool.submit(fn, *args, **kwargs).result()


def dry_run(
    workspace: WorkspaceLike,
    wave: str,
    model: str = "local/smollm2",
    model_dir: str | None = None,
    options: RunOptions | None = None,
    *,
    config: PanelsynthConfig | None = None,
) -> Any:
    """``panelsynth run --dry-run`` for one wave: calls, tokens and cost per stage (with the
    price source, its date and the projected prompt-cache saving), calling no model.

    Returns:
        A :class:`panelsynth.run.dryrun.WavePlan` (``format_plans([plan])`` prints it).
    """
    from panelsynth.run.dryrun import plan_wave, planning_client
    from panelsynth.runner import default_model_dir
    from panelsynth.workspace import check_model_dir

    ws = open_workspace(workspace)
    cfg = config if config is not None else load_config(ws.config_path)
    md = check_model_dir(model_dir or default_model_dir(model, cfg))
    return plan_wave(ws.root, wave, planning_client(model), md, options, config=cfg)


def evaluate(
    workspace: WorkspaceLike,
    *,
    model_dirs: Sequence[str] | None = None,
    waves: Sequence[str] | None = None,
    seed: int = 42,
    progress: Callable[[str, int, int], None] | None = None,
) -> Any:
    """``panelsynth evaluate``: score the synthetic waves against the real ones.

    Writes ``Evaluation/<model_dir>/wave{W}_metrics.json`` (read it with :func:`read_metrics`),
    per-variable plots, the model x wave tables and ``Evaluation/report.html``.

    Returns:
        A :class:`panelsynth.evaluate.EvaluationSummary` (outcomes, tables, report path).
    """
    from panelsynth.evaluate import evaluate_workspace

    ws = open_workspace(workspace)
    return evaluate_workspace(
        ws.root, model_dirs=model_dirs, waves=waves, seed=seed, progress=progress
    )


def metrics_path(workspace: WorkspaceLike, model_dir: str, wave: str) -> Path:
    """Where :func:`evaluate` writes the metrics JSON of one model dir and wave."""
    return open_workspace(workspace).eval_metrics_json(model_dir, wave)


def read_metrics(workspace: WorkspaceLike, model_dir: str, wave: str) -> dict[str, Any]:
    """The metrics JSON of one evaluated model dir and wave.

    Raises:
        PanelsynthError: Not evaluated yet.
    """
    path = metrics_path(workspace, model_dir, wave)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PanelsynthError(
            f"no metrics for {model_dir} wave {wave} ({path}) — run evaluate() first"
        ) from None


def _open_run(
    workspace: WorkspaceLike,
    model: str | LLMClient,
    model_dir: str | None,
    api_key: str | None,
    base_url: str | None,
    structured_output: str | None,
    config: PanelsynthConfig | None,
) -> tuple[Workspace, PanelsynthConfig, LLMClient, str]:
    """The workspace, its config, the client (``model`` opened unless it is one) and the
    checked model folder (default: from the model's label) of a run."""
    from panelsynth.runner import default_model_dir
    from panelsynth.workspace import check_model_dir

    ws = open_workspace(workspace)
    cfg = config if config is not None else load_config(ws.config_path)
    client = (
        open_model(
            model,
            api_key=api_key,
            base_url=base_url,
            structured_output=structured_output,
            config=cfg,
        )
        if isinstance(model, str)
        else model
    )
    return ws, cfg, client, check_model_dir(model_dir or default_model_dir(client.label, cfg))
