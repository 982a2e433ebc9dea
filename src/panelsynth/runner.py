"""What ``panelsynth run``, the demo and the seed script share: model dirs, clients,
confirmation."""

from __future__ import annotations

import os
import re
import select
import sys
from collections.abc import Callable
from dataclasses import dataclass

from panelsynth.config import PanelsynthConfig
from panelsynth.errors import PanelsynthError, ProviderError
from panelsynth.llm.base import LLMClient

#: Label prefixes of OpenAI-compatible servers (they always need ``--base-url``).
COMPATIBLE_PREFIXES = ("vllm/", "llamacpp/", "openai_compatible/")


def default_model_dir(label: str, config: PanelsynthConfig | None = None) -> str:
    """The config's folder for a model label, else a folder name derived from the label."""
    if config is not None:
        d = config.model_dir_for(label)
        if d:
            return d
    name = label.split("/", 1)[-1]
    name = re.sub(r"\.gguf$", "", os.path.basename(name), flags=re.IGNORECASE)
    name = re.sub(r"[^0-9A-Za-z._-]+", "-", name).strip("-.") or "model"
    return name


def open_client(
    label: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    config: PanelsynthConfig | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    structured_output: str | None = None,
) -> LLMClient:
    """Build the client for ``label``; a missing key or unknown provider fails here, before work.

    ``structured_output`` (else the ``[[models]]`` entry's, else ``auto``) chooses how an
    OpenAI-compatible server (``base_url``) is asked for JSON; see :mod:`panelsynth.llm.modes`.
    """
    if "/" not in label:
        raise ProviderError(
            f"model {label!r} is not of the form provider/model — e.g. local/smollm2, "
            f"anthropic/claude-sonnet-4-20250514, openai/gpt-5"
        )
    from panelsynth.llm import make_client

    entry = config.model_entry(label) if config else None
    if entry is not None:
        base_url = base_url or entry.base_url
        if api_key is None and entry.api_key_env:
            api_key = os.environ.get(entry.api_key_env) or None
        structured_output = structured_output or entry.structured_output
    compatible = bool(base_url) or label.startswith(COMPATIBLE_PREFIXES)
    if structured_output is not None and not compatible:
        raise ProviderError(
            f"--structured-output applies to OpenAI-compatible servers: pass --base-url with "
            f"{label} (hosted providers use their own structured output)"
        )
    if compatible and structured_output is None:
        structured_output = "auto"
    g = (config or PanelsynthConfig()).generation  # the config's defaults when there is none
    return make_client(
        label,
        api_key=api_key,
        base_url=base_url,
        timeout=timeout or g.timeout,
        max_retries=max_retries if max_retries is not None else g.max_retries,
        mode=structured_output,
    )


@dataclass
class Confirmation:
    """Asks "Continue? [y/N]" on a terminal; never blocks on a non-interactive stdin.

    Without a terminal and without an answer waiting on stdin, it continues — unless
    ``needs_yes`` is set (real rows would go to a third party): then it raises that message,
    since nobody said yes.
    """

    assume_yes: bool = False
    timeout: float = 2.0
    needs_yes: str | None = None

    def __call__(self, question: str, echo: Callable[[str], None]) -> bool:
        if self.assume_yes:
            return True
        stdin = sys.stdin
        if stdin is None or stdin.closed:
            return self._no_answer(question, "no input", echo)
        if stdin.isatty():
            try:
                answer = input(f"{question} [y/N] ")
            except EOFError:
                return False
            return answer.strip().lower() in ("y", "yes")
        # Piped or redirected stdin: read an answer if one is there, never wait for one.
        try:
            ready, _, _ = select.select([stdin], [], [], self.timeout)
        except (OSError, ValueError):
            ready = [stdin]
        line = stdin.readline() if ready else ""
        if not line:
            return self._no_answer(question, "non-interactive", echo)
        ok = line.strip().lower() in ("y", "yes")
        echo(f"{question} [y/N] {line.strip()}")
        return ok

    def _no_answer(self, question: str, why: str, echo: Callable[[str], None]) -> bool:
        if self.needs_yes:
            raise PanelsynthError(self.needs_yes)
        echo(f"{question} [y/N] ({why}: continuing)")
        return True


def needs_yes_message(client: LLMClient, examples: str, yes_flag: str = "--yes") -> str | None:
    """The refusal a run without a terminal gets when real rows would go to a third party
    unconfirmed; ``None`` when nothing real leaves this machine."""
    if privacy_warning(client, examples) is None:
        return None
    return (
        f"standard input is not a terminal, so nobody confirmed that real survey rows go to "
        f"{client.label} — pass {yes_flag} to confirm"
    )


def privacy_warning(
    client: LLMClient, examples: str, fix: str = "pass --examples synthetic"
) -> str | None:
    """The one warning a run shows when real respondents' rows leave the machine as examples.

    Args:
        client: The run's client (``local/`` models keep the rows in-process, and a server on a
            loopback address keeps them on this machine: no warning).
        examples: ``"real"`` or ``"synthetic"`` (rows drawn from the cluster statistics).
        fix: How the user switches to synthetic examples from where they started the run.

    Returns:
        The warning line, or ``None`` when no real row is sent anywhere.
    """
    if stays_on_this_machine(client) or examples != "real":
        return None
    host = getattr(client, "endpoint_host", None)  # a server other than the provider's own API
    where = f"{client.label} at {host}" if host else client.label
    return (
        f"Warning: real survey rows are sent to {where} as few-shot examples (a hosted or "
        f"remote model, not local/) — {fix} to send rows drawn from the cluster statistics instead"
    )


def stays_on_this_machine(client: LLMClient) -> bool:
    """Whether what is sent to ``client`` stays on this machine (in-process or loopback)."""
    return bool(client.is_local or getattr(client, "on_this_machine", False))
