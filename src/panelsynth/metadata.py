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

from panelsynth.cache import StepCache, step_key
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
    lines = [
        "Context of this survey wave:",
        wave.context.strip(),
        "",
        "Raw metadata of its variables:",
    ]
    for v, t in wave.var_types.items():
        m = wave.metadata[v]
        lines.append(
            f"- {v} ({t}): question: {m.question} | possible responses: {m.responses_text()}"
        )
    lines += [
        "",
        "Summarise the dataset in one sentence, name its target variable (one of the variables "
        "above; if the context names none, choose the most suitable one), and for every variable "
        "state its meaning in one short sentence and its possible values.",
    ]
    return [
        {"role": "system", "content": SYSTEM_METADATA},
        {"role": "user", "content": "\n".join(lines)},
    ]


def metadata_response_model(variables: Sequence[str], gloss_chars: int = 160) -> type[BaseModel]:
    """Response model with one required entry per variable and a target restricted to them."""
    cfg = ConfigDict(extra="ignore")
    cap = {"maxLength": gloss_chars}
    feature = create_model(
        "Feature",
        __config__=cfg,
        meaning=(
            str,
            Field(
                ..., description="What the variable measures, one sentence", json_schema_extra=cap
            ),
        ),
        values=(
            str,
            Field(..., description="Its possible values and what they mean", json_schema_extra=cap),
        ),
    )
    features = create_model("Features", __config__=cfg, **{v: (feature, ...) for v in variables})
    return create_model(
        "FormattedMetadata",
        __config__=cfg,
        description=(
            str,
            Field(
                ...,
                description="One-sentence description of the dataset",
                json_schema_extra={"maxLength": 240},
            ),
        ),
        target_variable=(Literal[tuple(variables)], Field(..., description="The target variable")),  # type: ignore[valid-type]
        features=(features, ...),
    )


def target_from_context(context: str, variables: Sequence[str]) -> str | None:
    """A variable the context names as target, if any
    (e.g. 'target variable: already_vaccinated')."""
    m = re.search(
        r"target(?:\s+variable)?\s*(?:is|:|=)?\s*[`'\"]?([A-Za-z_][\w]*)", context, re.IGNORECASE
    )
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
    #: Where step 2 disagrees with the codebook (:func:`codebook_check`), one line each.
    codebook: list[str] = field(default_factory=list)


