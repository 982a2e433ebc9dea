"""Schema-guided template decoding for in-process llama.cpp models.

llama-cpp-python applies a GBNF grammar to the whole vocabulary (49k tokens for SmolLM2) at every
sampled token, which makes constrained decoding several times slower than plain decoding. The
structured outputs of panelsynth have a fixed shape (objects with known keys, arrays of a fixed
length, enumerated codes, bounded integers, bounded strings), so most of a reply is known in
advance. This module compiles such a JSON schema into a *template*: literal JSON skeleton
(``{"rows":[{"age":``...) fed to the model as forced tokens, evaluated in batches, and *holes*
where the model samples:

* :class:`Choice` — a finite set of JSON values (enum codes, ``null`` where allowed, the integers
  of a bounded range): only tokens that continue one of the values are candidates, and "the value
  ends here" is scored with the logit of the first token of the skeleton that follows;
* :class:`Free` — the characters of a JSON string: any token without a quote, backslash or control
  byte, until the model picks the closing quote or the length cap (``maxLength``) is reached.

Candidates are sampled like llama.cpp's default chain (top-k 40, top-p 0.95, min-p 0.05, then
temperature) with a seeded NumPy generator. A schema outside this subset (unbounded integers,
floats, variable-length arrays, patterns) raises :class:`Unsupported` and the caller falls back
to the grammar. The output is compact JSON that always parses and matches the schema's shape and
value sets.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

logger = logging.getLogger("panelsynth")

#: Integer ranges with more values than this are not enumerated (the grammar handles them).
MAX_CHOICES = 5000
#: Cap (bytes) of a string without ``maxLength``.
DEFAULT_MAX_STRING = 1000


_PUNCT = frozenset(b'",:{}[] \t\n\r')


class Unsupported(Exception):
    """The schema has a feature the template decoder does not handle."""


@dataclass(frozen=True)
class Lit:
    """Literal JSON text, fed as forced tokens."""

    text: str


@dataclass(frozen=True)
class Choice:
    """One of a finite set of JSON values (their compact JSON texts)."""

    options: tuple[str, ...]


@dataclass(frozen=True)
class Free:
    """The characters of a JSON string (between quotes that are literals), at most ``max_bytes``."""

    max_bytes: int


Node = Lit | Choice | Free


# ----------------------------------------------------------------------------------------------
# schema -> template
def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _compile(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> list[Node]:
    if depth > 32:
        raise Unsupported("schema nested too deeply")
    if "$ref" in schema:
        name = str(schema["$ref"]).split("/")[-1]
        if name not in defs:
            raise Unsupported(f"unresolved $ref {schema['$ref']}")
        return _compile(defs[name], defs, depth + 1)
    for key in ("oneOf", "allOf", "not", "if", "pattern", "format", "patternProperties"):
        if key in schema:
            raise Unsupported(f"schema keyword {key!r}")
    if "anyOf" in schema:
        options = schema["anyOf"]
        nulls = [o for o in options if o.get("type") == "null"]
        others = [o for o in options if o.get("type") != "null"]
        if len(others) != 1 or len(nulls) != 1:
            raise Unsupported("anyOf other than X-or-null")
        inner = _compile(others[0], defs, depth + 1)
        if len(inner) != 1 or not isinstance(inner[0], Choice):
            raise Unsupported("nullable non-enumerable value")
        return [Choice((*inner[0].options, "null"))]
    if "const" in schema:
        return [Lit(_dump(schema["const"]))]
    if "enum" in schema:
        values = list(dict.fromkeys(_dump(v) for v in schema["enum"]))
        if not values:
            raise Unsupported("empty enum")
        return [Choice(tuple(values))]
    kind = schema.get("type")
    if isinstance(kind, list):
        raise Unsupported("type lists")
    if kind == "object" or (kind is None and "properties" in schema):
        props: dict[str, Any] = schema.get("properties", {})
        nodes: list[Node] = [Lit("{")]
        for i, (name, sub) in enumerate(props.items()):
            nodes.append(Lit(("," if i else "") + _dump(name) + ":"))
            nodes += _compile(sub, defs, depth + 1)
        nodes.append(Lit("}"))
        return nodes
    if kind == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        if hi is None or lo != hi:
            raise Unsupported("arrays of variable length")
        item = _compile(schema.get("items", {}), defs, depth + 1)
        nodes = [Lit("[")]
        for i in range(int(lo)):
            if i:
                nodes.append(Lit(","))
            nodes += item
        nodes.append(Lit("]"))
        return nodes
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if "exclusiveMinimum" in schema:
            lo = schema["exclusiveMinimum"] + 1
        if "exclusiveMaximum" in schema:
            hi = schema["exclusiveMaximum"] - 1
        if lo is None or hi is None or hi - lo + 1 > MAX_CHOICES or hi < lo:
            raise Unsupported("integer without small bounds")
        return [Choice(tuple(str(i) for i in range(int(lo), int(hi) + 1)))]
    if kind == "boolean":
        return [Choice(("true", "false"))]
    if kind == "null":
        return [Lit("null")]
    if kind == "string":
        cap = int(schema.get("maxLength", DEFAULT_MAX_STRING))
        if schema.get("minLength", 0) > 1:
            raise Unsupported("minLength above 1")
        return [Lit('"'), Free(max(1, cap)), Lit('"')]
    raise Unsupported(f"type {kind!r}")


def _merge(nodes: list[Node]) -> tuple[Node, ...]:
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, Lit) and out and isinstance(out[-1], Lit):
            out[-1] = Lit(out[-1].text + n.text)
        elif isinstance(n, Choice) and len(n.options) == 1:
            lit = Lit(n.options[0])
            if out and isinstance(out[-1], Lit):
                out[-1] = Lit(out[-1].text + lit.text)
            else:
                out.append(lit)
        else:
            out.append(n)
    return tuple(out)


@lru_cache(maxsize=64)
def compile_schema(schema_json: str) -> tuple[Node, ...]:
    """Compile a JSON schema (as canonical JSON text) into a template.

    Raises:
        Unsupported: The schema is outside the decoder's subset.
    """
    schema = json.loads(schema_json)
    return _merge(_compile(schema, schema.get("$defs", {})))


# ----------------------------------------------------------------------------------------------
# vocabulary
@dataclass
class Vocab:
    """Byte pieces of a model's tokens and the index the decoder needs."""

    pieces: list[bytes]
    index: dict[bytes, int]
    free_ids: np.ndarray  # tokens allowed inside a JSON string
    lengths: np.ndarray  # byte length of every token
    eos: int
    _closers: dict[int, np.ndarray] = field(default_factory=dict)

    def closers(self, first: int) -> np.ndarray:
        """Tokens that start with byte ``first`` and hold only JSON punctuation or spaces.

        Their summed probability is the model's probability of ending a value (or a string) and
        going on with the skeleton, whatever spacing it would have chosen.
        """
        hit = self._closers.get(first)
        if hit is None:
            ids = [
                i
                for i, p in enumerate(self.pieces)
                if p and p[0] == first and all(b in _PUNCT for b in p)
            ]
            hit = np.asarray(ids or [self.eos], dtype=np.int64)
            self._closers[first] = hit
        return hit

    @classmethod
    def of(cls, llama: Any) -> Vocab:
        n = int(llama.n_vocab())
        detok = llama._model.detokenize  # noqa: SLF001 - the only per-token byte API
        pieces = [detok([i], special=False) for i in range(n)]
        index: dict[bytes, int] = {}
        for i, p in enumerate(pieces):
            if p and p not in index:
                index[p] = i
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=n)
        ok = np.fromiter(
            (bool(p) and b'"' not in p and b"\\" not in p and min(p) >= 0x20 for p in pieces),
            dtype=bool,
            count=n,
        )
        return cls(pieces, index, np.nonzero(ok)[0], lengths, int(llama.token_eos()))


