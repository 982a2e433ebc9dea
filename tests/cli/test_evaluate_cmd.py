"""`panelsynth evaluate` through the CLI runner: exit codes and messages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))
from evalhelpers import synthetic_like, write_synthetic, write_workspace  # noqa: E402

import panelsynth.cli  # noqa: E402,F401  (registers the commands)
from panelsynth.cli.app import app  # noqa: E402


@pytest.fixture
def small_workspace(tmp_path: Path) -> Path:
    root = write_workspace(tmp_path / "ws", n=240)
    write_synthetic(root, "m1", 1, synthetic_like(root, 1, 100, seed=5))
    return root


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_missing_workspace_exits_2_with_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", "--workspace", str(tmp_path / "nope")])
    assert res.exit_code == 2
    lines = _lines(res.output)
    assert len(lines) == 1
    assert lines[0].startswith("Error: workspace not found:")
    assert "Traceback" not in res.output


def test_unknown_wave_exits_2_with_one_line(small_workspace: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", "--workspace", str(small_workspace), "--wave", "7"])
    assert res.exit_code == 2
    assert _lines(res.output) == [
        "Error: unknown wave '7': no synthetic data for it in m1 (generated waves: 1)"
    ]


def test_unknown_model_dir_exits_2(small_workspace: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", "-w", str(small_workspace), "--model-dir", "other"])
    assert res.exit_code == 2
    assert "model dir 'other' has no synthetic data" in res.output
    assert len(_lines(res.output)) == 1


def test_evaluate_prints_where_tables_and_report_are(small_workspace: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", "--workspace", str(small_workspace), "--wave", "1"])
    assert res.exit_code == 0, res.output
    assert "m1 wave 1: shapes" in res.output
    report = small_workspace / "Evaluation" / "report.html"
    assert f"Report: {report}" in res.output
    assert f"Tables: {small_workspace / 'Evaluation' / 'Evaluation results'}" in res.output
    assert report.exists()


def test_partial_failure_exits_2_after_writing_the_rest(small_workspace: Path) -> None:
    import pandas as pd

    write_synthetic(small_workspace, "bad", 1, pd.DataFrame({"x": [1]}))
    res = CliRunner().invoke(app, ["evaluate", "--workspace", str(small_workspace)])
    assert res.exit_code == 2
    assert "Error: 1 evaluation(s) failed — bad wave 1:" in res.output
    assert "Report:" in res.output


def test_help_lists_options() -> None:
    res = CliRunner().invoke(app, ["evaluate", "--help"])
    assert res.exit_code == 0
    for opt in ("--workspace", "--model-dir", "--wave", "--seed"):
        assert opt in res.output
