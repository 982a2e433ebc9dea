"""The ``custom_id`` of a step-3 call in a provider batch, and the calls a checkpoint booked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

#: Longest ``custom_id`` prefix: 64 characters (Anthropic's ``^[a-zA-Z0-9_-]{1,64}$``, the
#: stricter provider) less 6 digits of call index (call 999,999 of a wave).
MAX_ID_PREFIX = 58
#: Characters of a long wave id kept in its prefix, before the digest of the whole id.
_WAVE_HEAD = 40


def id_prefix_for(wave: str | None) -> str:
    """The default ``custom_id`` prefix of a wave's calls (``w3-c``: ``w3-c00012``).

    A wave id too long for the 64-character ``custom_id`` of the providers keeps its first
    40 characters and gains 12 hex digits of its SHA-256 (``w<head>-<digest>-c``, 56
    characters): the same in every process, so a resume and ``panelsynth batch collect``
    recognise the calls of the batches a run recorded. Short ids keep their plain prefix (the
    checkpoints of earlier versions stay readable).
    """
    if not wave:
        return "c"
    plain = f"w{wave}-c"
    if len(plain) <= MAX_ID_PREFIX:
        return plain
    digest = hashlib.sha256(wave.encode()).hexdigest()[:12]
    return f"w{wave[:_WAVE_HEAD]}-{digest}-c"


def call_index_of(custom_id: str, id_prefix: str) -> int | None:
    """The call index a ``custom_id`` stands for (``None``: not one with this prefix)."""
    rest = custom_id[len(id_prefix) :] if custom_id.startswith(id_prefix) else ""
    return int(rest) if rest.isdigit() else None


def consumed_answers(records: Iterable[Mapping[str, Any]]) -> set[tuple[str, int]]:
    """``(batch id, call index)`` of the call records that came from a provider batch."""
    return {
        (str(r["via"]), int(r["batch"]))
        for r in records
        if r.get("via") and isinstance(r.get("batch"), int)
    }


__all__ = ["MAX_ID_PREFIX", "call_index_of", "consumed_answers", "id_prefix_for"]