_VOCABS: dict[int, Vocab] = {}


def vocab_for(llama: Any) -> Vocab:
    """The (cached) :class:`Vocab` of a loaded model."""
    key = id(llama)
    if key not in _VOCABS:
        _VOCABS[key] = Vocab.of(llama)
    return _VOCABS[key]


# ----------------------------------------------------------------------------------------------
# sampling
@dataclass(frozen=True)
class Sampling:
    """llama.cpp's default chain: top-k, top-p, min-p, then temperature."""

    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05


def sample(logits: np.ndarray, params: Sampling, rng: np.random.Generator) -> int:
    """Index of the sampled entry of ``logits`` (candidates' logits, at least one)."""
    if len(logits) == 1:
        return 0
    x = logits.astype(np.float64)
    if params.temperature <= 0:
        return int(np.argmax(x))
    idx = np.arange(len(x))
    if params.top_k > 0 and len(x) > params.top_k:
        idx = np.argpartition(-x, params.top_k - 1)[: params.top_k]
    order = idx[np.argsort(-x[idx], kind="stable")]
    lx = x[order]
    p = np.exp(lx - lx[0])
    p /= p.sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(p), params.top_p) + 1)
        order, lx, p = order[:keep], lx[:keep], p[:keep]
    if params.min_p > 0:
        keep_mask = p >= params.min_p * p[0]
        order, lx = order[keep_mask], lx[keep_mask]
    q = np.exp((lx - lx[0]) / params.temperature)
    q /= q.sum()
    return int(order[int(rng.choice(len(q), p=q))])


