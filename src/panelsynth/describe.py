"""Step 1: per-cluster summary statistics, qualitative descriptions and few-shot examples
(SPEC §3.2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from panelsynth.cache import StepCache, step_key
from panelsynth.config import STEP1_TEMPERATURE
from panelsynth.data import WaveData
from panelsynth.dictionaries import CODED_TYPES
from panelsynth.errors import ContextTooSmallError
from panelsynth.llm.base import LLMClient, Message, Usage, reply_budget
from panelsynth.llm.keys import scrub_data
from panelsynth.pydantic_models import ClusterDescription, VariableDescription
from panelsynth.tables import code_text, encode_table  # noqa: F401 (encode_table: re-export)

log = logging.getLogger("panelsynth")

MAX_DESCRIPTION_CHARS = 80


# ----------------------------------------------------------------------------------------------
# statistics
def variable_statistics(values: pd.Series, vtype: str, codes: Sequence[Any] = ()) -> dict[str, Any]:
    """Summary statistics of one variable within one cluster (SPEC §3.2)."""
    n = int(len(values))
    na_share = float(values.isna().mean()) if n else 0.0
    observed = values.dropna()
    if vtype in ("an ordinal", "a continuous"):
        x = pd.to_numeric(observed, errors="coerce").dropna().astype(float)
        if len(x) == 0:
            return {"n": n, "na_share": na_share}
        q = np.quantile(x, [0.0, 0.25, 0.5, 0.75, 1.0])
        stats: dict[str, Any] = {
            "n": n,
            "min": float(q[0]),
            "q1": float(q[1]),
            "median": float(q[2]),
            "mean": float(x.mean()),
            "q3": float(q[3]),
            "max": float(q[4]),
            "variance": float(x.var(ddof=1)) if len(x) > 1 else 0.0,
            "na_share": na_share,
        }
        if vtype == "an ordinal" and codes:
            stats["shares"] = _shares(observed, codes, n)
        return stats
    return {"n": n, "shares": _shares(observed, codes, n), "na_share": na_share}


def _shares(observed: pd.Series, codes: Sequence[Any], n: int) -> dict[str, float]:
    """Share of each category among all respondents of the cluster (NA is separate)."""
    if n == 0:
        return {}
    # count the distinct values first, then spell only those (a Python call per answer would
    # cost seconds on a 100,000-respondent wave)
    counts: dict[str, int] = {}
    for value, count in observed.value_counts(sort=False).items():
        key = code_text(value)
        counts[key] = counts.get(key, 0) + int(count)
    keys = [str(c) for c in codes] if codes else sorted(counts)
    return {k: float(counts.get(k, 0) / n) for k in keys}


def cluster_statistics(wave: WaveData) -> dict[int, dict[str, dict[str, Any]]]:
    """Statistics of every variable in every cluster: ``{cluster: {variable: stats}}``."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    df = wave.frame
    for c in wave.clusters:
        sub = df[df[wave.cluster_column] == c]
        out[c] = {
            v: variable_statistics(
                sub[v], t, wave.metadata[v].codes() if v in wave.metadata else ()
            )
            for v, t in wave.var_types.items()
        }
    return out


