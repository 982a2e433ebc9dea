"""``make_client(label)``: from a model label to a client, through a provider registry.

A label is ``{provider}/{model}`` exactly as ``instructor.from_provider`` takes it
(``anthropic/claude-sonnet-4-20250514``, ``openai/gpt-5``, ``google/gemini-2.5-pro``,
``ollama/llama3.2``), or ``local/smollm2`` / ``local/<path.gguf>`` for an in-process GGUF model.
With ``base_url`` any non-local label talks to an OpenAI-compatible server (vLLM, llama.cpp
server, Ollama); the part after the provider prefix is sent as the model name.

:data:`PROVIDERS` maps each provider prefix to a :class:`ProviderSpec` (its factory, key
variables, SDK and install hint); :func:`register_provider` adds one.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import ipaddress
import logging
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from panelsynth.errors import ProviderError
from panelsynth.llm.base import LLMClient
from panelsynth.llm.keys import install_log_scrubber, key_env_vars, resolve_api_key, scrub
from panelsynth.llm.modes import STRUCTURED_OUTPUT_MODES, AutoModeClient
from panelsynth.llm.retry import OnRetry, RetryPolicy

logger = logging.getLogger("panelsynth")

#: Structured-output modes for OpenAI-compatible servers, by name (:mod:`panelsynth.llm.modes`).
BASE_URL_MODES: tuple[str, ...] = STRUCTURED_OUTPUT_MODES
#: Default mode of :func:`make_client` for ``base_url`` clients: ``response_format`` of type
#: ``json_schema``, which vLLM, llama.cpp's server and Ollama turn into schema-constrained
#: decoding. ``panelsynth run`` (``runner.open_client``) defaults to ``auto``, which falls back
#: to ``json``, then ``md_json``, when the server rejects it.
DEFAULT_BASE_URL_MODE = "json_schema"


@dataclass(frozen=True)
class ClientSettings:
    """Everything :func:`make_client` passes on to a provider factory."""

    api_key: str | None = None
    base_url: str | None = None
    timeout: float = 120.0
    max_retries: int = 5
    reask_retries: int = 2
    retry_policy: RetryPolicy | None = None
    on_retry: OnRetry | None = None
    mode: str | None = None

    def __repr__(self) -> str:  # never show the key
        key = "***" if self.api_key else None
        return (
            f"ClientSettings(api_key={key!r}, base_url={self.base_url!r}, timeout={self.timeout}, "
            f"max_retries={self.max_retries}, reask_retries={self.reask_retries})"
        )

    @property
    def policy(self) -> RetryPolicy:
        """The transport retry policy (``retry_policy`` or one built from ``max_retries``)."""
        if self.retry_policy is not None:
            return self.retry_policy
        return RetryPolicy(max_retries=self.max_retries)


Factory = Callable[["ProviderSpec", str, str, ClientSettings], LLMClient]


@dataclass(frozen=True)
class ProviderSpec:
    """One provider prefix and how to build its client.

    Attributes:
        name: The prefix (``anthropic``).
        factory: ``factory(spec, label, model, settings) -> LLMClient``.
        sdk_module: Module that must be importable (``anthropic``), if any.
        install_hint: Command that installs the SDK.
        supports_seed: Whether the API takes a ``seed``.
        key_envs: Environment variables holding the key (empty: no key needed).
        api_host: Host of the provider's own API, for an SDK that may be sent elsewhere without
            ``--base-url`` (the OpenAI SDK reads ``OPENAI_BASE_URL``): a client whose SDK talks
            to another host records it as its ``endpoint_host``.
    """

    name: str
    factory: Factory
    sdk_module: str | None = None
    install_hint: str | None = None
    supports_seed: bool = True
    key_envs: tuple[str, ...] = field(default=())
    api_host: str | None = None

    def __post_init__(self) -> None:
        if not self.key_envs:
            object.__setattr__(self, "key_envs", key_env_vars(self.name))


def parse_label(label: str) -> tuple[str, str]:
    """Split ``provider/model`` (the model part may itself contain ``/``).

    Raises:
        ProviderError: The label has no provider prefix or no model name.
    """
    provider, sep, model = label.strip().partition("/")
    if not sep or not provider or not model:
        raise ProviderError(
            f"model label {label!r} must look like provider/model "
            "(e.g. anthropic/claude-sonnet-4-20250514, openai/gpt-5, local/smollm2)"
        )
    return provider.lower(), model


def require_sdk(spec: ProviderSpec) -> None:
    """Raise a :class:`ProviderError` with an install hint when the provider SDK is missing."""
    module = spec.sdk_module
    if module is None:
        return
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        hint = spec.install_hint or f"pip install {module}"
        raise ProviderError(
            f"provider '{spec.name}' needs the {module} package: install it with `{hint}`"
        )


def _tame_sdk_client(sdk_client: Any, timeout: float) -> None:
    """Turn off the SDK's own retries (Tenacity does them, counted) and set its timeout."""
    if sdk_client is None:
        return
    if isinstance(getattr(sdk_client, "max_retries", None), int):
        sdk_client.max_retries = 0
    if hasattr(sdk_client, "timeout") and not callable(sdk_client.timeout):
        try:
            sdk_client.timeout = timeout
        except (AttributeError, TypeError):
            pass
    from panelsynth.llm.limits import limit_sdk_client

    try:
        limit_sdk_client(sdk_client, timeout)  # a total deadline and a reply-size cap per request
    except Exception as exc:  # noqa: BLE001 - an SDK built otherwise keeps its own timeouts
        logger.debug("cannot bound the requests of %r: %s", type(sdk_client).__name__, exc)


