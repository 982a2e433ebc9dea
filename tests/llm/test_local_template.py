"""The embedded model through the template decoder (slow: runs SmolLM2)."""

from __future__ import annotations

from typing import Any

import pytest

from panelsynth.describe import describe_response_model
from panelsynth.llm import local, schema_decode
from panelsynth.llm.registry import make_client
from panelsynth.pydantic_models.rows import RowSpec, batch_model, build_row_model, validate_rows

pytestmark = pytest.mark.slow

SPECS = [
    RowSpec("vaccimportant", "an ordinal", codes=(1, 2, 3, 4, 5), nullable=True),
    RowSpec("age", "a continuous", low=18, high=90, integer=True),
    RowSpec("sex", "a binary", codes=(1, 2)),
    RowSpec("cluster", "cluster", codes=(1, 2)),
]
MESSAGES = [
    {"role": "system", "content": "You generate survey respondents as JSON."},
    {
        "role": "user",
        "content": "Generate 4 respondents: importance of the flu vaccine (1-5), "
        "age, sex (1 male, 2 female), cluster (1 or 2).",
    },
]


def test_rows_validate_and_usage_matches_the_chat_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = schema_decode.decode

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(local, "decode", spy)
    client = make_client("local/smollm2")
    row = build_row_model(SPECS)
    res = client.create(MESSAGES, batch_model(row, 4), max_tokens=300, temperature=0.7, seed=3)
    assert calls == [1]  # the template decoder answered, not the grammar
    good, errors = validate_rows(res.value.rows, row, [s.name for s in SPECS])
    assert len(good) == 4 and errors == []
    assert res.usage.input_tokens == client.count_chat_tokens(MESSAGES)
    assert res.finish_reason == "stop" and 4 * 4 < res.usage.output_tokens < 300

    desc = describe_response_model(["vaccimportant", "age"], [1, 2], full=True)
    value = client.create(MESSAGES, desc, max_tokens=700, temperature=0.2, seed=1).value
    texts = [t for c in value.model_dump().values() for v in c.values() for t in v.values()]
    assert len(texts) == 16 and all(0 < len(t) <= 80 for t in texts)


def test_grammar_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("template decoder used")

    monkeypatch.setattr(local, "decode", boom)
    monkeypatch.setenv("PANELSYNTH_LOCAL_DECODER", "grammar")
    client = make_client("local/smollm2")
    row = build_row_model(SPECS)
    res = client.create(MESSAGES, batch_model(row, 2), max_tokens=200, seed=2)
    # the grammar fixes the shape (not every bound: llama.cpp's converter drops integer ranges)
    assert len(res.value.rows) == 2
    assert all(set(r) == {s.name for s in SPECS} for r in res.value.rows)
