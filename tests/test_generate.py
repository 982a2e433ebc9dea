"""Step 3 with a fake client: row counts, invalid rows, failures, resume, concurrency, manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import fake_answer

from panelsynth.errors import GenerationExhaustedError, PanelsynthError
from panelsynth.llm.base import FakeClient, LLMCallError, Usage
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace


def _batch_no(messages: list[dict]) -> int:
    return int(re.search(r"Request (\d+):", messages[-1]["content"]).group(1)) - 1


def scripted(per_batch: dict[int, Any]) -> Any:
    """A responder: step 1/2 valid; step 3 batch b answers per_batch[b] (callable or value)."""

    def respond(messages: list[dict], model: type) -> Any:
        if model.__name__ != "SyntheticRespondents":
            return fake_answer(messages, model)
        b = _batch_no(messages)
        action = per_batch.get(b)
        base = fake_answer(messages, model)
        if action is None:
            return base
        return action(base) if callable(action) else action

    return respond


def _run(ws: Path, client: FakeClient, **kw: Any):
    opts = RunOptions(n_outputs=kw.pop("n_outputs", 4), n_batches=kw.pop("n_batches", 3), **kw)
    return run_wave(ws, "2", client, "fake", opts)


def test_exact_rows_and_every_value_allowed(tiny_workspace: Path) -> None:
    res = _run(tiny_workspace, FakeClient(default=fake_answer))
    df = pd.read_csv(res.output)
    assert len(df) == 12
    assert list(df.columns) == [
        "vaccimportant",
        "vaccsafe",
        "worryflu",
        "age",
        "sex",
        "cluster",
        "prev_cluster",
    ]
    assert df["vaccimportant"].between(1, 5).all() and df["worryflu"].between(1, 4).all()
    assert df["age"].between(18, 90).all() and set(df["cluster"]) <= {1, 2}
    assert not df.isna().any().any()  # dense mode: no NA


def test_too_few_rows_are_topped_up(tiny_workspace: Path) -> None:
    client = FakeClient(
        default=scripted({0: lambda b: {"rows": b["rows"][:1]}, 1: lambda b: {"rows": []}})
    )
    res = _run(tiny_workspace, client)
    assert res.rows == 12
    m = res.manifest_data
    assert m["faults"]["too_few_rows"] == 2
    assert len([c for c in m["calls"] if c["stage"] == "step3"]) > 3


def test_invalid_rows_counted_and_good_rows_kept(tiny_workspace: Path) -> None:
    def spoil(b: dict) -> dict:
        rows = b["rows"]
        rows[0]["vaccimportant"] = 9  # not a code
        rows[1]["age"] = 200  # out of range
        rows[2]["sex"] = None  # NA not allowed in dense mode
        return {"rows": rows}

    res = _run(tiny_workspace, FakeClient(default=scripted({0: spoil})))
    assert res.rows == 12
    assert res.manifest_data["invalid_rows"] == 3
    df = pd.read_csv(res.output)
    assert df["age"].max() <= 90 and df["vaccimportant"].max() <= 5


def test_too_many_rows_are_capped_per_call(tiny_workspace: Path) -> None:
    res = _run(tiny_workspace, FakeClient(default=scripted({0: lambda b: {"rows": b["rows"] * 3}})))
    assert res.rows == 12
    assert res.manifest_data["faults"]["too_many_rows"] == 1


def test_failed_calls_are_counted_and_replaced(tiny_workspace: Path) -> None:
    err = LLMCallError(
        "rate_limit", "429 after retries", Usage(input_tokens=10, attempts=3, retries=2)
    )
    res = _run(tiny_workspace, FakeClient(default=scripted({1: err})))
    assert res.rows == 12
    m = res.manifest_data
    assert m["failed_calls"] == 1 and m["faults"]["rate_limit"] == 1


def test_exhausted_budget_names_rows_and_keeps_checkpoint(tiny_workspace: Path) -> None:
    client = FakeClient(default=scripted({b: {"rows": []} for b in range(100)}))
    with pytest.raises(GenerationExhaustedError) as ei:
        _run(tiny_workspace, client)
    assert "0 of 12 valid rows" in str(ei.value) and "--resume" in str(ei.value)
    ws = Workspace(tiny_workspace)
    assert ws.checkpoint("fake", "2").exists()
    assert not ws.output_csv("fake", "2").exists()
    assert json.loads(ws.manifest("fake", "2").read_text())["status"] == "incomplete"


def test_circuit_breaker_stops_persistent_failures(tiny_workspace: Path) -> None:
    err = LLMCallError("server_error", "503")
    client = FakeClient(default=scripted({b: err for b in range(1000)}))
    with pytest.raises(GenerationExhaustedError) as ei:
        _run(tiny_workspace, client, n_batches=20)
    assert "in a row" in str(ei.value)
    assert (
        len([c for c in client.calls if c["response_model"].__name__ == "SyntheticRespondents"])
        < 20
    )


def test_resume_after_interruption_loses_and_duplicates_nothing(tiny_workspace: Path) -> None:
    client = FakeClient(default=scripted({2: KeyboardInterrupt()}))
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_workspace, client, n_batches=4, concurrency=1)
    ws = Workspace(tiny_workspace)
    assert not ws.output_csv("fake", "2").exists()
    lines = ws.checkpoint("fake", "2").read_text().splitlines()
    assert len(lines) == 3  # header + batches 0 and 1
    with pytest.raises(PanelsynthError, match="--resume"):
        _run(tiny_workspace, FakeClient(default=fake_answer), n_batches=4, concurrency=1)
    client2 = FakeClient(default=fake_answer)
    res = _run(tiny_workspace, client2, n_batches=4, resume=True, concurrency=1)
    assert res.rows == 16
    step3 = [c for c in client2.calls if c["response_model"].__name__ == "SyntheticRespondents"]
    assert sorted(_batch_no(c["messages"]) for c in step3) == [2, 3]
    assert res.manifest_data["resumed_batches"] == 2
    batches = [
        json.loads(x)["batch"] for x in ws.checkpoint("fake", "2").read_text().splitlines()[1:]
    ]
    assert sorted(batches) == [0, 1, 2, 3]


def test_resume_with_other_settings_is_refused(tiny_workspace: Path) -> None:
    client = FakeClient(default=scripted({1: KeyboardInterrupt()}))
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_workspace, client)
    with pytest.raises(PanelsynthError, match="other settings"):
        _run(tiny_workspace, FakeClient(default=fake_answer), n_outputs=5, resume=True)
    with pytest.raises(PanelsynthError, match="temperature: None -> 1.2"):
        _run(tiny_workspace, FakeClient(default=fake_answer), temperature=1.2, resume=True)
    res = _run(tiny_workspace, FakeClient(default=fake_answer), temperature=0.7, resume=True)
    assert res.rows == 12  # the default temperature, stated or not, is the same run


def test_torn_checkpoint_line_is_ignored(tiny_workspace: Path) -> None:
    client = FakeClient(default=scripted({2: KeyboardInterrupt()}))
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_workspace, client)
    ck = Workspace(tiny_workspace).checkpoint("fake", "2")
    with open(ck, "a") as fh:
        fh.write('{"batch": 2, "rows": [')  # a crash mid-write
    res = _run(tiny_workspace, FakeClient(default=fake_answer), resume=True)
    assert res.rows == 12


def test_concurrent_run_equals_sequential_run(tmp_path: Path) -> None:
    from fakes import write_tiny_workspace

    outs = []
    for conc in (1, 4):
        ws = write_tiny_workspace(tmp_path / f"c{conc}")
        res = _run(ws, FakeClient(default=fake_answer), n_batches=6, concurrency=conc)
        outs.append(Path(res.output).read_bytes())
    assert outs[0] == outs[1]


def test_manifest_token_totals_equal_sum_over_calls(tiny_workspace: Path) -> None:
    err = LLMCallError(
        "timeout", "timed out", Usage(input_tokens=7, output_tokens=0, attempts=2, retries=1)
    )
    res = _run(tiny_workspace, FakeClient(default=scripted({0: err})))
    m = res.manifest_data
    assert m["tokens"]["input"] == sum(c["input_tokens"] for c in m["calls"]) > 0
    assert m["tokens"]["output"] == sum(c["output_tokens"] for c in m["calls"]) > 0
    per_stage = m["tokens"]["per_stage"]
    assert sum(s["input_tokens"] for s in per_stage.values()) == m["tokens"]["input"]
    assert m["cost"]["usd"] is None  # no price configured for fake/fake


def test_full_mode_allows_na(tiny_workspace: Path) -> None:
    def with_na(b: dict) -> dict:
        for r in b["rows"]:
            r["worryflu"] = None
        return {"rows": b["rows"]}

    res = _run(tiny_workspace, FakeClient(default=scripted({0: with_na})), mode="full")
    df = pd.read_csv(res.output)
    assert df["worryflu"].isna().sum() == 4
    assert res.manifest_data["invalid_rows"] == 0