def _hosted_factory(
    spec: ProviderSpec, label: str, model: str, settings: ClientSettings
) -> LLMClient:
    """A client through ``instructor.from_provider`` (sync and async variants)."""

    key = resolve_api_key(spec.name, settings.api_key)
    require_sdk(spec)
    import instructor

    install_log_scrubber()
    extra: dict[str, Any] = {}
    if spec.name == "openai":  # the OpenAI builder takes these directly
        extra = {"timeout": settings.timeout, "max_retries": 0}
    sdk_urls: list[str] = []  # the address the SDK itself settled on (flag, env var or default)

    def build(async_client: bool) -> Any:
        kwargs = dict(extra)
        if key is not None:
            kwargs["api_key"] = key
        try:
            client = instructor.from_provider(label, async_client=async_client, **kwargs)
        except ImportError as exc:
            hint = spec.install_hint or f"pip install {spec.sdk_module or spec.name}"
            raise ProviderError(
                f"provider '{spec.name}' needs an SDK that is not installed ({scrub(str(exc))}): "
                f"install it with `{hint}`"
            ) from None
        except Exception as exc:  # noqa: BLE001 - Instructor's ConfigurationError and friends
            raise ProviderError(f"cannot set up {label}: {scrub(str(exc))}") from None
        sdk = getattr(client, "client", None)
        _tame_sdk_client(sdk, settings.timeout)
        if getattr(sdk, "base_url", None) is not None:
            sdk_urls.append(str(sdk.base_url))
        return client

    made = instructor_client(
        label,
        build,
        settings,
        supports_seed=spec.supports_seed,
        cache_markers=spec.name == "anthropic",  # caches marked prefixes only
    )
    if sdk_urls:  # a provider whose own API is not known here: the SDK's address is taken as it
        note_endpoint(made, sdk_urls[0], own_host=spec.api_host or url_host(sdk_urls[0]))
    return made


def url_host(url: str) -> str:
    """The host of ``url``, lower-cased (empty when it has none)."""
    return (urllib.parse.urlsplit(url).hostname or "").lower()


def note_endpoint(client: Any, url: str, *, own_host: str | None = None) -> None:
    """Record where ``client`` sends its requests, whatever chose the address: ``--base-url``,
    a ``[[models]]`` entry, or an environment variable the SDK reads itself (``OPENAI_BASE_URL``).

    ``on_this_machine``: the address is a loopback one (the rows stay on this machine).
    ``endpoint_host``: its host, unless it is ``own_host``, the provider's own API; it enters the
    checkpoint header (``endpoint``), so a resume cannot silently go to another server, and the
    privacy warning names it.
    """
    host = url_host(url)
    if not host:
        return
    client.on_this_machine = is_loopback(url)
    if host != own_host:
        client.endpoint_host = host


def instructor_client(
    label: str, build: Callable[[bool], Any], settings: ClientSettings, **facts: Any
) -> LLMClient:
    """The one assembly of an :class:`InstructorClient` from an Instructor client builder.

    ``build(async_client)`` makes the Instructor client; the sync one is built here, so an
    unusable SDK or config fails before any work, and an async one per event loop. Retries,
    re-asks and their callback come from ``settings``; ``facts`` are the client's other
    arguments (``supports_seed``, ``mode`` — default: the Instructor client's —, ...).
    """
    from panelsynth.llm.structured import InstructorClient

    sync_client = build(False)
    facts.setdefault("mode", str(getattr(sync_client, "mode", "")))
    return InstructorClient(
        label,
        sync_factory=lambda: sync_client,
        async_factory=lambda: build(True),
        policy=settings.policy,
        reask_retries=settings.reask_retries,
        on_retry=settings.on_retry,
        **facts,
    )


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process, built the way the OpenAI SDK's HTTP client does."""
    try:
        from httpx2 import create_ssl_context  # the OpenAI SDK's HTTP stack from openai 3
    except ImportError:  # pragma: no cover - older SDKs use httpx
        from httpx import create_ssl_context
    return create_ssl_context()


