"""Errors a user can cause. Each carries one actionable line; the CLI prints it and exits 2."""

from __future__ import annotations


class PanelsynthError(Exception):
    """Base class of every error the user can fix. ``str(err)`` is a single actionable line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message.strip())


class ConfigError(PanelsynthError):
    """``panelsynth.toml`` (or a CLI flag) is invalid."""


class WorkspaceError(PanelsynthError):
    """A file or folder of the workspace is missing or malformed."""


class DataError(PanelsynthError):
    """Wave data does not satisfy the contract (columns, codes, cluster labels)."""

    def __init__(self, message: str, *, path: str | None = None, column: str | None = None) -> None:
        self.path = path
        self.column = column
        super().__init__(message)


class MetadataError(PanelsynthError):
    """Raw metadata, var types or wave context is missing, malformed or inconsistent."""


class ProviderError(PanelsynthError):
    """The model label, provider SDK or API key is unusable."""


class GenerationExhaustedError(PanelsynthError):
    """Step 3 used its attempt budget without collecting the rows it was asked for."""

    def __init__(self, *, wave: str, wanted: int, accepted: int, attempts: int, hint: str) -> None:
        self.wave = wave
        self.wanted = wanted
        self.accepted = accepted
        self.attempts = attempts
        self.result: object | None = None  # the generation's books so far (GenerationResult)
        super().__init__(
            f"wave {wave}: only {accepted} of {wanted} valid rows after {attempts} calls; {hint}"
        )


class RunLockedError(PanelsynthError):
    """Another live process is generating the same (workspace, model dir, wave)."""


class BudgetExceededError(PanelsynthError):
    """The next LLM call would take the run's spending past ``generation.max_cost_usd``."""
