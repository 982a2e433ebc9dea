"""Step 1 on a many-item full wave: split per cluster and group of variables to fit the context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from battery import write_battery_workspace
from fakes import SamplingRecorder, fake_answer

from panelsynth.cache import StepCache
from panelsynth.config import load_config
from panelsynth.describe import describe_parts, describe_wave
from panelsynth.llm.base import FakeClient, LLMCallError
from panelsynth.run.wave import RunOptions, _step_failed, load_wave_for_run, run_wave
from panelsynth.workspace import Workspace

WINDOW = 8192


def small_context_client(**kw: object) -> SamplingRecorder:
    """A fake with SmolLM2's context and a tokenizer about as dense as its BPE on statistics."""
    client = SamplingRecorder(
        default=fake_answer, label="local/fake", is_local=True, tokens_per_char=0.4, **kw
    )  # type: ignore[arg-type]
    client.context_window = WINDOW  # type: ignore[attr-defined]
    return client


@pytest.fixture
def battery(tmp_path: Path) -> Path:
    return write_battery_workspace(tmp_path / "ws")


def _wave(ws: Path):  # type: ignore[no-untyped-def]
    return load_wave_for_run(Workspace(ws), "1", load_config(Workspace(ws).config_path), "full")


def test_28_items_full_mode_split_into_calls_that_fit_the_context(battery: Path) -> None:
    wd = _wave(battery)
    assert len(wd.variables) == 30
    client = small_context_client()
    s1 = describe_wave(client, wd, n_examples=5, seed=3)
    assert s1.calls == len(client.calls) > 2
    # per cluster first, then groups of variables: no call mixes clusters
    assert all(len(cs) == 1 for cs, _ in s1.parts)
    for c in wd.clusters:
        covered = [v for cs, vs in s1.parts if cs == [c] for v in vs]
        assert covered == list(wd.variables)  # every variable once, in order
    for call in client.calls:  # each prompt leaves room for its descriptions at full length
        text = "\n".join(m["content"] for m in call["messages"])
        schema = call["response_model"].model_json_schema()
        (cl_ref,) = schema["properties"].values()
        n_vars = len(schema["$defs"][cl_ref["$ref"].split("/")[-1]]["properties"])
        need = 64 + 12 * n_vars * 5 + n_vars * 4 * 80 // 2
        assert client.count_tokens(text) + 32 + need + 32 <= WINDOW
    # the same per-variable result as one call gives
    assert [d.cluster for d in s1.descriptions] == list(wd.clusters)
    for d in s1.descriptions:
        assert [v.variable for v in d.variables] == list(wd.variables)
        assert all(v.na_frequency for v in d.variables)
    assert any("split into" in w and "calls" in w for w in s1.warnings)


def test_a_wave_that_fits_is_one_call_as_before(battery: Path) -> None:
    wd = _wave(battery)
    client = FakeClient(default=fake_answer)  # no context limit
    s1 = describe_wave(client, wd, n_examples=5, seed=3)
    assert s1.calls == 1 and s1.parts == [(list(wd.clusters), list(wd.variables))]
    assert s1.warnings == []


def test_split_step1_is_cached_whole_and_per_part(battery: Path) -> None:
    wd = _wave(battery)
    cache = StepCache(Workspace(battery).cache_dir())
    first = small_context_client()
    s1 = describe_wave(first, wd, n_examples=5, seed=3, cache=cache)
    again = small_context_client()
    s1b = describe_wave(again, wd, n_examples=5, seed=3, cache=cache)
    assert again.calls == [] and s1b.cached
    assert [d.model_dump() for d in s1b.descriptions] == [d.model_dump() for d in s1.descriptions]
    # a step 1 that failed half-way does not repeat the parts already answered
    cache2 = StepCache(Workspace(battery).cache_dir() / "other")
    n_parts = len(describe_parts(small_context_client(), wd, s1.statistics))
    failing = small_context_client()
    failing.enqueue(*([fake_answer] * (n_parts - 1)), LLMCallError("truncated", "cut off"))
    with pytest.raises(LLMCallError):
        describe_wave(failing, wd, n_examples=5, seed=3, cache=cache2)
    retry = small_context_client()
    describe_wave(retry, wd, n_examples=5, seed=3, cache=cache2)
    assert len(retry.calls) == 1


def test_split_step1_with_another_seed_calls_every_part_again(battery: Path) -> None:
    """Each part is keyed by the seed it is sent with (``seed + i``): a run with another seed
    finds neither the wave's entry nor a part's, and makes every call again."""
    wd = _wave(battery)
    cache = StepCache(Workspace(battery).cache_dir())
    first = small_context_client()
    describe_wave(first, wd, n_examples=5, seed=3, cache=cache)
    n = len(first.sampling)
    assert n > 2 and [s for s, _ in first.sampling] == list(range(3, 3 + n))
    other = small_context_client()
    s1 = describe_wave(other, wd, n_examples=5, seed=11, cache=cache)
    assert not s1.cached and [s for s, _ in other.sampling] == list(range(11, 11 + n))
    again = small_context_client()
    assert describe_wave(again, wd, n_examples=5, seed=11, cache=cache).cached
    assert again.sampling == []


def test_full_run_of_28_items_logs_every_variable_and_says_it_split(battery: Path) -> None:
    client = small_context_client()
    res = run_wave(
        battery,
        "1",
        client,
        "fake",
        RunOptions(mode="full", n_outputs=2, n_batches=2, n_examples=4),
    )
    m = json.loads(res.manifest.read_text())
    assert len(m["step1_calls"]) > 2
    assert any("step 1 descriptions" in w and "split into" in w for w in m["warnings"])
    assert m["tokens"]["per_stage"]["step1"]["calls"] == len(m["step1_calls"])
    log = Workspace(battery).cluster_descriptions_log("fake", "1").read_text()
    descriptions = log.split("Descriptions:", 1)[1]
    for v in ("spend01", "spend24", "party", "social_class", "age", "sex"):
        assert descriptions.count(f"- {v}: skew") == 2  # once per cluster


def test_step_1_and_2_errors_give_a_hint_that_fits_the_step_and_the_model() -> None:
    local = small_context_client()
    cut = LLMCallError(
        "truncated",
        "local/fake: the reply was cut off by the token limit (max_tokens=1056); raise "
        "max_tokens or ask for fewer rows per call",
    )
    msg = str(_step_failed("1", "step 1 (cluster descriptions)", cut, local))
    assert "rows per call" not in msg and "key, model name, server" not in msg
    assert "descriptions" in msg and "8192-token context" in msg and "fewer variables" in msg
    other = str(
        _step_failed("1", "step 1 (cluster descriptions)", LLMCallError("other", "boom"), local)
    )
    assert "key" not in other and "server" not in other
    hosted = FakeClient(label="openai/gpt-x")
    auth = str(
        _step_failed("1", "step 2 (formatted metadata)", LLMCallError("auth", "denied"), hosted)
    )
    assert "API key" in auth
