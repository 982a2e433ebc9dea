"""The batch stub itself: both providers' endpoints, its knobs, its bounds."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.servers.batch_stub import BatchStub, serve_batch_stub  # noqa: E402

KEY = "sk-stub-key-0123456789abcdef"


class Answer(BaseModel):
    label: str
    score: int = Field(ge=1, le=5)
    tags: list[int] = Field(min_length=2, max_length=2)


def _oa(stub: BatchStub, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {kw.pop('key', KEY)}"}
    return httpx.request(method, stub.base_url + path, headers=headers, timeout=5, **kw)


def _an(stub: BatchStub, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"x-api-key": kw.pop("key", KEY), "anthropic-version": "2023-06-01"}
    return httpx.request(method, stub.base_url + path, headers=headers, timeout=5, **kw)


def _openai_batch(stub: BatchStub, n: int) -> str:
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "m",
                "messages": [{"role": "user", "content": f"q{i}"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "Answer", "schema": Answer.model_json_schema()},
                },
            },
        }
        for i in range(n)
    ]
    data = "\n".join(json.dumps(x) for x in lines).encode()
    up = _oa(stub, "POST", "/files", files={"file": ("b.jsonl", data)}, data={"purpose": "batch"})
    assert up.status_code == 200, up.text
    body = {"input_file_id": up.json()["id"], "endpoint": "/v1/chat/completions"}
    created = _oa(stub, "POST", "/batches", json={**body, "completion_window": "24h"})
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "validating"
    return created.json()["id"]


def _anthropic_batch(stub: BatchStub, n: int) -> str:
    tool = {"name": "Answer", "input_schema": Answer.model_json_schema()}
    requests = [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "m",
                "max_tokens": 100,
                "messages": [{"role": "user", "content": f"q{i}"}],
                "tools": [tool],
                "tool_choice": {"type": "tool", "name": "Answer"},
            },
        }
        for i in range(n)
    ]
    created = _an(stub, "POST", "/messages/batches", json={"requests": requests})
    assert created.status_code == 200, created.text
    assert created.json()["processing_status"] == "in_progress"
    return created.json()["id"]


def test_openai_shape_replies_valid_rows_after_the_polls_in_progress() -> None:
    with BatchStub(polls_in_progress=2) as stub:
        batch_id = _openai_batch(stub, 4)
        states = [_oa(stub, "GET", f"/batches/{batch_id}").json() for _ in range(3)]
    assert [s["status"] for s in states] == ["in_progress", "in_progress", "completed"]
    assert states[0]["output_file_id"] is None
    assert states[2]["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    out = stub.files[states[2]["output_file_id"]].decode().splitlines()
    assert states[2]["error_file_id"] is None and len(out) == 4
    for line in map(json.loads, out):
        assert line["response"]["status_code"] == 200 and line["error"] is None
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        Answer.model_validate_json(content)  # schema-valid content
        assert line["response"]["body"]["usage"]["prompt_tokens"] > 0


def test_anthropic_shape_replies_valid_tool_input() -> None:
    with BatchStub(polls_in_progress=1) as stub:
        batch_id = _anthropic_batch(stub, 3)
        first = _an(stub, "GET", f"/messages/batches/{batch_id}").json()
        ended = _an(stub, "GET", f"/messages/batches/{batch_id}").json()
        assert first["processing_status"] == "in_progress" and first["results_url"] is None
        assert ended["processing_status"] == "ended"
        assert ended["request_counts"]["succeeded"] == 3
        results = httpx.get(
            ended["results_url"], headers={"x-api-key": KEY}, timeout=5
        ).text.splitlines()
    for line in map(json.loads, results):
        assert line["result"]["type"] == "succeeded"
        (block,) = line["result"]["message"]["content"]
        assert block["type"] == "tool_use" and block["name"] == "Answer"
        Answer.model_validate(block["input"])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_fault_shares_are_exact_and_seeded(provider: str) -> None:
    knobs = {"fail_share": 0.2, "invalid_share": 0.1, "truncated_share": 0.05, "expire_share": 0.1}
    make = _openai_batch if provider == "openai" else _anthropic_batch
    with BatchStub(seed=7, **knobs) as a, BatchStub(seed=7, **knobs) as b:
        one, two = a.outcomes(make(a, 40)), b.outcomes(make(b, 40))
    assert one == two  # the same seed faults the same requests
    counts: dict[str, int] = {}
    for v in one.values():
        counts[v] = counts.get(v, 0) + 1
    assert counts == {
        "ok": 22,
        "fail:server_error": 4,
        "fail:rate_limit": 4,
        "invalid": 4,
        "truncated": 2,
        "unfinished": 4,
    }


def test_openai_error_file_and_expiry() -> None:
    with BatchStub(polls_in_progress=0, fail_share=0.25, expire_share=0.25) as stub:
        batch_id = _openai_batch(stub, 8)
        state = _oa(stub, "GET", f"/batches/{batch_id}").json()
    assert state["status"] == "expired"
    errors = [json.loads(x) for x in stub.files[state["error_file_id"]].decode().splitlines()]
    expired = [e for e in errors if e["error"]]
    failed = [e for e in errors if not e["error"]]
    assert len(expired) == 2 and all(e["error"]["code"] == "batch_expired" for e in expired)
    assert sorted(e["response"]["status_code"] for e in failed) == [429, 500]
    assert len(stub.files[state["output_file_id"]].decode().splitlines()) == 4


def test_cancel_leaves_the_rest_without_results() -> None:
    with BatchStub(polls_in_progress=10, done_before_cancel=0.5) as stub:
        oa, an = _openai_batch(stub, 4), _anthropic_batch(stub, 4)
        assert _oa(stub, "POST", f"/batches/{oa}/cancel").json()["status"] == "cancelling"
        assert _an(stub, "POST", f"/messages/batches/{an}/cancel").status_code == 200
        oa_states = [_oa(stub, "GET", f"/batches/{oa}").json()["status"] for _ in range(2)]
        an_states = [
            _an(stub, "GET", f"/messages/batches/{an}").json()["processing_status"]
            for _ in range(2)
        ]
        final = _oa(stub, "GET", f"/batches/{oa}").json()
        results = _an(stub, "GET", f"/messages/batches/{an}/results").text.splitlines()
    assert oa_states == ["cancelling", "cancelled"] and an_states == ["canceling", "ended"]
    assert final["error_file_id"] is None  # unprocessed requests are in neither file
    assert len(stub.files[final["output_file_id"]].decode().splitlines()) == 2
    types = [json.loads(x)["result"]["type"] for x in results]
    assert types == ["succeeded", "succeeded", "canceled", "canceled"]


def test_wrong_key_is_refused_and_echoed() -> None:
    with serve_batch_stub() as stub:
        oa = _oa(stub, "GET", "/batches/x", key="not-the-key-123")
        an = _an(stub, "GET", "/messages/batches/x", key="not-the-key-123")
        unknown = _oa(stub, "GET", "/nowhere")
    assert oa.status_code == an.status_code == 401
    assert "not-the-key-123" in oa.text and "not-the-key-123" in an.text
    assert an.json()["error"]["type"] == "authentication_error"
    assert unknown.status_code == 404
    assert stub.creations() == 0


def test_transport_faults_script() -> None:
    with BatchStub() as stub:
        stub.script("rate_limit", "server_error", "drop", "ok")
        first = _oa(stub, "GET", "/batches")
        second = _oa(stub, "GET", "/batches")
        with pytest.raises(httpx.HTTPError):
            _oa(stub, "GET", "/batches")
        fourth = _oa(stub, "GET", "/batches")
    assert (first.status_code, first.headers["retry-after"]) == (429, "0")
    assert second.status_code == 500 and fourth.status_code == 200
    with pytest.raises(ValueError, match="unknown fault"):
        stub.script("explode")


def test_bounded_stops_by_itself_and_refuses_big_bodies() -> None:
    stub = BatchStub(lifetime=0.3, max_body_bytes=1000).start()
    url = stub.base_url
    with pytest.raises(httpx.HTTPError):
        _oa(stub, "POST", "/batches", content=b"x" * 5000)
    deadline = time.monotonic() + 5
    while stub.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stub.running
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/batches", timeout=1)
    stub.stop()  # idempotent


def test_bad_knobs_and_bad_requests() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        BatchStub(fail_share=0.7, invalid_share=0.4)
    with pytest.raises(ValueError, match="unknown fail kind"):
        BatchStub(fail_kinds=("meteor",))
    with BatchStub() as stub:
        no_purpose = _oa(stub, "POST", "/files", files={"file": ("b.jsonl", b"{}")})
        bad_window = _oa(
            stub, "POST", "/batches", json={"input_file_id": "x", "endpoint": "/v1/embeddings"}
        )
        no_tokens = _an(
            stub,
            "POST",
            "/messages/batches",
            json={"requests": [{"custom_id": "a", "params": {"model": "m"}}]},
        )
    assert no_purpose.status_code == bad_window.status_code == no_tokens.status_code == 400
    assert stub.creations() == 0
