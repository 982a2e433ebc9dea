"""Loading, cleaning and checking wave data (SPEC §2, §3.1)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from fakes import write_tiny_workspace

from panelsynth.config import DEFAULT_MISSING_CODES
from panelsynth.data import (
    WaveData,
    check_wave_frame,
    clean_missing,
    is_first_wave,
    load_wave,
    read_csv_any,
    read_table,
)
from panelsynth.dictionaries import VariableMeta
from panelsynth.errors import DataError, MetadataError, PanelsynthError, WorkspaceError
from panelsynth.workspace import Workspace

CODES = [-99, -98, "Refused", "Don't know"]


def _one_line(info: pytest.ExceptionInfo) -> str:
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ----- reading and missing codes ----------------------------------------------------------------


def test_csv_missing_codes_become_na(tmp_path: Path) -> None:
    p = tmp_path / "wave1.csv"
    p.write_text(
        "respondent_id,vaccimportant,worryflu,income,cluster\n"
        "1,4,-99,Refused,1\n"
        "2,-98,2,30000,2\n"
        "3,Don't know,3,Don't know,1\n"
        "4,5,1,45000,2\n"
    )
    df = clean_missing(read_csv_any(p), CODES)
    assert df["vaccimportant"].isna().tolist() == [False, True, True, False]
    assert df["worryflu"].isna().tolist() == [True, False, False, False]
    assert df["income"].isna().tolist() == [True, False, True, False]
    # text columns that held only numbers and codes become numeric
    assert pd.api.types.is_numeric_dtype(df["vaccimportant"])
    assert pd.api.types.is_numeric_dtype(df["income"])
    assert df["vaccimportant"].dropna().tolist() == [4.0, 5.0]
    assert df["cluster"].tolist() == [1, 2, 1, 2]  # untouched


def test_missing_codes_match_case_and_spaces_but_not_substrings() -> None:
    df = pd.DataFrame({"a": [" refused ", "DON'T KNOW", "Refused to say", "x"]})
    out = clean_missing(df, CODES)
    assert out["a"].isna().tolist() == [True, True, False, False]
    assert out["a"].iloc[2] == "Refused to say"


def test_numeric_codes_written_as_text_clean_numeric_columns() -> None:
    # missing_codes = ["-99"] in panelsynth.toml must still clean a numeric column
    df = pd.DataFrame({"a": [1, -99, 3], "b": [1.5, -98.0, 2.0]})
    out = clean_missing(df, ["-99", "-98"])
    assert out["a"].isna().tolist() == [False, True, False]
    assert out["b"].isna().tolist() == [False, True, False]


def test_no_codes_changes_nothing() -> None:
    df = pd.DataFrame({"a": [1, -99, 3], "b": ["x", "Refused", None]})
    out = clean_missing(df, [])
    assert out["a"].tolist() == [1, -99, 3]
    assert out["b"].tolist()[:2] == ["x", "Refused"]


def test_default_codes_do_not_touch_valid_answers() -> None:
    df = pd.DataFrame({"a": [0, 1, 2, 5], "b": ["Yes", "No", "NA", ""]})
    out = clean_missing(df, DEFAULT_MISSING_CODES)
    assert out["a"].tolist() == [0, 1, 2, 5]
    assert out["b"].isna().tolist() == [False, False, True, True]


@pytest.mark.parametrize(
    ("encoding", "sep"),
    [("latin-1", ","), ("utf-8-sig", ","), ("utf-8", ";"), ("utf-8-sig", ";"), ("latin-1", "\t")],
)
def test_encodings_and_separators(tmp_path: Path, encoding: str, sep: str) -> None:
    rows = [
        ["respondent_id", "région", "vaccimportant", "cluster"],
        ["1", "Île-de-France", "4", "1"],
        ["2", "Bretagne", "Refused", "2"],
    ]
    p = tmp_path / "wave1.csv"
    p.write_bytes(("\n".join(sep.join(r) for r in rows) + "\n").encode(encoding))
    df = clean_missing(read_csv_any(p), CODES)
    assert list(df.columns) == ["respondent_id", "région", "vaccimportant", "cluster"]
    assert df["région"].tolist() == ["Île-de-France", "Bretagne"]
    assert df["vaccimportant"].iloc[0] == 4 and pd.isna(df["vaccimportant"].iloc[1])


def test_read_csv_any_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="wave7.csv"):
        read_csv_any(tmp_path / "wave7.csv")
    empty = tmp_path / "wave2.csv"
    empty.write_text("\n  \n")
    with pytest.raises(DataError) as info:
        read_csv_any(empty)
    assert _one_line(info) == "wave2.csv is empty — export the wave again"


def test_sav_keeps_values_and_cleans_codes(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "vaccimportant": [1.0, 5.0, -99.0, 3.0],
            "sex": [1.0, 2.0, 2.0, -98.0],
            "cluster": [1.0, 2.0, 1.0, 2.0],
        }
    )
    p = tmp_path / "wave1.sav"
    pyreadstat.write_sav(
        df,
        str(p),
        column_labels={"vaccimportant": "How important?", "sex": "Sex", "cluster": "Cluster"},
        variable_value_labels={"sex": {1: "Male", 2: "Female"}},
    )
    raw = read_table(p)
    # codes, not value labels, and the raw missing code is still there before cleaning
    assert raw["sex"].tolist() == [1.0, 2.0, 2.0, -98.0]
    assert raw["vaccimportant"].tolist() == [1.0, 5.0, -99.0, 3.0]
    clean = clean_missing(raw, CODES)
    assert clean["vaccimportant"].isna().tolist() == [False, False, True, False]
    assert clean["sex"].isna().tolist() == [False, False, False, True]
    assert clean["vaccimportant"].dropna().tolist() == [1.0, 5.0, 3.0]


def test_dta_keeps_values(tmp_path: Path) -> None:
    df = pd.DataFrame({"vaccimportant": [1, 5, 3], "cluster": [1, 2, 1]})
    p = tmp_path / "wave1.dta"
    pyreadstat.write_dta(df, str(p), variable_value_labels={"cluster": {1: "pos", 2: "neg"}})
    out = read_table(p)
    assert out["vaccimportant"].tolist() == [1, 5, 3]
    assert out["cluster"].tolist() == [1, 2, 1]


def test_read_table_rejects_other_types_and_broken_files(tmp_path: Path) -> None:
    xlsx = tmp_path / "wave1.xlsx"
    xlsx.write_text("x")
    with pytest.raises(DataError) as info:
        read_table(xlsx)
    assert _one_line(info) == "wave1.xlsx: unsupported file type '.xlsx' — use .csv, .sav or .dta"
    broken = tmp_path / "wave1.sav"
    broken.write_bytes(b"not an spss file")
    with pytest.raises(DataError) as info:
        read_table(broken)
    msg = _one_line(info)
    assert msg.startswith("wave1.sav: cannot read") and "check the file" in msg


# ----- load_wave ---------------------------------------------------------------------------------


def test_load_wave_tiny_workspace(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    w1 = load_wave(ws, "1", missing_codes=[-99])
    assert isinstance(w1, WaveData)
    assert w1.wave == "1" and w1.mode == "dense"
    assert w1.variables == ["vaccimportant", "vaccsafe", "worryflu", "age", "sex"]
    assert w1.columns == [*w1.variables, "cluster"]
    assert w1.prev_cluster_column is None
    assert w1.clusters == [1, 2]
    assert w1.frame["cluster"].dtype == np.int64
    assert w1.frame["worryflu"].isna().any()  # -99 cleaned
    assert (w1.frame["worryflu"].dropna() >= 1).all()
    assert "respondent_id" not in w1.frame.columns
    assert w1.context.startswith("Wave 1 of a flu vaccination panel")
    assert w1.source == ws.original_data("1")

    w2 = load_wave(ws, 2, missing_codes=[-99])  # type: ignore[arg-type]
    assert w2.wave == "2"
    assert w2.prev_cluster_column == "prev_cluster"
    assert w2.columns[-2:] == ["cluster", "prev_cluster"]
    assert str(w2.frame["prev_cluster"].dtype) == "Int64"
    assert set(w2.frame["prev_cluster"].dropna()) == {1, 2}


def test_load_wave_reads_full_mode_dictionaries(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    types = {"vaccimportant": "an ordinal", "age": "a continuous"}
    meta = json.loads(ws.metadata_json("1").read_text())
    full_types = ws.var_types_for_write("1", "full")
    full_meta = ws.metadata_json_for_write("1", "full")
    for p in (full_types, full_meta):
        p.parent.mkdir(parents=True, exist_ok=True)
    full_types.write_text(json.dumps(types))
    full_meta.write_text(json.dumps({k: meta[k] for k in types}))
    assert load_wave(ws, "1", mode="full", missing_codes=[-99]).variables == [
        "vaccimportant",
        "age",
    ]
    assert len(load_wave(ws, "1", mode="dense", missing_codes=[-99]).variables) == 5


def test_is_first_wave() -> None:
    assert is_first_wave("1", ["2", "1", "14"])
    assert not is_first_wave("2", ["2", "1", "14"])
    assert is_first_wave("8a", ["8b", "8a", "14"])
    assert is_first_wave("3", [])


def _mutate(ws: Workspace, wave: str, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
    path = ws.original_data(wave)
    df = pd.read_csv(path)
    out = fn(df)
    (df if out is None else out).to_csv(path, index=False)


def _set(col: str, values: Callable[[pd.DataFrame], object]) -> Callable[[pd.DataFrame], None]:
    def fn(df: pd.DataFrame) -> None:
        df[col] = values(df)

    return fn


def _first_rows(col: str, value: object, n: int = 3) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df[col] = df[col].astype(object)
        df.loc[: n - 1, col] = value
        return df

    return fn


# (wave, mutation of the data, expected column, fragments of the message: what and the fix)
BAD_DATA = {
    "missing cluster column": (
        "1",
        lambda df: df.drop(columns="cluster"),
        "cluster",
        ["has no 'cluster' column", "add cluster labels (1/2)", "panelsynth prepare"],
    ),
    "labels other than 1/2": (
        "1",
        _set("cluster", lambda df: df["cluster"].map({1: "pos", 2: "neg"})),
        "cluster",
        ["column 'cluster' has labels neg, pos", "use 1, 2"],
    ),
    "third cluster": (
        "1",
        _first_rows("cluster", 3),
        "cluster",
        ["column 'cluster' has labels 3", "use 1, 2"],
    ),
    "empty cluster": (
        "1",
        _set("cluster", lambda df: 1),
        "cluster",
        ["cluster 2 has no respondents", "clustering.k"],
    ),
    "NA labels": (
        "1",
        _first_rows("cluster", np.nan, 2),
        "cluster",
        ["column 'cluster' has 2 empty labels", "every respondent needs a cluster"],
    ),
    "cluster labels are missing codes": (
        "1",
        _first_rows("cluster", -99, 1),
        "cluster",
        ["column 'cluster' has 1 empty labels"],
    ),
    "later wave without prev_cluster": (
        "2",
        lambda df: df.drop(columns="prev_cluster"),
        "prev_cluster",
        ["has no 'prev_cluster' column", "previous-wave cluster", "panelsynth prepare"],
    ),
    "bad prev_cluster labels": (
        "2",
        _first_rows("prev_cluster", 7),
        "prev_cluster",
        ["column 'prev_cluster' has labels 7", "use 1, 2 or leave empty"],
    ),
    "bad prev_cluster in the first wave": (
        "1",
        _set("prev_cluster", lambda df: "x"),
        "prev_cluster",
        ["column 'prev_cluster' has labels x"],
    ),
    "non-numeric codes in an ordinal item": (
        "1",
        _first_rows("vaccsafe", "often"),
        "vaccsafe",
        [
            "column 'vaccsafe' (an ordinal) has non-numeric values such as 'often'",
            "recode them",
            "study.missing_codes",
        ],
    ),
    "values outside the metadata codes": (
        "1",
        _first_rows("vaccimportant", 7),
        "vaccimportant",
        [
            "column 'vaccimportant' has values 7 that the metadata does not list",
            "add them to its responses or to study.missing_codes",
        ],
    ),
    "binary outside its codes": (
        "2",
        _first_rows("sex", 0, 1),
        "sex",
        ["column 'sex' has values 0"],
    ),
    "all-NA variable": (
        "1",
        _set("worryflu", lambda df: -99),
        "worryflu",
        ["column 'worryflu' has no answers (all NA)", "drop it from the var types and metadata"],
    ),
    "var-types variable missing from the data": (
        "2",
        lambda df: df.drop(columns="vaccsafe"),
        "vaccsafe",
        ["lacks column vaccsafe listed in the var types", "add it or remove it from types"],
    ),
    "non-numeric continuous value": (
        "1",
        _first_rows("age", "forty"),
        "age",
        ["column 'age' (a continuous) has non-numeric values such as 'forty'", "recode them"],
    ),
    "continuous value outside the metadata range (an unlisted missing code)": (
        "1",
        _first_rows("age", 999, 2),
        "age",
        [
            "column 'age' has values 999 outside its metadata range [18, 90]",
            "widen the range or add them to study.missing_codes",
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_load_wave_errors_name_file_column_and_fix(tmp_path: Path, case: str) -> None:
    wave, mutation, column, fragments = BAD_DATA[case]
    ws = Workspace(write_tiny_workspace(tmp_path / "ws"))
    _mutate(ws, wave, mutation)
    before = ws.original_data(wave).read_bytes()
    with pytest.raises(DataError) as info:
        load_wave(ws, wave, missing_codes=[-99])
    msg = _one_line(info)
    assert f"Original data/wave{wave}.csv" in msg  # the file
    assert column in msg  # the column
    assert " — " in msg  # what is wrong — how to fix it
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    err = info.value
    assert err.column == column and err.path is not None
    assert ws.original_data(wave).read_bytes() == before  # nothing the user had is changed


def test_unknown_wave_id(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    with pytest.raises(DataError) as info:
        load_wave(ws, "9")
    assert _one_line(info) == (
        "unknown wave '9': Original data/wave9.csv does not exist (waves with data: 1, 2) — "
        "check --wave or run `panelsynth prepare`"
    )
    with pytest.raises(WorkspaceError, match="wave id '../1' is not valid"):
        load_wave(ws, "../1")


def test_dictionary_errors_surface_from_load_wave(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    ws.wave_context("2").write_text("   \n")
    with pytest.raises(MetadataError, match=r"^wave2_context.txt is empty"):
        load_wave(ws, "2")
    types = json.loads(ws.var_types("1").read_text())
    ws.var_types("1").write_text(json.dumps(types | {"party": "a categorical"}))
    with pytest.raises(MetadataError) as info:
        load_wave(ws, "1")
    assert _one_line(info) == (
        "Dictionaries/json_metadata/metadata_wave1.json lacks variables: party — add them or drop "
        "them from Dictionaries/var_types/types_wave1.json"
    )


def test_first_wave_by_config_needs_no_prev_cluster(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    _mutate(ws, "2", lambda df: df.drop(columns="prev_cluster"))
    # the study starts at wave 2 (per study.waves): wave 2 is first and needs no prev_cluster
    wd = load_wave(ws, "2", missing_codes=[-99], study_waves=["2", "3"])
    assert wd.prev_cluster_column is None
    with pytest.raises(DataError, match="prev_cluster"):
        load_wave(ws, "2", missing_codes=[-99], study_waves=["1", "2"])


def test_first_wave_with_an_empty_prev_cluster_loads(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    _mutate(ws, "1", _set("prev_cluster", lambda df: np.nan))
    wd = load_wave(ws, "1", missing_codes=[-99])
    assert wd.frame["prev_cluster"].isna().all()


def test_string_labels_and_codes_load(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    path = ws.original_data("1")
    # quote every cell, as some exports do; add text missing codes
    df = pd.read_csv(path).astype(str)
    df.loc[0, "vaccsafe"] = "Don't know"
    df.to_csv(path, index=False, quoting=1)
    wd = load_wave(ws, "1", missing_codes=CODES)
    assert wd.frame["cluster"].dtype == np.int64
    assert pd.isna(wd.frame["vaccsafe"].iloc[0])
    assert pd.api.types.is_numeric_dtype(wd.frame["vaccsafe"])


@pytest.mark.parametrize(("encoding", "sep"), [("latin-1", ";"), ("utf-8-sig", ",")])
def test_load_wave_latin1_bom_semicolon(tiny_workspace: Path, encoding: str, sep: str) -> None:
    ws = Workspace(tiny_workspace)
    path = ws.original_data("1")
    df = pd.read_csv(path)
    df["région"] = "Île-de-France"
    path.write_bytes(df.to_csv(index=False, sep=sep).encode(encoding))
    wd = load_wave(ws, "1", missing_codes=[-99])
    assert wd.clusters == [1, 2] and len(wd.frame) == len(df)
    assert wd.frame["vaccimportant"].tolist() == df["vaccimportant"].tolist()


# ----- check_wave_frame directly ------------------------------------------------------------------

TYPES = {"party": "a categorical", "vote": "a binary"}
META = {
    "party": VariableMeta(question="Party", responses={"left": "Left", "right": "Right"}),
    "vote": VariableMeta(question="Voted", responses={"1": "Yes", "2": "No"}),
}


def test_check_wave_frame_text_codes() -> None:
    df = pd.DataFrame({"party": ["left", "right", None], "vote": [1, 2, 1], "cluster": [1, 2, 2]})
    check_wave_frame(df, TYPES, META, source="w.csv")
    df.loc[0, "party"] = "centre"
    with pytest.raises(DataError) as info:
        check_wave_frame(df, TYPES, META, source="w.csv")
    assert _one_line(info).startswith("w.csv: column 'party' has values centre that the metadata")


def test_check_wave_frame_three_clusters_when_k_is_3() -> None:
    df = pd.DataFrame({"party": ["left"] * 3, "vote": [1, 2, 1], "cluster": [1, 2, 3]})
    check_wave_frame(df, TYPES, META, source="w.csv", k=3)
    with pytest.raises(DataError, match="has labels 3"):
        check_wave_frame(df, TYPES, META, source="w.csv")


def test_check_wave_frame_no_rows() -> None:
    df = pd.DataFrame({"party": [], "vote": [], "cluster": []})
    with pytest.raises(DataError) as info:
        check_wave_frame(df, TYPES, META, source="w.csv")
    assert _one_line(info) == "w.csv has no rows — export the wave again"


def test_errors_are_user_errors() -> None:
    assert issubclass(DataError, PanelsynthError) and DataError("x").exit_code == 2


def test_cluster_shares_count_labelled_respondents_only() -> None:
    from panelsynth.data import cluster_shares

    labels = pd.Series([2, 1, 2, None, "x", 2.0])
    assert cluster_shares(labels) == {1: 0.25, 2: 0.75}
    assert list(cluster_shares(pd.Series([3, 1, 2, 1]))) == [1, 2, 3]
