"""Step 3 against the fault-injecting stub: every fault kind, exact rows, exact books.

The stub faults only generation calls (``fault_filter``), first one fault of every kind in a row,
then at seeded random rates, while the responder returns too few rows, too many rows, or rows
with codes outside the allowed set for some batches. The run must end with exactly
``n_outputs * n_batches`` valid rows, and its manifest must count every fault the stub injected
(mapped to the client's kinds), every short/long answer and every invalid row.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from fakes import write_tiny_workspace
from relhelpers import STUB_TO_KIND, batch_of, is_step3, responder
from servers.openai_stub import FAULT_KINDS, OpenAIStub

from panelsynth.llm import make_client
from panelsynth.llm.retry import RetryPolicy
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace

N_OUTPUTS, N_BATCHES = 4, 10
POLICY = RetryPolicy(max_retries=3, initial_wait=0.01, max_wait=0.05, jitter=0.01)
REASK_RETRIES = 2  # make_client's default
RATES = {kind: 0.03 for kind in FAULT_KINDS}


def behaviour(batch: int) -> str:
    """What the responder does for a batch (re-asks and retries of a batch do the same)."""
    return {1: "too_few", 2: "too_many", 3: "bad_codes"}.get(batch % 5, "ok")


def spoil(body: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    what = behaviour(batch_of(body) or 0)
    if what == "too_few":
        return {"rows": rows[:1]}
    if what == "too_many":
        return {"rows": rows + rows[:2]}
    if what == "bad_codes":
        rows[0]["vaccimportant"] = 9  # not a code of the item
        rows[1]["cluster"] = 3  # no such cluster
        return {"rows": rows}
    return {"rows": rows}


def test_every_fault_kind_exact_rows_and_books(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    with OpenAIStub(
        responder(spoil), fault_rates=RATES, seed=11, stall_seconds=6.0, fault_filter=is_step3
    ) as stub:
        stub.script(*FAULT_KINDS)  # the first generation calls meet every kind once
        client = make_client(
            "openai/stub-model", base_url=stub.base_url, timeout=2.5, retry_policy=POLICY
        )
        res = run_wave(
            root,
            "2",
            client,
            "stub",
            RunOptions(n_outputs=N_OUTPUTS, n_batches=N_BATCHES, concurrency=4),
        )
        step3 = [r for r in stub.requests if is_step3(r.body)]

    # the stub really injected every kind
    injected = Counter(r.fault for r in step3 if r.fault)
    assert set(injected) == set(FAULT_KINDS)

    # exact row count, every value allowed
    df = pd.read_csv(res.output)
    assert len(df) == res.rows == N_OUTPUTS * N_BATCHES
    assert df["vaccimportant"].between(1, 5).all() and set(df["cluster"]) <= {1, 2}
    assert df["age"].between(18, 90).all() and not df.isna().any().any()

    # every fault counted, mapped to the client's kinds
    m = json.loads(ws.manifest("stub", "2").read_text())
    assert m["status"] == "complete" and m["rows"] == N_OUTPUTS * N_BATCHES
    expected: Counter[str] = Counter()
    for kind, n in injected.items():
        expected[STUB_TO_KIND[kind]] += n
    answered = [batch_of(r.body) or 0 for r in step3 if r.fault is None]
    shapes = Counter(behaviour(b) for b in answered)
    expected["too_few_rows"] = shapes["too_few"]
    expected["too_many_rows"] = shapes["too_many"]
    expected["invalid_rows"] = 2 * shapes["bad_codes"]
    assert {k: v for k, v in m["faults"].items() if v} == dict(expected)
    assert m["invalid_rows"] == 2 * shapes["bad_codes"]

    # the books: every request is an attempt of a recorded call, attempts are bounded
    calls = [c for c in m["calls"] if c["stage"] == "step3"]
    assert sum(c["attempts"] for c in calls) == len(step3)
    assert max(c["attempts"] for c in calls) <= POLICY.max_attempts * (REASK_RETRIES + 1)
    assert len(calls) <= m["settings"]["max_calls"]
    failed = [c for c in calls if not c["ok"]]
    assert m["failed_calls"] == len(failed) >= 3  # truncated, bad_request, auth are not retried
    assert {c["kind"] for c in failed} >= {"truncated", "bad_request", "auth"}
    assert len(calls) - len(failed) == len(answered)

    # the checkpoint holds each finished batch once, and exactly the rows of the CSV
    lines = ws.checkpoint("stub", "2").read_text().splitlines()[1:]
    records = [json.loads(x) for x in lines]
    batches = [r["batch"] for r in records]
    assert len(batches) == len(set(batches)) == len(calls)
    kept = [
        row
        for r in sorted(records, key=lambda r: r["batch"])
        if not r.get("failed")
        for row in r["rows"]
    ]
    assert len(kept) >= N_OUTPUTS * N_BATCHES
    assert pd.DataFrame(kept[: len(df)], columns=df.columns).astype(float).equals(df.astype(float))
