"""`panelsynth evaluate` finds linked synthetic waves and writes the panel figures (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evalhelpers import workspace_folders
from panelgen import ITEMS, make_panel
from typer.testing import CliRunner

from panelsynth.evaluate import evaluate_workspace
from panelsynth.evaluate.panel_eval import PANEL_PLOT, linked_runs
from panelsynth.workspace import Workspace

ID = "respondent_id"
WAVES = ["1", "2", "3"]
LIKERT = {str(i): f"level {i}" for i in range(1, 6)}


def _workspace(root: Path, real: dict[str, pd.DataFrame]) -> Path:
    workspace_folders(root, '[study]\nname = "panel test"\n')
    for w, frame in real.items():
        frame.to_csv(root / "Original data" / f"wave{w}.csv", index=False)
        types = {q: "an ordinal" for q in ITEMS}
        meta = {q: {"question": f"Item {q}?", "responses": LIKERT} for q in ITEMS}
        (root / "Dictionaries/var_types" / f"types_wave{w}.json").write_text(json.dumps(types))
        (root / "Dictionaries/json_metadata" / f"metadata_wave{w}.json").write_text(
            json.dumps(meta)
        )
        (root / "Dictionaries/wave_contexts" / f"wave{w}_context.txt").write_text(f"Wave {w}.")
    return root


def _write(root: Path, md: str, frames: dict[str, pd.DataFrame]) -> None:
    for w, f in frames.items():
        path = root / "Final_gen_data" / md / f"gen_data_wave{w}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        f.to_csv(path, index=False)


def _synthetic_ids(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The real panel under synthetic ids (S01001, ...), the same person in every wave."""
    out = {}
    for w, f in frames.items():
        f = f.copy()
        f[ID] = [f"S{int(i):05d}" for i in f[ID]]
        out[w] = f
    return out


def _shuffled(frames: dict[str, pd.DataFrame], seed: int = 3) -> dict[str, pd.DataFrame]:
    """Each wave's rows handed to other respondents (ids permuted within the wave)."""
    rng = np.random.default_rng(seed)
    out = {}
    for w, f in frames.items():
        f = f.copy()
        f[ID] = rng.permutation(f[ID].to_numpy())
        out[w] = f
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory):
    real = make_panel(260, 3, seed=5, persistence=0.8)
    root = _workspace(tmp_path_factory.mktemp("panel") / "ws", real)
    copy = _synthetic_ids(real)
    _write(root, "copy", copy)
    _write(root, "shuffled", _shuffled(copy))
    _write(root, "perwave", {w: f.drop(columns=ID) for w, f in copy.items()})
    summary = evaluate_workspace(root, seed=3)
    return root, summary


def _doc(root: Path, md: str, w: str) -> dict:
    return json.loads(Workspace(root).eval_metrics_json(md, w).read_text())


def test_copied_panel_has_zero_stability_error_and_shuffled_a_clearly_larger_one(evaluated):
    root, summary = evaluated
    panels = {p.model_dir: p for p in summary.panels}
    assert set(panels) == {"copy", "shuffled"}  # per-wave output: no ids, no panel
    for p in panels.values():
        assert p.error is None and p.waves == WAVES
    copy = panels["copy"].summary
    shuffled = panels["shuffled"].summary
    assert copy["stability_error_unchanged"]["synthetic"] == pytest.approx(0, abs=1e-9)
    assert copy["stability_error_spearman"]["synthetic"] == pytest.approx(0, abs=1e-9)
    assert copy["transition_fidelity"]["synthetic"] == pytest.approx(1)
    assert shuffled["stability_error_unchanged"]["synthetic"] > 0.3
    # the unlinked baseline cuts the copy's links: it loses the persistence
    assert copy["stability_error_unchanged"]["_baseline_unlinked"] > 0.3
    for key in ("_real_holdout", "_baseline_cart_panel"):
        assert copy["stability_error_unchanged"][key] is not None


def test_panel_section_in_the_last_wave_and_pointers_in_the_others(evaluated):
    root, _ = evaluated
    last = _doc(root, "copy", "3")["panel"]
    assert last["waves"] == WAVES and last["pairs"] == ["1-2", "2-3"]
    assert set(last["candidates"]) == {
        "synthetic",
        "_real_holdout",
        "_baseline_unlinked",
        "_baseline_cart_panel",
    }
    assert last["model_dir"] == "copy" and last["reference"] == "real panel"
    assert set(last["items"]) == set(ITEMS)
    for w in ("1", "2"):
        assert _doc(root, "copy", w)["panel"] == {
            "section_in": "wave3_metrics.json",
            "waves": WAVES,
            "model_dir": "copy",
        }
    for w in WAVES:
        assert "panel" not in _doc(root, "perwave", w)
    ws = Workspace(root)
    png = ws.eval_dir("copy") / PANEL_PLOT
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (ws.eval_dir("perwave") / PANEL_PLOT).exists()


