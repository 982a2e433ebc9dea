"""The workspace contract of SPEC §2: every path, wave ids, model dirs, discovery, scaffold."""

from __future__ import annotations

from pathlib import Path

import pytest

from panelsynth.errors import WorkspaceError
from panelsynth.workspace import (
    EVAL_TABLES,
    SCAFFOLD_DIRS,
    Workspace,
    check_model_dir,
    check_wave_id,
    wave_sort_key,
)


def test_input_paths_follow_spec_names_exactly(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    r = tmp_path.resolve()
    assert ws.root == r
    assert ws.config_path == r / "panelsynth.toml"
    assert ws.original_data("1") == r / "Original data" / "wave1.csv"
    assert ws.metadata_json("8a") == r / "Dictionaries/json_metadata/metadata_wave8a.json"
    assert ws.wave_context("14") == r / "Dictionaries/wave_contexts/wave14_context.txt"
    assert ws.var_types("3") == r / "Dictionaries/var_types/types_wave3.json"
    assert ws.user_models_dir() == r / "pydantic_models"


def test_step_logs_and_output_paths_follow_spec_names_exactly(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    r = tmp_path.resolve()
    md = "claude-sonnet-4"
    assert ws.cluster_descriptions_log(md, "1") == (
        r / "Dictionaries/cluster_descriptions/claude-sonnet-4/Wave 1 cluster descriptions.txt"
    )
    assert ws.examples_log(md, "8b") == r / "Examples/claude-sonnet-4/Wave 8b examples.txt"
    assert ws.gen_metadata_log(md, "2") == (
        r / "Gen_metadata/claude-sonnet-4/Wave 2 generated metadata.txt"
    )
    assert ws.output_csv(md, "14") == r / "Final_gen_data/claude-sonnet-4/gen_data_wave14.csv"


def test_evaluation_paths_follow_spec_names_exactly(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    r = tmp_path.resolve()
    assert ws.eval_meta("3") == r / "Evaluation/Evaluation metadata/wave3_eval_meta.json"
    assert EVAL_TABLES == ("c2st", "density_overall", "density_shape", "density_trend")
    for name in EVAL_TABLES:
        assert ws.eval_table(name) == r / "Evaluation" / "Evaluation results" / f"{name}.csv"
    assert ws.eval_table("c2st") == r / "Evaluation/Evaluation results/c2st.csv"
    assert ws.eval_plot("smollm2", "8a") == r / "Evaluation/smollm2/smollm2_wave8a_results.png"
    with pytest.raises(ValueError, match="c2sd"):
        ws.eval_table("c2sd")


@pytest.mark.parametrize("wave", [1, "1", "8a", "8b", "14", " 3 ", "w_2-b"])
def test_wave_ids_are_strings(wave: object) -> None:
    w = check_wave_id(wave)  # type: ignore[arg-type]
    assert isinstance(w, str)
    assert w == str(wave).strip()


def test_integer_wave_gives_the_same_path_as_its_string(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert ws.original_data(3) == ws.original_data("3")  # type: ignore[arg-type]
    assert ws.original_data(3).name == "wave3.csv"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["", "  ", "../1", "1/2", "a b", ".1", "-1", "1.5", "wave*", "8\na"]
)
def test_invalid_wave_ids_are_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(WorkspaceError) as info:
        Workspace(tmp_path).original_data(bad)
    msg = str(info.value)
    assert "\n" not in msg
    assert "wave id" in msg and "8a" in msg  # says what is wrong and what a valid id looks like


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "my model", "-x", "smollm2\n", None])
def test_invalid_model_dirs_are_rejected(tmp_path: Path, bad: str | None) -> None:
    ws = Workspace(tmp_path)
    with pytest.raises(WorkspaceError, match="model dir") as info:
        ws.output_csv(bad, "1")  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    with pytest.raises(WorkspaceError):
        ws.cluster_descriptions_log(bad, "1")  # type: ignore[arg-type]
    with pytest.raises(WorkspaceError):
        ws.eval_plot(bad, "1")  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["smollm2", "gpt-5", "claude_sonnet.4", "M1"])
def test_valid_model_dirs_are_kept(good: str) -> None:
    assert check_model_dir(good) == good


