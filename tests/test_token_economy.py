"""Token economy: one shared step-3 prefix, and caches that re-compute only what changed."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd
from fakes import fake_answer

from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace

STEP_OF = {
    "ClusterDescriptionsByVariable": "step1",
    "FormattedMetadata": "step2",
    "SyntheticRespondents": "step3",
}


def _run(ws: Path, client: FakeClient, **kw: object) -> Counter[str]:
    before = len(client.calls)
    opts = {"n_outputs": 3, "n_batches": 4, "restart": True, **kw}
    run_wave(ws, "2", client, "fake", RunOptions(**opts))  # type: ignore[arg-type]
    return Counter(STEP_OF[c["response_model"].__name__] for c in client.calls[before:])


def test_step3_prompts_share_one_byte_identical_prefix(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer)
    run_wave(tiny_workspace, "2", client, "fake", RunOptions(mode="full", n_outputs=3, n_batches=5))
    prompts = [
        c["messages"] for c in client.calls if STEP_OF[c["response_model"].__name__] == "step3"
    ]
    assert len(prompts) == 5
    # every message but the last is byte-identical across batches
    assert all(p[:-1] == prompts[0][:-1] for p in prompts)
    users = sorted(p[-1]["content"].encode("utf-8") for p in prompts)  # by request number
    static = users[0][: users[0].index(b"\n\nRequest 1:")]
    # the static part holds everything but the request (metadata, descriptions, examples, rules)
    text = static.decode("utf-8")
    assert "Examples of respondents" in text and "Rules:" in text and "Request" not in text
    assert os.path.commonprefix(users).startswith(static)
    # ... and each batch adds only a short suffix after it
    for b, u in enumerate(users):
        suffix = u[len(static) :]
        assert suffix.startswith(f"\n\nRequest {b + 1}:".encode()) and len(suffix) < 150


def _counts(ws: Path, client: FakeClient, **kw: object) -> dict[str, int]:
    c = _run(ws, client, **kw)
    return {k: c.get(k, 0) for k in ("step1", "step2", "step3")}


def test_changing_one_input_recomputes_only_what_depends_on_it(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    client = FakeClient(default=fake_answer)
    assert _counts(tiny_workspace, client) == {"step1": 1, "step2": 1, "step3": 4}
    # nothing changed: steps 1-2 come from the cache
    assert _counts(tiny_workspace, client) == {"step1": 0, "step2": 0, "step3": 4}

    # the wave context feeds step 2 only
    ctx = ws.wave_context("2")
    ctx.write_text(ctx.read_text() + " Collected online.")
    assert _counts(tiny_workspace, client) == {"step1": 0, "step2": 1, "step3": 4}

    # a question's wording feeds step 2 only (step 1 sees codes and statistics)
    meta_path = ws.metadata_json_for_write("2")
    meta = json.loads(meta_path.read_text())
    meta["vaccsafe"]["question"] = "How safe do you think vaccines are?"
    meta_path.write_text(json.dumps(meta))
    assert _counts(tiny_workspace, client) == {"step1": 0, "step2": 1, "step3": 4}

    # the data feed step 1 (statistics) only
    data = ws.original_data("2")
    df = pd.read_csv(data)
    df.loc[0, "vaccimportant"] = 1 if df.loc[0, "vaccimportant"] != 1 else 2
    df.to_csv(data, index=False)
    assert _counts(tiny_workspace, client) == {"step1": 1, "step2": 0, "step3": 4}

    # the mode changes the variables' treatment (NA descriptions): step 1 only
    assert _counts(tiny_workspace, client, mode="full")["step1"] == 1

    # another model re-computes both, and each model keeps its own cache entries
    other = FakeClient(default=fake_answer, label="fake/other")
    assert _counts(tiny_workspace, other) == {"step1": 1, "step2": 1, "step3": 4}
    assert _counts(tiny_workspace, client) == {"step1": 0, "step2": 0, "step3": 4}

    # --no-cache recomputes both without touching the cached entries
    assert _counts(tiny_workspace, client, use_cache=False) == {"step1": 1, "step2": 1, "step3": 4}
    assert _counts(tiny_workspace, client) == {"step1": 0, "step2": 0, "step3": 4}
