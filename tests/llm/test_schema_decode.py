"""The template decoder of local models: compilation, sampling, decoding (fake and real model)."""

from __future__ import annotations

import ctypes
import json
import string
from typing import Any, Literal

import numpy as np
import pytest
from pydantic import BaseModel, Field

from panelsynth.describe import describe_response_model
from panelsynth.llm.schema_decode import (
    Choice,
    Free,
    Lit,
    Sampling,
    Unsupported,
    compile_schema,
    decode,
    sample,
)
from panelsynth.pydantic_models.rows import RowSpec, batch_model, build_row_model, validate_rows

SPECS = [
    RowSpec("vaccimportant", "an ordinal", codes=(1, 2, 3, 4, 5), nullable=True),
    RowSpec("age", "a continuous", low=18, high=90, integer=True),
    RowSpec("sex", "a categorical", codes=("Male", "Female")),
    RowSpec("cluster", "cluster", codes=(1, 2)),
]
ROW = build_row_model(SPECS)


def _compile(model: type[BaseModel]) -> tuple[Any, ...]:
    return compile_schema(json.dumps(model.model_json_schema()))


# -- compilation ------------------------------------------------------------------------------
def test_batch_schema_compiles_to_skeleton_and_holes() -> None:
    prog = _compile(batch_model(ROW, 2))
    assert prog[0] == Lit('{"rows":[{"vaccimportant":')
    holes = [n for n in prog if not isinstance(n, Lit)]
    assert len(holes) == 2 * 4  # four values per row, two rows
    assert holes[0] == Choice(("1", "2", "3", "4", "5", "null"))  # NA allowed
    assert holes[1] == Choice(tuple(str(i) for i in range(18, 91)))
    assert holes[2] == Choice(('"Male"', '"Female"'))
    assert Lit('},{"vaccimportant":') in prog and prog[-1] == Lit("}]}")