def format_statistics(stats: dict[str, Any]) -> str:
    """Compact one-line rendering of a variable's statistics for a prompt."""
    parts = []
    for key in ("min", "q1", "median", "mean", "q3", "max", "variance"):
        if key in stats:
            parts.append(f"{key} {stats[key]:.3g}")
    if "shares" in stats:
        parts.append("shares " + ", ".join(f"{k}: {v:.0%}" for k, v in stats["shares"].items()))
    parts.append(f"NA {stats.get('na_share', 0.0):.0%}")
    parts.append(f"n {stats.get('n', 0)}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# examples
def sample_examples(wave: WaveData, n_examples: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Sample ``n_examples`` rows per cluster with a fixed seed.

    A cluster with fewer rows than asked gives all its rows and a warning, never a crash.
    Returns the examples (wave columns, ordered by cluster) and the warnings.
    """
    warnings: list[str] = []
    parts = []
    for c in wave.clusters:
        sub = wave.frame[wave.frame[wave.cluster_column] == c]
        if len(sub) < n_examples:
            msg = (
                f"wave {wave.wave}: cluster {c} has only {len(sub)} respondents, fewer than "
                f"n_examples={n_examples}; using all of them"
            )
            log.warning(msg)
            warnings.append(msg)
            parts.append(sub)
        else:
            parts.append(sub.sample(n=n_examples, random_state=seed))
    examples = pd.concat(parts)[wave.columns]
    return examples, warnings


def synthetic_examples(
    wave: WaveData,
    n_examples: int,
    seed: int,
    statistics: dict[int, dict[str, dict[str, Any]]] | None = None,
) -> pd.DataFrame:
    """Few-shot rows drawn from each cluster's statistics instead of real respondents.

    Every variable is drawn on its own from the cluster's marginal distribution, its NA share
    included: coded items from their category shares, continuous ones by interpolating the
    cluster's quantiles (min, q1, median, q3, max), rounded where the cluster's answers are whole
    numbers; ``prev_cluster`` from its shares in the cluster. No row is a real respondent's (one
    may coincide with one by chance). Seeded: the same seed gives the same rows.

    Args:
        wave: The wave (its frame gives the statistics when ``statistics`` is not given).
        n_examples: Rows per cluster.
        seed: Random state.
        statistics: Output of :func:`cluster_statistics`, if already computed.

    Returns:
        ``n_examples`` rows per cluster with the wave's columns, ordered by cluster.
    """
    stats = statistics if statistics is not None else cluster_statistics(wave)
    rng = np.random.default_rng(seed)
    parts = []
    for c in wave.clusters:
        sub = wave.frame[wave.frame[wave.cluster_column] == c]
        cols: dict[str, Any] = {}
        for v in wave.var_types:
            observed = pd.to_numeric(sub[v], errors="coerce").dropna()
            whole = bool(len(observed)) and bool((observed % 1 == 0).all())
            cols[v] = _draw_marginal(stats[c][v], n_examples, rng, whole)
        cols[wave.cluster_column] = np.full(n_examples, c)
        if wave.prev_cluster_column:
            prev = sub[wave.prev_cluster_column].astype("Float64")
            shares = prev.value_counts(normalize=True, dropna=False)
            values = [None if pd.isna(k) else int(k) for k in shares.index]
            picks = rng.choice(len(values), size=n_examples, p=shares.to_numpy(dtype=float))
            cols[wave.prev_cluster_column] = pd.array([values[i] for i in picks], dtype="Int64")
        parts.append(pd.DataFrame(cols))
    return pd.concat(parts, ignore_index=True)[wave.columns]


def _draw_marginal(
    stats: dict[str, Any], n: int, rng: np.random.Generator, whole: bool
) -> np.ndarray:
    """``n`` independent draws from one variable's statistics (NaN for NA)."""
    na = float(stats.get("na_share", 0.0))
    shares = stats.get("shares")
    if shares:
        keys = list(shares)
        p = np.array([*shares.values(), na], dtype=float)
        if p.sum() <= 0:
            return np.full(n, np.nan)
        picks = rng.choice(len(p), size=n, p=p / p.sum())
        out = np.array(
            [_code_value(keys[i]) if i < len(keys) else np.nan for i in picks], dtype=object
        )
        return out if any(isinstance(x, str) for x in out) else out.astype(float)
    if "min" not in stats:
        return np.full(n, np.nan)
    knots = [stats["min"], stats["q1"], stats["median"], stats["q3"], stats["max"]]
    values = np.interp(rng.random(n), [0.0, 0.25, 0.5, 0.75, 1.0], knots)
    if whole:
        values = np.round(values)
    values[rng.random(n) < na] = np.nan
    return values


def _code_value(code: str) -> Any:
    try:
        f = float(code)
    except ValueError:
        return code
    return f


# ----------------------------------------------------------------------------------------------
# LLM descriptions
SYSTEM_DESCRIBE = (
    "You are a survey methodologist. You describe distributions of survey answers in plain words, "
    "never with numbers."
)


def describe_messages(wave: WaveData, stats: dict[int, dict[str, dict[str, Any]]]) -> list[Message]:
    """The step-1 prompt: statistics of every variable in every cluster, one call for the wave.

    ``stats`` may hold a part of the wave (one cluster, a group of variables) when step 1 is
    split over several calls (:func:`describe_parts`).
    """
    full = wave.mode == "full"
    lines = [
        f"Summary statistics of survey variables in wave {wave.wave}, for each of "
        f"{len(stats)} clusters of respondents."
        if len(stats) > 1
        else f"Summary statistics of survey variables in wave {wave.wave}, for one cluster of "
        f"respondents.",
        "",
    ]
    for c, per_var in stats.items():
        lines.append(f"Cluster {c}:")
        for v, s in per_var.items():
            meta = wave.metadata.get(v)
            codebook = f" [{meta.responses_text()}]" if meta else ""
            lines.append(f"- {v} ({wave.var_types[v]} variable{codebook}): {format_statistics(s)}")
        lines.append("")
    ask = "skewness, spread and shape"
    if full:
        ask += ", and how often it is missing (NA frequency)"
    lines.append(
        f"For every variable in every cluster, describe its distribution's {ask} in purely "
        f"qualitative terms. Do not use any numbers or digits. Be brief: a few words per field."
    )
    return [
        {"role": "system", "content": SYSTEM_DESCRIBE},
        {"role": "user", "content": "\n".join(lines)},
    ]


def describe_response_model(
    variables: Sequence[str], clusters: Sequence[int], full: bool
) -> type[BaseModel]:
    """A response model with one required entry per (cluster, variable): nothing can be skipped."""
    # maxLength lives in the schema only: it bounds constrained decoding (local models) without
    # making a verbose hosted model's answer invalid.
    short = {"maxLength": MAX_DESCRIPTION_CHARS}
    desc_fields: dict[str, Any] = {
        "skew": (str, Field(..., description="Skewness in words", json_schema_extra=short)),
        "spread": (str, Field(..., description="Spread in words", json_schema_extra=short)),
        "shape": (str, Field(..., description="Shape in words", json_schema_extra=short)),
    }
    if full:
        desc_fields["na_frequency"] = (
            str,
            Field(..., description="How often it is missing, in words", json_schema_extra=short),
        )
    cfg = ConfigDict(extra="ignore")
    var_model = create_model("Description", __config__=cfg, **desc_fields)
    cluster_model = create_model(
        "ClusterVariables", __config__=cfg, **{v: (var_model, ...) for v in variables}
    )
    return create_model(
        "ClusterDescriptionsByVariable",
        __config__=cfg,
        **{f"cluster_{c}": (cluster_model, ...) for c in clusters},
    )


@dataclass
class Step1Result:
    """Statistics, descriptions and examples of a wave."""

    statistics: dict[int, dict[str, dict[str, Any]]]
    descriptions: list[ClusterDescription]
    examples: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=lambda: Usage(attempts=0))
    calls: int = 0
    cached: bool = False
    examples_source: str = "real"
    #: How step 1 was split: ``[(clusters, variables), ...]``; one part when not split.
    parts: list[tuple[list[int], list[str]]] = field(default_factory=list)


