"""The HTTP path (OpenAI-compatible server via base_url) against the stub server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, WithJsonSchema

from panelsynth.llm.base import LLMCallError
from panelsynth.llm.registry import make_client
from panelsynth.llm.retry import RetryPolicy
from tests.servers.openai_stub import Fault, OpenAIStub

ROW_SCHEMA = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "blue"]}, "age": {"type": "integer"}},
    "required": ["color", "age"],
}


class Batch(BaseModel):
    """The generation step's shape: strict schema, lenient validation."""

    rows: list[Annotated[dict[str, Any], WithJsonSchema(ROW_SCHEMA)]]


class Person(BaseModel):
    """A strictly validated model."""

    color: Literal["red", "blue"]
    age: int = Field(ge=0, le=120)


GOOD = {"rows": [{"color": "red", "age": 30}, {"color": "blue", "age": 41}]}
MESSAGES = [{"role": "system", "content": "You write rows."}, {"role": "user", "content": "Two."}]


def _client(stub: OpenAIStub, policy: RetryPolicy, **kw: Any) -> Any:
    return make_client("openai/stub-model", base_url=stub.base_url, retry_policy=policy, **kw)


def test_success_sends_the_schema_and_records_usage(fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: GOOD) as stub:
        client = _client(stub, fast_policy)
        result = client.create(MESSAGES, Batch, max_tokens=300, temperature=0.2, seed=11)
        body = stub.requests[0].body
    assert result.value.rows == GOOD["rows"]
    assert result.finish_reason == "stop"
    # the schema sent is the response model's own JSON schema (json_schema mode)
    assert body["response_format"]["json_schema"]["schema"] == Batch.model_json_schema()
    assert body["model"] == "stub-model"
    assert body["max_tokens"] == 300 and body["temperature"] == 0.2 and body["seed"] == 11
    prompt = "You write rows.Two."
    assert result.usage.input_tokens == (len(prompt) + 3) // 4
    assert result.usage.output_tokens == (len(json.dumps(GOOD)) + 3) // 4
    assert (result.usage.attempts, result.usage.retries, result.usage.reasks) == (1, 0, 0)
    assert result.usage.faults == {}


def test_lenient_rows_are_returned_for_row_by_row_validation(fast_policy: RetryPolicy) -> None:
    odd = {"rows": [{"color": "purple", "age": "old"}, {"color": "red", "age": 3}]}
    with OpenAIStub(responder=lambda req: odd) as stub:
        result = _client(stub, fast_policy).create(MESSAGES, Batch)
    assert result.value.rows[0] == {"color": "purple", "age": "old"}


@pytest.mark.parametrize("mode", ["json_schema", "json", "tools", "md_json"])
def test_every_base_url_mode_round_trips(mode: str, fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: GOOD) as stub:
        result = _client(stub, fast_policy, mode=mode).create(MESSAGES, Batch)
        body = stub.requests[0].body
    assert result.value.rows == GOOD["rows"]
    if mode == "tools":
        assert body["tools"][0]["function"]["parameters"]["properties"]["rows"]["items"] == (
            ROW_SCHEMA
        )


def test_429_with_retry_after_then_success(fast_policy: RetryPolicy) -> None:
    waits: list[tuple[str, float]] = []
    with OpenAIStub(responder=lambda req: GOOD) as stub:
        client = _client(stub, fast_policy, on_retry=lambda kind, s: waits.append((kind, s)))
        stub.script(Fault("rate_limit", retry_after="0.2"))
        started = time.monotonic()
        result = client.create(MESSAGES, Batch)
        elapsed = time.monotonic() - started
        assert len(stub.requests) == 2
    assert elapsed >= 0.2  # Retry-After honoured (the policy alone would wait ~1 ms)
    assert waits and waits[0][0] == "rate_limit" and waits[0][1] >= 0.2
    usage = result.usage
    assert (usage.attempts, usage.retries, usage.reasks) == (2, 1, 0)
    assert usage.faults == {"rate_limit": 1}
    assert usage.input_tokens == (len("You write rows.Two.") + 3) // 4  # 429 carries no tokens


def test_retry_after_http_date_is_honoured() -> None:
    from email.utils import formatdate

    waits: list[float] = []
    capped = RetryPolicy(
        max_retries=3, initial_wait=0.001, max_wait=0.01, jitter=0.001, max_retry_after=0.3
    )
    with OpenAIStub(responder=lambda req: GOOD) as stub:
        stub.script(Fault("rate_limit", retry_after=formatdate(time.time() + 30, usegmt=True)))
        client = _client(stub, capped, on_retry=lambda kind, s: waits.append(s))
        client.create(MESSAGES, Batch)
    # the date was parsed (~30 s away) and capped by max_retry_after; unparsed it would be ~1 ms
    assert waits and 0.3 <= waits[0] <= 0.35


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("unavailable", "server_error"), ("server_error", "server_error"), ("drop", "connection")],
)
def test_transient_fault_then_success(fault: str, kind: str, fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: GOOD, retry_after=None) as stub:
        stub.script(fault)
        result = _client(stub, fast_policy).create(MESSAGES, Batch)
        assert len(stub.requests) == 2
    assert result.value.rows == GOOD["rows"]
    assert (result.usage.attempts, result.usage.retries) == (2, 1)
    assert result.usage.faults == {kind: 1}


