"""Issue 19 must-shows on the demo panel, generated with the OpenAI-compatible stub.

The host's structure (who is present, re-entry, cluster paths, ``prev_cluster``) is checked on
the written files against the real demo panel, with the evaluation's own functions
(:mod:`panelsynth.evaluate.longitudinal`); the answers are the stub's (random), so only the
structure is judged here — the answers' persistence is judged by ``panelsynth evaluate``
(``test_evaluate_prints_the_unlinked_baselines_stability_error_on_the_demo``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panelstub import panel_responder, requested, run_cli
from servers.openai_stub import OpenAIStub

from panelsynth import run_panel
from panelsynth.config import load_config
from panelsynth.data import id_text
from panelsynth.demo import build_demo
from panelsynth.demo.persistence import IDENTITY_ITEMS
from panelsynth.evaluate.longitudinal import (
    retention,
    split_respondents,
    stability_table,
    transitions,
)
from panelsynth.panel.setup import panel_draw
from panelsynth.run.plan import RunOptions
from panelsynth.runner import open_client
from panelsynth.workspace import Workspace

ID = "respondent_id"
N = 2000
WAVES = ["1", "2", "3", "4"]


def _frames(ws: Workspace, waves: list[str], model_dir: str | None = None) -> dict:
    out = {}
    for w in waves:
        path = ws.output_csv(model_dir, w) if model_dir else ws.original_data(w)
        f = pd.read_csv(path, dtype={ID: str})
        out[w] = f.assign(**{ID: f[ID].map(id_text)})
    return out


@pytest.fixture(scope="module")
def demo_panel_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, object]:
    """The demo workspace (seed 2024) and a 2,000-respondent stub panel over waves 1-4."""
    root = build_demo(tmp_path_factory.mktemp("demopanel") / "ws", seed=2024).workspace.root
    with OpenAIStub(panel_responder()) as stub:
        client = open_client("openai/stub-model", base_url=stub.base_url)
        res = run_panel(
            root,
            WAVES,
            client,
            "panel",
            RunOptions(n_outputs=100, concurrency=4),
            respondents=N,
        )
    return Workspace(root), res


def test_nobody_enters_after_the_first_generated_wave(demo_panel_run) -> None:
    ws, res = demo_panel_run
    syn = _frames(ws, WAVES, "panel")
    first = set(syn["1"][ID])
    assert len(first) == len(syn["1"]) == res.rows["1"] > 0.7 * N
    for w in WAVES[1:]:
        assert set(syn[w][ID]) <= first
        assert syn[w][ID].is_unique


def test_reentry_happens_at_the_real_rate(demo_panel_run) -> None:
    """Absent from wave 2, present in wave 3: the synthetic share among wave-1 respondents who
    missed wave 2 is the real one within sampling noise (3 standard errors of both samples)."""
    ws, _ = demo_panel_run
    rates, sizes = [], []
    for frames in (_frames(ws, WAVES), _frames(ws, WAVES, "panel")):
        w1, w2, w3 = (set(frames[w][ID]) for w in ("1", "2", "3"))
        missed = w1 - w2
        rates.append(len(missed & w3) / len(missed))
        sizes.append(len(missed))
    real, syn = rates
    assert real > 0.05  # the demo panel has re-entry (wave 3 respondents who skipped wave 2)
    pooled = (real * sizes[0] + syn * sizes[1]) / sum(sizes)
    se = math.sqrt(pooled * (1 - pooled) * (1 / sizes[0] + 1 / sizes[1]))
    assert abs(real - syn) <= 3 * se, (real, syn, sizes)
    assert syn > 0


def test_prev_cluster_is_the_cluster_in_the_studys_previous_wave(demo_panel_run) -> None:
    ws, _ = demo_panel_run
    syn = _frames(ws, WAVES, "panel")
    for a, b in zip(WAVES, WAVES[1:], strict=False):
        before = syn[a].set_index(ID)["cluster"]
        rows = syn[b]
        expected = rows[ID].map(before)  # NaN: absent from the previous wave
        got = pd.to_numeric(rows["prev_cluster"], errors="coerce")
        assert (got.isna() == expected.isna()).all()
        assert (got.dropna() == expected.dropna()).all()  # 100% of the rows


def test_prev_cluster_of_skipped_waves_is_the_drawn_cluster(tmp_path: Path) -> None:
    """Waves 1,3 requested: a wave-3 row's prev_cluster is the wave-2 cluster the host drew."""
    root = build_demo(tmp_path / "ws", seed=7, n_respondents=300).workspace.root
    ws = Workspace(root)
    with OpenAIStub(panel_responder()) as stub:
        client = open_client("openai/stub-model", base_url=stub.base_url)
        run_panel(root, ["1", "3"], client, "p13", RunOptions(n_outputs=50), respondents=200)
    cfg = load_config(ws.config_path)
    setup = panel_draw(ws, cfg, ["1", "3"], 200, cfg.generation.seed)
    d = setup.draw
    t2 = d.waves.index("2")
    drawn = {
        str(i): (int(d.clusters[k, t2]) if d.present[k, t2] else None) for k, i in enumerate(d.ids)
    }
    rows = _frames(ws, ["3"], "p13")["3"]
    got = pd.to_numeric(rows["prev_cluster"], errors="coerce")
    want = rows[ID].map(drawn)
    assert (got.isna() == want.isna()).all()
    assert (got.dropna() == want.dropna().astype(float)).all()
    assert want.notna().sum() > 0.5 * len(rows)


