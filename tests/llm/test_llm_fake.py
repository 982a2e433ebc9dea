"""FakeClient: queued replies, defaults, errors, recording, usage."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, ValidationError

from panelsynth.llm.base import Completion, FakeClient, LLMCallError, LLMClient, Usage


class Answer(BaseModel):
    """A tiny response model."""

    n: int


MESSAGES = [{"role": "user", "content": "abcdefgh"}]


def test_fake_client_satisfies_the_protocol() -> None:
    assert isinstance(FakeClient(), LLMClient)


def test_replays_queued_items_in_order() -> None:
    client = FakeClient([Answer(n=1), {"n": 2}, lambda messages, model: {"n": len(messages)}])
    results = [client.create(MESSAGES, Answer) for _ in range(3)]
    assert [r.value.n for r in results] == [1, 2, 1]
    assert all(isinstance(r, Completion) and r.finish_reason == "stop" for r in results)
    assert len(client.calls) == 3 and client.calls[0]["response_model"] is Answer


def test_queued_exception_is_raised_and_default_answers_after_queue() -> None:
    client = FakeClient([LLMCallError("rate_limit", "slow down")], default=lambda m, r: {"n": 9})
    with pytest.raises(LLMCallError) as err:
        client.create(MESSAGES, Answer)
    assert err.value.kind == "rate_limit"
    assert client.create(MESSAGES, Answer).value.n == 9
    assert client.enqueue({"n": 3}) is client
    assert client.create(MESSAGES, Answer).value.n == 3


def test_empty_queue_without_default_fails_loudly() -> None:
    with pytest.raises(AssertionError, match="no queued response"):
        FakeClient().create(MESSAGES, Answer)


def test_invalid_dict_is_validated() -> None:
    with pytest.raises(ValidationError):
        FakeClient([{"n": "many"}]).create(MESSAGES, Answer)


def test_usage_is_estimated_from_text() -> None:
    result = FakeClient([{"n": 12345}]).create(MESSAGES, Answer)
    assert result.usage.input_tokens == 2  # 8 chars * 0.25
    assert result.usage.output_tokens == len('{"n":12345}') // 4


def test_async_create() -> None:
    client = FakeClient([{"n": 1}, {"n": 2}])

    async def main() -> list[int]:
        got = await asyncio.gather(
            client.acreate(MESSAGES, Answer), client.acreate(MESSAGES, Answer)
        )
        return sorted(r.value.n for r in got)

    assert asyncio.run(main()) == [1, 2]


def test_usage_add_sums_everything() -> None:
    a = Usage(input_tokens=1, output_tokens=2, attempts=1, faults={"rate_limit": 1})
    a.add(Usage(input_tokens=3, output_tokens=4, retries=1, reasks=2, faults={"rate_limit": 2}))
    assert a.to_dict() == {
        "input_tokens": 4,
        "output_tokens": 6,
        "cached_input_tokens": 0,
        "attempts": 2,
        "retries": 1,
        "reasks": 2,
        "faults": {"rate_limit": 3},
    }
