"""API keys: where each provider's key comes from, and how keys are kept out of every text we emit.

A key is resolved from the ``--api-key`` flag (or the seed's positional ``API_KEY``) first, then
from the provider's usual environment variable. Every resolved key is registered as a secret:
:func:`scrub` replaces it (and anything shaped like a well-known key format) with ``***``, and
:func:`install_log_scrubber` makes every log record of the process do the same, so a key reaches
neither a log line nor an error message.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

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

    A secret's fragments are masked too: any start or end of it of :data:`MIN_FRAGMENT`
    characters or more (error messages shorten long values to their start and end, as pydantic's
    ``input_value='sk-abc...xyz'`` does).

    Args:
        text: Any text about to be logged, raised or written.

    Returns:
        ``text`` with secrets replaced by ``***``.
    """
    if not text:
        return text
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:  # whole secrets first: a fragment of one must not split another
        if secret in text:
            text = text.replace(secret, _MASK)
    for secret in secrets:
        if len(secret) > MIN_FRAGMENT:
            text = _mask_fragments(text, secret)
    return _KEY_PATTERNS.sub(_MASK, text)


#: Shortest start or end of a secret that :func:`scrub` masks on its own.
MIN_FRAGMENT = 8


def _mask_fragments(text: str, secret: str) -> str:
    """Mask the starts and ends of ``secret`` (at least :data:`MIN_FRAGMENT` long) in ``text``."""
    spans: list[tuple[int, int]] = []
    head, tail = secret[:MIN_FRAGMENT], secret[-MIN_FRAGMENT:]
    at = text.find(head)
    while at != -1:
        n = MIN_FRAGMENT
        while n < len(secret) and at + n < len(text) and text[at + n] == secret[n]:
            n += 1
        spans.append((at, at + n))
        at = text.find(head, at + n)
    at = text.find(tail)
    while at != -1:
        begin, k = at, len(secret) - MIN_FRAGMENT
        while k > 0 and begin > 0 and text[begin - 1] == secret[k - 1]:
            begin, k = begin - 1, k - 1
        spans.append((begin, at + MIN_FRAGMENT))
        at = text.find(tail, at + MIN_FRAGMENT)
    if not spans:
        return text
    out, pos = [], 0
    for begin, end in sorted(spans):
        if end <= pos:
            continue
        out.append(text[pos : max(begin, pos)])
        if begin >= pos:
            out.append(_MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def scrub_data(obj: Any) -> Any:
    """:func:`scrub` applied to every string (keys and values) of JSON-like data."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {scrub_data(k): scrub_data(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub_data(v) for v in obj]
    return obj


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


#: Shown once per process when a key arrives as a literal command-line argument.
LITERAL_KEY_WARNING = (
    "Warning: an API key given on the command line is visible to other users of this machine "
    "(ps, /proc) and stays in your shell history — pass --api-key @FILE (a file only you can "
    "read), --api-key - (read from standard input) or set the provider's environment variable "
    "(e.g. OPENAI_API_KEY) instead"
)
_literal_warned = False


def key_from_argument(
    value: str | None,
    *,
    option: str = "--api-key",
    stdin: TextIO | None = None,
    allow_stdin: bool = True,
) -> tuple[str | None, str | None]:
    """The key a command-line argument stands for, and the warning to show (once per process).

    ``-`` reads the key from standard input (hidden prompt on a terminal, else its first line),
    ``@FILE`` from the first non-empty line of a file; a placeholder (``none``) is passed on as
    it is; any other value is the key itself, which ``ps`` shows to every user: the first such
    argument of the process gets :data:`LITERAL_KEY_WARNING`.

    Args:
        value: The argument (``None`` when not given).
        option: How the argument is named in messages.
        stdin: Stream ``-`` reads (default ``sys.stdin``).
        allow_stdin: Whether ``-`` means standard input (the seed script's ``API_KEY`` keeps
            ``-`` as "no key").

    Raises:
        ProviderError: the key file cannot be read or is empty, or standard input holds no key.
    """
    global _literal_warned
    if value is None:
        return None, None
    text = value.strip()
    if text == "-" and allow_stdin:
        stream = sys.stdin if stdin is None else stdin
        if stream is None or stream.closed:
            raise ProviderError(f"{option} -: there is no standard input to read the key from")
        if stream.isatty():
            key = getpass.getpass("API key: ", stream=sys.stderr).strip()
        else:
            key = stream.readline().strip()
        if not key:
            raise ProviderError(
                f"{option} -: standard input held no key — pipe the key in (e.g. from your "
                f"password manager) or use {option} @FILE"
            )
        register_secret(key)
        return key, None
    if text.startswith("@") and len(text) > 1:
        path = Path(text[1:]).expanduser()
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            raise ProviderError(
                f"{option} @{path}: cannot read the key file ({err.strerror or err}) — check "
                f"the path"
            ) from None
        key = next((line.strip() for line in lines if line.strip()), "")
        if not key:
            raise ProviderError(f"{option} @{path}: the file is empty — write the key into it")
        register_secret(key)
        return key, None
    if _is_placeholder(text):
        return value, None
    register_secret(text)
    if _literal_warned:
        return text, None
    _literal_warned = True
    return text, LITERAL_KEY_WARNING


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