Part = tuple[list[int], list[str]]


def describe_parts(
    client: LLMClient, wave: WaveData, stats: dict[int, dict[str, dict[str, Any]]]
) -> list[Part]:
    """How step 1 is split so that every call's prompt and descriptions fit the context.

    One call for the whole wave when it fits (always, for a model without a known context);
    else one call per cluster; a cluster whose descriptions still do not fit is split into the
    fewest groups of consecutive variables of near-equal size that do. Every part asks for the
    same per-variable descriptions, so the merged result is the one a single call gives.

    Raises:
        PanelsynthError: even one variable of one cluster does not fit the context.
    """
    clusters, variables = list(wave.clusters), list(wave.variables)
    window = getattr(client, "context_window", None)
    if not window:
        return [(clusters, variables)]

    def fits(cs: list[int], vs: list[str]) -> bool:
        messages = describe_messages(wave, _subset(stats, cs, vs))
        need = _describe_need(wave, len(cs) * len(vs))
        prompt = client.count_tokens("\n".join(m["content"] for m in messages))
        return prompt + 16 * len(messages) + need + 32 <= window

    if fits(clusters, variables):
        return [(clusters, variables)]
    parts: list[Part] = []
    for c in clusters:
        for n_groups in range(1, len(variables) + 1):
            groups = [list(g) for g in np.array_split(np.array(variables, dtype=object), n_groups)]
            if all(fits([c], g) for g in groups):
                parts += [([c], g) for g in groups]
                break
        else:
            raise ContextTooSmallError(
                f"wave {wave.wave}: step 1 cannot describe even one variable of cluster {c} "
                f"within the {window}-token context of {client.label} — use a model with a "
                f"longer context"
            )
    return parts