def test_full_mode_falls_back_to_shared_dictionary(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    shared_meta = tmp_path / "Dictionaries/json_metadata/metadata_wave2.json"
    shared_types = tmp_path / "Dictionaries/var_types/types_wave2.json"
    # no full/ file: every mode reads the shared one
    assert ws.metadata_json("2", "full") == shared_meta.resolve()
    assert ws.var_types("2", "full") == shared_types.resolve()
    # a full/ file exists: the full mode reads it, dense (and no mode) still read the shared one
    full_meta = tmp_path / "Dictionaries/json_metadata/full/metadata_wave2.json"
    full_types = tmp_path / "Dictionaries/var_types/full/types_wave2.json"
    for p in (full_meta, full_types):
        p.parent.mkdir(parents=True)
        p.write_text("{}")
    assert ws.metadata_json("2", "full") == full_meta.resolve()
    assert ws.var_types("2", "full") == full_types.resolve()
    assert ws.metadata_json("2", "dense") == shared_meta.resolve()
    assert ws.var_types("2") == shared_types.resolve()
    # the full/ file of another wave does not leak
    assert ws.metadata_json("3", "full").parent.name == "json_metadata"


def test_write_paths_pick_full_folder_only_for_full_mode(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    r = tmp_path.resolve()
    assert ws.metadata_json_for_write("1") == r / "Dictionaries/json_metadata/metadata_wave1.json"
    assert ws.metadata_json_for_write("1", "dense") == ws.metadata_json_for_write("1")
    assert ws.metadata_json_for_write("1", "full") == (
        r / "Dictionaries/json_metadata/full/metadata_wave1.json"
    )
    assert (
        ws.var_types_for_write("8a", "full") == r / "Dictionaries/var_types/full/types_wave8a.json"
    )
    assert ws.var_types_for_write("8a") == r / "Dictionaries/var_types/types_wave8a.json"


def test_waves_with_data_are_in_study_order(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert ws.waves_with_data() == []  # no folder yet
    folder = tmp_path / "Original data"
    folder.mkdir()
    for w in ("14", "8b", "2", "8a", "1"):
        (folder / f"wave{w}.csv").write_text("cluster\n1\n")
    # files that are not waves are ignored
    (folder / "wave.csv").write_text("")
    (folder / "wave1 copy.csv").write_text("")
    (folder / "wave3.xlsx").write_text("")
    (folder / "notes.csv").write_text("")
    assert ws.waves_with_data() == ["1", "2", "8a", "8b", "14"]


def test_wave_sort_key_orders_numbers_then_suffixes() -> None:
    waves = ["14", "8b", "10", "8", "8a", "2", "1", "baseline"]
    assert sorted(waves, key=wave_sort_key) == ["1", "2", "8", "8a", "8b", "10", "14", "baseline"]


def test_generated_waves_and_model_dirs_with_output(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert ws.model_dirs_with_output() == []
    for md, waves in (("b-model", ("14", "2")), ("a-model", ("8a",))):
        ws.output_dir(md).mkdir(parents=True)
        for w in waves:
            ws.output_csv(md, w).write_text("x\n1\n")
    (tmp_path / "Final_gen_data" / "empty-model").mkdir()
    assert ws.model_dirs_with_output() == ["a-model", "b-model"]
    assert ws.generated_waves("b-model") == ["2", "14"]
    assert ws.generated_waves("empty-model") == []


def test_scaffold_creates_every_spec_folder_once(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "study")
    created = ws.scaffold()
    expected = [
        "Original data",
        "Dictionaries/json_metadata",
        "Dictionaries/wave_contexts",
        "Dictionaries/var_types",
        "Dictionaries/cluster_descriptions",
        "Examples",
        "Gen_metadata",
        "Final_gen_data",
        "Evaluation/Evaluation metadata",
        "Evaluation/Evaluation results",
        "pydantic_models",
    ]
    for rel in expected:
        assert (tmp_path / "study" / rel).is_dir(), rel
    assert sorted(SCAFFOLD_DIRS) == sorted(expected)
    assert sorted(created) == sorted(ws.root / rel for rel in expected)
    # a user's file survives a second scaffold, which creates nothing
    keep = ws.original_data("1")
    keep.write_text("cluster\n1\n")
    assert ws.scaffold() == []
    assert keep.read_text() == "cluster\n1\n"


def test_require_names_the_relative_path_and_the_fix(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    path = ws.wave_context("2")
    with pytest.raises(WorkspaceError) as info:
        ws.require(path, "wave context", "write it first")
    assert str(info.value) == (
        "wave context not found: Dictionaries/wave_contexts/wave2_context.txt — write it first"
    )
    path.parent.mkdir(parents=True)
    path.write_text("x")
    assert ws.require(path, "wave context", "write it first") == path


def test_root_is_resolved_from_relative_and_home_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Workspace("ws").root == (tmp_path / "ws").resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Workspace("~/ws").root == (tmp_path / "ws").resolve()
