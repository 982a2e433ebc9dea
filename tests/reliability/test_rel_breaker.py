"""When failures persist a run stops early, says why and how to go on, and ``--resume`` finishes.

Through the CLI against the stub: a server that fails every generation call trips the circuit
breaker (instead of spinning through the call budget); a model that keeps answering mostly
invalid rows uses up the call budget; a spending limit stops generation before a call could break
it. Each stops with exit 2, one ``Error:`` line, a resumable checkpoint and an "incomplete"
manifest with its books; once the cause is gone, ``--resume`` ends with the exact row count and no
batch twice. A step-1 call that fails for good ends the same way, before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from fakes import write_tiny_workspace
from relhelpers import hash_tree, is_step3, nonblank_lines, responder, run_cli, stub_args
from servers.openai_stub import OpenAIStub

from panelsynth.generate import GenerationSettings
from panelsynth.workspace import Workspace

PRICES = '[prices."openai/stub-model"]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0\n'


def _args(root: Path, url: str, *extra: str) -> list[str]:
    args = stub_args(root, url, "2", *extra)
    args[args.index("--n-batches") + 1] = "6"
    return args


def _error_line(output: str) -> str:
    errors = [x for x in nonblank_lines(output) if x.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def _records(ws: Workspace) -> list[dict[str, Any]]:
    return [json.loads(x) for x in ws.checkpoint("stub", "2").read_text().splitlines()[1:]]


def _assert_finished_once(ws: Workspace, rows: int) -> dict[str, Any]:
    assert len(pd.read_csv(ws.output_csv("stub", "2"))) == rows
    done = [r["batch"] for r in _records(ws) if not r.get("failed")]
    assert len(done) == len(set(done)), "a batch was recorded twice"
    assert not [p for p in ws.output_dir("stub").rglob("*.tmp")]
    m = json.loads(ws.manifest("stub", "2").read_text())
    assert m["status"] == "complete" and m["rows"] == rows
    return m


def test_persistent_failure_trips_the_breaker_then_resume_finishes(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    (root / "panelsynth.toml").write_text("[generation]\nmax_retries = 0\n")
    ws = Workspace(root)
    threshold = GenerationSettings().breaker_threshold
    with OpenAIStub(responder(), fault_filter=is_step3, fault_rates={"server_error": 1.0}) as stub:
        r = run_cli(_args(root, stub.base_url, "--concurrency", "2"))
        assert r.exit_code == 2, r.output
        line = _error_line(r.output)
        assert "0 of 18 valid rows" in line and f"{threshold} calls in a row" in line
        assert "server_error" in line and "--resume" in line
        sent = [q for q in stub.requests if is_step3(q.body)]
        assert threshold <= len(sent) <= threshold + 2  # stopped, not spinning to the budget
        assert not ws.output_csv("stub", "2").exists()
        records = _records(ws)
        assert len(records) == len(sent) and all(x["failed"] == "server_error" for x in records)
        m = json.loads(ws.manifest("stub", "2").read_text())
        assert m["status"] == "incomplete" and "in a row" in m["error"]
        assert m["faults"] == {"server_error": len(sent)} and m["failed_calls"] == len(sent)

        # the fault clears: a plain rerun is refused (it would lose nothing, but say so) ...
        stub.set_fault_rates({})
        before = hash_tree(root)
        r = run_cli(_args(root, stub.base_url))
        assert r.exit_code == 2 and "--resume" in _error_line(r.output)
        assert hash_tree(root) == before
        # ... and --resume finishes, keeping the books of the first run
        r = run_cli(_args(root, stub.base_url, "--resume"))
        assert r.exit_code == 0, r.output
    m = _assert_finished_once(ws, 18)
    assert m["faults"] == {"server_error": len(sent)} and m["failed_calls"] == len(sent)


def test_used_up_call_budget_then_resume_finishes(tmp_path: Path) -> None:
    """Resuming gets a fresh call budget: the one the message promises."""
    root = write_tiny_workspace(tmp_path / "ws")
    (root / "panelsynth.toml").write_text("[generation]\nmax_attempts_factor = 1.0\n")
    ws = Workspace(root)

    def one_good(body: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        for row in rows[1:]:
            row["vaccsafe"] = 7  # not a code: only the first row of each answer is valid
        return {"rows": rows}

    with OpenAIStub(responder(one_good)) as stub:
        r = run_cli(_args(root, stub.base_url, "--concurrency", "1"))
        assert r.exit_code == 2, r.output
        line = _error_line(r.output)
        budget = GenerationSettings(n_batches=6, max_attempts_factor=1.0).max_calls
        assert f"only {budget} of 18 valid rows after {budget} calls" in line
        assert "call budget" in line and "--resume" in line
        m = json.loads(ws.manifest("stub", "2").read_text())
        assert m["status"] == "incomplete" and m["rows"] == budget
        assert m["invalid_rows"] == m["faults"]["invalid_rows"] == 2 * budget

        stub.set_responder(responder())
        r = run_cli(_args(root, stub.base_url, "--resume", "--concurrency", "1"))
        assert r.exit_code == 0, r.output
    m = _assert_finished_once(ws, 18)
    assert m["resumed_batches"] == budget


def test_spending_limit_stops_generation_then_resume_finishes(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    (root / "panelsynth.toml").write_text(PRICES)
    ws = Workspace(root)
    with OpenAIStub(responder()) as stub:
        # hosted default: 8 calls at a time; calls in flight hold their projected cost
        r = run_cli(_args(root, stub.base_url, "--max-cost", "3"))
        assert r.exit_code == 2, r.output
        line = _error_line(r.output)
        assert "the budget of $3 would be exceeded" in line and "--resume" in line
        m = json.loads(ws.manifest("stub", "2").read_text())
        assert m["status"] == "incomplete" and 0 < m["rows"] < 18
        assert m["cost"]["usd"] <= 3.0
        step3 = [q for q in stub.requests if is_step3(q.body)]
        assert len(step3) == len(_records(ws)) == m["rows"] // 3

        r = run_cli(_args(root, stub.base_url, "--max-cost", "50", "--resume"))
        assert r.exit_code == 0, r.output
    _assert_finished_once(ws, 18)


def test_a_failing_description_call_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    before = hash_tree(root)
    with OpenAIStub(responder()) as stub:
        stub.script("auth")
        r = run_cli(_args(root, stub.base_url))
    assert r.exit_code == 2, r.output
    line = _error_line(r.output)
    assert "step 1 (cluster descriptions) failed" in line and "auth" in line and "key" in line
    assert hash_tree(root) == before
    assert not ws.output_csv("stub", "2").exists()
