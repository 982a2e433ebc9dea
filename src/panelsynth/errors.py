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


class PanelDataError(DataError):
    """The real panel cannot give the structure (no id column, ids that link nobody)."""


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


class BlockedCallError(PanelsynthError):
    """A call cannot be written: the rows its request depends on will not come (a panel wave
    whose previous wave stopped early)."""


#: Longest quoted value an error message shows in full.
QUOTE_LIMIT = 80


class CheckpointMismatchError(PanelsynthError):
    """A checkpoint (or resumable output) was made with other settings than this run's.

    ``changed`` names what differs (setting -> (checkpoint's value, this run's value)), so a
    caller can decide by class and content, never by the message's text.
    """

    def __init__(self, message: str, changed: dict[str, tuple[object, object]] | None = None):
        super().__init__(message)
        self.changed = dict(changed or {})


class ContextTooSmallError(PanelsynthError):
    """A prompt and its answer do not fit the model's context window (never silently cut)."""

    def __init__(self, message: str, *, needed: int | None = None, window: int | None = None):
        super().__init__(message)
        self.needed = needed
        self.window = window


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters with "…" (a 2 MB cell is not
    printed whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cap_long_words(text: str, limit: int = 500) -> str:
    """``text`` with every run of more than ``limit`` non-blank characters cut to
    :data:`QUOTE_LIMIT` characters and "…": the last guard against a message that quotes a huge
    value its author did not cap."""
    import re

    long_word = re.compile(rf"\S{{{limit + 1},}}")
    return long_word.sub(lambda m: m.group()[: QUOTE_LIMIT - 1] + "…", text)


_OS_HINTS = {
    "ENOSPC": "the disk is full — free some space and rerun (with --resume for `run`)",
    "EDQUOT": "the disk quota is used up — free some space and rerun (with --resume for `run`)",
    "EROFS": "the file system is read-only — use a writable workspace",
    "EACCES": "permission denied — make the workspace writable or use another one",
    "EPERM": "operation not permitted — make the workspace writable or use another one",
    "ENAMETOOLONG": "the name is too long — use a shorter name",
    "EISDIR": "it is a folder where a file is expected — move it away",
    "ENOTDIR": "a part of the path is a file where a folder is expected",
    "ELOOP": "it is a symbolic link, which panelsynth does not follow here — replace it with a "
    "real file or folder",
}


def os_error_line(err: OSError) -> str:
    """One line for an operating-system error: the path, the cause and what to do."""
    import errno as _errno

    name = _errno.errorcode.get(err.errno or 0, "")
    cause = err.strerror or type(err).__name__
    where = f"{err.filename}: " if err.filename else ""
    if err.filename2:
        where = f"{err.filename} -> {err.filename2}: "
    hint = _OS_HINTS.get(name)
    return f"{where}{cause}" + (f" — {hint}" if hint else "")