def test_transitions_and_retention_are_within_the_real_noise(demo_panel_run) -> None:
    ws, _ = demo_panel_run
    real, syn = _frames(ws, WAVES), _frames(ws, WAVES, "panel")
    score, _ = transitions(real, syn, WAVES, id_column=ID)
    halves = [
        transitions(*split_respondents(real, ID, np.random.default_rng([42, 19, i])), WAVES,
                    id_column=ID)[0]
        for i in range(5)
    ]  # fmt: skip
    floor = float(np.mean(halves))
    assert score >= floor - 0.05, (score, halves)
    ret = retention(real, syn, WAVES, id_column=ID)
    assert len(ret) >= 2 * (len(WAVES) - 1)
    assert ret["abs_diff"].max() <= 0.05, ret


def test_evaluate_prints_the_unlinked_baselines_stability_error_on_the_demo(
    demo_panel_run,
) -> None:
    """The new demo's real panel is stable (attitude items' consecutive-wave Spearman 0.4-0.7),
    so the unlinked baseline (a panel's waves paired at random within the cluster path, the
    original per-wave method) misses its stability by at least 0.1, as ``panelsynth evaluate``
    prints — scored here on a "synthetic" panel copied from 300 real respondents (stability
    error ~0). The Bayes-accuracy band of every demo wave is checked by
    tests/demo/test_demo_build.py::test_bayes_accuracy_matches_ground_truth and
    tests/demo/test_demo_persistence.py::test_bayes_accuracy_band_holds_in_every_wave."""
    ws, _ = demo_panel_run
    real = _frames(ws, ["1", "2"])
    rng = np.random.default_rng(5)
    chosen = set(rng.choice(real["1"][ID].to_numpy(), 300, replace=False).tolist())
    for w, f in real.items():
        out = ws.output_csv("copy", w)
        out.parent.mkdir(parents=True, exist_ok=True)
        f[f[ID].isin(chosen)].to_csv(out, index=False)
    r = run_cli(["evaluate", "-w", str(ws.root), "--model-dir", "copy"])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if "stability error" in x)
    assert line.startswith("copy panel, waves 1, 2 — stability error (unchanged share | Spearman)")
    found = re.findall(r"(synthetic|unlinked baseline|CART panel|real half) ([0-9.]+) \| ([0-9.]+)",
                       line)  # fmt: skip
    spearman = {name: float(rho) for name, _, rho in found}
    assert set(spearman) == {"synthetic", "unlinked baseline", "CART panel", "real half"}, line
    assert spearman["unlinked baseline"] >= 0.1, line
    assert spearman["synthetic"] < 0.05 and spearman["real half"] < 0.05, line
    skip = {ID, "cluster", "prev_cluster", "age", "sex", "already_vaccinated", *IDENTITY_ITEMS}
    attitude = [c for c in real["1"].columns if c in real["2"].columns and c not in skip]
    assert len(attitude) >= 6
    table = stability_table(real, ["1", "2"], id_column=ID, items=attitude)
    assert table["spearman"].between(0.4, 0.7).all(), table


