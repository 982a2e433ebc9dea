"""Step 2: formatted metadata in the manner of UniPredict (SPEC §3.3).

The wave context and the raw metadata go to the LLM, which returns a :class:`WaveDescription`: a
one-sentence description of the dataset, the target variable (chosen if the context names none)
and every feature with its meaning and possible values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from panelsynth.cache import StepCache, fingerprint
from panelsynth.data import WaveData
from panelsynth.llm.base import LLMClient, Message, Usage, reply_budget
from panelsynth.llm.keys import scrub_data
from panelsynth.pydantic_models import FeatureDescription, WaveDescription

log = logging.getLogger("panelsynth")

SYSTEM_METADATA = (
    "You are a data curator. You turn survey documentation into a concise, structured description "
    "of a dataset for downstream data generation."
)


def metadata_messages(wave: WaveData) -> list[Message]:
    """The step-2 prompt: wave context plus the raw metadata of every variable."""
    lines = ["Context of this survey wave:", wave.context.strip(), "", "Raw metadata of its variables:"]
    for v, t in wave.var_types.items():
        m = wave.metadata[v]
        lines.append(f"- {v} ({t}): question: {m.question} | possible responses: {m.responses_text()}")
    lines += [
        "",
        "Summarise the dataset in one sentence, name its target variable (one of the variables "
        "above; if the context names none, choose the most suitable one), and for every variable "
        "state its meaning in one short sentence and its possible values.",
    ]
    return [{"role": "system", "content": SYSTEM_METADATA}, {"role": "user", "content": "\n".join(lines)}]


def metadata_response_model(variables: Sequence[str]) -> type[BaseModel]:
    """Response model with one required entry per variable and a target restricted to them."""
    cfg = ConfigDict(extra="ignore")
    feature = create_model(
        "Feature",
        __config__=cfg,
        meaning=(str, Field(..., description="What the variable measures, one sentence",
                            json_schema_extra={"maxLength": 160})),
        values=(str, Field(..., description="Its possible values and what they mean",
                           json_schema_extra={"maxLength": 160})),
    )
    features = create_model("Features", __config__=cfg, **{v: (feature, ...) for v in variables})
    return create_model(
        "FormattedMetadata",
        __config__=cfg,
        description=(str, Field(..., description="One-sentence description of the dataset",
                                json_schema_extra={"maxLength": 240})),
        target_variable=(Literal[tuple(variables)], Field(..., description="The target variable")),  # type: ignore[valid-type]
        features=(features, ...),
    )


def target_from_context(context: str, variables: Sequence[str]) -> str | None:
    """A variable the context names as target, if any (e.g. 'target variable: already_vaccinated')."""
    m = re.search(r"target(?:\s+variable)?\s*(?:is|:|=)?\s*[`'\"]?([A-Za-z_][\w]*)", context, re.IGNORECASE)
    if m and m.group(1) in variables:
        return m.group(1)
    return None


@dataclass
class Step2Result:
    description: WaveDescription
    usage: Usage = field(default_factory=lambda: Usage(attempts=0))
    calls: int = 0
    cached: bool = False
    notes: list[str] = field(default_factory=list)


def format_metadata(
    client: LLMClient,
    wave: WaveData,
    *,
    cache: StepCache | None = None,
    temperature: float = 0.2,
    preferred_target: str | None = None,
) -> Step2Result:
    """Run step 2 for a wave (one LLM call, none when cached)."""
    messages = metadata_messages(wave)
    model = metadata_response_model(wave.variables)
    key = fingerprint("step2", client.label, messages, model.model_json_schema())
    cached = cache.get("step2", key, model) if cache else None
    usage = Usage(attempts=0)
    calls = 0
    if cached is not None:
        raw: dict[str, Any] = cached
        log.info("wave %s: step 2 metadata from cache", wave.wave)
    else:
        n = len(wave.variables)  # a description, then meaning and values of every variable
        budget = reply_budget(client, messages, 240 + n * 2 * 160, 3 + 3 * n)
        comp = client.create(messages, model, temperature=temperature, max_tokens=budget)
        usage, calls = comp.usage, 1
        raw = scrub_data(comp.value.model_dump())  # a key echoed in the reply is never kept
        if cache:
            cache.put("step2", key, raw)
    notes: list[str] = []
    target = raw["target_variable"]
    named = target_from_context(wave.context, wave.variables)
    if named and named != target:
        notes.append(f"target variable {target!r} from the model replaced by {named!r} named in the context")
        target = named
    elif preferred_target and preferred_target in wave.variables and named is None and target != preferred_target:
        notes.append(f"target variable {target!r} from the model; study outcome is {preferred_target!r}")
    desc = WaveDescription(
        description=raw["description"],
        target_variable=target,
        features=[
            FeatureDescription(name=v, meaning=raw["features"][v]["meaning"], values=raw["features"][v]["values"])
            for v in wave.variables
        ],
    )
    for n in notes:
        log.info("wave %s: %s", wave.wave, n)
    return Step2Result(desc, usage, calls, cached is not None, notes)


def format_wave_description(desc: WaveDescription, wave: WaveData) -> str:
    """Readable text of the formatted metadata (step-3 prompt and the step-2 log).

    Possible values are always taken from the raw metadata as well, so an LLM's paraphrase can
    never hide a valid code.
    """
    lines = [f"Dataset: {desc.description}", f"Target variable: {desc.target_variable}", "Features:"]
    for f in desc.features:
        t = wave.var_types.get(f.name, "")
        codes = wave.metadata[f.name].responses_text() if f.name in wave.metadata else f.values
        lines.append(f"- {f.name} ({t}): {f.meaning} Values: {codes}")
    return "\n".join(lines)