def _subset(
    stats: dict[int, dict[str, dict[str, Any]]], clusters: Sequence[int], variables: Sequence[str]
) -> dict[int, dict[str, dict[str, Any]]]:
    return {c: {v: stats[c][v] for v in variables} for c in clusters}


def split_note(wave: WaveData, parts: Sequence[Part], client: LLMClient) -> str:
    """The warning that says how step 1 was split (empty when it was not)."""
    if len(parts) <= 1:
        return ""
    per_cluster = {c: sum(1 for cs, _ in parts if c in cs) for c in wave.clusters}
    groups = ", ".join(f"cluster {c}: {n} call(s)" for c, n in per_cluster.items())
    return (
        f"wave {wave.wave}: step 1 descriptions of {len(wave.variables)} variables x "
        f"{len(wave.clusters)} clusters do not fit one reply within the "
        f"{getattr(client, 'context_window', None)}-token context of {client.label}: split "
        f"into {len(parts)} calls ({groups}); the descriptions are the same per variable"
    )


def describe_wave(
    client: LLMClient,
    wave: WaveData,
    *,
    n_examples: int,
    seed: int,
    cache: StepCache | None = None,
    temperature: float = STEP1_TEMPERATURE,
    examples_source: str = "real",
) -> Step1Result:
    """Run step 1 for a wave: one LLM call (or none when cached) plus seeded examples.

    ``examples_source="synthetic"`` draws the examples from the cluster statistics
    (:func:`synthetic_examples`) instead of sampling real respondents. When the descriptions do
    not fit one reply within the model's context, the call is split (:func:`describe_parts`):
    per cluster, then per group of variables; the result, the logs and the cache entry of the
    wave are the same as for one call (each part is cached too, so a failed part does not
    repeat the parts before it). Call ``i`` is seeded with ``seed + i``.
    """
    stats = cluster_statistics(wave)
    if examples_source == "synthetic":
        examples, warnings = synthetic_examples(wave, n_examples, seed, stats), []
    else:
        examples, warnings = sample_examples(wave, n_examples, seed)
    messages = describe_messages(wave, stats)
    full = wave.mode == "full"
    model = describe_response_model(wave.variables, wave.clusters, full)
    # the descriptions depend on the seed (sent with every call) and the temperature; the
    # examples do not come from the cache: they are drawn above with this run's seed
    key = step_key(
        "step1",
        client.label,
        messages,
        model.model_json_schema(),
        seed=seed,
        temperature=temperature,
        context_window=getattr(client, "context_window", None),
    )
    cached = cache.get("step1", key, model) if cache else None
    usage = Usage(attempts=0)
    calls = 0
    parts: list[Part] = [(list(wave.clusters), list(wave.variables))]
    if cached is not None:
        raw = cached
        log.info("wave %s: step 1 descriptions from cache", wave.wave)
    else:
        parts = describe_parts(client, wave, stats)
        note = split_note(wave, parts, client)
        if note:
            log.warning(note)
            warnings.append(note)
        raw = {}
        for i, (cs, vs) in enumerate(parts):
            if len(parts) == 1:
                part_msgs, part_model, part_key = messages, model, None
            else:
                part_msgs = describe_messages(wave, _subset(stats, cs, vs))
                part_model = describe_response_model(vs, cs, full)
                part_key = step_key(
                    "step1-part",
                    client.label,
                    part_msgs,
                    part_model.model_json_schema(),
                    seed=seed + i,
                    temperature=temperature,
                )
            got = cache.get("step1", part_key, part_model) if cache and part_key else None
            if got is None:
                comp = client.create(
                    part_msgs,
                    part_model,
                    temperature=temperature,
                    max_tokens=_describe_budget(client, wave, part_msgs, len(cs) * len(vs)),
                    seed=seed + i,
                )
                usage.add(comp.usage)
                calls += 1
                got = scrub_data(comp.value.model_dump())  # a key echoed in a reply is never kept
                if cache and part_key:
                    cache.put("step1", part_key, got)
            for c_key, per_var in got.items():
                raw.setdefault(c_key, {}).update(per_var)
        if cache:
            cache.put("step1", key, raw)
    descriptions = [
        ClusterDescription(
            cluster=c,
            variables=[
                VariableDescription(variable=v, **raw[f"cluster_{c}"][v]) for v in wave.variables
            ],
        )
        for c in wave.clusters
    ]
    for d in descriptions:
        for vd in d.variables:
            if any(
                ch.isdigit() for ch in (vd.skew + vd.spread + vd.shape + (vd.na_frequency or ""))
            ):
                log.debug("wave %s: description of %s uses digits", wave.wave, vd.variable)
    return Step1Result(
        stats,
        descriptions,
        examples,
        warnings,
        usage,
        calls,
        cached is not None,
        examples_source,
        parts,
    )