def _openai_compatible_factory(
    spec: ProviderSpec, label: str, model: str, settings: ClientSettings
) -> LLMClient:
    """A client for an OpenAI-compatible server at ``settings.base_url``."""

    if not settings.base_url:
        raise ProviderError(
            f"{label}: provider '{spec.name}' needs a server address: pass --base-url "
            "(e.g. http://localhost:8000/v1)"
        )
    require_sdk(PROVIDERS["openai"])
    mode_name = (settings.mode or DEFAULT_BASE_URL_MODE).lower()
    if mode_name not in BASE_URL_MODES:
        raise ProviderError(
            f"unknown structured-output mode {mode_name!r}; "
            f"choose one of {', '.join(BASE_URL_MODES)}"
        )
    if mode_name == "auto":
        one_mode = functools.partial(_openai_compatible_factory, spec, label, model)
        auto = AutoModeClient(
            label,
            lambda m: one_mode(dataclasses.replace(settings, mode=m)),
            on_this_machine=is_loopback(settings.base_url),
        )
        auto.client_for(auto.mode)  # fail here, before any work, if the SDK is unusable
        note_endpoint(auto, settings.base_url)
        return auto
    # Only the flag: an OPENAI_API_KEY in the environment is not sent to arbitrary servers.
    key = settings.api_key.strip() if settings.api_key and settings.api_key.strip() else None
    if key is not None and key.lower() not in {"none", "null", "-"}:
        from panelsynth.llm.keys import register_secret

        register_secret(key)
    else:
        key = "not-needed"
    import instructor
    import openai

    from panelsynth.llm.limits import limited_http_client

    install_log_scrubber()
    mode = {
        "json_schema": instructor.Mode.JSON_SCHEMA,
        "json": instructor.Mode.JSON,
        "tools": instructor.Mode.TOOLS,
        "md_json": instructor.Mode.MD_JSON,
    }[mode_name]
    base_url = settings.base_url.rstrip("/")

    def build(async_client: bool) -> Any:
        if async_client:
            # A new event loop needs a new async client; share one TLS context between them
            # (loading the CA store costs ~60 ms, every run would pay it again).
            # bounded requests: a total deadline of `timeout` s and a reply-size cap (limits.py)
            http = limited_http_client(settings.timeout, is_async=True, verify=shared_ssl_context())
            sdk: Any = openai.AsyncOpenAI(
                base_url=base_url,
                api_key=key,
                timeout=settings.timeout,
                max_retries=0,
                http_client=http,
            )
        else:
            sdk = openai.OpenAI(
                base_url=base_url,
                api_key=key,
                timeout=settings.timeout,
                max_retries=0,
                http_client=limited_http_client(
                    settings.timeout, is_async=False, verify=shared_ssl_context()
                ),
            )
        return instructor.from_openai(sdk, mode=mode)

    client = instructor_client(
        label,
        build,
        settings,
        supports_seed=True,
        request_model=model,
        mode=mode_name,
        structured_output=mode_name,
    )
    note_endpoint(client, base_url)  # a server the user named: always recorded
    return client


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = url_host(url)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_factory(
    spec: ProviderSpec, label: str, model: str, settings: ClientSettings
) -> LLMClient:
    """An in-process GGUF model (``local/smollm2`` or ``local/<path.gguf>``)."""
    from panelsynth.llm.local import LocalLlamaClient, require_llama_cpp, resolve_gguf

    path = resolve_gguf(model)
    require_llama_cpp()
    return LocalLlamaClient(
        label, path, reask_retries=settings.reask_retries, on_retry=settings.on_retry
    )


def _spec(name: str, sdk: str | None = None, hint: str | None = None, **kw: Any) -> ProviderSpec:
    return ProviderSpec(
        name=name,
        factory=kw.pop("factory", _hosted_factory),
        sdk_module=sdk,
        install_hint=hint,
        **kw,
    )


