"""LLM access through one narrow seam: ``client.create(messages, response_model, ...)``.

``make_client(label)`` builds the client for a model label (hosted providers through Instructor,
OpenAI-compatible servers through ``base_url``, in-process GGUF models through llama-cpp-python).
Heavy dependencies (instructor, provider SDKs, llama_cpp) are imported only when a client is made.
"""

from panelsynth.llm.base import Completion, FakeClient, LLMCallError, LLMClient, Message, Usage
from panelsynth.llm.keys import (
    KEY_ENV_VARS,
    install_log_scrubber,
    register_secret,
    required_key_env,
    resolve_api_key,
    scrub,
)
from panelsynth.llm.registry import (
    PROVIDERS,
    ClientSettings,
    ProviderSpec,
    known_providers,
    make_client,
    parse_label,
    register_provider,
)
from panelsynth.llm.retry import (
    FAULT_KINDS,
    RETRYABLE_KINDS,
    RetryPolicy,
    classify_exception,
    retry_after_seconds,
)

__all__ = [
    "FAULT_KINDS",
    "KEY_ENV_VARS",
    "PROVIDERS",
    "RETRYABLE_KINDS",
    "ClientSettings",
    "Completion",
    "FakeClient",
    "LLMCallError",
    "LLMClient",
    "Message",
    "ProviderSpec",
    "RetryPolicy",
    "Usage",
    "classify_exception",
    "install_log_scrubber",
    "known_providers",
    "make_client",
    "parse_label",
    "register_provider",
    "register_secret",
    "required_key_env",
    "resolve_api_key",
    "retry_after_seconds",
    "scrub",
]
