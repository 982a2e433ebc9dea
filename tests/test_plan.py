"""Dry runs: calls, tokens and cost per stage, with no model call and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import fake_answer
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.config import load_config
from panelsynth.llm.base import FakeClient
from panelsynth.run.dryrun import PlanningClient, plan_wave, planning_client
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace

OPTS = {"n_outputs": 3, "n_batches": 5}


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


def _stages(plan) -> dict[str, tuple[int, bool]]:  # type: ignore[no-untyped-def]
    return {s.stage: (s.calls, s.cached) for s in plan.stages}


def test_dry_run_calls_no_model_and_writes_nothing(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer)
    before = _tree(tiny_workspace)
    plan = plan_wave(tiny_workspace, "2", client, "fake", RunOptions(**OPTS))
    assert client.calls == []
    assert _tree(tiny_workspace) == before
    assert _stages(plan) == {"step1": (1, False), "step2": (1, False), "step3": (5, False)}
    assert plan.calls == 7 and plan.max_calls >= 5
    assert all(s.input_tokens > 0 and s.output_tokens > 0 for s in plan.stages)
    assert plan.stages[2].counted == "estimate"
    assert plan.cost_usd is None and "no price for fake/fake" in plan.cost_basis


def test_projection_after_steps_1_2_are_cached_is_the_real_prompt(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer)
    res = run_wave(tiny_workspace, "2", client, "fake", RunOptions(**OPTS))
    plan = plan_wave(tiny_workspace, "2", client, "other", RunOptions(**OPTS))
    assert _stages(plan) == {"step1": (0, True), "step2": (0, True), "step3": (5, False)}
    st3 = plan.stages[2]
    assert st3.counted == "exact"
    real = res.manifest_data["tokens"]["per_stage"]["step3"]
    # the same prompts, counted with the same tokenizer: the projection is exact
    assert st3.input_tokens == real["input_tokens"]
    assert 0.5 * real["output_tokens"] < st3.output_tokens < 2 * real["output_tokens"]


@pytest.mark.parametrize("use_cache", [True, False])
def test_dry_run_reports_steps_1_2_cached_exactly_when_the_run_finds_them(
    tiny_workspace: Path, use_cache: bool
) -> None:
    """The dry run looks the cache up with the run's key (its seed included): a step is
    projected as cached, 0 calls, exactly when the run with the same options makes no call."""
    first = RunOptions(seed=1, **OPTS)
    run_wave(tiny_workspace, "2", FakeClient(default=fake_answer), "fake", first)
    # seed 1 is cached; seed 7 is new on its first run, cached on its second
    for i, (seed, hit) in enumerate([(1, True), (7, False), (7, True)]):
        opts = RunOptions(seed=seed, use_cache=use_cache, **OPTS)
        plan = plan_wave(tiny_workspace, "2", FakeClient(default=fake_answer), "plan", opts)
        client = FakeClient(default=fake_answer)
        res = run_wave(tiny_workspace, "2", client, f"run{i}", opts)
        ran = res.manifest_data["tokens"]["per_stage"]
        for stage in ("step1", "step2"):
            assert _stages(plan)[stage] == (ran[stage]["calls"], ran[stage]["cached"])
            assert _stages(plan)[stage] == ((0, True) if hit and use_cache else (1, False))
        assert res.manifest_data["settings"]["seed"] == seed


def test_plan_estimate_before_caching_is_close_to_the_real_prompt(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer)
    before = plan_wave(tiny_workspace, "2", client, "fake", RunOptions(**OPTS))
    res = run_wave(tiny_workspace, "2", client, "fake", RunOptions(**OPTS))
    real = res.manifest_data["tokens"]["per_stage"]
    for s in before.stages:  # placeholder descriptions: same order of magnitude
        want = real[s.stage]["input_tokens"]
        assert 0.5 * want <= s.input_tokens <= 2 * want


def test_cost_from_the_price_table(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    with open(ws.config_path, "a", encoding="utf-8") as fh:
        fh.write('\n[prices."fake/fake"]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n')
    client = FakeClient(default=fake_answer)
    plan = plan_wave(tiny_workspace, "2", client, "fake", RunOptions(**OPTS))
    expected = sum(s.input_tokens * 3.0 + s.output_tokens * 15.0 for s in plan.stages) / 1e6
    assert plan.cost_usd == pytest.approx(expected) and plan.cost_usd > 0
    assert plan.cost_basis == "config prices"
    assert sum(s.cost_usd for s in plan.stages) == pytest.approx(plan.cost_usd)  # type: ignore[misc]


def test_resume_plans_only_the_missing_calls(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer)
    run_wave(tiny_workspace, "2", client, "fake", RunOptions(**OPTS))
    ckpt = Workspace(tiny_workspace).checkpoint("fake", "2")
    lines = ckpt.read_text().splitlines()
    ckpt.write_text("\n".join(lines[:3]) + "\n")  # header + 2 finished calls
    plan = plan_wave(tiny_workspace, "2", client, "fake", RunOptions(resume=True, **OPTS))
    assert plan.stages[2].calls == 3
    assert any("2 of 5 calls are already done" in n for n in plan.notes)


def test_hosted_models_are_planned_without_key_or_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = planning_client("anthropic/claude-sonnet-4-20250514")
    assert isinstance(client, PlanningClient) and not client.is_local
    assert client.count_tokens("x" * 40) == 10
    with pytest.raises(AssertionError):
        client.create([], object)  # type: ignore[arg-type]


def test_cli_dry_run_needs_no_key_and_prints_the_table(
    tiny_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    before = _tree(tiny_workspace)
    r = CliRunner().invoke(
        app,
        [
            "run",
            "-w",
            str(tiny_workspace),
            "--wave",
            "1",
            "--wave",
            "2",
            "--model",
            "anthropic/claude-sonnet-4-20250514",
            "--n-batches",
            "7",
            "--dry-run",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "step3        7" in r.output and "all waves: 18 calls" in r.output
    assert "no model was called" in r.output
    assert _tree(tiny_workspace) == before


def test_cli_dry_run_unknown_provider_is_a_user_error(tiny_workspace: Path) -> None:
    r = CliRunner().invoke(
        app, ["run", "-w", str(tiny_workspace), "--wave", "1", "--model", "nosuch/x", "--dry-run"]
    )
    assert r.exit_code == 2 and "nosuch" in r.output and "Traceback" not in r.output


def test_plan_to_dict_is_json(tiny_workspace: Path) -> None:
    cfg = load_config(Workspace(tiny_workspace).config_path)
    plan = plan_wave(tiny_workspace, "1", FakeClient(), "fake", RunOptions(**OPTS), config=cfg)
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["calls"] == plan.calls
    assert [s["stage"] for s in d["stages"]] == ["step1", "step2", "step3"]
