"""``panelsynth prepare`` through the CLI runner: summary, exit codes and exact error lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.scaffold import init_workspace

runner = CliRunner()


def write_panel(
    root: Path, *, n: int = 300, waves: tuple[str, ...] = ("1", "2"), seed: int = 1
) -> Path:
    """Two latent classes answering three ordinal items (1..5, -99 = refused), plus age."""
    init_workspace(root)
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.5
    (root / "Raw data").mkdir(exist_ok=True)
    for w in waves:
        df = pd.DataFrame({"respondent_id": np.arange(n)})
        for item in ("vaccimportant", "vaccsafe", "trust"):
            hi = rng.integers(3, 6, n)
            lo = rng.integers(1, 4, n)
            x = np.where(positive, hi, lo)
            x[rng.random(n) < 0.08] = -99
            df[item] = x
        df["age"] = rng.integers(18, 90, n)
        df.to_csv(root / "Raw data" / f"wave{w}.csv", index=False)
    rows = [
        f'{item},{item}?,"1=Low; 2=2; 3=3; 4=4; 5=High"'
        for item in ("vaccimportant", "vaccsafe", "trust")
    ]
    (root / "Dictionaries" / "dictionary.csv").write_text(
        "variable,question,responses\n" + "\n".join(rows) + "\nage,Age,18-90\n", encoding="utf-8"
    )
    (root / "panelsynth.toml").write_text(
        '[study]\nmissing_codes = [-99]\n[prepare]\ndemographics = ["age"]\n'
        '[clustering]\norientation_item = "vaccimportant"\n',
        encoding="utf-8",
    )
    return root


def _invoke(*args: str):
    return runner.invoke(app, ["prepare", *args])


def test_prepare_prints_a_summary_per_wave(tmp_path):
    root = write_panel(tmp_path / "ws")
    res = _invoke("--workspace", str(root))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("wave 1: 300 respondents, 3 items, clusters ")
    assert "best k by BIC" in lines[0]
    assert lines[1].startswith("wave 2: 300 respondents")
    assert lines[-1].startswith("Wrote Original data/ for 2 waves; reports in Prepare/")
    df = pd.read_csv(root / "Original data" / "wave2.csv")
    assert list(df.columns) == [
        "respondent_id",
        "vaccimportant",
        "vaccsafe",
        "trust",
        "age",
        "cluster",
        "prev_cluster",
    ]
    # cluster 1 answers higher on the orientation item
    assert df.groupby("cluster")["vaccimportant"].mean().idxmax() == 1


def test_overrides_reach_the_fit_report(tmp_path):
    root = write_panel(tmp_path / "ws", waves=("1",))
    res = _invoke("--workspace", str(root), "--method", "kmeans", "--k", "3", "--seed", "7")
    assert res.exit_code == 0, res.output
    fit = (root / "Prepare" / "fit_wave1.json").read_text()
    assert '"method": "kmeans"' in fit and '"k": 3' in fit and '"seed": 7' in fit
    assert set(pd.read_csv(root / "Original data" / "wave1.csv")["cluster"]) == {1, 2, 3}


def test_missing_id_column_exits_2_with_one_line(tmp_path):
    root = write_panel(tmp_path / "ws")
    path = root / "Raw data" / "wave2.csv"
    pd.read_csv(path).rename(columns={"respondent_id": "id"}).to_csv(path, index=False)
    res = _invoke("--workspace", str(root))
    assert res.exit_code == 2
    assert res.stderr == (
        "Error: Raw data/wave2.csv has no id column 'respondent_id' (columns: id, vaccimportant, "
        "vaccsafe, trust, age) — add it or set study.id_column in panelsynth.toml\n"
    )
    assert not (root / "Original data" / "wave1.csv").exists()


def test_refuses_user_files_unless_forced(tmp_path):
    root = write_panel(tmp_path / "ws")
    mine = root / "Original data" / "wave1.csv"
    mine.write_text("respondent_id,cluster\n0,1\n", encoding="utf-8")
    res = _invoke("--workspace", str(root))
    assert res.exit_code == 2
    assert res.stderr.startswith("Error: Original data/wave1.csv exists and was not written by ")
    assert mine.read_text(encoding="utf-8") == "respondent_id,cluster\n0,1\n"
    res = _invoke("--workspace", str(root), "--force")
    assert res.exit_code == 0, res.output
    assert "Backed up 1 replaced files to Prepare/replaced/." in res.stdout
    saved = root / "Prepare" / "replaced" / "Original data" / "wave1.csv"
    assert saved.read_text(encoding="utf-8") == "respondent_id,cluster\n0,1\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--method", "dbscan"),
            "Error: --method must be one of lca, kmodes, kmeans, not 'dbscan'\n",
        ),
        (("--k", "0"), "Error: clustering.k: Input should be greater than or equal to 1\n"),
        (
            ("--missing", "drop"),
            "Error: --missing must be one of auto, fiml, category, not 'drop'\n",
        ),
    ],
)
def test_bad_options_exit_2(tmp_path, args, message):
    root = write_panel(tmp_path / "ws", waves=("1",))
    res = _invoke("--workspace", str(root), *args)
    assert res.exit_code == 2
    assert res.stderr == message


def test_no_raw_folder_exits_2(tmp_path):
    root = tmp_path / "empty"
    init_workspace(root)
    # `init` creates an empty Raw data/: prepare says that it holds no wave file
    res = _invoke("--workspace", str(root))
    assert res.exit_code == 2
    assert res.stderr == (
        "Error: no raw wave files matching 'wave{W}.csv' in Raw data — name them like wave1.csv "
        "or set prepare.raw_pattern\n"
    )
    (root / "Raw data").rmdir()
    res = _invoke("--workspace", str(root))
    assert res.exit_code == 2
    assert res.stderr == (
        "Error: raw data folder not found: Raw data — put the raw wave files there or set "
        "prepare.raw_dir in panelsynth.toml\n"
    )


def test_messy_survey_prints_demographics_and_dictionary_errors_at_once(tmp_path):
    from messy import BROKEN_ROWS, write_dictionary, write_messy_survey

    survey = write_messy_survey(tmp_path / "ws", waves=("1", "2"), n=120)
    res = _invoke("--workspace", str(survey.root))
    assert res.exit_code == 0, res.output
    assert "Demographics: age, gender (not clustered on; calibration anchors)" in res.stdout
    assert res.stdout.splitlines()[-1].endswith("types.csv, missing_codes.csv).")

    write_dictionary(survey.root / "Dictionaries" / "dictionary.csv", BROKEN_ROWS)
    before = (survey.root / "Original data" / "wave1.csv").read_bytes()
    res = _invoke("--workspace", str(survey.root))
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 4, lines  # every problem of the file, one line each
    assert lines[0].startswith("Error: dictionary.csv: variable 'att01': cannot read response")
    assert all(line.startswith(("Error: dictionary.csv: ", "dictionary.csv: ")) for line in lines)
    assert "Traceback" not in res.output
    assert (survey.root / "Original data" / "wave1.csv").read_bytes() == before


def test_a_clustering_the_data_cannot_support_exits_2_with_one_line(tmp_path):
    root = write_panel(tmp_path / "ws", waves=("1",))
    combos = [(a, b, c) for a in (1, 5) for b in (1, 5) for c in (1, 5)] * 5  # 8 patterns
    df = pd.DataFrame(combos, columns=["vaccimportant", "vaccsafe", "trust"])
    df.insert(0, "respondent_id", range(len(df)))
    df["age"] = 40
    df.to_csv(root / "Raw data" / "wave1.csv", index=False)
    res = _invoke("--workspace", str(root), "--method", "kmodes", "--k", "10")
    assert res.exit_code == 2
    assert res.stderr == (
        "Error: Raw data/wave1.csv: the respondents give only 8 distinct answer patterns "
        "(missing answers set to the item's mode) — too few for 10 k-modes clusters: set "
        'clustering.k to at most 8, or use clustering.method = "lca"\n'
    )
    assert not (root / "Original data" / "wave1.csv").exists()


def test_prepare_names_the_numeric_codes_it_took_as_ordered(tmp_path):
    from labelled import labelled_survey

    root = labelled_survey(tmp_path / "ws", ".dta")  # Stata: value labels, no levels
    res = _invoke("--workspace", str(root))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    i = lines.index(
        "Typed ordinal because their codes are numbers (no type in the dictionary, no "
        "measurement level in the file): party, agree, trust."
    )
    assert lines[i + 1] == (
        "  If one is unordered (a party, a region), write categorical in its type column in "
        "Dictionaries/dictionary.csv (columns variable,question,responses,type; a row "
        "'party,,,categorical' keeps the file's labels)."
    )
    (root / "Dictionaries" / "dictionary.csv").write_text(
        "variable,question,responses,type\nparty,,,categorical\n", encoding="utf-8"
    )
    res = _invoke("--workspace", str(root))
    assert res.exit_code == 0, res.output
    assert "measurement level in the file): agree, trust." in res.stdout
    types = (root / "Dictionaries/var_types/full/types_wave1.json").read_text()
    assert '"party": "a categorical"' in types


def test_prepare_says_nothing_of_order_when_the_file_gives_levels(tmp_path):
    from labelled import labelled_survey

    root = labelled_survey(tmp_path / "ws", ".sav")
    res = _invoke("--workspace", str(root))
    assert res.exit_code == 0, res.output
    assert "Typed ordinal" not in res.stdout


def test_a_long_list_of_assumed_orders_points_to_the_types_report():
    from panelsynth.cli.prepare_cmd import _assumed_order_lines

    names = [f"q{i}" for i in range(1, 11)]
    first = _assumed_order_lines(names, "Dictionaries/dictionary.csv")[0]
    assert first.endswith("q1, q2, q3, q4, q5, q6, q7, q8 and 2 more (Prepare/types.csv).")
    assert _assumed_order_lines([], "Dictionaries/dictionary.csv") == []