# ----------------------------------------------------------------------------------------------
# decoding
@dataclass
class DecodeResult:
    """What one templated completion produced."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"
    sampled_tokens: int = 0


class _Stop(Exception):
    pass


@dataclass
class _State:
    llama: Any
    vocab: Vocab
    max_tokens: int
    n_ctx: int
    pending: list[int] = field(default_factory=list)
    out: list[bytes] = field(default_factory=list)
    n_out: int = 0
    n_sampled: int = 0

    def emit(self, ids: list[int]) -> None:
        for t in ids:
            if self.n_out >= self.max_tokens:
                raise _Stop
            self.pending.append(t)
            self.out.append(self.vocab.pieces[t])
            self.n_out += 1

    def logits(self) -> np.ndarray:
        llama = self.llama
        if self.pending:
            if llama.n_tokens + len(self.pending) > self.n_ctx:
                raise _Stop
            llama.eval(self.pending)
            self.pending = []
        ptr = llama._ctx.get_logits_ith(-1)  # noqa: SLF001 - logits of the last evaluated token
        return np.ctypeslib.as_array(ptr, shape=(llama.n_vocab(),))


class _Memo:
    """Per-template cache of the candidate tokens of a Choice after a given prefix."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.cache: dict[tuple[int, bytes], tuple[np.ndarray, bool]] = {}
        self.first: dict[str, list[int]] = {}

    def candidates(
        self, i: int, options: frozenset[bytes], prefix: bytes
    ) -> tuple[np.ndarray, bool]:
        """Tokens that continue a value of ``options`` after ``prefix``; whether it may end."""
        key = (i, prefix)
        hit = self.cache.get(key)
        if hit is None:
            ids: dict[int, None] = {}
            n = len(prefix)
            for o in options:
                if len(o) > n and o.startswith(prefix):
                    rest = o[n:]
                    for k in range(1, len(rest) + 1):
                        t = self.vocab.index.get(rest[:k])
                        if t is not None:
                            ids[t] = None
            hit = (np.fromiter(ids, dtype=np.int64, count=len(ids)), prefix in options)
            self.cache[key] = hit
        return hit


_Prepared = tuple[_Memo, list[list[int]], list[frozenset[bytes]]]
_MEMOS: dict[tuple[int, tuple[Node, ...]], _Prepared] = {}


def _prepared(llama: Any, vocab: Vocab, program: tuple[Node, ...]) -> _Prepared:
    """Tokens of the literals, option sets and the candidate memo of a template (cached)."""
    key = (id(llama), program)
    if key not in _MEMOS:
        lit_tokens = [
            llama.tokenize(n.text.encode("utf-8"), add_bos=False, special=False)
            if isinstance(n, Lit)
            else []
            for n in program
        ]
        option_sets = [
            frozenset(o.encode("utf-8") for o in n.options)
            if isinstance(n, Choice)
            else frozenset()
            for n in program
        ]
        if len(_MEMOS) > 64:
            _MEMOS.clear()
        _MEMOS[key] = (_Memo(vocab), lit_tokens, option_sets)
    return _MEMOS[key]


def reuse_prefix(llama: Any, tokens: list[int]) -> int:
    """Keep the KV cache of the longest shared token prefix; return the tokens still to evaluate.

    At least the last prompt token is always evaluated again, so that fresh logits exist.
    """
    previous = llama._input_ids  # noqa: SLF001 - tokens whose KV is cached
    shared = 0
    for a, b in zip(previous, tokens, strict=False):
        if a != b:
            break
        shared += 1
    shared = min(shared, len(tokens) - 1)
    if shared > 0 and llama._ctx.kv_cache_seq_rm(-1, shared, -1):  # noqa: SLF001
        llama.n_tokens = shared
    else:
        llama.reset()
    return llama.n_tokens


