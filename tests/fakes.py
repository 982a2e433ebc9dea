"""Test helpers shared across test modules: a tiny workspace writer and schema-built fake
answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.llm.base import Completion, FakeClient, Message
from panelsynth.scaffold import init_workspace

ITEMS = {
    "vaccimportant": ("How important is it to get vaccinated?", 5),
    "vaccsafe": ("How safe are vaccines?", 5),
    "worryflu": ("How worried are you about the flu?", 4),
}


def write_tiny_workspace(
    root: Path, *, n: int = 60, seed: int = 0, waves: tuple[str, ...] = ("1", "2")
) -> Path:
    """A two-wave workspace: three ordinal items, age, sex, cluster (and prev_cluster in wave 2)."""
    ws, _ = init_workspace(root)
    rng = np.random.default_rng(seed)
    meta: dict[str, Any] = {
        v: {"question": q, "responses": {str(i): f"level {i}" for i in range(1, k + 1)}}
        for v, (q, k) in ITEMS.items()
    }
    meta["age"] = {"question": "Age in years", "range": [18, 90]}
    meta["sex"] = {"question": "Sex", "responses": {"1": "Male", "2": "Female"}}
    types = {v: "an ordinal" for v in ITEMS} | {"age": "a continuous", "sex": "a binary"}
    prev = None
    for i, w in enumerate(waves):
        cluster = np.where(rng.random(n) < 0.55, 1, 2)
        df = pd.DataFrame({"respondent_id": np.arange(n)})
        for v, (_, k) in ITEMS.items():
            hi = rng.integers(max(1, k - 2), k + 1, n)
            lo = rng.integers(1, min(3, k) + 1, n)
            df[v] = np.where(cluster == 1, hi, lo).astype(float)
        df["age"] = rng.integers(18, 90, n)
        df["sex"] = rng.integers(1, 3, n)
        # a little item non-response in cluster 2
        df.loc[(cluster == 2) & (rng.random(n) < 0.15), "worryflu"] = -99
        df["cluster"] = cluster
        if i > 0:
            df["prev_cluster"] = prev
        prev = cluster
        df.to_csv(ws.original_data(w), index=False)
        (ws.metadata_json_for_write(w)).write_text(json.dumps(meta, indent=1))
        ws.var_types_for_write(w).write_text(json.dumps(types, indent=1))
        ws.wave_context(w).write_text(
            f"Wave {w} of a flu vaccination panel, autumn 2016. Target variable: vaccimportant. "
            f"Previous wave: {waves[i - 1] if i else 'none'}."
        )
    return root


def _valid_row(model: Any, rng: np.random.Generator) -> dict[str, Any]:
    schema = model.model_json_schema()["properties"]["rows"]["items"]
    row = {}
    for name, prop in schema["properties"].items():
        options = prop.get("anyOf", [prop])
        main = next(o for o in options if o.get("type") != "null")
        if "enum" in main:
            row[name] = main["enum"][int(rng.integers(len(main["enum"])))]
        else:
            lo, hi = main.get("minimum", 0), main.get("maximum", 100)
            row[name] = int(rng.integers(int(lo), int(hi) + 1))
    return row


def fake_answer(messages: list[dict], response_model: type) -> dict[str, Any]:
    """A valid answer for any panelsynth step, built from the response model's own schema."""
    rng = np.random.default_rng(len(messages[-1]["content"]))
    name = response_model.__name__
    schema = response_model.model_json_schema()
    if name == "SyntheticRespondents":
        n = schema["properties"]["rows"]["minItems"]
        return {"rows": [_valid_row(response_model, rng) for _ in range(n)]}
    if name == "ClusterDescriptionsByVariable":
        out = {}
        for cl, ref in schema["properties"].items():
            cluster_def = schema["$defs"][ref["$ref"].split("/")[-1]]
            desc_def = next(iter(schema["$defs"][k] for k in schema["$defs"] if k == "Description"))
            out[cl] = {
                v: {f: f"some {f}" for f in desc_def["properties"]}
                for v in cluster_def["properties"]
            }
        return out
    if name == "FormattedMetadata":
        variables = schema["properties"]["target_variable"]["enum"]
        return {
            "description": "A panel survey on vaccination.",
            "target_variable": variables[0],
            "features": {v: {"meaning": f"meaning of {v}", "values": "codes"} for v in variables},
        }
    raise AssertionError(f"fake_answer: unknown response model {name}")


def varied_rows(body: dict[str, Any]) -> Any:
    """Stub-server responder: valid, varied answers for every step, from the request's schema.

    Deterministic per request text (the batch number is in it), so the same batch gets the same
    rows whatever the order of arrival. (Same as ``tests/cli/test_run_cmd.py::varied_rows``.)
    """
    import random

    from servers.openai_stub import request_schema, schema_example

    schema = request_schema(body) or {}
    rows = schema.get("properties", {}).get("rows")
    if not rows:
        return schema_example(schema)
    rng = random.Random(json.dumps(body["messages"])[-200:])
    out = []
    for _ in range(rows["minItems"]):
        row = {}
        for name, prop in rows["items"]["properties"].items():
            main = next(o for o in prop.get("anyOf", [prop]) if o.get("type") != "null")
            if "enum" in main:
                row[name] = rng.choice(main["enum"])
            else:
                row[name] = rng.randint(int(main["minimum"]), int(main["maximum"]))
        out.append(row)
    return {"rows": out}


class SamplingRecorder(FakeClient):
    """A :class:`FakeClient` that also records the ``(seed, temperature)`` of every call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sampling: list[tuple[int | None, float]] = []

    def create(  # type: ignore[override]
        self,
        messages: list[Message],
        response_model: type[Any],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[Any]:
        self.sampling.append((seed, temperature))
        return super().create(
            messages, response_model, max_tokens=max_tokens, temperature=temperature, seed=seed
        )
