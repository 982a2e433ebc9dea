"""Local GGUF models: use_extra_bufts, model cache, and the real embedded SmolLM2 (slow)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, WithJsonSchema

from panelsynth.llm.base import LLMCallError
from panelsynth.llm.local import (
    DEFAULT_N_CTX,
    ContextOverflowError,
    _without_extra_bufts,
    load_llama,
    resolve_gguf,
)
from panelsynth.llm.registry import make_client


def test_use_extra_bufts_is_off_only_while_loading() -> None:
    from llama_cpp import llama_cpp as lib

    assert lib.llama_model_default_params().use_extra_bufts is True  # llama.cpp's default
    with _without_extra_bufts() as has_field:
        assert has_field
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params().use_extra_bufts is True


def test_llama_cpp_is_not_imported_by_making_a_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from panelsynth.llm import make_client; make_client('local/smollm2'); "
        "print('llama_cpp' in sys.modules, 'instructor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


class Row(BaseModel):
    """A strictly validated respondent."""

    color: Literal["red", "blue", "green"]
    age: int


class Batch(BaseModel):
    """Exactly two rows."""

    rows: list[Row] = Field(min_length=2, max_length=2)


ROW_SCHEMA = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "blue", "green"]}, "age": {"type": "integer"}},
    "required": ["color", "age"],
    "additionalProperties": False,
}


class LenientBatch(BaseModel):
    """The generation step's shape: strict schema, lenient validation."""

    rows: list[Annotated[dict[str, Any], WithJsonSchema(ROW_SCHEMA)]] = Field(
        min_length=2, max_length=2
    )


MESSAGES = [
    {"role": "system", "content": "You generate survey respondents as JSON."},
    {
        "role": "user",
        "content": "Generate 2 respondents, each with a favourite color (red, blue or green) "
        "and an age in years.",
    },
]


@pytest.mark.slow
def test_smollm2_end_to_end() -> None:
    client = make_client("local/smollm2")
    model = client.load().model
    assert model.n_ctx == DEFAULT_N_CTX
    assert model.llama.model_params.use_extra_bufts is False
    assert load_llama(resolve_gguf("smollm2")) is model  # loaded once per process

    result = client.create(MESSAGES, Batch, max_tokens=200, temperature=0.7, seed=42)
    assert isinstance(result.value, Batch) and len(result.value.rows) == 2
    assert all(isinstance(r, Row) for r in result.value.rows)
    assert result.usage.input_tokens > 20 and result.usage.output_tokens > 10
    assert result.usage.attempts >= 1
    assert result.finish_reason == "stop"

    lenient = client.create(MESSAGES, LenientBatch, max_tokens=200, seed=1)
    for row in lenient.value.rows:
        Row.model_validate(row)  # the grammar enforced the row schema
    # the shared prompt prefix was reused from the KV cache
    assert lenient.usage.cached_input_tokens > 10

    async def both() -> list[Any]:
        return await asyncio.gather(
            client.acreate(MESSAGES, Batch, max_tokens=200, seed=3),
            client.acreate(MESSAGES, Batch, max_tokens=200, seed=4),
        )

    assert all(len(r.value.rows) == 2 for r in asyncio.run(both()))
    assert client.count_tokens("hello world") == len(
        model.llama.tokenize(b"hello world", add_bos=False)
    )


@pytest.mark.slow
def test_smollm2_prompt_over_the_context_is_an_error() -> None:
    client = make_client("local/smollm2")
    long_text = "respondent " * 9000
    assert client.count_tokens(long_text) > DEFAULT_N_CTX
    with pytest.raises(LLMCallError) as err:
        client.create([{"role": "user", "content": long_text}], Batch, max_tokens=50)
    e = err.value
    assert e.kind == "context_overflow"
    assert isinstance(e, ContextOverflowError)
    assert e.prompt_tokens > DEFAULT_N_CTX and e.context_window == DEFAULT_N_CTX
    assert str(e.prompt_tokens) in str(e) and "8192" in str(e)
    assert e.usage.faults == {"context_overflow": 1}


@pytest.mark.slow
def test_smollm2_reply_cut_by_max_tokens_is_truncated() -> None:
    client = make_client("local/smollm2")
    with pytest.raises(LLMCallError) as err:
        client.create(MESSAGES, Batch, max_tokens=5, seed=1)
    assert err.value.kind == "truncated"
    assert err.value.usage.output_tokens == 5
