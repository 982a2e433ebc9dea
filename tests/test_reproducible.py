"""Reproducibility: every call is seeded from --seed; the manifest says whether a run repeats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_answer

from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import RunOptions, reproducibility, run_wave
from panelsynth.workspace import Workspace


class SeedRecorder(FakeClient):
    """A fake that records the seed of every call."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(default=fake_answer, **kw)
        self.seeds: list[tuple[str, int | None]] = []

    def create(self, messages, response_model, *, max_tokens=None, temperature=0.7, seed=None):  # type: ignore[no-untyped-def,override]
        self.seeds.append((response_model.__name__, seed))
        return super().create(
            messages, response_model, max_tokens=max_tokens, temperature=temperature, seed=seed
        )


def test_every_call_of_steps_1_2_3_is_seeded_from_the_run_seed(tiny_workspace: Path) -> None:
    client = SeedRecorder()
    run_wave(tiny_workspace, "2", client, "fake", RunOptions(n_outputs=3, n_batches=3, seed=11))
    seeds = dict.fromkeys(n for n, _ in client.seeds)
    assert set(seeds) == {"ClusterDescriptionsByVariable", "FormattedMetadata",
                          "SyntheticRespondents"}
    assert all(s is not None for _, s in client.seeds)
    step3 = sorted(s for n, s in client.seeds if n == "SyntheticRespondents")
    assert step3 == [11, 12, 13]  # run seed + batch index
    assert ("ClusterDescriptionsByVariable", 11) in client.seeds
    assert ("FormattedMetadata", 11) in client.seeds


def test_manifest_says_whether_the_run_is_reproducible(tiny_workspace: Path) -> None:
    res = run_wave(tiny_workspace, "2", FakeClient(default=fake_answer), "fake",
                   RunOptions(n_outputs=3, n_batches=2))
    rep = res.manifest_data["reproducibility"]
    assert rep["reproducible"] is False and "no seed" in rep["note"]

    class Local(FakeClient):
        supports_seed = True

    local = Local(is_local=True)
    assert reproducibility(local, 1)["reproducible"] is True
    assert reproducibility(local, 2)["reproducible"] is False
    hosted = FakeClient(label="openai/gpt-x")
    hosted.supports_seed = True  # type: ignore[attr-defined]
    rep = reproducibility(hosted, 8)
    assert rep["seeded_calls"] and not rep["reproducible"] and "best effort" in rep["note"]


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_timings(v)
            for k, v in value.items()
            if "seconds" not in k and k not in ("throttle",)
        }
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.mark.slow
def test_two_local_runs_with_the_same_seed_are_byte_identical(tmp_path: Path) -> None:
    from fakes import write_tiny_workspace

    from panelsynth.runner import open_client

    client = open_client("local/smollm2")
    base = write_tiny_workspace(tmp_path / "base")
    outputs = []
    for name in ("a", "b"):
        ws = tmp_path / name
        shutil.copytree(base, ws)
        res = run_wave(ws, "2", client, "smollm2",
                       RunOptions(mode="full", n_outputs=2, n_batches=2, n_examples=3, seed=5))
        w = Workspace(ws)
        outputs.append({
            "csv": res.output.read_bytes(),
            "step1": w.cluster_descriptions_log("smollm2", "2").read_bytes(),
            "examples": w.examples_log("smollm2", "2").read_bytes(),
            "step2": w.gen_metadata_log("smollm2", "2").read_bytes(),
            "manifest": _without_timings(json.loads(res.manifest.read_text())),
        })
        assert res.manifest_data["reproducibility"]["reproducible"] is True
    a, b = outputs
    for key in a:
        assert a[key] == b[key], key


def test_each_step_starts_from_a_fresh_model_context(tiny_workspace: Path) -> None:
    class Resettable(SeedRecorder):
        def reset_context(self) -> None:
            self.seeds.append(("reset", None))

    client = Resettable()
    run_wave(tiny_workspace, "2", client, "fake", RunOptions(n_outputs=3, n_batches=2))
    order = [n for n, _ in client.seeds]
    assert order[:2] == ["reset", "ClusterDescriptionsByVariable"]
    assert order[2:4] == ["reset", "FormattedMetadata"]
    assert order[4] == "reset" and order[5:] == ["SyntheticRespondents"] * 2
