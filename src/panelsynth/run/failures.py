"""One actionable line for a step-1/2 call that failed for good."""

from __future__ import annotations

from panelsynth.errors import PanelsynthError
from panelsynth.llm.base import LLMCallError, LLMClient
from panelsynth.llm.keys import scrub


def step_failed(
    wave: str, step: str, err: LLMCallError, client: LLMClient | None = None
) -> PanelsynthError:
    """One actionable line for a step-1/2 call that failed for good (retries exhausted).

    The hint fits the step and the model: steps 1-2 write descriptions, not rows, so a reply cut
    off by the token limit is about the number of variables and the model's context; a local
    model has no key or server to check.
    """
    local = bool(getattr(client, "is_local", False))
    text = scrub(str(err))
    if err.kind == "unsupported_request":  # the line already names the field and the mode
        return PanelsynthError(f"wave {wave}: {step} failed: {text}")
    if err.kind in ("truncated", "context_overflow"):
        text = text.split("; ", 1)[0] if err.kind == "truncated" else text.split("; use ", 1)[0]
        window = getattr(client, "context_window", None)
        room = f"the {window}-token context of the model" if window else "the model's output limit"
        what = "descriptions" if step.startswith("step 1") else "formatted metadata"
        hint = (
            f"the {what} of this wave's variables do not fit {room}; use fewer variables in "
            f"types_wave{wave}.json or a model with a longer context, and rerun"
        )
    elif local:
        hint = (
            "check the model file and free memory (`panelsynth run --dry-run` shows whether the "
            "prompts fit), and rerun"
        )
    elif err.kind == "auth":
        hint = "fix the API key and rerun"
    elif err.kind in ("connection", "timeout", "server_error", "rate_limit"):
        hint = "check the server or the provider's status (and --base-url), and rerun"
    else:
        hint = "fix the cause (key, model name, server) and rerun"
    return PanelsynthError(
        f"wave {wave}: {step} failed: {text} — {hint}; nothing was generated yet"
    )