def format_metadata(
    client: LLMClient,
    wave: WaveData,
    *,
    cache: StepCache | None = None,
    temperature: float = 0.2,
    preferred_target: str | None = None,
    seed: int | None = None,
) -> Step2Result:
    """Run step 2 for a wave (one LLM call, none when cached).

    ``seed`` goes to the model's sampler (a local model's run is then reproducible). When the
    meanings and values of every variable at their full length do not fit the output budget
    the model's context leaves (many variables, a small local model), their length cap is
    lowered so that they fit, and a note says so; the codebook reaches step 3 whole anyway.
    """
    messages = metadata_messages(wave)
    notes: list[str] = []
    gloss_chars = _gloss_chars(client, messages, len(wave.variables))
    if gloss_chars < GLOSS_CHARS:
        notes.append(
            f"step 2: the meaning and values of {len(wave.variables)} variables at {GLOSS_CHARS} "
            f"characters each do not fit the {getattr(client, 'context_window', None)}-token "
            f"context of "
            f"{client.label}; each is capped at {gloss_chars} characters (the step-3 prompt "
            f"carries the codebook's questions and labels in full)"
        )
        log.warning("wave %s: %s", wave.wave, notes[-1])
    model = metadata_response_model(wave.variables, gloss_chars)
    key = step_key(
        "step2",
        client.label,
        messages,
        model.model_json_schema(),
        seed=seed,
        temperature=temperature,
    )
    cached = cache.get("step2", key, model) if cache else None
    usage = Usage(attempts=0)
    calls = 0
    if cached is not None:
        raw: dict[str, Any] = cached
        log.info("wave %s: step 2 metadata from cache", wave.wave)
    else:
        n = len(wave.variables)  # a description, then meaning and values of every variable
        budget = reply_budget(client, messages, 240 + n * 2 * gloss_chars, 3 + 3 * n)
        comp = client.create(messages, model, temperature=temperature, max_tokens=budget, seed=seed)
        usage, calls = comp.usage, 1
        raw = scrub_data(comp.value.model_dump())  # a key echoed in the reply is never kept
        if cache:
            cache.put("step2", key, raw)
    target = raw["target_variable"]
    named = target_from_context(wave.context, wave.variables)
    if named and named != target:
        notes.append(
            f"target variable {target!r} from the model replaced by {named!r} named in the context"
        )
        target = named
    elif (
        preferred_target
        and preferred_target in wave.variables
        and named is None
        and target != preferred_target
    ):
        notes.append(
            f"target variable {target!r} from the model; study outcome is {preferred_target!r}"
        )
    desc = WaveDescription(
        description=raw["description"],
        target_variable=target,
        features=[
            FeatureDescription(name=v, meaning=f.get("meaning", ""), values=f.get("values", ""))
            for v, f in raw.get("features", {}).items()
        ],
    )
    for n in notes:
        log.info("wave %s: %s", wave.wave, n)
    codebook, _ = codebook_check(desc, wave)
    # a dry run's projection answers with placeholders: their disagreement means nothing
    if codebook and not getattr(client, "projecting", False):
        log.warning(
            "wave %s: step 2 disagrees with the codebook in %d place(s) (the codebook is used; "
            "see the generated-metadata log): %s",
            wave.wave,
            len(codebook),
            codebook[0],
        )
    return Step2Result(desc, usage, calls, cached is not None, notes, codebook)


#: Length cap (characters) of step 2's meaning and values of a variable.
GLOSS_CHARS = 160
#: The smallest cap :func:`_gloss_chars` lowers it to.
MIN_GLOSS_CHARS = 40


def _gloss_chars(client: LLMClient, messages: list[Message], n: int) -> int:
    """The meaning/values length cap whose full reply fits what the context leaves."""
    window = getattr(client, "context_window", None)
    if not window:
        return GLOSS_CHARS
    prompt = client.count_tokens("\n".join(m["content"] for m in messages)) + 16 * len(messages)
    room = window - prompt - 32 - (64 + 12 * (3 + 3 * n) + 120)
    fit = (room * 2) // max(1, 2 * n)
    return int(max(MIN_GLOSS_CHARS, min(GLOSS_CHARS, fit)))


def format_wave_description(desc: WaveDescription, wave: WaveData) -> str:
    """Readable text of the formatted metadata (step-3 prompt and the step-2 log).

    The codebook is the authority: every variable is given by its own question text and response
    labels from the raw metadata; step 2 only adds the dataset description, the target and a
    short per-feature gloss. A gloss that repeats the question is left out (it adds tokens, not
    meaning), and so is one that disagrees with the codebook (:func:`codebook_check`), so an
    LLM's paraphrase can never replace a question or hide a valid code.
    """
    _, unreliable = codebook_check(desc, wave)
    glosses = {f.name: f.meaning for f in desc.features}
    lines = [
        f"Dataset: {desc.description}",
        f"Target variable: {desc.target_variable}",
        "Features:",
    ]
    for name, t in wave.var_types.items():
        meta = wave.metadata.get(name)
        gloss = glosses.get(name, "").strip()
        if meta is None:  # no codebook entry (cannot happen for a checked wave): the gloss
            lines.append(f"- {name} ({t}): {gloss}")
            continue
        question = meta.question.strip()
        text = f"- {name} ({t}): {question}"
        if gloss and name not in unreliable and not _repeats(gloss, question):
            text += f" [{gloss.rstrip('.')}]"
        lines.append(f"{text} Values: {meta.responses_text()}")
    return "\n".join(lines)