def test_the_demo_panel_takes_steps_1_2_from_the_per_wave_runs_cache(tmp_path: Path) -> None:
    """The demo generates waves 1 and 3 per wave first: the panel's steps 1-2 of those waves are
    the same prompts, so they come from the step cache (only wave 5's are new calls)."""
    from fakes import varied_rows

    from panelsynth.demo.pipeline import DemoPanel, DemoRun, run_demo

    panel = panel_responder()
    with OpenAIStub(lambda body: panel(body) if requested(body) else varied_rows(body)) as stub:
        client = open_client("openai/stub-model", base_url=stub.base_url)
        plan = tuple(DemoRun(w, "dense", "pw", n_outputs=5, n_batches=1) for w in ("1", "3"))
        out = run_demo(tmp_path / "demo", n_respondents=300, client=client, plan=plan,
                       panel=None, evaluate=False)  # fmt: skip
        before = len(stub.requests)
        per_wave = [r.body for r in stub.requests if not requested(r.body)]
        out2 = run_demo(tmp_path / "demo", n_respondents=300, client=client, plan=(),
                        panel=DemoPanel(("1", "3", "5"), "pan", respondents=20, n_outputs=10),
                        evaluate=False)  # fmt: skip
        bodies = [r.body for r in stub.requests[before:]]
    assert len(out.runs) == 2 and out2.panel is not None
    assert out2.panel.rows["1"] == 20 and set(out2.panel.rows) == {"1", "3", "5"}
    steps_1_2 = [b for b in bodies if not requested(b)]
    text = [json.dumps(b["messages"]) for b in steps_1_2]
    assert steps_1_2, "wave 5's steps 1-2 are new calls"
    assert all("wave 5" in t or "Wave 5" in t for t in text), [t[:200] for t in text]
    first = [json.dumps(b["messages"]) for b in per_wave]
    assert any("Wave 1" in t or "wave 1" in t for t in first)  # the check can see a wave-1 call
    assert not any("Wave 5" in t or "wave 5" in t for t in first)


def test_the_demo_command_reports_its_panel(tmp_path: Path, monkeypatch) -> None:
    """``panelsynth demo`` announces the panel and prints where it went and what it cost (the
    local model replaced by the stub, the runs made small)."""
    from fakes import varied_rows

    import panelsynth.demo.pipeline as pipeline
    from panelsynth.cli.workspace_cmds import _panel_line
    from panelsynth.evaluate.panel_eval import PanelOutcome

    real_run_demo = pipeline.run_demo
    panel = panel_responder()
    with OpenAIStub(lambda body: panel(body) if requested(body) else varied_rows(body)) as stub:
        client = open_client("openai/stub-model", base_url=stub.base_url)

        def small(directory, **kw):  # noqa: ANN001, ANN003, ANN202
            return real_run_demo(
                directory,
                seed=kw["seed"],
                n_respondents=kw["n_respondents"],
                client=client,
                plan=(pipeline.DemoRun("1", "dense", "smollm2", n_outputs=5, n_batches=1),),
                run=kw["run"],
                panel=pipeline.DemoPanel(("1", "3"), "smollm2-panel", respondents=12),
                evaluate=False,
            )

        monkeypatch.setattr(pipeline, "run_demo", small)
        r = run_cli(["demo", str(tmp_path / "d"), "--respondents", "300"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "and a synthetic panel of 60 respondents through waves 1, 3, 5" in out
    assert "synthetic panel (smollm2-panel; respondents per wave: wave 1 12, wave 3" in out
    assert "Final_gen_data/smollm2-panel/gen_panel.csv" in out
    good = PanelOutcome(
        "smollm2-panel",
        ["1", "3"],
        summary={
            "stability_error_spearman": {"synthetic": 0.2, "_baseline_unlinked": 0.5},
            "transition_fidelity": {"synthetic": 0.9},
        },
    )
    assert _panel_line(good) == (
        "  panel smollm2-panel, waves 1, 3: stability error (Spearman) 0.200 (unlinked baseline "
        "0.500, real half —); transition fidelity 0.900"
    )
    bad = PanelOutcome("smollm2-panel", [], error="no linked waves")
    assert _panel_line(bad) == "  panel smollm2-panel: not evaluated — no linked waves"
