"""The OpenAI-compatible stub server itself: replies, faults, recording, concurrency."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.servers.openai_stub import (  # noqa: E402
    Fault,
    OpenAIStub,
    schema_example,
    serve_openai_stub,
)


def _post(stub: OpenAIStub, body: dict[str, Any], timeout: float = 5.0) -> tuple[int, dict, dict]:
    req = urllib.request.Request(
        stub.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


def test_plain_content_reply_with_usage_and_finish_reason() -> None:
    with serve_openai_stub(responder=lambda req: {"a": 1}) as stub:
        status, _, data = _post(stub, BODY)
    assert status == 200
    choice = data["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"a": 1}
    assert choice["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] == 3  # "hello there" = 11 chars -> ceil(11/4)
    assert data["usage"]["completion_tokens"] == 2  # '{"a": 1}' = 8 chars
    assert data["usage"]["total_tokens"] == 5


def test_tool_call_reply_when_tools_are_sent() -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"enum": ["red", "blue"]}, "n": {"type": "integer", "minimum": 2}},
    }
    body = dict(
        BODY, tools=[{"type": "function", "function": {"name": "Row", "parameters": schema}}]
    )
    with OpenAIStub() as stub:
        _, _, data = _post(stub, body)
    call = data["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "Row"
    assert json.loads(call["function"]["arguments"]) == {"color": "red", "n": 2}
    assert data["choices"][0]["message"]["content"] is None


def test_schema_example_follows_refs_arrays_and_nullable() -> None:
    schema = {
        "$defs": {"R": {"type": "object", "properties": {"x": {"enum": [3, 4]}}}},
        "type": "object",
        "properties": {
            "rows": {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/R"}},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        },
    }
    assert schema_example(schema) == {"rows": [{"x": 3}, {"x": 3}], "maybe": "x"}


def test_scripted_faults_in_order_then_normal() -> None:
    with OpenAIStub(responder=lambda req: {"ok": True}) as stub:
        stub.script(Fault("rate_limit", retry_after="7"), "unavailable", None, "truncated")
        s1, h1, _ = _post(stub, BODY)
        s2, _, _ = _post(stub, BODY)
        s3, _, d3 = _post(stub, BODY)
        s4, _, d4 = _post(stub, BODY)
        s5, _, d5 = _post(stub, BODY)
        assert [s1, s2, s3, s4, s5] == [429, 503, 200, 200, 200]
        assert h1["Retry-After"] == "7"
        assert d4["choices"][0]["finish_reason"] == "length"
        assert d5["choices"][0]["finish_reason"] == "stop"
        assert [r.fault for r in stub.requests] == [
            "rate_limit",
            "unavailable",
            None,
            "truncated",
            None,
        ]


def test_fault_filter_spares_other_requests_and_keeps_the_script() -> None:
    faulty = {**BODY, "messages": [{"role": "user", "content": "fault me"}]}
    with OpenAIStub(
        responder=lambda req: {"ok": True},
        fault_filter=lambda body: "fault me" in json.dumps(body),
        fault_rates={"server_error": 1.0},
    ) as stub:
        stub.script("rate_limit")
        statuses = [_post(stub, b)[0] for b in (BODY, faulty, BODY, faulty)]
        assert statuses == [200, 429, 200, 500]
        assert [r.fault for r in stub.requests] == [None, "rate_limit", None, "server_error"]


def test_malformed_content_is_not_json() -> None:
    with OpenAIStub(responder=lambda req: {"rows": [1, 2, 3]}) as stub:
        stub.script("malformed")
        _, _, data = _post(stub, BODY)
    with pytest.raises(json.JSONDecodeError):
        json.loads(data["choices"][0]["message"]["content"])


def test_drop_closes_the_connection_without_reply() -> None:
    with OpenAIStub() as stub:
        stub.script("drop")
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            _post(stub, BODY)
        assert stub.fault_counts() == {"drop": 1}


def test_stall_outlasts_a_short_client_timeout() -> None:
    with OpenAIStub(stall_seconds=2.0) as stub:
        stub.script("stall")
        started = time.monotonic()
        with pytest.raises((TimeoutError, urllib.error.URLError, OSError)):
            _post(stub, BODY, timeout=0.2)
        assert time.monotonic() - started < 1.5
    # stop() released the stalled handler at once


def test_seeded_fault_rates_are_reproducible() -> None:
    def run() -> list[str | None]:
        with OpenAIStub(fault_rates={"server_error": 0.3, "rate_limit": 0.2}, seed=7) as stub:
            for _ in range(30):
                _post(stub, BODY)
            return [r.fault for r in stub.requests]

    first, second = run(), run()
    assert first == second
    assert 0 < first.count("server_error") < 30
    assert 0 < first.count("rate_limit") < 30
    assert first.count(None) > 0


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        OpenAIStub(fault_rates={"gremlins": 0.1})
    with pytest.raises(ValueError, match="at most 1"):
        OpenAIStub(fault_rates={"drop": 0.7, "stall": 0.6})
    with pytest.raises(RuntimeError, match="not running"):
        _ = OpenAIStub().base_url


def test_latency_is_served_concurrently() -> None:
    with OpenAIStub(latency=0.3) as stub:
        threads = [threading.Thread(target=_post, args=(stub, BODY)) for _ in range(6)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        assert len(stub.requests) == 6
    assert 0.3 <= elapsed < 1.2  # sequential service would take 1.8 s


def test_requests_are_recorded_with_headers() -> None:
    with OpenAIStub() as stub:
        req = urllib.request.Request(
            stub.base_url + "/chat/completions",
            data=json.dumps(BODY).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer abc"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=5).read()
        rec = stub.requests[0]
        assert rec.body["messages"][0]["content"] == "hello there"
        assert rec.headers["authorization"] == "Bearer abc"
        deadline = time.monotonic() + 2  # the handler stamps `finished` just after replying
        while not rec.finished and time.monotonic() < deadline:
            time.sleep(0.005)
        assert rec.finished >= rec.started
        stub.reset()
        assert stub.requests == []
