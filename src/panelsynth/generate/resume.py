"""Taking over the finished calls of a checkpoint (``--resume``), or refusing it."""

from __future__ import annotations

import logging
from typing import Any

from panelsynth.checkpoint import Checkpoint
from panelsynth.errors import (
    CheckpointMismatchError,
    PanelsynthError,
)

log = logging.getLogger("panelsynth")


def load_for_resume(
    checkpoint: Checkpoint, header: dict[str, Any], *, accept_headerless: bool = False
) -> list[dict[str, Any]]:
    """The finished calls of ``checkpoint`` that a resume may take over.

    Damaged lines are skipped and counted (with a warning) and the records after them kept. A
    checkpoint is only rewritten when it must be (a damaged or torn line, a missing header): a
    copy of the original is kept first, and the new file replaces the old one by a rename, so a
    kill at any moment leaves every finished call on disk.

    Raises:
        PanelsynthError: the checkpoint was made with other settings, or it has no readable
            header (it cannot be checked) and ``accept_headerless`` is not set.
    """
    old_header, records = checkpoint.load()
    name = checkpoint.path.name
    if old_header is None and not accept_headerless:
        raise headerless_error(checkpoint, records)
    if old_header is not None and old_header.get("fingerprint") != header["fingerprint"]:
        raise CheckpointMismatchError(
            f"the checkpoint {name} was made with other settings or inputs "
            f"({_diff(old_header, header)}) — rerun with the same settings, or pass --restart "
            f"to set it aside and start over",
            changed=_changed(old_header, header),
        )
    if old_header is None or checkpoint.damaged:
        copy = checkpoint.keep_copy()
        if checkpoint.skipped:
            lines = ", ".join(str(n) for n in checkpoint.skipped[:5])
            more = "" if len(checkpoint.skipped) <= 5 else ", ..."
            log.warning(
                "%s: skipped %d damaged line(s) (line %s%s); the %d readable calls after them are "
                "kept; the original file is kept as %s",
                name,
                len(checkpoint.skipped),
                lines,
                more,
                len(records),
                copy.name,
            )
        if old_header is None:
            log.warning(
                "%s: no readable header; resuming its %d calls as told "
                "(--accept-headerless-checkpoint); the original file is kept as %s",
                name,
                len(records),
                copy.name,
            )
        checkpoint.rewrite(header, records)
    return records


def headerless_error(checkpoint: Checkpoint, records: list[dict[str, Any]]) -> PanelsynthError:
    """The refusal of a checkpoint whose header is missing or unreadable."""
    return PanelsynthError(
        f"the checkpoint {checkpoint.path} has no readable header, so it cannot be checked "
        f"that its {len(records)} calls were made with these settings — pass "
        f"--accept-headerless-checkpoint to resume them anyway, or --restart to set them aside"
    )


def _changed(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[object, object]]:
    """What differs between two checkpoint headers: setting -> (old value, new value)."""
    keys = [
        k for k in sorted(set(old) | set(new)) if k != "fingerprint" and old.get(k) != new.get(k)
    ]
    return {k: (old.get(k), new.get(k)) for k in keys}


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = _changed(old, new)
    return (
        ", ".join(f"{k}: {o} -> {n}" for k, (o, n) in list(changed.items())[:4])
        or "prompt or data changed"
    )
