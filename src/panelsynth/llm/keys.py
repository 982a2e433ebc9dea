"""API keys: where each provider's key comes from, and how keys are kept out of every text we emit.

A key is resolved from the ``--api-key`` flag (or the seed's positional ``API_KEY``) first, then
from the provider's usual environment variable. Every resolved key is registered as a secret:
:func:`scrub` replaces it (and anything shaped like a well-known key format) with ``***``, and
:func:`install_log_scrubber` makes every log record of the process do the same, so a key reaches
neither a log line nor an error message.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping

from panelsynth.errors import ProviderError

#: Environment variables holding each hosted provider's key, in lookup order.
KEY_ENV_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "gemini": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "generative-ai": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "mistral": ("MISTRAL_API_KEY",),
    "cohere": ("CO_API_KEY", "COHERE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "together": ("TOGETHER_API_KEY",),
    "anyscale": ("ANYSCALE_API_KEY",),
    "fireworks": ("FIREWORKS_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "perplexity": ("PERPLEXITY_API_KEY",),
    "writer": ("WRITER_API_KEY",),
    "azure_openai": ("AZURE_OPENAI_API_KEY",),
}

#: Flag values that mean "no key given" (the seed script always takes a positional API_KEY, and
#: users of local models pass a placeholder such as ``none``).
PLACEHOLDER_KEYS: frozenset[str] = frozenset({"", "none", "null", "-", "no", "not-needed"})

# Shapes of well-known keys, scrubbed even when they were never registered (belt and braces).
_KEY_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,}|gsk_[A-Za-z0-9]{20,}|xai-[A-Za-z0-9]{20,})"
)
_MIN_SECRET_LEN = 6
_MASK = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember ``value`` so :func:`scrub` masks it from now on (short values are ignored)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _secrets.add(value)
        install_log_scrubber()


def scrub(text: str) -> str:
    """Mask every registered secret and every well-known key shape in ``text``.

    Args:
        text: Any text about to be logged, raised or written.

    Returns:
        ``text`` with secrets replaced by ``***``.
    """
    if not text:
        return text
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return _KEY_PATTERNS.sub(_MASK, text)


def key_env_vars(provider: str) -> tuple[str, ...]:
    """The environment variables that may hold ``provider``'s key (empty if it needs none)."""
    return KEY_ENV_VARS.get(provider, ())


def required_key_env(provider: str) -> str | None:
    """The environment variable a hosted provider's key is expected in.

    Args:
        provider: Provider prefix of a model label (``anthropic``, ``openai``, ``local``, ...).

    Returns:
        The primary variable name (``ANTHROPIC_API_KEY``), or ``None`` for providers that need no
        key (``local``, ``ollama``, cloud providers authenticated by their SDK's own credentials).
    """
    names = key_env_vars(provider)
    return names[0] if names else None


def _is_placeholder(value: str | None) -> bool:
    return value is None or value.strip().lower() in PLACEHOLDER_KEYS


def resolve_api_key(
    provider: str, flag: str | None = None, *, env: Mapping[str, str] | None = None
) -> str | None:
    """Find the API key for ``provider``: the flag first, then its environment variables.

    Placeholder flag values (``none``, ``-``, empty) count as "no flag". A resolved key is
    registered with :func:`register_secret`.

    Args:
        provider: Provider prefix of a model label.
        flag: Key given on the command line (``--api-key`` or the seed's ``API_KEY``).
        env: Environment to read (default ``os.environ``).

    Returns:
        The key, or ``None`` when the provider needs none and none was given.

    Raises:
        ProviderError: The provider needs a key and neither the flag nor its environment
            variables provide one. The message names the variable; it never contains a key.
    """
    env = os.environ if env is None else env
    if not _is_placeholder(flag):
        key = flag.strip()  # type: ignore[union-attr]
        register_secret(key)
        return key
    names = key_env_vars(provider)
    for name in names:
        value = env.get(name)
        if not _is_placeholder(value):
            key = value.strip()  # type: ignore[union-attr]
            register_secret(key)
            return key
    if names:
        alt = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
        raise ProviderError(
            f"no API key for provider '{provider}': set {names[0]}{alt} "
            f"(export {names[0]}=...) or pass the key with --api-key"
        )
    return None


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken record must not break logging
        return
    clean = scrub(message)
    if clean != message:
        record.msg = clean
        record.args = None
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        if scrub(text) != text:
            record.exc_text = scrub(text)
    elif record.exc_text:
        record.exc_text = scrub(record.exc_text)


class SecretScrubFilter(logging.Filter):
    """A logging filter (for loggers or handlers) that masks secrets in messages and tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record)
        return True


_factory_installed = False


def install_log_scrubber() -> None:
    """Mask secrets in every log record of this process, whatever logger emits it.

    Wraps the log-record factory once (filters on loggers would miss loggers created later,
    such as Instructor's per-module ones), so messages, arguments and tracebacks are scrubbed
    when the record is made, before any handler sees it. Idempotent.
    """
    global _factory_installed
    with _secrets_lock:
        if not _factory_installed:
            previous = logging.getLogRecordFactory()

            def factory(*args: object, **kwargs: object) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                _scrub_record(record)
                return record

            logging.setLogRecordFactory(factory)
            _factory_installed = True
    # Instructor logs every failed attempt at ERROR even when we retry it; without a handler of
    # its own those lines reach stderr through logging's last-resort handler in any program that
    # configured no logging (scripts, notebooks). A NullHandler stops that; records still
    # propagate to handlers an application did configure.
    instructor_logger = logging.getLogger("instructor")
    if not any(isinstance(h, logging.NullHandler) for h in instructor_logger.handlers):
        instructor_logger.addHandler(logging.NullHandler())
