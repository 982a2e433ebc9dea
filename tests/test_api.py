"""The public library API: ``from panelsynth import ...``, the same functions the CLI calls."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_answer
from typer.testing import CliRunner

import panelsynth
from panelsynth import api
from panelsynth.cli import app
from panelsynth.errors import PanelsynthError, WorkspaceError
from panelsynth.llm.base import FakeClient


def test_every_public_name_imports_and_is_documented() -> None:
    for name in panelsynth.__all__:
        if name == "__version__":
            continue
        obj = getattr(panelsynth, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"
    assert panelsynth.run_wave is api.run_wave
    assert set(dir(panelsynth)) >= {"run_wave", "evaluate", "prepare", "open_workspace"}
    with pytest.raises(AttributeError):
        panelsynth.no_such_name  # noqa: B018


def test_functions_are_typed() -> None:
    for fn in (api.open_workspace, api.prepare, api.run_wave, api.dry_run, api.evaluate,
               api.read_metrics, api.open_model):
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, fn.__name__
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())


def test_run_wave_and_dry_run_through_the_api(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer, label="fake/fake")
    opts = panelsynth.RunOptions(n_outputs=4, n_batches=2)
    plan = panelsynth.dry_run(tiny_workspace, "2", "openai/gpt-4o", "gpt", opts)
    assert plan.cost_usd is not None and plan.price["source"].startswith("genai-prices")
    res = panelsynth.run_wave(tiny_workspace, "2", client, "fake", opts)
    assert res.rows == 8 and res.output.exists() and res.manifest_data["status"] == "complete"
    ws = panelsynth.open_workspace(tiny_workspace)
    assert res.output == ws.output_csv("fake", "2")
    with pytest.raises(PanelsynthError, match="run evaluate"):
        panelsynth.read_metrics(ws, "fake", "2")


def test_open_workspace_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="workspace not found"):
        panelsynth.open_workspace(tmp_path / "nope")


def test_the_cli_calls_the_api(tiny_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    called: dict[str, Any] = {}

    def fake_run(workspace: Any, wave: str, model: Any, model_dir: Any, options: Any,
                 **kw: Any) -> Any:
        called.update(workspace=workspace, wave=wave, model=model, model_dir=model_dir)
        raise PanelsynthError("stopped by the test")

    monkeypatch.setattr(api, "run_wave", fake_run)
    r = CliRunner().invoke(
        app, ["run", "-w", str(tiny_workspace), "--wave", "2", "--model", "local/smollm2",
              "--model-dir", "x", "--n-batches", "1"],
    )
    assert r.exit_code == 2 and "stopped by the test" in r.output
    assert called["wave"] == "2" and called["model_dir"] == "x"
    assert called["model"].label == "local/smollm2"


def test_run_wave_works_inside_a_running_event_loop(tiny_workspace: Path) -> None:
    """As in a Jupyter notebook, where a loop is running and ``asyncio.run`` would fail."""
    import asyncio

    client = FakeClient(default=fake_answer, label="fake/fake")

    async def notebook_cell() -> Any:
        return panelsynth.run_wave(
            tiny_workspace, "2", client, "fake", panelsynth.RunOptions(n_outputs=4, n_batches=2)
        )

    res = asyncio.run(notebook_cell())
    assert res.rows == 8