_WORD = re.compile(r"[a-z0-9]+")
_PAIR = re.compile(r"(-?\w+)\s*(?:=|:)\s*([^,;|=]+)")
_STOP = frozenset(
    "the a an of to and or in on for is are was were be do does did you your how what which "
    "that this with about at by as from it its their they there would could should".split()
)


def _words(text: str) -> set[str]:
    """Content words of ``text`` cut to 5 letters (a crude stem: vaccinated ~ vaccine)."""
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def _repeats(gloss: str, question: str) -> bool:
    """Whether a gloss says nothing the question does not (its words are the question's)."""
    g = _words(gloss)
    return not g or g <= _words(question)


def codebook_check(desc: WaveDescription, wave: WaveData) -> tuple[list[str], set[str]]:
    """Where step 2's formatted metadata disagrees with the codebook (the raw metadata).

    Checks: a variable of the wave without an entry, an entry for a variable the wave does not
    have (renamed or made up), the same meaning given to several variables whose questions
    differ, a meaning that shares no word with its question or variable name, and possible
    values that name a code the codebook does not have or give a listed code another label.

    Returns:
        One line per disagreement, and the variables whose gloss must not reach step 3.
    """
    notes: list[str] = []
    unreliable: set[str] = set()
    names = list(wave.var_types)
    given = {f.name: f for f in desc.features}
    missing = [v for v in names if v not in given]
    if missing:
        notes.append(f"step 2 gave no entry for {', '.join(missing)} (the codebook is used)")
    extra = [f for f in given if f not in wave.var_types]
    if extra:
        notes.append(
            f"step 2 described variables the codebook does not have: {', '.join(extra)} (ignored)"
        )
    by_meaning: dict[str, list[str]] = {}
    for v in names:
        if v in given:
            key = " ".join(_WORD.findall(given[v].meaning.lower()))
            by_meaning.setdefault(key, []).append(v)
    for key, vs in by_meaning.items():
        questions = {wave.metadata[v].question.strip().lower() for v in vs if v in wave.metadata}
        if len(vs) > 1 and len(questions) > 1:
            unreliable.update(vs)
            notes.append(
                f"step 2 gave {len(vs)} variables with different questions the same meaning "
                f"{key[:60]!r}: {', '.join(vs)}"
            )
    unrelated = []
    for v in names:
        meta, f = wave.metadata.get(v), given.get(v)
        if meta is None or f is None:
            continue
        own = _words(meta.question) | _words(v.replace("_", " ")) | {v.lower()[:5]}
        meaning = _words(f.meaning)
        if meaning and not meaning & own and v not in unreliable:
            unrelated.append(v)
        bad = _contradictions(f.values, meta)
        if bad:
            unreliable.add(v)
            notes.append(f"step 2's values of {v} contradict the codebook: {'; '.join(bad[:3])}")
    if unrelated:
        unreliable.update(unrelated)
        notes.append(
            f"step 2's meaning shares no word with the codebook question of "
            f"{', '.join(unrelated)} (its gloss is left out of step 3)"
        )
    return notes, unreliable


def _contradictions(values: str, meta: Any) -> list[str]:
    """``code = label`` pairs of step 2's values that the codebook does not have."""
    if not meta.responses:
        return []
    codebook = {str(k).strip().lower(): str(lab) for k, lab in meta.responses.items()}
    out = []
    for code, label in _PAIR.findall(values):
        code = code.strip().lower()
        if code not in codebook:
            if code.lstrip("-").isdigit():
                out.append(f"code {code} is not in the codebook")
            continue
        want = _words(codebook[code])
        got = _words(label)
        if want and got and not want & got:
            out.append(f"{code} = {label.strip()[:40]!r}, the codebook says {codebook[code]!r}")
    return out
