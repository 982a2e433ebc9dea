"""Step 1: statistics, prompt content, seeded examples, one call per wave, cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fakes import SamplingRecorder, fake_answer

from panelsynth.cache import StepCache, fingerprint
from panelsynth.config import load_config
from panelsynth.describe import (
    cluster_statistics,
    describe_messages,
    describe_response_model,
    describe_wave,
    sample_examples,
)
from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import load_wave_for_run
from panelsynth.workspace import Workspace


def _wave(ws_root: Path, mode: str = "dense"):
    ws = Workspace(ws_root)
    return load_wave_for_run(ws, "2", load_config(ws.config_path), mode)


def test_statistics_match_pandas(tiny_workspace: Path) -> None:
    wd = _wave(tiny_workspace, "full")
    stats = cluster_statistics(wd)
    sub = wd.frame[wd.frame.cluster == 2]["worryflu"]
    s = stats[2]["worryflu"]
    assert s["mean"] == pytest.approx(sub.mean())
    assert s["median"] == pytest.approx(sub.median())
    assert s["variance"] == pytest.approx(sub.var())
    assert s["na_share"] == pytest.approx(sub.isna().mean()) and s["na_share"] > 0
    assert {"min", "q1", "q3", "max"} <= set(s)
    assert sum(stats[2]["sex"]["shares"].values()) == pytest.approx(1 - stats[2]["sex"]["na_share"])


def test_prompt_has_statistics_and_asks_for_no_numbers(tiny_workspace: Path) -> None:
    wd = _wave(tiny_workspace)
    text = describe_messages(wd, cluster_statistics(wd))[-1]["content"]
    assert _wave(tiny_workspace, "dense").frame.notna().all().all()  # dense: complete cases
    for v in wd.variables:
        assert v in text
    assert "Cluster 1" in text and "Cluster 2" in text
    assert "skewness, spread and shape" in text and "no" in text.lower()
    assert "Do not use any numbers" in text
    assert "missing" not in text.split("describe")[-1]  # dense mode: no NA frequency asked
    full = describe_messages(_wave(tiny_workspace, "full"), cluster_statistics(wd))[-1]["content"]
    assert "NA frequency" in full


def test_examples_seeded_and_small_cluster_warns(tiny_workspace: Path) -> None:
    wd = _wave(tiny_workspace)
    a, _ = sample_examples(wd, 4, seed=42)
    b, _ = sample_examples(wd, 4, seed=42)
    c, _ = sample_examples(wd, 4, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert a.groupby("cluster").size().tolist() == [4, 4]
    big, warnings = sample_examples(wd, 10_000, seed=42)
    assert len(big) == len(wd.frame) and len(warnings) == 2 and "fewer than" in warnings[0]


def test_one_call_per_wave_and_none_when_cached(tiny_workspace: Path) -> None:
    wd = _wave(tiny_workspace, "full")
    cache = StepCache(Workspace(tiny_workspace).cache_dir())
    client = FakeClient(default=fake_answer)
    r1 = describe_wave(client, wd, n_examples=3, seed=1, cache=cache)
    assert r1.calls == 1 and len(client.calls) == 1
    assert [d.cluster for d in r1.descriptions] == [1, 2]
    assert all(vd.na_frequency for d in r1.descriptions for vd in d.variables)
    r2 = describe_wave(client, wd, n_examples=3, seed=1, cache=cache)
    assert r2.cached and r2.calls == 0 and len(client.calls) == 1


def test_the_seed_is_in_the_cache_key(tiny_workspace: Path) -> None:
    """Same seed: the cached descriptions; another seed: a new call with that seed (issue: a
    run with --seed 7 after one with --seed 1 reused seed 1's descriptions)."""
    wd = _wave(tiny_workspace, "full")
    cache = StepCache(Workspace(tiny_workspace).cache_dir())
    client = SamplingRecorder(default=fake_answer)
    describe_wave(client, wd, n_examples=3, seed=1, cache=cache)
    again = describe_wave(client, wd, n_examples=3, seed=1, cache=cache)
    assert again.cached and client.sampling == [(1, 0.2)]
    other = describe_wave(client, wd, n_examples=3, seed=7, cache=cache)
    assert not other.cached and other.calls == 1 and client.sampling == [(1, 0.2), (7, 0.2)]
    # the examples are never cached: a hit still draws them with the run's own seed
    seven = describe_wave(client, wd, n_examples=3, seed=7, cache=cache)
    assert seven.cached and len(client.sampling) == 2
    pd.testing.assert_frame_equal(seven.examples, sample_examples(wd, 3, seed=7)[0])
    assert not seven.examples.equals(again.examples)
    # another temperature is another reply too
    hotter = describe_wave(client, wd, n_examples=3, seed=7, cache=cache, temperature=0.9)
    assert not hotter.cached and client.sampling[-1] == (7, 0.9)


def test_an_entry_under_the_old_key_without_the_seed_is_never_used(tiny_workspace: Path) -> None:
    wd = _wave(tiny_workspace)
    cache = StepCache(Workspace(tiny_workspace).cache_dir())
    messages = describe_messages(wd, cluster_statistics(wd))
    model = describe_response_model(wd.variables, wd.clusters, full=False)
    old_key = fingerprint("step1", "fake/fake", messages, model.model_json_schema())
    stale = {
        f"cluster_{c}": {v: {"skew": "OLD", "spread": "OLD", "shape": "OLD"} for v in wd.variables}
        for c in wd.clusters
    }
    cache.put("step1", old_key, stale)
    client = SamplingRecorder(default=fake_answer)
    res = describe_wave(client, wd, n_examples=3, seed=42, cache=cache)
    assert not res.cached and client.sampling == [(42, 0.2)]
    assert all(vd.skew != "OLD" for d in res.descriptions for vd in d.variables)


def test_category_shares_spell_codes_alike_with_or_without_a_codebook() -> None:
    from panelsynth.describe import variable_statistics

    values = pd.Series([1.0, 2.0, 2.0, None, 3.0, 2.0, None, 1.0])
    with_codes = variable_statistics(values, "a categorical", codes=(1, 2, 3, 4))
    assert with_codes["shares"] == {"1": 0.25, "2": 0.375, "3": 0.125, "4": 0.0}
    assert with_codes["na_share"] == 0.25
    # without a codebook the observed values name the categories, spelled the same way
    without = variable_statistics(values, "a categorical")
    assert without["shares"] == {"1": 0.25, "2": 0.375, "3": 0.125}
    text = pd.Series(["Male", "Female", "Female", None])
    assert variable_statistics(text, "a binary", codes=("Male", "Female"))["shares"] == {
        "Male": 0.25,
        "Female": 0.5,
    }