def test_strings_are_free_with_their_length_cap() -> None:
    prog = _compile(describe_response_model(["a"], [1], full=False))
    frees = [n for n in prog if isinstance(n, Free)]
    assert len(frees) == 3 and all(f.max_bytes == 80 for f in frees)
    assert prog[0] == Lit('{"cluster_1":{"a":{"skew":"')


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "integer"},
        {"type": "integer", "minimum": 0, "maximum": 10**6},
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 3}},
        {"type": "string", "pattern": "^a+$"},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
    ],
)
def test_unsupported_schemas_fall_back(schema: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        compile_schema(json.dumps(schema))


# -- sampling ---------------------------------------------------------------------------------
def test_sampling_greedy_topk_and_seed() -> None:
    logits = np.array([0.0, 5.0, 1.0, 4.9], dtype=np.float32)
    assert sample(logits, Sampling(temperature=0.0), np.random.default_rng(0)) == 1
    only_top1 = Sampling(temperature=1.0, top_k=1)
    assert {sample(logits, only_top1, np.random.default_rng(s)) for s in range(20)} == {1}
    params = Sampling(temperature=1.0)
    a = [sample(logits, params, np.random.default_rng(7)) for _ in range(5)]
    b = [sample(logits, params, np.random.default_rng(7)) for _ in range(5)]
    assert a == b
    got = {sample(logits, params, np.random.default_rng(s)) for s in range(200)}
    assert got == {1, 3}  # min-p drops the unlikely ones, both near-ties are sampled


# -- decoding with a fake llama ---------------------------------------------------------------
class _FakeCtx:
    def __init__(self, owner: FakeLlama) -> None:
        self.owner = owner

    def kv_cache_seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        return True

    def get_logits_ith(self, i: int) -> Any:
        return self.owner.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class _FakeModel:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def detokenize(self, ids: list[int], special: bool = False) -> bytes:
        return b"".join(self.pieces[i] for i in ids)


class FakeLlama:
    """A byte-level 'model' with random logits; records what was evaluated."""

    def __init__(self, seed: int = 0) -> None:
        chars = string.ascii_letters + string.digits + ' ,:{}[]"_-.'
        multi = ['","', '",', '":', ',"', "Male", "Fem", "ale", "rows", "null", "10", " the"]
        self.pieces = [b""] + [c.encode() for c in chars] + [m.encode() for m in multi]
        self._model = _FakeModel(self.pieces)
        self._ctx = _FakeCtx(self)
        self.rng = np.random.default_rng(seed)
        self.logits = np.zeros(len(self.pieces), dtype=np.float32)
        self.input_ids: list[int] = []
        self.n_tokens = 0
        self.evals: list[int] = []

    @property
    def _input_ids(self) -> list[int]:
        return self.input_ids[: self.n_tokens]

    def n_vocab(self) -> int:
        return len(self.pieces)

    def token_eos(self) -> int:
        return 0

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        out, i = [], 0
        index = {p: k for k, p in enumerate(self.pieces) if p}
        while i < len(text):
            for n in range(min(4, len(text) - i), 0, -1):
                if text[i : i + n] in index:
                    out.append(index[text[i : i + n]])
                    i += n
                    break
            else:
                raise AssertionError(f"untokenizable {text[i:]!r}")
        return out

    def reset(self) -> None:
        self.n_tokens = 0

    def eval(self, tokens: list[int]) -> None:
        del self.input_ids[self.n_tokens :]
        self.input_ids += list(tokens)
        self.n_tokens += len(tokens)
        self.evals.append(len(tokens))
        self.logits = self.rng.normal(0, 3, len(self.pieces)).astype(np.float32)


def _run(llama: FakeLlama, model: type[BaseModel], seed: int, **kw: Any) -> Any:
    prompt = llama.tokenize(b"Make rows:")
    return decode(
        llama,
        _compile(model),
        prompt,
        max_tokens=kw.pop("max_tokens", 2000),
        n_ctx=kw.pop("n_ctx", 8192),
        params=Sampling(temperature=1.0),
        seed=seed,
    )


@pytest.mark.parametrize("seed", range(12))
def test_decoded_batches_always_parse_and_validate(seed: int) -> None:
    llama = FakeLlama(seed)
    res = _run(llama, batch_model(ROW, 3), seed)
    assert res.finish_reason == "stop"
    data = json.loads(res.text)
    good, errors = validate_rows(data["rows"], ROW, [s.name for s in SPECS])
    assert len(good) == 3 and errors == []
    # literals are tokenized chunk by chunk: never fewer tokens than one tokenization of the text
    assert len(llama.tokenize(res.text.encode())) <= res.completion_tokens <= len(res.text)
    # forced skeleton tokens are evaluated in batches: far fewer evaluations than tokens
    assert len(llama.evals) - 1 <= res.sampled_tokens < res.completion_tokens


@pytest.mark.parametrize("seed", range(6))
def test_decoded_strings_respect_the_cap_and_are_not_empty(seed: int) -> None:
    model = describe_response_model(["x", "y"], [1, 2], full=True)
    res = _run(FakeLlama(seed), model, seed)
    value = model.model_validate_json(res.text)
    texts = [t for c in value.model_dump().values() for v in c.values() for t in v.values()]
    assert len(texts) == 2 * 2 * 4 and all(0 < len(t) <= 80 for t in texts)
    assert not any('"' in t or "\\" in t for t in texts)


def test_max_tokens_cuts_the_reply_as_length() -> None:
    res = _run(FakeLlama(1), batch_model(ROW, 3), 1, max_tokens=7)
    assert res.finish_reason == "length" and res.completion_tokens == 7
    with pytest.raises(json.JSONDecodeError):
        json.loads(res.text)


def test_same_seed_same_reply_and_shared_prefix_reused() -> None:
    llama = FakeLlama(3)
    llama.rng = np.random.default_rng(3)
    first = _run(llama, batch_model(ROW, 2), 5)
    n_first = sum(llama.evals)
    llama.rng = np.random.default_rng(3)
    second = _run(llama, batch_model(ROW, 2), 5)
    assert first.text == second.text
    # the second call re-evaluated only the last prompt token, not the 7-token prompt
    assert n_first - (sum(llama.evals) - n_first) == first.prompt_tokens - 1 == 6


class Pick(BaseModel):
    """Exactly one of three words."""

    word: Literal["red", "blue", "green"]
    n: int = Field(ge=0, le=12)


def test_multi_token_values_are_built_token_by_token() -> None:
    seen = set()
    for seed in range(30):
        res = _run(FakeLlama(seed), Pick, seed)
        v = Pick.model_validate_json(res.text)
        seen.add(v.word)
    assert seen == {"red", "blue", "green"}