#: Provider prefix -> how to build its client.
PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        _spec("local", factory=_local_factory),
        _spec("openai", "openai", "pip install openai", api_host="api.openai.com"),
        _spec(
            "anthropic",
            "anthropic",
            "pip install 'panelsynth[anthropic]'",
            supports_seed=False,
            api_host="api.anthropic.com",
        ),
        _spec("google", "google.genai", "pip install 'panelsynth[google]'"),
        _spec("gemini", "google.generativeai", "pip install google-generativeai"),
        _spec("ollama", "openai", "pip install openai"),
        _spec("mistral", "mistralai", "pip install mistralai", supports_seed=False),
        _spec("cohere", "cohere", "pip install cohere", supports_seed=False),
        _spec("groq", "groq", "pip install groq"),
        _spec("deepseek", "openai", "pip install openai"),
        _spec("xai", "xai_sdk", "pip install xai-sdk"),
        _spec("openrouter", "openai", "pip install openai"),
        _spec("together", "openai", "pip install openai"),
        _spec("anyscale", "openai", "pip install openai"),
        _spec("fireworks", "fireworks", "pip install fireworks-ai"),
        _spec("cerebras", "cerebras", "pip install cerebras-cloud-sdk"),
        _spec("perplexity", "openai", "pip install openai"),
        _spec("writer", "writerai", "pip install writer-sdk"),
        _spec("azure_openai", "openai", "pip install openai"),
        _spec("bedrock", "boto3", "pip install boto3", supports_seed=False),
        _spec("vertexai", "google.genai", "pip install 'panelsynth[google]'"),
        _spec("litellm", "litellm", "pip install litellm"),
        # Pseudo-providers for OpenAI-compatible servers; they need --base-url.
        _spec("vllm", "openai", "pip install openai", factory=_openai_compatible_factory),
        _spec("llamacpp", "openai", "pip install openai", factory=_openai_compatible_factory),
        _spec(
            "openai_compatible", "openai", "pip install openai", factory=_openai_compatible_factory
        ),
    )
}


def register_provider(spec: ProviderSpec) -> None:
    """Add or replace a provider in :data:`PROVIDERS`."""
    PROVIDERS[spec.name] = spec


def known_providers() -> list[str]:
    """Provider prefixes :func:`make_client` understands, sorted."""
    return sorted(PROVIDERS)


def make_client(
    label: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float = 120.0,
    max_retries: int = 5,
    reask_retries: int = 2,
    retry_policy: RetryPolicy | None = None,
    on_retry: OnRetry | None = None,
    mode: str | None = None,
) -> LLMClient:
    """Build the client for a model label.

    Checks everything a user can get wrong (label, provider, SDK, key, local file) before any
    request is made, so a run fails at once with one actionable line.

    Args:
        label: ``provider/model`` (``anthropic/claude-sonnet-4-20250514``, ``local/smollm2``,
            ``local/path/to/model.gguf``).
        api_key: Key from the command line; otherwise the provider's environment variable.
            Placeholders (``none``, ``-``) count as absent.
        base_url: Address of an OpenAI-compatible server (vLLM, llama.cpp server, Ollama). Any
            non-local provider prefix then goes there; its key is optional.
        timeout: Seconds before one HTTP request is abandoned (and retried).
        max_retries: Transport retries after the first attempt.
        reask_retries: Re-asks after a reply that does not validate.
        retry_policy: Full backoff policy; overrides ``max_retries`` (tests use tiny waits).
        on_retry: Called as ``on_retry(kind, wait_seconds)`` before each transport retry.
        mode: Structured-output mode for ``base_url`` clients: ``json_schema`` (default),
            ``json``, ``tools``, ``md_json``, or ``auto`` (the first of ``json_schema``,
            ``json``, ``md_json`` the server accepts).

    Returns:
        A client implementing :class:`~panelsynth.llm.base.LLMClient`.

    Raises:
        ProviderError: Malformed label, unknown provider, missing SDK, missing key, missing local
            model file. The message never contains a key.
    """
    provider, model = parse_label(label)
    spec = PROVIDERS.get(provider)
    if spec is None:
        raise ProviderError(
            f"unknown provider '{provider}' in model label {label!r}; known providers: "
            f"{', '.join(known_providers())}"
        )
    settings = ClientSettings(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        reask_retries=reask_retries,
        retry_policy=retry_policy,
        on_retry=on_retry,
        mode=mode,
    )
    factory = spec.factory
    if base_url and provider != "local":
        factory = _openai_compatible_factory
    client = factory(spec, f"{provider}/{model}", model, settings)
    logger.debug("made client %r", client)
    return client


__all__ = [
    "BASE_URL_MODES",
    "ClientSettings",
    "PROVIDERS",
    "ProviderSpec",
    "known_providers",
    "make_client",
    "parse_label",
    "register_provider",
]