def decode(
    llama: Any,
    program: tuple[Node, ...],
    prompt_tokens: list[int],
    *,
    max_tokens: int,
    n_ctx: int,
    params: Sampling,
    seed: int | None,
) -> DecodeResult:
    """Fill ``program`` after ``prompt_tokens`` (the caller holds the model's lock).

    Returns:
        The JSON text (compact), token counts and ``finish_reason`` (``"length"`` when
        ``max_tokens`` or the context window ran out first).
    """
    vocab = vocab_for(llama)
    memo, lit_tokens, option_sets = _prepared(llama, vocab, program)
    rng = np.random.default_rng(seed)
    start = reuse_prefix(llama, prompt_tokens)
    st = _State(llama, vocab, max_tokens, n_ctx, pending=list(prompt_tokens[start:]))

    def end_logit(i: int, logits: np.ndarray) -> float:
        """Log of the total probability mass of ending the value here."""
        nxt = program[i + 1] if i + 1 < len(program) else None
        ids = vocab.closers(nxt.text.encode()[0]) if isinstance(nxt, Lit) else [vocab.eos]
        x = logits[ids].astype(np.float64)
        m = float(x.max())
        return m + float(np.log(np.exp(x - m).sum()))

    reason = "stop"
    try:
        for i, node in enumerate(program):
            if isinstance(node, Lit):
                st.emit(lit_tokens[i])
            elif isinstance(node, Choice):
                prefix = b""
                while True:
                    ids, can_end = memo.candidates(i, option_sets[i], prefix)
                    if len(ids) == 0:
                        break
                    if len(ids) == 1 and not can_end:
                        tok = int(ids[0])
                    else:
                        logits = st.logits()
                        cand = logits[ids]
                        if can_end:
                            cand = np.append(cand, end_logit(i, logits))
                        k = sample(cand, params, rng)
                        st.n_sampled += 1
                        if can_end and k == len(ids):
                            break
                        tok = int(ids[k])
                    st.emit([tok])
                    prefix += vocab.pieces[tok]
            else:
                used = 0
                while used < node.max_bytes:
                    ids = vocab.free_ids
                    room = node.max_bytes - used
                    if room < 16:
                        ids = ids[vocab.lengths[ids] <= room]
                    logits = st.logits()
                    cand = logits[ids]
                    if used:
                        cand = np.append(cand, end_logit(i, logits))
                    k = sample(cand, params, rng)
                    st.n_sampled += 1
                    if used and k == len(ids):
                        break
                    tok = int(ids[k])
                    st.emit([tok])
                    used += len(vocab.pieces[tok])
    except _Stop:
        reason = "length"
    text = b"".join(st.out).decode("utf-8", errors="ignore")
    return DecodeResult(text, len(prompt_tokens), st.n_out, reason, st.n_sampled)


# ----------------------------------------------------------------------------------------------
# chat prompt
_FORMATTERS: dict[int, Any] = {}


def chat_formatter(llama: Any) -> Any | None:
    """The Jinja chat formatter llama-cpp-python uses for this model, if it uses a GGUF template.

    Returns ``None`` for models driven by a registered format or a custom chat handler (the
    caller then falls back to ``create_chat_completion``).
    """
    key = id(llama)
    if key in _FORMATTERS:
        return _FORMATTERS[key]
    formatter = None
    name = getattr(llama, "chat_format", None) or ""
    if getattr(llama, "chat_handler", None) is None and name.startswith("chat_template."):
        meta_key = (
            "tokenizer.chat_template" if name == "chat_template.default" else f"tokenizer.{name}"
        )
        template = llama.metadata.get(meta_key)
        if template:
            from llama_cpp import llama_chat_format

            eos_id, bos_id = int(llama.token_eos()), int(llama.token_bos())
            text = llama._model.token_get_text  # noqa: SLF001 - as llama-cpp-python does
            formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=text(eos_id) if eos_id != -1 else "",
                bos_token=text(bos_id) if bos_id != -1 else "",
                stop_token_ids=[eos_id],
            )
    _FORMATTERS[key] = formatter
    return formatter


def chat_prompt_tokens(llama: Any, messages: list[dict[str, Any]]) -> list[int] | None:
    """The prompt tokens ``create_chat_completion`` would evaluate for ``messages``."""
    formatter = chat_formatter(llama)
    if formatter is None:
        return None
    result = formatter(messages=messages)
    return list(
        llama.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
    )