def test_report_has_a_panel_section_with_readings_table_and_plot(evaluated):
    root, _ = evaluated
    html = Workspace(root).report_html().read_text()
    panel = html[html.index("<h2 id='panel'>Panel</h2>") : html.index("Per model and wave")]
    assert "copy — waves 1, 2, 3" in panel and "shuffled — waves 1, 2, 3" in panel
    assert "perwave" not in panel
    for label in ("Stability error: unchanged share", "Transition fidelity", "Trajectory C2ST"):
        assert label in panel
    assert "unlinked per-wave rows" in panel and "CART panel" in panel
    assert "as stable as the real one" in panel  # the copy's reading
    assert "no better than pairing per-wave rows at random" in panel  # the shuffled one's
    assert panel.count("data:image/png;base64") == 2


def test_workspace_without_linked_ids_gets_no_panel_section(tmp_path: Path):
    real = make_panel(150, 2, seed=6)
    root = _workspace(tmp_path / "ws", real)
    # ids present but each wave's ids are new people: nothing links
    frames = {}
    for w, f in _synthetic_ids(real).items():
        f = f.copy()
        f[ID] = [f"W{w}-{i}" for i in range(len(f))]
        frames[w] = f
    _write(root, "strangers", frames)
    summary = evaluate_workspace(root, seed=1)
    assert summary.panels == [] and not summary.failures
    for w in ("1", "2"):
        assert "panel" not in _doc(root, "strangers", w)
    assert "<h2 id='panel'>" not in Workspace(root).report_html().read_text()


def test_linked_runs_split_where_ids_do_not_link():
    f = {
        "1": pd.DataFrame({ID: ["a", "b"]}),
        "2": pd.DataFrame({ID: ["a", "c"]}),
        "3": pd.DataFrame({ID: ["x", "y"]}),
        "4": pd.DataFrame({ID: ["x"]}),
        "5": pd.DataFrame({ID: ["x"]}),
    }
    assert linked_runs(f, ["1", "2", "3", "4", "5"], ID) == [["1", "2"], ["3", "4", "5"]]
    assert linked_runs({k: f[k] for k in ("1", "3")}, ["1", "2", "3"], ID) == []


def test_cli_prints_the_stability_error_of_the_panel_and_the_unlinked_baseline(evaluated):
    from panelsynth.cli import app

    root, _ = evaluated
    res = CliRunner().invoke(app, ["evaluate", "-w", str(root), "--model-dir", "shuffled"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("shuffled panel, waves"))
    assert "waves 1, 2, 3 — stability error" in line
    unchanged = float(line.split("unlinked baseline ")[1].split(" |")[0])
    assert unchanged > 0.3  # the must-show's "at least 0.1", printed
    assert "synthetic 0." in line and "CART panel" in line and "real half" in line


def test_holdout_run_is_read_against_the_held_out_respondents(tmp_path: Path):
    real = make_panel(240, 2, seed=8, persistence=0.8)
    root = _workspace(tmp_path / "ws", real)
    copy = _synthetic_ids(real)
    _write(root, "held", copy)
    ws = Workspace(root)
    for w, f in copy.items():
        manifest = {
            "mode": "dense",
            "status": "complete",
            "rows": len(f),
            "holdout": {"enabled": True, "share": 0.3, "seed": 7, "id_column": ID},
        }
        ws.manifest("held", w).write_text(json.dumps(manifest))
    summary = evaluate_workspace(root, seed=2)
    assert not summary.failures and [p.reference for p in summary.panels] == [
        "held-out respondents"
    ]
    section = _doc(root, "held", "2")["panel"]
    n_held = section["respondents"]["real_first_wave"]
    assert 0.15 * len(real["1"]) < n_held < 0.45 * len(real["1"])
    assert section["respondents"]["synthetic_first_wave"] == len(real["1"])
    assert any("--holdout run" in n for n in section["notes"])
    assert section["summary"]["stability_error_unchanged"]["synthetic"] is not None


def test_evaluating_fewer_waves_later_leaves_no_dangling_pointer(tmp_path: Path):
    real = make_panel(150, 3, seed=9)
    root = _workspace(tmp_path / "ws", real)
    _write(root, "p", _synthetic_ids(real))
    evaluate_workspace(root, seed=1)
    assert _doc(root, "p", "1")["panel"]["section_in"] == "wave3_metrics.json"
    summary = evaluate_workspace(root, waves=["2", "3"], seed=1)
    assert [p.waves for p in summary.panels] == [["2", "3"]]
    assert "panel" not in _doc(root, "p", "1")  # its pointer named waves 1-3
    assert _doc(root, "p", "2")["panel"]["waves"] == ["2", "3"]
    summary = evaluate_workspace(root, waves=["3"], seed=1)
    assert summary.panels == []
    assert "panel" not in _doc(root, "p", "2") and "panel" not in _doc(root, "p", "3")
