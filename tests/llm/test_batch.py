"""The batch transport layer against the local stub of both providers' batch APIs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from panelsynth.checkpoint import Checkpoint
from panelsynth.errors import ProviderError
from panelsynth.llm.base import PromptMessages
from panelsynth.llm.batch import (
    UNFINISHED,
    BatchApi,
    BatchCounts,
    BatchError,
    BatchJob,
    BatchPricing,
    BatchRequest,
    BatchResult,
    BatchStatus,
    api_for_job,
    make_batch_api,
    project,
    split_job_records,
    strict_json_schema,
    supports_batch,
    total_usage,
)
from panelsynth.llm.batch.anthropic import request_params
from panelsynth.llm.retry import RetryPolicy
from panelsynth.pydantic_models.rows import RowSpec, batch_model, build_row_model
from tests.servers.batch_stub import BatchStub

KEY = "sk-stub-key-0123456789abcdef"
PROVIDERS = ("openai", "anthropic")
_REPO = Path(__file__).resolve().parents[2]

SPECS = [
    RowSpec("vaccimportant", "an ordinal", codes=(1, 2, 3, 4)),
    RowSpec("age", "a continuous", low=18, high=90, integer=True),
    RowSpec("cluster", "cluster", codes=(1, 2)),
]
ROW_MODEL = build_row_model(SPECS, name="Wave1Row")
RESPONSE = batch_model(ROW_MODEL, 3)
SHARED = "You generate synthetic survey respondents. Context of the wave. " * 4


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


@pytest.fixture
def stub() -> Iterator[BatchStub]:
    with BatchStub(cache_min_tokens=16, lifetime=60) as s:
        yield s


def _fast() -> RetryPolicy:
    return RetryPolicy(max_retries=3, initial_wait=0.001, max_wait=0.01, jitter=0.001)


def transport(provider: str, stub: BatchStub, **kw: Any) -> BatchApi:
    kw.setdefault("retry_policy", _fast())
    kw.setdefault("sleep", lambda s: None)
    return make_batch_api(f"{provider}/stub-model", base_url=stub.base_url, **kw)


def requests(n: int, prefix: str = "w1-b", model: type[BaseModel] = RESPONSE) -> list[BatchRequest]:
    out = []
    for i in range(n):
        messages = PromptMessages(
            [
                {"role": "system", "content": "Answer with JSON only."},
                {"role": "user", "content": f"{SHARED}Generate batch {i} of 3 respondents."},
            ],
            len(SHARED),
        )
        out.append(BatchRequest(f"{prefix}{i:04d}", messages, model, 400, 0.7, seed=i))
    return out


def run_batch(
    provider: str, stub: BatchStub, n: int
) -> tuple[BatchApi, BatchJob, list[BatchResult]]:
    """Submit ``n`` requests, wait for the end, collect."""
    t = transport(provider, stub)
    job = t.submit(requests(n))
    t.wait(job, interval=0)
    return t, job, t.collect(job, RESPONSE)


def _kind(outcome: str) -> str | None:
    if outcome == "ok":
        return None
    if outcome.startswith("fail:"):
        return outcome[5:]
    return {"invalid": "invalid_output", "truncated": "truncated"}.get(outcome, UNFINISHED)


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_submit_poll_collect_end_to_end_with_usage(provider: str) -> None:
    with BatchStub(polls_in_progress=2, cache_min_tokens=16) as stub:
        t = transport(provider, stub)
        reqs = requests(6)
        job = t.submit(reqs)
        assert job.provider == provider and job.custom_ids == [r.custom_id for r in reqs]
        assert job.status == ("validating" if provider == "openai" else "in_progress")
        seen: list[str] = []
        status = t.wait(job, interval=0, progress=lambda s: seen.append(s.state))
        assert seen == ["in_progress", "in_progress", "completed"]
        assert status.terminal and status.counts.succeeded == 6 and status.counts.failed == 0
        results = t.collect(job, RESPONSE)
    assert [r.custom_id for r in results] == job.custom_ids
    assert all(r.ok and isinstance(r.value, RESPONSE) for r in results)
    for r in results:  # every row validates against the wave's row model
        assert len(r.value.rows) == 3
        assert all(ROW_MODEL.model_validate(row) for row in r.value.rows)
    usage = total_usage(results)
    assert usage.attempts == 6 and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.faults == {}
    # the shared prefix is reported cached for the requests after the first
    assert results[0].usage.cached_input_tokens == 0
    assert all(r.usage.cached_input_tokens > 0 for r in results[1:])
    if provider == "anthropic":
        assert results[0].cache_write_tokens > 0
        assert all(r.cache_write_tokens == 0 for r in results[1:])
    assert stub.creations(provider) == 1


def test_wait_backs_off_while_nothing_changes() -> None:
    waits: list[float] = []
    with BatchStub(polls_in_progress=6) as stub:
        t = transport("anthropic", stub, sleep=waits.append)
        status = t.wait(t.submit(requests(12)), interval=1.0, max_interval=3.0)
        assert status.state == "completed"
        assert waits == [1.0] * 6  # the counts moved at every poll: no back-off

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 5:
                stub.polls_in_progress = 0  # the batch ends at the next poll

        waits.clear()
        stub.polls_in_progress = 10**6  # counts stand still
        t = transport("anthropic", stub, sleep=sleep)
        status = t.wait(t.submit(requests(12)), interval=1.0, max_interval=3.0)
        assert status.state == "completed"
        assert waits == [1.0, 2.0, 3.0, 3.0, 3.0]
        stub.polls_in_progress = 10**6
        job = t.submit(requests(12))
        status = t.wait(job, interval=1.0, timeout=0.5)  # the timeout comes before a wait
        assert status.state == "in_progress" and len(waits) == 5


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cost_at_batch_prices_is_half_of_online(provider: str, stub: BatchStub) -> None:
    _, _, results = run_batch(provider, stub, 4)
    usage = total_usage(results)
    writes = sum(r.cache_write_tokens for r in results)
    online = (usage.input_tokens * 3.0 + usage.output_tokens * 15.0) / 1e6
    plain = BatchPricing(3.0, 15.0)  # no cache discount: exactly half of online
    assert plain.cost_of(results) == pytest.approx(online / 2)
    priced = BatchPricing.for_provider(provider, 3.0, 15.0)
    cached, rest = usage.cached_input_tokens, usage.input_tokens - usage.cached_input_tokens
    if provider == "anthropic":
        expected = (
            0.5
            * (3.0 * (rest - writes + 0.1 * cached + 1.25 * writes) + 15.0 * usage.output_tokens)
            / 1e6
        )
    else:
        expected = 0.5 * (3.0 * (rest + 0.5 * cached) + 15.0 * usage.output_tokens) / 1e6
    assert priced.cost_of(results) == pytest.approx(expected)
    assert priced.cost_of(results) < plain.cost_of(results)


# -- restore after a restart -------------------------------------------------------------------

_CHILD = """
import json, sys
from panelsynth.checkpoint import Checkpoint
from panelsynth.llm.batch import split_job_records, api_for_job
from panelsynth.pydantic_models.rows import RowSpec, batch_model, build_row_model
from panelsynth.llm.retry import RetryPolicy
specs = [RowSpec("vaccimportant", "an ordinal", codes=(1, 2, 3, 4)),
         RowSpec("age", "a continuous", low=18, high=90, integer=True),
         RowSpec("cluster", "cluster", codes=(1, 2))]
