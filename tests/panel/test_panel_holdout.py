"""``panelsynth run --panel --holdout`` (issues 19 + 16): held-out respondents never reach the
panel — not steps 1-3, not the trajectory examples, not the host's structure, not the default
respondent count — and ``panelsynth evaluate`` scores the panel against them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panelstub import panel_responder, requested, run_cli
from panelws import write_panel_workspace
from servers.openai_stub import OpenAIStub

from panelsynth.config import load_config
from panelsynth.evaluate.panel_report import panel_reading
from panelsynth.holdout import held_out_mask
from panelsynth.panel.setup import panel_config, panel_draw
from panelsynth.run.plan import RunOptions
from panelsynth.workspace import Workspace

ID = "respondent_id"
SHARE, SEED = 0.3, 7


def _args(ws: Path, url: str, *extra: str, seed: int = SEED) -> list[str]:
    return [
        "run", "-w", str(ws), "--panel", "--waves", "1,2,3", "--model", "openai/stub-model",
        "--base-url", url, "--model-dir", "panel", "--n-outputs", "4", "--concurrency", "1",
        "--seed", str(seed), "--yes", *extra,
    ]  # fmt: skip


def _held_out(ids: pd.Series) -> pd.Series:
    return pd.Series(held_out_mask(ids, SHARE, SEED), index=ids.index)


def _write_reentry_only_in_held_out(root: Path) -> set[str]:
    """A panel without re-entry among the training respondents, where half the held-out people
    skip wave 2 and come back in wave 3 (a pattern only the held-out respondents show). Ids are
    text (``P1001Q``) so a search of the requests cannot match an unrelated number."""
    ws = Workspace(root)
    frames = {w: pd.read_csv(ws.original_data(w)) for w in ("1", "2", "3")}
    for f in frames.values():
        f[ID] = "P" + f[ID].astype(str) + "Q"
    held = set(frames["1"].loc[_held_out(frames["1"][ID]), ID])
    assert 8 <= len(held) <= 30
    skip = set(sorted(held)[::2])
    frames["2"] = frames["2"][~frames["2"][ID].isin(skip)]
    w3 = frames["3"]
    back = frames["1"][frames["1"][ID].isin(skip) & ~frames["1"][ID].isin(w3[ID])].copy()
    back["prev_cluster"] = pd.NA
    w3 = pd.concat([w3[~w3[ID].isin(skip)], w3[w3[ID].isin(skip)].assign(prev_cluster=pd.NA)])
    frames["3"] = pd.concat([w3, back], ignore_index=True)
    for w, f in frames.items():
        f.to_csv(ws.original_data(w), index=False)
    return held


@pytest.fixture
def panel_ws(tmp_path: Path) -> tuple[Path, set[str]]:
    root = write_panel_workspace(tmp_path / "ws", n=60, waves=3, reentry=0.0, seed=3)
    return root, _write_reentry_only_in_held_out(root)


def _texts(stub: OpenAIStub) -> list[str]:
    return [json.dumps(r.body, ensure_ascii=False) for r in stub.requests]


def test_held_out_respondents_reach_no_request_log_or_structure(
    panel_ws: tuple[Path, set[str]], tmp_path: Path
) -> None:
    root, held = panel_ws
    ws = Workspace(root)
    training = set(pd.read_csv(ws.original_data("1"))[ID]) - held
    with OpenAIStub(panel_responder()) as stub:
        r = run_cli(_args(root, stub.base_url, "--holdout", str(SHARE)))
        assert r.exit_code == 0, r.output
        bodies = _texts(stub)
    sent = "\n".join(bodies)
    assert not [i for i in held if i in sent]  # steps 1-3 of every wave, trajectories included
    logs = "\n".join(p.read_text() for p in ws.root.rglob("Examples/**/*") if p.is_file())
    assert not [i for i in held if i in logs]
    assert [i for i in training if i in logs]  # the trajectory logs name real respondents

    # the same run on the training respondents alone sends byte-identical requests
    alone = write_panel_workspace(tmp_path / "alone", n=2, waves=3)
    for w in ("1", "2", "3"):
        f = pd.read_csv(ws.original_data(w))
        f[~f[ID].isin(held)].to_csv(Workspace(alone).original_data(w), index=False)
        for src in (ws.metadata_json(w), ws.var_types(w), ws.wave_context(w)):
            shutil.copy(src, Workspace(alone).root / src.relative_to(ws.root))
    with OpenAIStub(panel_responder()) as stub:
        r = run_cli(_args(alone, stub.base_url, "--holdout", str(SHARE)))
        assert r.exit_code == 0, r.output
        assert _texts(stub) == bodies

    # the structure: re-entry is a held-out-only pattern, so the panel has none
    panel = json.loads((ws.output_dir("panel") / "panel_manifest.json").read_text())
    assert all(v == 0 for v in panel["structure"]["reentry"]["2-3"].values())
    assert all("reentered" not in w or w["reentered"] == 0 for w in panel["draw"]["waves"])
    out = {w: pd.read_csv(ws.output_csv("panel", w), dtype={ID: str}) for w in ("1", "2", "3")}
    assert set(out["3"][ID]) <= set(out["2"][ID])
    # default N: the first wave's training respondents
    assert panel["respondents"] == len(training) == len(out["1"])


def test_the_structure_is_estimated_from_the_training_respondents(
    panel_ws: tuple[Path, set[str]],
) -> None:
    root, held = panel_ws
    ws = Workspace(root)
    config = load_config(ws.config_path)
    every = panel_draw(ws, config, ["1", "2", "3"], None, SEED)
    assert max(every.structure.reentry()["2-3"].values()) > 0.5  # the pattern is there
    assert every.respondents == 60 and every.holdout is None
    cfg = panel_config(config, RunOptions(holdout=SHARE), SEED)
    split = panel_draw(ws, cfg, ["1", "2", "3"], None, SEED)
    assert max(split.structure.reentry()["2-3"].values()) == 0
    assert split.respondents == 60 - len(held)
    assert split.held_out["1"] == (60 - len(held), len(held))


def test_split_is_recorded_resume_with_another_share_is_refused_and_evaluated(
    panel_ws: tuple[Path, set[str]],
) -> None:
    root, held = panel_ws
    ws = Workspace(root)
    with OpenAIStub(panel_responder()) as stub:
        r = run_cli(_args(root, stub.base_url, "--holdout", str(SHARE)))
        assert r.exit_code == 0, r.output
        for extra, seed in ((["--holdout", "0.2"], SEED), ([], SEED), (["--holdout", "0.3"], 8)):
            stub.reset()
            r = run_cli(_args(root, stub.base_url, "--resume", *extra, seed=seed))
            assert r.exit_code == 2, r.output
            lines = [line for line in r.output.splitlines() if line.strip()]
            assert len(lines) == 1 and "--holdout" in lines[0], r.output
            assert stub.requests == []  # refused before any call
        stub.reset()
        r = run_cli(_args(root, stub.base_url, "--resume", "--holdout", str(SHARE)))
        assert r.exit_code == 0, r.output
        assert not [b for b in stub.requests if requested(b.body)]  # nothing paid again

    ids = pd.read_csv(ws.holdout_ids(), dtype=str)
    assert set(ids["model_dir"]) == {"panel"} and set(ids["wave"]) == {"1", "2", "3"}
    for w in ("1", "2", "3"):
        real = pd.read_csv(ws.original_data(w))
        want = set(real.loc[real[ID].isin(held), ID])
        assert set(ids.loc[ids["wave"] == w, "respondent_id"]) == want
        m = json.loads(ws.manifest("panel", w).read_text())
        assert m["holdout"]["enabled"] and m["holdout"]["share"] == SHARE
        assert m["holdout"]["seed"] == SEED and m["holdout"]["held_out_respondents"] == len(want)
        header = json.loads(ws.checkpoint("panel", w).read_text().splitlines()[0])
        assert header["header"]["holdout"] == {"share": SHARE, "seed": SEED, "id_column": ID}
    panel = json.loads((ws.output_dir("panel") / "panel_manifest.json").read_text())
    h = panel["holdout"]
    assert h["enabled"] and h["ids_file"] == ws.rel(ws.holdout_ids())
    assert h["per_wave"]["1"]["held_out_respondents"] == len(held)

    r = run_cli(["evaluate", "-w", str(root), "--model-dir", "panel"])
    assert r.exit_code == 0, r.output
    doc = json.loads(ws.eval_metrics_json("panel", "3").read_text())
    section = doc["panel"]
    assert section["reference"] == "held-out respondents"
    assert section["respondents"]["real_first_wave"] == len(held)
    assert section["summary"]["transition_fidelity"]["synthetic"] is not None
    assert section["respondents"]["training_first_wave"] == 60 - len(held)
    assert section["floor"].startswith("--holdout runs")  # training respondents vs held-out
    line = next(x for x in r.output.splitlines() if "stability error" in x)
    assert "(vs held-out respondents)" in line and "training respondents" in line
    report = ws.report_html().read_text()
    assert "read against the held-out respondents" in report and "Floor: --holdout runs" in report
    # the reading names the floor by what it is: training respondents, not a real half
    reading = " ".join(panel_reading(section))
    assert "training-respondents floor" in reading and "real-half" not in reading


def test_a_holdout_floor_scores_training_respondents_against_the_held_out_ones() -> None:
    from panelgen import ITEMS, make_panel

    from panelsynth.evaluate.longitudinal import (
        panel_section,
        real_half_floor,
        sample_respondents,
    )

    held = make_panel(80, 3, seed=5, reentry=0.0)
    copy = {w: f.assign(**{ID: f[ID] + 100_000}) for w, f in held.items()}  # same answers
    kw = {"id_column": ID, "items": ITEMS, "repeats": 2}
    floor = real_half_floor(held, ["1", "2", "3"], train=copy, **kw)
    assert floor["stability_error_unchanged"] == 0 and floor["transition_fidelity"] == 1
    halves = real_half_floor(held, ["1", "2", "3"], **kw)
    assert halves["stability_error_unchanged"] > 0
    more = {w: pd.concat([f, f.assign(**{ID: f[ID] + 1_000_000})]) for w, f in copy.items()}
    section = panel_section(held, held, id_column=ID, items=ITEMS, train=more, floor_repeats=2)
    assert section["respondents"]["training_first_wave"] == 160
    assert section["floor"].startswith("--holdout runs")
    # the floor's sample: as many training respondents as held-out ones, every wave of each
    part = sample_respondents(more, 80, ID, np.random.default_rng(0))
    ids = {w: set(f[ID]) for w, f in part.items()}
    assert len(ids["1"] | ids["2"] | ids["3"]) == 80
    assert ids["2"] <= ids["1"] and len(part["1"]) == 80


def test_the_config_key_holds_respondents_out_of_a_panel_dry_run(
    panel_ws: tuple[Path, set[str]],
) -> None:
    root, held = panel_ws
    ws = Workspace(root)
    text = ws.config_path.read_text().replace(
        "[generation]\n", f"[generation]\nholdout = {SHARE}\n", 1
    )
    ws.config_path.write_text(text)
    r = run_cli([*_args(root, "http://127.0.0.1:9/v1"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert f"Panel: {60 - len(held)} synthetic respondents drawn" in " ".join(r.output.split())
    assert not ws.holdout_ids().exists()  # a dry run writes nothing