def _describe_budget(
    client: LLMClient, wave: WaveData, messages: list[Message], entries: int | None = None
) -> int:
    """Room for every description at its maximum length (skew, spread, shape; NA in full mode)."""
    per = 4 if wave.mode == "full" else 3
    if entries is None:
        entries = len(wave.variables) * len(wave.clusters)
    return reply_budget(
        client, messages, entries * per * MAX_DESCRIPTION_CHARS, entries * (per + 1)
    )


def _describe_need(wave: WaveData, entries: int) -> int:
    """The output tokens :func:`_describe_budget` asks for ``entries`` (uncapped)."""
    per = 4 if wave.mode == "full" else 3
    return 64 + 12 * entries * (per + 1) + entries * per * MAX_DESCRIPTION_CHARS // 2


def format_descriptions(descriptions: Sequence[ClusterDescription]) -> str:
    """Readable text of the descriptions (prompt of step 3 and the step-1 log)."""
    lines = []
    for d in descriptions:
        lines.append(f"Cluster {d.cluster}:")
        for vd in d.variables:
            text = f"skew: {vd.skew}; spread: {vd.spread}; shape: {vd.shape}"
            if vd.na_frequency:
                text += f"; missing: {vd.na_frequency}"
            lines.append(f"- {vd.variable}: {text}")
    return "\n".join(lines)


def is_coded(vtype: str) -> bool:
    return vtype in CODED_TYPES