model = batch_model(build_row_model(specs, name="Wave1Row"), 3)
_, records = Checkpoint(__import__("pathlib").Path(sys.argv[1])).load()
jobs, others = split_job_records(records)
job = jobs[0]
t = api_for_job(job, base_url=sys.argv[2], retry_policy=RetryPolicy(initial_wait=0.001))
t.wait(job, interval=0.01)
results = t.collect(job, model)
print(json.dumps({"others": len(others), "status": job.status,
                  "ok": [r.custom_id for r in results if r.ok],
                  "rows": sum(len(r.value.rows) for r in results if r.ok)}))
"""


@pytest.mark.parametrize("provider", PROVIDERS)
def test_job_restored_in_a_new_process_collects_without_second_submission(
    provider: str, tmp_path: Path
) -> None:
    with BatchStub(polls_in_progress=3, lifetime=60) as stub:
        t = transport(provider, stub)
        reqs = requests(5)
        job = t.submit(reqs)
        ckpt = Checkpoint(tmp_path / "wave1.jsonl")
        ckpt.start({"fingerprint": "x"})
        ckpt.append({"batch": 0, "rows": [], "usage": {}})  # an online record next to it
        ckpt.append(job.to_record())
        t.poll(job)  # this process saw it running, then "closed the laptop"
        env = {**os.environ, "PYTHONPATH": f"{_REPO / 'src'}{os.pathsep}{_REPO}"}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(ckpt.path), stub.base_url],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        child = json.loads(out.stdout)
        assert child["status"] == "completed" and child["others"] == 1
        assert child["ok"] == [r.custom_id for r in reqs] and child["rows"] == 15
        assert stub.creations() == 1  # no second submission
        creates = {"openai": ("POST", "/v1/batches"), "anthropic": ("POST", "/v1/messages/batches")}
        assert stub.calls.count(creates[provider]) == 1


def test_job_record_round_trip_and_split() -> None:
    job = BatchJob("openai", "gpt-4o-mini", "batch_1", ["a", "b"], input_file_id="file-1")
    line = job.to_json_line()
    assert line.endswith("\n") and "\n" not in line[:-1]
    again = BatchJob.from_json_line(line)
    assert again == job
    update = BatchJob("openai", "gpt-4o-mini", "batch_1", ["a", "b"], status="completed")
    other = BatchJob("anthropic", "claude", "msgbatch_2", ["c"])
    jobs, rest = split_job_records(
        [{"batch": 3}, job.to_record(), other.to_record(), update.to_record()]
    )
    assert [j.batch_id for j in jobs] == ["batch_1", "msgbatch_2"]
    assert jobs[0].status == "completed" and rest == [{"batch": 3}]
    for bad in ('{"batch_job": {"v": 99}}', '{"batch": 1}', "not json", "[1]"):
        with pytest.raises(ValueError):
            BatchJob.from_json_line(bad)
    broken = job.to_record()
    broken["batch_job"]["custom_ids"] = ["a", "a"]
    with pytest.raises(ValueError, match="malformed"):
        BatchJob.from_record(broken)
    # a late answer to an earlier poll does not make an ended batch look running again
    ended = BatchJob("openai", "gpt-4o-mini", "batch_9", ["a"])
    ended.update(BatchStatus("cancelled", "cancelled", BatchCounts(1, 0, 0, 1, 0)))
    ended.update(BatchStatus("cancelling", "cancelling", BatchCounts(1, 0, 0, 0, 1)))
    assert ended.status == "cancelled" and ended.counts["unfinished"] == 1
    # the books of the calls travel with the record (absent when there are none)
    assert "books" not in job.to_record()["batch_job"]
    job.books = {"a": {"profiles": [4, 5, 12]}}
    assert BatchJob.from_json_line(job.to_json_line()).books == {"a": {"profiles": [4, 5, 12]}}
    broken = job.to_record()
    broken["batch_job"]["books"] = {"a": 3}
    with pytest.raises(ValueError, match="malformed"):
        BatchJob.from_record(broken)


# -- faults per request ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_twenty_percent_failing_or_invalid_are_reported_per_custom_id(provider: str) -> None:
    with BatchStub(fail_share=0.1, invalid_share=0.06, truncated_share=0.04, seed=3) as stub:
        _, job, results = run_batch(provider, stub, 50)
        outcomes = stub.outcomes(job.batch_id)
    by_id = {r.custom_id: r for r in results}
    assert len(results) == 50
    assert {cid: by_id[cid].kind for cid in outcomes} == {
        cid: _kind(o) for cid, o in outcomes.items()
    }
    bad = [r for r in results if not r.ok]
    assert len(bad) == 10  # exactly 20 %
    kinds = total_usage(results).faults
    assert kinds == {"server_error": 3, "rate_limit": 2, "invalid_output": 3, "truncated": 2}
    assert all(r.message and r.value is None for r in bad)
    # invalid and truncated replies were billed; errored requests were not
    assert all(r.usage.output_tokens > 0 for r in bad if r.kind == "invalid_output")
    assert all(r.usage.input_tokens == 0 for r in bad if r.kind in ("server_error", "rate_limit"))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_context_overflow_and_bad_request_kinds(provider: str) -> None:
    with BatchStub(fail_share=1.0, fail_kinds=("context_overflow", "bad_request")) as stub:
        kinds = sorted(r.kind or "" for r in run_batch(provider, stub, 4)[2])
    assert kinds == ["bad_request", "bad_request", "context_overflow", "context_overflow"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_batch_returns_only_unfinished_for_resubmission(provider: str) -> None:
    with BatchStub(expire_share=0.3, seed=5) as stub:
        t = transport(provider, stub)
        reqs = requests(20)
        job = t.submit(reqs)
        status = t.wait(job, interval=0)
        assert status.state == "expired" and status.counts.unfinished == 6
        results = t.collect(job, RESPONSE)
        expected = {c for c, o in stub.outcomes(job.batch_id).items() if o == "unfinished"}
        unfinished = [r.custom_id for r in results if r.kind == UNFINISHED]
        assert set(unfinished) == expected and len(unfinished) == 6
        assert all(r.ok for r in results if r.custom_id not in expected)
        assert all(r.usage.attempts == 0 and not r.usage.faults for r in results if not r.ok)
        # resubmit exactly those in a follow-up batch
        stub.expire_share = 0.0
        follow = t.submit([r for r in reqs if r.custom_id in expected])
        t.wait(follow, interval=0)
        again = t.collect(follow, RESPONSE)
        assert sorted(r.custom_id for r in again) == sorted(expected)
        assert all(r.ok for r in again)
        assert stub.creations() == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancel_is_clean(provider: str) -> None:
    with BatchStub(polls_in_progress=50, done_before_cancel=0.5) as stub:
        t = transport(provider, stub)
        reqs = requests(8)
        job = t.submit(reqs)
        assert t.poll(job).state == "in_progress"
        with pytest.raises(BatchError, match="in_progress.*collect it once it has ended") as err:
            t.collect(job, RESPONSE)
        assert err.value.kind == "in_progress"
        status = t.cancel(job)
        assert status.state == "cancelling" and not status.terminal
        status = t.wait(job, interval=0)
        assert status.state == "cancelled" and job.status == "cancelled"
        results = t.collect(job, RESPONSE)
        cancels_before = len([c for c in stub.calls if c[1].endswith("/cancel")])
        assert t.cancel(job).state == "cancelled"  # cancelling an ended batch sends nothing
        assert len([c for c in stub.calls if c[1].endswith("/cancel")]) == cancels_before == 1
    assert [r.ok for r in results] == [True] * 4 + [False] * 4
    assert all(r.kind == UNFINISHED for r in results[4:])
    assert "cancel" in results[-1].message


@pytest.mark.parametrize(
    ("reason", "kind"),
    [("messages: field required", "bad_request"), ("token_limit_exceeded", "rate_limit")],
)
def test_a_batch_that_fails_validation_reports_every_request_with_the_reason(
    reason: str, kind: str
) -> None:
    with BatchStub(reject=reason) as stub, transport("openai", stub) as t:
        job = t.submit(requests(3))
        status = t.poll(job)
        assert status.state == "failed" and status.terminal
        assert f"{reason} (line 1)" in status.message
        results = t.collect(job, RESPONSE)
    assert [r.kind for r in results] == [kind] * 3
    assert all(f"the batch failed: invalid_request: {reason}" in r.message for r in results)


# -- wire shapes -------------------------------------------------------------------------------


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for v in node.values():
            yield from _objects(v)
    elif isinstance(node, list):
        for v in node:
            yield from _objects(v)


def test_openai_jsonl_lines_carry_the_strict_json_schema(stub: BatchStub) -> None:
    t = transport("openai", stub)
    reqs = requests(3)
    job = t.submit(reqs)
    sent = stub.files[job.input_file_id].decode().splitlines()
    assert sent == t.jsonl(reqs).decode().splitlines()
    for line, req in zip(sent, reqs, strict=True):
        obj = json.loads(line)
        assert obj["custom_id"] == req.custom_id
        assert obj["method"] == "POST" and obj["url"] == "/v1/chat/completions"
        body = obj["body"]
        assert body["model"] == "stub-model" and body["seed"] == req.seed
        assert body["max_completion_tokens"] == 400 and body["temperature"] == 0.7
        assert body["messages"] == list(req.messages)
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["strict"] is True
        assert fmt["json_schema"]["name"] == "SyntheticRespondents"
        schema = fmt["json_schema"]["schema"]
        objects = list(_objects(schema))
        assert len(objects) == 2  # the batch and its row
        for o in objects:
            assert o["additionalProperties"] is False
            assert sorted(o["required"]) == sorted(o["properties"])
        rows = schema["properties"]["rows"]
        assert rows["minItems"] == rows["maxItems"] == 3
    assert stub.batches[job.batch_id].metadata.get("panelsynth_submission")


def test_anthropic_requests_carry_the_tool_and_cache_control(stub: BatchStub) -> None:
    t = transport("anthropic", stub)
    reqs = requests(2)
    job = t.submit(reqs)
    for sent, req in zip(stub.batches[job.batch_id].requests, reqs, strict=True):
        assert sent["custom_id"] == req.custom_id
        params = sent["body"]
        assert params == request_params("stub-model", req)
        assert params["model"] == "stub-model" and params["max_tokens"] == 400
        assert "seed" not in params  # Anthropic takes none
        assert params["system"] == "Answer with JSON only."
        (tool,) = params["tools"]
        assert tool["name"] == "SyntheticRespondents"
        assert tool["input_schema"] == RESPONSE.model_json_schema()
        assert params["tool_choice"] == {"type": "tool", "name": "SyntheticRespondents"}
        (message,) = params["messages"]
        first, second = message["content"]
        assert first == {"type": "text", "text": SHARED, "cache_control": {"type": "ephemeral"}}
        assert second == {"type": "text", "text": req.messages[-1]["content"][len(SHARED) :]}
    plain = BatchRequest("x", [{"role": "user", "content": "hi"}], RESPONSE, 10)
    assert request_params("m", plain)["messages"] == [{"role": "user", "content": "hi"}]


def test_strict_json_schema_rules() -> None:
    schema = {
        "type": "object",
        "properties": {
            "properties": {"type": "string", "default": "x"},  # a field named like a keyword
            "type": {"oneOf": [{"type": "integer"}, {"type": "null"}]},
            "inner": {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/A"}},
                "$defs": {"A": {"type": "object", "properties": {"b": {"type": "integer"}}}},
            },
        },
        "required": ["type"],
    }
    out = strict_json_schema(schema)
    assert out["required"] == ["properties", "type", "inner"]
    assert out["additionalProperties"] is False
    assert out["properties"]["properties"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert "anyOf" in out["properties"]["type"] and "oneOf" not in out["properties"]["type"]
    assert "$defs" not in out["properties"]["inner"]["anyOf"][0]
    assert out["$defs"]["A"]["additionalProperties"] is False
    assert out["$defs"]["A"]["required"] == ["b"]
    assert schema["properties"]["properties"]["default"] == "x"  # the input is not changed


# -- transport faults, keys, misuse ------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_transport_errors_are_retried_with_the_policy(provider: str, stub: BatchStub) -> None:
    retries: list[str] = []
    t = transport(provider, stub, on_retry=lambda kind, wait: retries.append(kind))
    stub.script("rate_limit", "server_error")  # refused by the server: safe to send again
    job = t.submit(requests(2))
    assert retries == ["rate_limit", "server_error"]
    assert stub.creations() == 1
    stub.script("drop", "rate_limit")  # a poll may be repeated whatever happened
    assert t.poll(job).state == "in_progress"
    assert retries[2:] == ["connection", "rate_limit"]
    stub.script("server_error", "server_error", "server_error", "server_error")
    with pytest.raises(BatchError, match="after 4 attempts") as err:
        t.poll(job)
    assert err.value.kind == "server_error"


def test_openai_lost_create_answer_finds_the_batch_instead_of_submitting_twice(
    stub: BatchStub,
) -> None:
    t = transport("openai", stub)
    stub.script("ok", "drop_after")  # the upload is answered; the create acted on, answer lost
    job = t.submit(requests(3))
    assert stub.creations() == 1 and job.batch_id in stub.batches
    assert ("GET", "/v1/batches") in stub.calls  # found by its submission token
    assert job.custom_ids == [f"w1-b{i:04d}" for i in range(3)]


def test_anthropic_lost_create_answer_is_not_retried(stub: BatchStub) -> None:
    t = transport("anthropic", stub)
    stub.script("drop_after")
    with pytest.raises(BatchError, match="may have acted on it") as err:
        t.submit(requests(2))
    assert err.value.kind == "connection"
    assert stub.creations() == 1  # created once, never twice


@pytest.mark.parametrize("provider", PROVIDERS)
def test_key_never_in_files_errors_or_logs(
    provider: str, stub: BatchStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="panelsynth")
    wrong = "wrong-sentinel-credential-8231"
    bad = transport(provider, stub, api_key=wrong)
    with pytest.raises(BatchError) as err:
        bad.submit(requests(2))
    assert err.value.kind == "auth" and "401" in str(err.value)
    assert wrong not in str(err.value) and "***" in str(err.value)  # the stub echoed it
    assert wrong not in repr(bad) and wrong not in repr(bad.api)
    good = transport(provider, stub)
    stub.script("rate_limit")
    job = good.submit(requests(3))
    good.wait(job, interval=0)
    results = good.collect(job, RESPONSE)
    ckpt = Checkpoint(tmp_path / "wave1.jsonl")
    ckpt.start({"x": 1})
    ckpt.append(job.to_record())
    if provider == "openai":
        (tmp_path / "input.jsonl").write_bytes(good.jsonl(requests(3)))
    else:
        (tmp_path / "input.json").write_text(json.dumps(good.batch_body(requests(3))))
    (tmp_path / "results.txt").write_text(repr(results))
    for path in tmp_path.iterdir():
        text = path.read_text()
        assert KEY not in text and wrong not in text, path.name
    for record in caplog.records:
        assert KEY not in record.getMessage() and wrong not in record.getMessage()


def test_misuse_is_one_actionable_line(stub: BatchStub, monkeypatch: pytest.MonkeyPatch) -> None:
    assert supports_batch("openai/gpt-4o-mini") and supports_batch("anthropic/claude-x")
    assert not supports_batch("local/smollm2") and not supports_batch("nonsense")
    with pytest.raises(
        ProviderError, match="not available for provider 'google'.*anthropic, openai"
    ):
        make_batch_api("google/gemini-2.5-pro")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ProviderError, match="ANTHROPIC_API_KEY"):
        make_batch_api("anthropic/claude-x", base_url=stub.base_url)
    t = transport("openai", stub)
    with pytest.raises(BatchError, match="nothing to submit"):
        t.submit([])
    with pytest.raises(BatchError, match="duplicate custom_id: w1-b0000"):
        t.submit(requests(2) + requests(1))
    t.max_requests = 2
    with pytest.raises(BatchError, match="3 requests, at most 2 per batch"):
        t.submit(requests(3))
    other = BatchJob("anthropic", "claude-x", "msgbatch_1", ["a"])
    with pytest.raises(BatchError, match="belongs to anthropic"):
        t.poll(other)
    with pytest.raises(BatchError, match="not_found|No batch found"):
        t.poll(BatchJob("openai", "m", "batch_missing", ["a"]))
    assert stub.creations() == 0
    with pytest.raises(ValueError, match="custom_id"):
        BatchRequest("has space", [{"role": "user", "content": "x"}], RESPONSE, 10)
    with pytest.raises(ValueError, match="max_tokens"):
        BatchRequest("ok", [{"role": "user", "content": "x"}], RESPONSE, 0)
    job = BatchJob("openai", "stub-model", "batch_x", ["a"])
    assert type(api_for_job(job, base_url=stub.base_url)).__name__ == "OpenAIBatchApi"


def test_results_url_elsewhere_gets_no_key(stub: BatchStub) -> None:
    t = transport("anthropic", stub)
    with pytest.raises(BatchError, match="refusing to send the key"):
        t.api.request("GET", "https://example.invalid/v1/messages/batches/x/results")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_split_respects_request_and_byte_limits(provider: str, stub: BatchStub) -> None:
    t = transport(provider, stub)
    reqs = requests(7)
    t.max_requests = 3
    assert [len(c) for c in t.split(reqs)] == [3, 3, 1]
    one = t.request_bytes(reqs[0]) + 1
    t.max_requests, t.max_bytes = 100, 2 * one + 10
    chunks = t.split(reqs)
    assert [len(c) for c in chunks] == [2, 2, 2, 1]
    assert [r.custom_id for c in chunks for r in c] == [r.custom_id for r in reqs]
    with pytest.raises(BatchError, match="bytes, at most"):
        t.submit(reqs[:3])
    t.max_bytes = 10
    with pytest.raises(BatchError, match="larger than a batch"):
        t.split(reqs)
    assert stub.creations() == 0


def test_projection_online_batch_and_cached() -> None:
    anthropic = BatchPricing.for_provider("anthropic", 3.0, 15.0)
    p = project(anthropic, 70, 5000, 800, shared_tokens=4000, min_cached_tokens=1024)
    online = 70 * (5000 * 3.0 + 800 * 15.0) / 1e6
    assert p.online_usd == pytest.approx(online)
    assert p.batch_usd == pytest.approx(online / 2)
    cached_input = 70 * 1000 + 69 * 4000 * 0.1 + 4000 * 1.25
    assert p.batch_cached_usd == pytest.approx(0.5 * (cached_input * 3.0 + 70 * 800 * 15.0) / 1e6)
    assert p.batch_cached_usd < p.batch_usd < p.online_usd
    openai = BatchPricing.for_provider("openai", 2.5, 10.0)
    short = project(openai, 70, 5000, 800, shared_tokens=900, min_cached_tokens=1024)
    assert short.batch_cached_usd == pytest.approx(short.batch_usd)  # too short to be cached
    assert project(openai, 0, 5000, 800, 4000).batch_cached_usd == 0


def test_batch_pricing_takes_the_price_tables_rates() -> None:
    from panelsynth.prices import ModelPrice

    table = ModelPrice(
        label="openai/gpt-4o",
        input_per_mtok=2.5,
        output_per_mtok=10.0,
        cached_input_per_mtok=1.25,
        batch_input_per_mtok=1.25,
        batch_output_per_mtok=5.0,
        source="test",
    )
    priced = BatchPricing.from_price(table)
    assert priced.batch_multiplier == 0.5 and priced.cached_input_multiplier == 0.5
    assert priced.cost(1_000_000, 1_000_000) == pytest.approx(0.5 * (2.5 + 10.0))
    bare = ModelPrice(label="anthropic/claude-x", input_per_mtok=3.0, output_per_mtok=15.0)
    assert BatchPricing.from_price(bare) == BatchPricing.for_provider("anthropic", 3.0, 15.0)
