"""``panelsynth init`` and ``panelsynth metadata ...`` through the CLI runner; config errors via the
installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.scaffold import config_template

SPEC_FOLDERS = [
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

DICTIONARY = (
    "variable,question,responses\n"
    'vaccimportant,How important is it to get vaccinated?,"1=Not at all; 2=Somewhat; 3=Very"\n'
    "age,Age in years,18-90\n"
)


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _assert_user_error(result, *fragments: str) -> str:
    """Exit code 2, exactly one ``Error: ...`` line on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def _init(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    assert _invoke("init", str(ws)).exit_code == 0
    return ws


# ----- init --------------------------------------------------------------------------------------


def test_init_creates_spec_layout(tmp_path: Path) -> None:
    ws = tmp_path / "new study"
    result = _invoke("init", str(ws))
    assert result.exit_code == 0, result.output
    assert f"Workspace ready at {ws.resolve()}" in result.stdout
    for rel in SPEC_FOLDERS:
        assert (ws / rel).is_dir(), rel
    toml = ws / "panelsynth.toml"
    assert toml.read_text("utf-8") == config_template()
    assert "[generation]" in toml.read_text()
    script = ws / "run_data_gen_pipeline.py"
    assert "panelsynth.cli.seed" in script.read_text()
    # the written config is valid and gives the defaults
    from panelsynth.config import PanelsynthConfig, load_config

    assert load_config(toml) == PanelsynthConfig()


def test_init_never_overwrites_an_existing_config_or_script(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    mine = '[study]\nname = "mine"\n'
    (ws / "panelsynth.toml").write_text(mine)
    (ws / "run_data_gen_pipeline.py").write_text("# my edits\n")
    (ws / "Original data").mkdir()
    (ws / "Original data" / "wave1.csv").write_text("cluster\n1\n")
    for _ in range(2):
        result = _invoke("init", str(ws))
        assert result.exit_code == 0, result.output
    assert (ws / "panelsynth.toml").read_text() == mine
    assert (ws / "run_data_gen_pipeline.py").read_text() == "# my edits\n"
    assert (ws / "Original data" / "wave1.csv").read_text() == "cluster\n1\n"
    assert (ws / "Examples").is_dir()


def test_init_on_a_file_is_a_user_error(tmp_path: Path) -> None:
    f = tmp_path / "study.txt"
    f.write_text("keep me")
    result = _invoke("init", str(f))
    _assert_user_error(result, "exists and is not a folder")
    assert f.read_text() == "keep me"


# ----- metadata from-csv ------------------------------------------------------------------------


def test_metadata_from_csv_writes_json(tmp_path: Path) -> None:
    ws = _init(tmp_path)
    d = tmp_path / "dict.csv"
    d.write_text(DICTIONARY)
    result = _invoke("metadata", "from-csv", str(d), "--wave", "8a", "--workspace", str(ws))
    assert result.exit_code == 0, result.output
    out = ws / "Dictionaries/json_metadata/metadata_wave8a.json"
    assert f"Wrote {out.resolve()}" in result.stdout
    assert json.loads(out.read_text("utf-8")) == {
        "vaccimportant": {
            "question": "How important is it to get vaccinated?",
            "responses": {"1": "Not at all", "2": "Somewhat", "3": "Very"},
        },
        "age": {"question": "Age in years", "range": [18.0, 90.0]},
    }
    # no temporary files left behind
    assert sorted(p.name for p in out.parent.iterdir()) == ["metadata_wave8a.json"]


def test_metadata_from_csv_full_mode_file(tmp_path: Path) -> None:
    ws = _init(tmp_path)
    d = tmp_path / "dict.csv"
    d.write_text(DICTIONARY)
    result = _invoke(
        "metadata", "from-csv", str(d), "--wave", "2", "--workspace", str(ws), "--mode", "full"
    )
    assert result.exit_code == 0, result.output
    assert (ws / "Dictionaries/json_metadata/full/metadata_wave2.json").exists()
    assert not (ws / "Dictionaries/json_metadata/metadata_wave2.json").exists()


def test_metadata_from_csv_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    ws = _init(tmp_path)
    out = ws / "Dictionaries/json_metadata/metadata_wave1.json"
    out.write_text('{"mine": "keep"}')
    d = tmp_path / "dict.csv"
    d.write_text(DICTIONARY)
    args = ["metadata", "from-csv", str(d), "--wave", "1", "--workspace", str(ws)]
    line = _assert_user_error(_invoke(*args))
    assert line == (
        "Error: Dictionaries/json_metadata/metadata_wave1.json already exists — pass --force to "
        "replace it"
    )
    assert out.read_text() == '{"mine": "keep"}'
    result = _invoke(*args, "--force")
    assert result.exit_code == 0, result.output
    assert set(json.loads(out.read_text())) == {"vaccimportant", "age"}


@pytest.mark.parametrize(
    ("setup", "args", "fragments"),
    [
        ("none", ["--wave", "1"], ["dictionary not found", "missing.csv"]),
        ("bad", ["--wave", "1"], ["dict.csv: variable 'x': cannot read response 'maybe'"]),
        ("good", ["--wave", "../1"], ["wave id '../1' is not valid"]),
        ("good", ["--wave", "1", "--mode", "sparse"], ["--mode must be dense or full"]),
        (
            "good",
            ["--wave", "1", "--workspace", "NOWHERE"],
            ["workspace not found", "panelsynth init"],
        ),
    ],
)
def test_metadata_from_csv_user_errors(
    tmp_path: Path, setup: str, args: list[str], fragments: list[str]
) -> None:
    ws = _init(tmp_path)
    d = tmp_path / ("missing.csv" if setup == "none" else "dict.csv")
    if setup == "good":
        d.write_text(DICTIONARY)
    elif setup == "bad":
        d.write_text("variable,question,responses\nx,q,1=Yes; maybe\n")
    args = [str(tmp_path / a) if a == "NOWHERE" else a for a in args]
    if "--workspace" not in args:
        args += ["--workspace", str(ws)]
    _assert_user_error(_invoke("metadata", "from-csv", str(d), *args), *fragments)
    assert not (tmp_path / "NOWHERE").exists()
    assert list((ws / "Dictionaries/json_metadata").iterdir()) == []


# ----- metadata from-labels ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".sav", ".dta"])
def test_metadata_from_labels(tmp_path: Path, suffix: str) -> None:
    ws = _init(tmp_path)
    df = pd.DataFrame({"vaccimportant": [1.0, 3.0], "age": [30.0, 70.0]})
    src = tmp_path / f"wave1{suffix}"
    writer = pyreadstat.write_sav if suffix == ".sav" else pyreadstat.write_dta
    writer(
        df,
        str(src),
        column_labels={"vaccimportant": "How important?", "age": "Age in years"},
        variable_value_labels={"vaccimportant": {1: "Not at all", 2: "Somewhat", 3: "Very"}},
    )
    result = _invoke("metadata", "from-labels", str(src), "--wave", "1", "-w", str(ws))
    assert result.exit_code == 0, result.output
    meta = json.loads((ws / "Dictionaries/json_metadata/metadata_wave1.json").read_text())
    assert meta == {
        "vaccimportant": {
            "question": "How important?",
            "responses": {"1": "Not at all", "2": "Somewhat", "3": "Very"},
        },
        "age": {"question": "Age in years"},
    }
    _assert_user_error(
        _invoke("metadata", "from-labels", str(src), "--wave", "1", "-w", str(ws)),
        "already exists",
        "--force",
    )


def test_metadata_from_labels_unreadable_file(tmp_path: Path) -> None:
    ws = _init(tmp_path)
    src = tmp_path / "wave1.sav"
    src.write_text("not spss")
    _assert_user_error(
        _invoke("metadata", "from-labels", str(src), "--wave", "1", "-w", str(ws)),
        "wave1.sav: cannot read",
    )


# ----- config errors through the installed console script ----------------------------------------


def _console_script() -> list[str]:
    """The script installed next to this interpreter (the environment under test), else PATH's."""
    sibling = Path(sys.executable).with_name("panelsynth")
    exe = str(sibling) if sibling.exists() else shutil.which("panelsynth")
    assert exe, "the panelsynth console script is not installed"
    return [exe]


def test_console_script_config_errors_one_line_each(tmp_path: Path) -> None:
    ws = _init(tmp_path)
    (ws / "panelsynth.toml").write_text(
        '[study]\nname = "x"\ncluser_column = "cl"\n\n[generation]\nn_outputs = 0\n'
    )
    before = (ws / "panelsynth.toml").read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.run(
        [*_console_script(), "run", "--workspace", str(ws), "--wave", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.splitlines() == [
        "Error: panelsynth.toml: study.cluser_column: unknown key — remove it or check its "
        "spelling",
        "panelsynth.toml: generation.n_outputs: Input should be greater than or equal to 1",
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (ws / "panelsynth.toml").read_bytes() == before
    assert list((ws / "Final_gen_data").iterdir()) == []


# ----- a new user's first steps -----------------------------------------------------------------


def test_init_creates_raw_data_and_names_the_dictionary_in_its_next_steps(tmp_path: Path) -> None:
    ws = tmp_path / "study"
    result = _invoke("init", str(ws))
    assert result.exit_code == 0, result.output
    assert (ws / "Raw data").is_dir()
    out = result.stdout
    assert "'Raw data/'" in out
    columns = "with the columns variable,question,responses[,type]"
    assert f"'Dictionaries/dictionary.csv' {columns}" in out
    assert "`panelsynth prepare --workspace DIR`" in out
    assert "wave{W}_context.txt" in out


@pytest.mark.parametrize(
    "command",
    [[], ["init"], ["demo"], ["prepare"], ["run"], ["evaluate"], ["metadata"],
     ["metadata", "from-csv"], ["metadata", "from-labels"]],
)
def test_help_texts_carry_no_internal_references(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for internal in ("SPEC", "§", "issue ", "CONVENTIONS"):
        assert internal not in result.stdout, (command, internal)
    if command == ["run"]:
        # rich markup once swallowed "[prices]": the help read "needs  for the model"
        assert "priced from the model's entry in the prices table of panelsynth.toml" in (
            " ".join(result.stdout.split())
        )
        assert "  for the model" not in result.stdout