def test_stall_past_timeout_is_retried(fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: GOOD, stall_seconds=3.0) as stub:
        stub.script("stall")
        client = _client(stub, fast_policy, timeout=0.3)
        started = time.monotonic()
        result = client.create(MESSAGES, Batch)
        assert time.monotonic() - started < 2.0
    assert result.usage.faults == {"timeout": 1}
    assert result.usage.retries == 1


def test_malformed_json_is_reasked_and_tokens_summed(fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: GOOD) as stub:
        stub.script("malformed")
        result = _client(stub, fast_policy).create(MESSAGES, Batch)
        second = stub.requests[1].body["messages"]
    assert result.value.rows == GOOD["rows"]
    usage = result.usage
    assert (usage.attempts, usage.retries, usage.reasks) == (2, 0, 1)
    assert usage.faults == {"invalid_output": 1}
    # the re-ask carries the broken reply and the error back to the model
    assert second[-2]["role"] == "assistant"
    assert "oops" in second[-2]["content"]
    assert second[-1]["role"] == "user"
    # tokens of both attempts are counted
    first_out = (len(json.dumps(GOOD)[: len(json.dumps(GOOD)) // 2] + ' "oops') + 3) // 4
    assert usage.output_tokens == first_out + (len(json.dumps(GOOD)) + 3) // 4
    assert usage.input_tokens > 2 * ((len("You write rows.Two.") + 3) // 4)


def test_invalid_values_are_reasked_for_strict_models(fast_policy: RetryPolicy) -> None:
    answers = iter([{"color": "green", "age": 5}, {"color": "red", "age": 5}])
    with OpenAIStub(responder=lambda req: next(answers)) as stub:
        result = _client(stub, fast_policy).create(MESSAGES, Person)
        assert "color" in stub.requests[1].body["messages"][-1]["content"]
    assert result.value == Person(color="red", age=5)
    assert result.usage.reasks == 1


def test_persistent_invalid_output_raises_with_usage(fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: "not json at all") as stub:
        client = _client(stub, fast_policy, reask_retries=2)
        with pytest.raises(LLMCallError) as err:
            client.create(MESSAGES, Batch)
        assert len(stub.requests) == 3
    e = err.value
    assert e.kind == "invalid_output"
    assert (e.usage.attempts, e.usage.reasks) == (3, 2)
    assert e.usage.faults == {"invalid_output": 3}
    assert e.usage.output_tokens == 3 * ((len("not json at all") + 3) // 4)
    assert "\n" not in str(e)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("rate_limit", "rate_limit"),
        ("unavailable", "server_error"),
        ("drop", "connection"),
    ],
)
def test_persistent_transport_failure_raises_its_kind(
    fault: str, kind: str, fast_policy: RetryPolicy
) -> None:
    with OpenAIStub(responder=lambda req: GOOD, fault_rates={fault: 1.0}) as stub:
        with pytest.raises(LLMCallError) as err:
            _client(stub, fast_policy).create(MESSAGES, Batch)
        assert len(stub.requests) == fast_policy.max_attempts
    e = err.value
    assert e.kind == kind
    assert e.usage.attempts == fast_policy.max_attempts
    assert e.usage.retries == fast_policy.max_retries
    assert e.usage.faults == {kind: fast_policy.max_attempts}


@pytest.mark.parametrize(("fault", "kind"), [("auth", "auth"), ("bad_request", "bad_request")])
def test_non_retryable_errors_fail_fast(fault: str, kind: str, fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: GOOD) as stub:
        stub.script(fault)
        with pytest.raises(LLMCallError) as err:
            _client(stub, fast_policy).create(MESSAGES, Batch)
        assert len(stub.requests) == 1
    assert err.value.kind == kind
    assert err.value.usage.retries == 0


def test_truncated_reply_is_reported(fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: GOOD) as stub:
        stub.script("truncated")
        with pytest.raises(LLMCallError) as err:
            _client(stub, fast_policy).create(MESSAGES, Batch, max_tokens=7)
        assert len(stub.requests) == 1
    e = err.value
    assert e.kind == "truncated"
    assert "max_tokens=7" in str(e)
    assert e.usage.output_tokens > 0  # the cut-off reply's tokens are still counted
    assert e.usage.faults == {"truncated": 1}


def test_async_calls_run_concurrently_and_retry(fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda req: GOOD, latency=0.15) as stub:
        client = _client(stub, fast_policy)
        stub.script("unavailable")

        async def main() -> list[Any]:
            return await asyncio.gather(*(client.acreate(MESSAGES, Batch) for _ in range(6)))

        started = time.monotonic()
        results = asyncio.run(main())
        elapsed = time.monotonic() - started
        # a second event loop gets its own async client
        again = asyncio.run(client.acreate(MESSAGES, Batch))
        assert len(stub.requests) == 8
    assert all(r.value.rows == GOOD["rows"] for r in results)
    assert sum(r.usage.retries for r in results) == 1
    assert elapsed < 0.9  # sequential would take >= 7 * 0.15 = 1.05 s
    assert again.usage.attempts == 1
