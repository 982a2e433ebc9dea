"""The step-3 prompt: a static prefix shared by every call, fitted into the context, and a
per-batch request."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth.data import WaveData
from panelsynth.errors import (
    ContextTooSmallError,
)
from panelsynth.llm.base import (
    LLMClient,
    Message,
    PromptMessages,
)
from panelsynth.pydantic_models.rows import RowSpec
from panelsynth.tables import encode_table
from panelsynth.values import plain

log = logging.getLogger("panelsynth")


SYSTEM_GENERATE = (
    "You generate synthetic respondents for a longitudinal survey. Each respondent belongs to one "
    "of the clusters described below and answers like the members of that cluster. Reply with JSON "
    "only."
)


@dataclass
class GenerationPrompt:
    """The static prefix of every step-3 call and the pieces it was built from."""

    prefix: list[Message]
    n_examples_used: int
    notes: list[str] = field(default_factory=list)

    def for_batch(self, batch: int, n_rows: int) -> list[Message]:
        """The prefix plus the per-batch request (after the shared prefix)."""
        return with_request(
            self.prefix,
            f"\n\nRequest {batch + 1}: generate exactly {n_rows} new, distinct respondents as "
            f'{{"rows": [...]}}. Do not copy the examples.',
        )

    # Hooks of prompts that keep books per batch (calibrated mode, panelsynth.calibrate); the
    # plain prompt keeps none.
    def plan(self, batches: Sequence[int]) -> None:
        """Called before a round of top-up batches is started."""

    def response_model(self, batch: int, default: type[BaseModel]) -> type[BaseModel]:
        """The response model of a batch (its ``rows`` are validated one by one)."""
        return default

    def check_rows(
        self, batch: int, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        """Filter a call's valid rows: (kept rows, one error per rejected row, record fields)."""
        return rows, [], {}

    def restore(self, record: dict[str, Any]) -> None:
        """Take the books of a checkpointed successful call."""

    async def ready(self, batch: int) -> None:
        """Wait until the call of ``batch`` can be written (before it takes a place among the
        concurrent calls); at once unless its request depends on other calls' rows (a panel
        wave's on the previous wave's). Raises :class:`~panelsynth.errors.BlockedCallError` when
        it never can."""

    def saved(self, record: dict[str, Any]) -> None:
        """Called once a successful call's checkpoint line is on disk."""


def with_request(prefix: Sequence[Message], request: str) -> PromptMessages:
    """A copy of the static ``prefix`` with ``request`` appended to its last message; the
    messages know where the shared prefix ends (for providers that cache marked prefixes)."""
    msgs = [dict(m) for m in prefix]
    shared = len(msgs[-1]["content"])
    msgs[-1]["content"] += request
    return PromptMessages(msgs, shared)


def context_lines(
    metadata_text: str, descriptions_text: str, shares: dict[int, float]
) -> list[str]:
    """The opening of every step-3 prefix (plain, calibrated, panel): the wave's formatted
    metadata, the cluster descriptions and the clusters' shares."""
    return [
        metadata_text,
        "",
        "Clusters of respondents (labels mean the same group in every wave):",
        descriptions_text,
        "",
        "Share of respondents in each cluster: "
        + ", ".join(f"cluster {c}: {s:.0%}" for c, s in shares.items())
        + ".",
    ]


def build_prompt(
    wave: WaveData,
    metadata_text: str,
    descriptions_text: str,
    examples: pd.DataFrame,
    specs: Sequence[RowSpec],
) -> list[Message]:
    """Messages of the static prefix of step 3."""
    full = wave.mode == "full"
    parts = context_lines(metadata_text, descriptions_text, wave.cluster_shares())
    if wave.prev_cluster_column:
        parts.append(
            f"`{wave.prev_cluster_column}` is the respondent's cluster in the previous wave; most "
            f"respondents stay in the same cluster."
        )
    parts += ["", "Examples of respondents (CSV; NA = no answer):"]
    for c in wave.clusters:
        sub = examples[examples[wave.cluster_column] == c]
        parts += [f"Cluster {c}:", encode_table(sub)]
    rules = [
        "",
        "Rules:",
        "- Use only the codes listed for each variable; numbers stay inside their range.",
        "- `"
        + wave.cluster_column
        + "` is the cluster the respondent belongs to; keep the cluster "
        "shares above and answer like that cluster.",
    ]
    if full:
        rules.append(
            "- A respondent may leave questions unanswered: write null, about as often as the "
            "cluster descriptions say."
        )
    else:
        rules.append("- Every field must have a value (no null).")
    rules.append("- Vary the respondents; do not repeat rows.")
    parts += rules
    return [
        {"role": "system", "content": SYSTEM_GENERATE},
        {"role": "user", "content": "\n".join(parts)},
    ]


def estimate_output_tokens(client: LLMClient, examples: pd.DataFrame, n_rows: int) -> int:
    """Output budget for a batch: the JSON of ``n_rows`` rows like the examples, with headroom."""
    sample = examples.head(3)
    if len(sample) == 0:
        per_row = 20 * max(1, examples.shape[1])
    else:
        text = json.dumps([{k: plain(v) for k, v in r.items()} for r in sample.to_dict("records")])
        per_row = client.count_tokens(text) / len(sample)
    return int(60 + n_rows * per_row * 1.6)


def fit_prompt(
    client: LLMClient,
    build: Callable[[pd.DataFrame], list[Message]],
    examples: pd.DataFrame,
    cluster_column: str,
    n_rows: int,
    max_tokens: int,
    *,
    quiet: bool = False,
) -> GenerationPrompt:
    """Fit the prompt into the model's context, dropping examples (with a warning) if needed.

    ``quiet``: the notes are only returned, not logged (the caller logs the attempt it keeps).

    Raises:
        PanelsynthError: even one example per cluster does not fit.
    """
    window = getattr(client, "context_window", None)
    per_cluster = int(examples.groupby(cluster_column).size().max()) if len(examples) else 0
    notes: list[str] = []
    current = examples
    while True:
        prefix = build(current)
        if not window:
            return GenerationPrompt(prefix, per_cluster, notes)
        probe = GenerationPrompt(prefix, per_cluster).for_batch(0, n_rows)
        used = client.count_tokens("\n".join(m["content"] for m in probe)) + 16 * len(probe)
        if used + max_tokens <= window:
            return GenerationPrompt(prefix, per_cluster, notes)
        if per_cluster <= 1:
            raise ContextTooSmallError(
                f"the step-3 prompt needs {used} + {max_tokens} tokens but {client.label} has a "
                f"context of {window} even with one example per cluster — use fewer variables, "
                f"fewer --n-outputs, or a model with a longer context"
            )
        new = max(1, per_cluster // 2)
        msg = (
            f"prompt of {used} tokens + {max_tokens} for the answer exceeds the {window}-token "
            f"context of {client.label}: using {new} examples per cluster instead of {per_cluster}"
        )
        if not quiet:
            log.warning(msg)
        notes.append(msg)
        per_cluster = new
        current = examples.groupby(cluster_column, group_keys=False).head(new)
