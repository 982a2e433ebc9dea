"""Step 3: synthetic respondents, validated row by row, checkpointed call by call (SPEC §3.4).

The prompt is a static prefix (formatted metadata, cluster descriptions, compact example tables,
rules) identical for every call, so provider prompt caching and llama.cpp prefix reuse apply, and a
short per-batch suffix. Calls run concurrently (bounded); every finished call is appended to the
checkpoint at once; rows are ordered by batch index, so the CSV does not depend on timing.
"""

from __future__ import annotations

from panelsynth.generate.generation import (
    Generation,
    generate_rows,
    run_together,
)
from panelsynth.generate.loop import (
    CallRecord,
    GenerationResult,
    OnlineTransport,
    Transport,
    shared_throttle,
)
from panelsynth.generate.prompt import (
    SYSTEM_GENERATE,
    GenerationPrompt,
    build_prompt,
    estimate_output_tokens,
    fit_prompt,
    with_request,
)
from panelsynth.generate.resume import (
    headerless_error,
    load_for_resume,
)
from panelsynth.generate.rows import (
    row_key,
    row_keys,
    write_csv_atomic,
)
from panelsynth.generate.settings import (
    GenerationSettings,
)

__all__ = [
    "CallRecord",
    "Generation",
    "GenerationPrompt",
    "GenerationResult",
    "GenerationSettings",
    "OnlineTransport",
    "SYSTEM_GENERATE",
    "Transport",
    "build_prompt",
    "estimate_output_tokens",
    "fit_prompt",
    "generate_rows",
    "headerless_error",
    "load_for_resume",
    "row_key",
    "row_keys",
    "run_together",
    "shared_throttle",
    "with_request",
    "write_csv_atomic",
]
