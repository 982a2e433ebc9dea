"""`panelsynth impute` / `evaluate-imputation` through the CLI, and a kill and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fakes import varied_rows
from servers.openai_stub import OpenAIStub, request_schema
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.demo import build_demo
from panelsynth.impute.output import imputed_cells_csv, imputed_csv
from panelsynth.workspace import Workspace

PANELSYNTH = str(Path(sys.executable).with_name("panelsynth"))
ITEMS = "vaccimportant,vaccsafe,worryflu"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("clidemo") / "ws", n_respondents=150).workspace.root


@pytest.fixture
def ws(demo_root: Path, tmp_path: Path) -> Workspace:
    import shutil

    shutil.copytree(demo_root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_a_wave_without_an_id_column_is_refused_with_one_line(ws: Workspace) -> None:
    path = ws.original_data("2")
    pd.read_csv(path).drop(columns=["respondent_id"]).to_csv(path, index=False)
    res = CliRunner().invoke(
        app, ["impute", "-w", str(ws.root), "--method", "hot-deck", "--waves", "1,2"]
    )
    assert res.exit_code == 2, res.output
    lines = _lines(res.output)
    assert len(lines) == 1 and "Traceback" not in res.output
    assert lines[0].startswith("Error: Original data/wave2.csv has no id column 'respondent_id'")
    assert not ws.imputed_dir("hot-deck").exists() or not any(ws.imputed_dir("hot-deck").iterdir())


def test_baselines_run_without_a_model_and_refuse_to_overwrite(ws: Workspace) -> None:
    args = ["impute", "-w", str(ws.root), "--method", "locf", "--waves", "1", "--waves", "2"]
    res = CliRunner().invoke(app, [*args, "--m", "2"])
    assert res.exit_code == 0, res.output
    assert imputed_csv(ws, "locf", "2", 2).exists() and imputed_cells_csv(ws, "locf", "2").exists()
    manifest = json.loads((ws.imputed_dir("locf") / "manifest.json").read_text())
    assert manifest["method"] == "locf" and manifest["status"] == "complete"
    again = CliRunner().invoke(app, [*args, "--m", "2"])
    assert again.exit_code == 2 and "--restart" in again.output


def test_dry_run_prints_calls_and_cost_and_writes_nothing(ws: Workspace) -> None:
    res = CliRunner().invoke(
        app,
        ["impute", "-w", str(ws.root), "--model", "openai/gpt-4o-mini", "--waves", "1,2",
         "--items", ITEMS, "--m", "3", "--dry-run"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "impute" in res.output and "$" in res.output
    assert "Dry run: no model was called and nothing was written." in res.output
    assert not (ws.root / "Imputed data").exists() or not any((ws.root / "Imputed data").iterdir())


def _impute_requests(stub: OpenAIStub) -> list[str]:
    """The respondent text of every imputation call the stub received."""
    out = []
    for r in stub.requests:
        schema = request_schema(r.body) or {}
        if "rows" in schema.get("properties", {}):
            out.append(r.body["messages"][-1]["content"].rsplit("Respondent to complete", 1)[1])
    return out


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full.update(PYTHONUNBUFFERED="1", OPENAI_API_KEY="sk-test-not-real", **env)
    return subprocess.run(
        [PANELSYNTH, *args], capture_output=True, text=True, env=full, timeout=600
    )


def test_a_resume_after_a_kill_neither_repeats_nor_loses_a_respondent(ws: Workspace) -> None:
    with OpenAIStub(varied_rows) as stub:
        base = ["impute", "-w", str(ws.root), "--model", "openai/stub-model", "--base-url",
                stub.base_url, "--waves", "1,2", "--items", ITEMS, "--m", "2", "--yes"]  # fmt: skip
        whole = _run([*base, "--model-dir", "whole"])
        assert whole.returncode == 0, whole.stdout + whole.stderr
        every = _impute_requests(stub)
        stub.reset()
        killed = _run([*base, "--model-dir", "cut"], PANELSYNTH_FAULT_AT="impute-append:5")
        assert killed.returncode != 0
        # the 5th finished call is on disk; the next calls may have been sent while it was
        # written (a kill loses calls in flight, never a finished one); calls run one at a
        # time, so the first five requests are the five finished respondents
        first = _impute_requests(stub)
        assert len(first) >= 5
        finished = first[:5]
        stub.reset()
        resumed = _run([*base, "--model-dir", "cut", "--resume"])
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        second = _impute_requests(stub)
    # the resumed run asked for exactly the respondents the killed one had not finished
    assert sorted(finished + second) == sorted(every)
    assert not set(finished) & set(second)
    ckpts = sorted((ws.imputed_dir("cut") / "checkpoints").glob("*.jsonl"))
    assert len(ckpts) == 4  # two waves x two imputations
    for path in ckpts:
        recs = [json.loads(x) for x in path.read_text().splitlines()[1:]]
        done = [r["respondent"] for r in recs if r.get("rows")]
        assert len(done) == len(set(done))
    for w in ("1", "2"):
        for k in (1, 2):
            assert (
                imputed_csv(ws, "cut", w, k).read_bytes()
                == imputed_csv(ws, "whole", w, k).read_bytes()
            )
        assert (
            imputed_cells_csv(ws, "cut", w).read_bytes()
            == imputed_cells_csv(ws, "whole", w).read_bytes()
        )
    manifest = json.loads((ws.imputed_dir("cut") / "manifest.json").read_text())
    assert sum(p["resumed_calls"] for p in manifest["passes"]) == 5


def test_evaluate_imputation_writes_the_json_and_the_report(ws: Workspace) -> None:
    res = CliRunner().invoke(
        app,
        ["evaluate-imputation", "-w", str(ws.root), "--methods", "hot-deck,locf",
         "--waves", "1,2", "--m", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    folder = ws.root / "Evaluation" / "imputation-baselines"
    doc = json.loads((folder / "imputation_metrics.json").read_text())
    assert [r["method"] for r in doc["table"]] == ["hot-deck", "LOCF"]
    assert {r["method"] for r in doc["bayes_item"]["rows"]} == {"Bayes-optimal", "hot-deck", "LOCF"}
    assert (folder / "imputation_report.html").exists()
    assert "Report: Evaluation/imputation-baselines/imputation_report.html" in res.output
