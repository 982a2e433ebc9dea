"""Step 2: prompt content, target variable, cache."""

from __future__ import annotations

from pathlib import Path

from fakes import SamplingRecorder, fake_answer

from panelsynth.cache import StepCache, fingerprint
from panelsynth.config import load_config
from panelsynth.llm.base import FakeClient
from panelsynth.metadata import (
    format_metadata,
    metadata_messages,
    metadata_response_model,
    target_from_context,
)
from panelsynth.run.wave import load_wave_for_run
from panelsynth.workspace import Workspace


def test_prompt_has_context_and_raw_metadata(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    wd = load_wave_for_run(ws, "1", load_config(ws.config_path), "dense")
    text = metadata_messages(wd)[-1]["content"]
    assert "flu vaccination panel" in text
    assert "How safe are vaccines?" in text and "1 = level 1" in text and "18 to 90" in text


def test_target_named_in_context_wins(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    wd = load_wave_for_run(ws, "1", load_config(ws.config_path), "dense")

    def answer(messages, model):
        a = fake_answer(messages, model)
        a["target_variable"] = "age"
        return a

    res = format_metadata(FakeClient(default=answer), wd)
    assert res.description.target_variable == "vaccimportant"
    assert [f.name for f in res.description.features] == wd.variables
    assert res.notes


def test_target_from_context_parsing() -> None:
    assert target_from_context("The target variable is x1.", ["x1", "x2"]) == "x1"
    assert target_from_context("Target: `x2`", ["x1", "x2"]) == "x2"
    assert target_from_context("No target here.", ["x1"]) is None


def test_cached_rerun_makes_no_call(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    wd = load_wave_for_run(ws, "1", load_config(ws.config_path), "dense")
    cache = StepCache(ws.cache_dir())
    client = FakeClient(default=fake_answer)
    format_metadata(client, wd, cache=cache)
    again = format_metadata(client, wd, cache=cache)
    assert again.cached and len(client.calls) == 1


def test_the_seed_is_in_the_cache_key(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    wd = load_wave_for_run(ws, "1", load_config(ws.config_path), "dense")
    cache = StepCache(ws.cache_dir())
    client = SamplingRecorder(default=fake_answer)
    format_metadata(client, wd, cache=cache, seed=1)
    assert format_metadata(client, wd, cache=cache, seed=1).cached
    assert client.sampling == [(1, 0.2)]
    other = format_metadata(client, wd, cache=cache, seed=7)
    assert not other.cached and other.calls == 1 and client.sampling[-1] == (7, 0.2)
    assert format_metadata(client, wd, cache=cache, seed=7).cached
    # no seed (unseeded sampling) and another temperature are other entries too
    assert not format_metadata(client, wd, cache=cache).cached
    assert not format_metadata(client, wd, cache=cache, seed=7, temperature=0.5).cached
    assert client.sampling[-2:] == [(None, 0.2), (7, 0.5)]


def test_an_entry_under_the_old_key_without_the_seed_is_never_used(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    wd = load_wave_for_run(ws, "1", load_config(ws.config_path), "dense")
    cache = StepCache(ws.cache_dir())
    schema = metadata_response_model(wd.variables).model_json_schema()
    old_key = fingerprint("step2", "fake/fake", metadata_messages(wd), schema)
    stale = fake_answer(metadata_messages(wd), metadata_response_model(wd.variables))
    cache.put("step2", old_key, {**stale, "description": "OLD"})
    client = SamplingRecorder(default=fake_answer)
    res = format_metadata(client, wd, cache=cache, seed=42)
    assert not res.cached and client.sampling == [(42, 0.2)]
    assert res.description.description != "OLD"


def test_reply_budget_leaves_room_for_every_string_at_its_maximum_length() -> None:
    from panelsynth.llm.base import FakeClient, reply_budget

    msgs = [{"role": "user", "content": "x" * 400}]
    # 6 variables: a 240-character description plus meaning and values of 160 characters each
    hosted = reply_budget(FakeClient(), msgs, 240 + 6 * 320, 21)
    assert hosted >= (240 + 6 * 320) // 2 + 21  # more than the old 150 + 70 per variable (570)
    small = FakeClient()
    small.context_window = 1200  # type: ignore[attr-defined]
    small.count_tokens = lambda text: len(text) // 4  # type: ignore[method-assign]
    capped = reply_budget(small, msgs, 240 + 6 * 320, 21)
    assert capped == 1200 - 100 - 16 - 32  # what the context leaves after the prompt
