"""Content-addressed cache of step 1/2 results, keyed by a hash of everything that determines
them."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from panelsynth.io import atomic_write_text, remove_old_temporaries, remove_stale_temporaries
from panelsynth.llm.keys import scrub_data

log = logging.getLogger("panelsynth")


def fingerprint(*parts: Any) -> str:
    """Stable SHA-256 of JSON-serialisable parts (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def step_key(
    stage: str,
    label: str,
    messages: Any,
    schema: dict[str, Any],
    *,
    seed: int | None,
    temperature: float,
    context_window: int | None = None,
) -> str:
    """The cache key of one step-1/2 result: everything the model's reply depends on.

    The model (``label``), the prompt (``messages``), the response schema (its length caps
    included) and the sampling: ``temperature`` and the ``seed`` sent with the call. The seed is
    in the key even for a provider that takes none: a run with another ``--seed`` is another
    replicate and gets its own step-1/2 replies, as its manifest says, instead of reusing those
    of another seed. ``context_window``, where step 1 may be split to fit it, fixes the split
    and so the seed of every part. The output budget (``max_tokens``) is not in the key: it
    follows from the model, the prompt and the schema.

    Keys made before the sampling was part of them (``fingerprint(stage, label, messages,
    schema)``) hash other parts, so their entries are never found: a miss, never a wrong hit.
    """
    sampling: dict[str, Any] = {"seed": seed, "temperature": temperature}
    if context_window is not None:
        sampling["context_window"] = context_window
    return fingerprint(stage, label, messages, schema, sampling)


class StepCache:
    """Stores one JSON document per key under ``<workspace>/.panelsynth/cache/``."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder = folder
        self.enabled = enabled

    def remove_stale(self) -> None:
        """Remove the temporaries killed runs left in the cache folder (old enough that no live
        write owns them; an entry's own are removed when it is written)."""
        remove_old_temporaries(self.folder)

    def _path(self, stage: str, key: str) -> Path:
        return self.folder / f"{stage}-{key}.json"

    def get(self, stage: str, key: str, model: type[BaseModel] | None = None) -> Any | None:
        """The stored document, or ``None`` when absent or unusable.

        With ``model`` (the response model whose ``model_dump()`` was stored), an entry that does
        not validate against it (valid JSON of the wrong shape, e.g. ``{}``) is ignored with a
        warning, so the step is computed again and the entry replaced.
        """
        if not self.enabled:
            return None
        p = self._path(stage, key)
        if not p.exists():
            return None
        try:
            value = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            log.warning("ignoring unreadable cache entry %s", p.name)
            return None
        if model is not None:
            try:
                return model.model_validate(value).model_dump()
            except (ValidationError, RecursionError):
                log.warning(
                    "ignoring cache entry %s of the wrong shape; computing it again", p.name
                )
                return None
        return value

    def put(self, stage: str, key: str, value: Any) -> None:
        """Store ``value`` (secrets scrubbed). A failed write only costs the cache entry.

        The temporaries a killed predecessor left for this entry are removed first; a run writing
        the same entry at the same moment writes the same content, and losing its temporary only
        costs it this (optional) write.
        """
        if not self.enabled:
            return
        path = self._path(stage, key)
        text = json.dumps(scrub_data(value), ensure_ascii=False, indent=1)
        try:
            remove_stale_temporaries(path)
            atomic_write_text(path, text)
        except OSError as err:
            log.warning(
                "could not write the cache entry %s (%s) — it will be recomputed", path.name, err
            )
