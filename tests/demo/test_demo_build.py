"""The demo workspace on disk: SPEC §2 files, loading, determinism, never clobbering user data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from panelsynth.config import load_config
from panelsynth.data import load_wave
from panelsynth.demo import DemoResult, build_demo
from panelsynth.dictionaries import load_metadata, load_var_types, metadata_from_csv
from panelsynth.errors import ConfigError, WorkspaceError
from panelsynth.workspace import Workspace

WAVES = [str(w) for w in range(1, 8)]


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_spec_files_exist_for_every_wave(demo_result: DemoResult) -> None:
    ws = demo_result.workspace
    assert demo_result.waves == WAVES
    for w in WAVES:
        for path in (
            ws.original_data(w),
            ws.raw_dir() / f"wave{w}.csv",
            ws.metadata_json(w),
            ws.metadata_json(w, "full"),
            ws.var_types(w),
            ws.var_types(w, "full"),
            ws.wave_context(w),
            ws.ground_truth_dir() / f"truth_wave{w}.csv",
        ):
            assert path.is_file(), path
    assert ws.metadata_json("1", "full") != ws.metadata_json("1")
    assert ws.study_dictionary().is_file()
    assert (ws.ground_truth_dir() / "ground_truth.json").is_file()
    assert (ws.root / ".panelsynth" / "demo.json").is_file()
    assert (ws.root / "Final_gen_data").is_dir()  # the SPEC §2 scaffold is there too


@pytest.mark.parametrize("mode", ["dense", "full"])
def test_every_wave_loads(demo_result: DemoResult, mode: str) -> None:
    ws = demo_result.workspace
    for w in WAVES:
        wave = load_wave(ws, w, mode=mode, missing_codes=[-99, -98])  # type: ignore[arg-type]
        assert wave.clusters == [1, 2]
        assert len(wave.frame) == len(demo_result.panel.truth[w])
        assert (wave.prev_cluster_column is None) == (w == "1")


def test_metadata_covers_exactly_the_var_types(demo_result: DemoResult) -> None:
    ws = demo_result.workspace
    for w in WAVES:
        for mode in ("dense", "full"):
            meta = load_metadata(ws.metadata_json(w, mode))  # type: ignore[arg-type]
            types = load_var_types(ws.var_types(w, mode))  # type: ignore[arg-type]
            assert list(meta) == list(types), (w, mode)


def test_dense_and_full_variables(demo_result: DemoResult) -> None:
    ws = demo_result.workspace
    gt = json.loads((ws.ground_truth_dir() / "ground_truth.json").read_text())
    for w in WAVES:
        dense = load_var_types(ws.var_types(w))
        full = load_var_types(ws.var_types(w, "full"))
        items = [v for v, t in dense.items() if t == "an ordinal"]
        assert items == demo_result.dense_items[w] == gt["waves"][w]["dense_items"]
        mi = gt["waves"][w]["item_separation_mi"]
        assert min(mi[i] for i in items) >= max(v for k, v in mi.items() if k not in items)
        assert dense["age"] == "a continuous" and dense["sex"] == "a binary"
        assert set(dense) <= set(full)
        assert len([t for t in full.values() if t == "an ordinal"]) >= 8
        assert set(full) - {"age", "sex", "already_vaccinated"} == set(gt["waves"][w]["items"])


def test_outcome_and_prev_cluster_from_wave_3(demo_result: DemoResult) -> None:
    ws = demo_result.workspace
    for w in WAVES:
        df = pd.read_csv(ws.original_data(w))
        has_outcome = int(w) >= 3
        assert ("already_vaccinated" in df.columns) == has_outcome
        for mode in ("dense", "full"):
            types = load_var_types(ws.var_types(w, mode))  # type: ignore[arg-type]
            assert (types.get("already_vaccinated") == "a binary") == has_outcome
        assert ("prev_cluster" in df.columns) == (w != "1")
        assert set(df["cluster"]) == {1, 2}
        if has_outcome:
            assert set(df["already_vaccinated"].dropna()) == {0, 1}
            assert df["prev_cluster"].isna().any()  # someone skipped the previous wave
            assert set(df["prev_cluster"].dropna()) == {1, 2}


def test_raw_files_carry_missing_codes_and_original_data_does_not(demo_result: DemoResult) -> None:
    ws = demo_result.workspace
    for w in WAVES:
        raw = pd.read_csv(ws.raw_dir() / f"wave{w}.csv")
        orig = pd.read_csv(ws.original_data(w))
        assert "cluster" not in raw.columns and "prev_cluster" not in raw.columns
        values = raw.drop(columns="respondent_id").to_numpy()
        assert (values == -99).any() and (values == -98).any()
        assert not raw.isna().any().any()
        answers = orig[raw.columns].drop(columns="respondent_id")
        assert (answers.fillna(0) >= 0).all().all()
        assert answers.isna().sum().sum() == (values < 0).sum()
        assert (answers.fillna(-1).to_numpy() == pd.DataFrame(values).clip(lower=-1)).all().all()
        assert list(raw["respondent_id"]) == list(orig["respondent_id"])


def test_dictionary_round_trips_through_the_converter(demo_result: DemoResult) -> None:
    ws = demo_result.workspace
    meta = metadata_from_csv(ws.study_dictionary())
    assert len(meta) == 1 + 10 + 3  # respondent_id, items, age, sex, already_vaccinated
    assert (
        meta["doctortrust"].question == "How much do you trust your doctor's advice about vaccines?"
    )
    assert meta["howlongagovaccine"].responses is not None
    assert meta["howlongagovaccine"].responses["2"] == "1 to 2 years ago"
    assert meta["vaccimportant"].responses is not None
    assert len(meta["vaccimportant"].responses) == 5
    assert meta["vaccimportant"].responses["5"] == "Extremely important"
    assert meta["sex"].responses == {"1": "Male", "2": "Female"}
    assert meta["already_vaccinated"].responses == {"0": "No", "1": "Yes"}
    assert meta["age"].range == (18.0, 90.0)
    full1 = load_metadata(ws.metadata_json("1", "full"))
    assert full1["vaccsafe"] == meta["vaccsafe"]


def test_contexts_name_time_target_and_previous_wave(demo_result: DemoResult) -> None:
    ws = demo_result.workspace
    first = ws.wave_context("1").read_text()
    assert "autumn 2016" in first and "Previous wave: none" in first
    assert "Target variable: vaccimportant" in first
    third = ws.wave_context("3").read_text()
    assert "Target variable: already_vaccinated" in third
    assert "Previous wave: wave 2" in third and "autumn 2017" in third


def test_config_is_valid_and_points_at_the_demo(demo_result: DemoResult) -> None:
    cfg = load_config(demo_result.workspace.config_path)
    assert cfg.study.waves == WAVES
    assert cfg.study.outcome == "already_vaccinated"
    assert cfg.study.missing_codes == [-99, -98]
    assert cfg.clustering.orientation_item == "vaccimportant"
    assert cfg.model_dir_for("local/smollm2") == "smollm2"


def test_ground_truth_matches_the_result(demo_result: DemoResult) -> None:
    ws = demo_result.workspace
    gt = json.loads((ws.ground_truth_dir() / "ground_truth.json").read_text())
    assert gt["seed"] == 2024 and gt["n_respondents"] == 2000
    assert gt["parameters"]["transition"]["from_1"]["1"] >= 0.85
    for w in WAVES:
        acc = demo_result.bayes_accuracy[w]
        assert 0.80 <= acc <= 0.95
        assert gt["waves"][w]["bayes_accuracy"] == pytest.approx(acc, abs=1e-6)
        assert gt["waves"][w]["bayes_ari"] == pytest.approx(demo_result.bayes_ari[w], abs=1e-6)
        truth = pd.read_csv(ws.ground_truth_dir() / f"truth_wave{w}.csv")
        orig = pd.read_csv(ws.original_data(w))
        assert list(truth.columns[:4]) == [
            "respondent_id",
            "true_class",
            "posterior_class1",
            "bayes_class",
        ]
        assert (truth["true_class"] == orig["cluster"]).all()
        assert (truth["bayes_class"] == truth["true_class"]).mean() == pytest.approx(acc)
        assert truth["posterior_class1"].between(0, 1).all()


def test_same_seed_gives_byte_identical_workspaces(demo_workspace: Path, tmp_path: Path) -> None:
    again = build_demo(tmp_path / "again", seed=2024)
    first, second = _all_bytes(demo_workspace), _all_bytes(again.workspace.root)
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def test_different_seed_gives_different_data(demo_workspace: Path, tmp_path: Path) -> None:
    other = build_demo(tmp_path / "other", seed=2025)
    name = "Original data/wave1.csv"
    assert (demo_workspace / name).read_bytes() != (other.workspace.root / name).read_bytes()
    assert other.bayes_accuracy != pytest.approx({w: 0.0 for w in WAVES})
    assert all(0.80 <= a <= 0.95 for a in other.bayes_accuracy.values())


def test_rebuilding_a_demo_folder_is_allowed(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    build_demo(target, seed=9, n_respondents=300)
    before = _all_bytes(target)
    user_output = target / "Final_gen_data" / "smollm2" / "gen_data_wave1.csv"
    user_output.parent.mkdir(parents=True, exist_ok=True)
    user_output.write_text("kept\n")
    build_demo(target, seed=9, n_respondents=300)
    after = _all_bytes(target)
    assert user_output.read_text() == "kept\n"
    after.pop(str(user_output.relative_to(target)))
    assert after == before


def test_refuses_a_non_empty_foreign_folder(tmp_path: Path) -> None:
    target = tmp_path / "mystudy"
    target.mkdir()
    precious = target / "wave1.csv"
    precious.write_text("respondent_id,x\n1,2\n")
    with pytest.raises(WorkspaceError) as err:
        build_demo(target)
    msg = str(err.value)
    assert "\n" not in msg and "not empty" in msg and "choose a new or empty folder" in msg
    assert sorted(p.name for p in target.iterdir()) == ["wave1.csv"]
    assert precious.read_text() == "respondent_id,x\n1,2\n"


def test_refuses_a_file_and_a_tiny_panel(tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(WorkspaceError, match="not a folder"):
        build_demo(a_file)
    with pytest.raises(ConfigError, match="at least 50"):
        build_demo(tmp_path / "tiny", n_respondents=10)
    assert not (tmp_path / "tiny").exists()


def test_empty_existing_folder_is_fine(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    result = build_demo(target, seed=3, n_respondents=200)
    assert Workspace(target).original_data("7").is_file()
    assert len(result.bayes_accuracy) == 7


def test_cli_demo_builds_and_reports_accuracy(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from panelsynth.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["demo", str(tmp_path / "d"), "--respondents", "300", "--build-only"])
    assert res.exit_code == 0, res.output
    assert res.output.count("Bayes-optimal class accuracy") == 7
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["demo", str(foreign), "--build-only"])
    assert res.exit_code == 2
    assert "not a panelsynth demo workspace" in res.output
    assert "Traceback" not in res.output
