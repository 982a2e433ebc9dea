"""Study dictionaries (SPEC §2): CSV / SPSS / Stata -> raw metadata JSON, var types, contexts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from panelsynth.dictionaries import (
    VariableMeta,
    check_metadata_covers,
    labelled_measures,
    load_context,
    load_metadata,
    load_var_types,
    metadata_from_csv,
    metadata_from_labelled,
    metadata_to_json,
    parse_responses,
    read_csv_dictionary,
)
from panelsynth.errors import MetadataError
from panelsynth.readers import read_labelled

DICT_ROWS = [
    (
        "vaccimportant",
        "How important is it to get vaccinated?",
        "1=Not at all important; 2=Slightly; 3=Moderately; 4=Very; 5=Extremely important",
    ),
    ("age", "Age in years", "18-90"),
    ("sex", "Sex", "1=Male; 2=Female"),
    ("comment", "Anything else?", ""),
]


def _write_dict(path: Path, *, sep: str = ",", encoding: str = "utf-8", rows=DICT_ROWS) -> Path:
    lines = [sep.join(["variable", "question", "responses"])]
    for name, q, r in rows:
        lines.append(sep.join([name, f'"{q}"', f'"{r}"']))
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _single_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_csv_dictionary_round_trip(tmp_path: Path) -> None:
    meta = metadata_from_csv(_write_dict(tmp_path / "dict.csv"))
    assert list(meta) == ["vaccimportant", "age", "sex", "comment"]
    assert meta["vaccimportant"].question == "How important is it to get vaccinated?"
    assert meta["vaccimportant"].responses == {
        "1": "Not at all important",
        "2": "Slightly",
        "3": "Moderately",
        "4": "Very",
        "5": "Extremely important",
    }
    assert meta["vaccimportant"].codes() == [1, 2, 3, 4, 5]
    assert meta["age"].range == (18.0, 90.0) and meta["age"].responses is None
    assert meta["sex"].responses == {"1": "Male", "2": "Female"}
    assert meta["comment"].responses is None and meta["comment"].range is None

    out = tmp_path / "metadata_wave1.json"
    out.write_text(metadata_to_json(meta))
    raw = json.loads(out.read_text())
    assert raw["age"] == {"question": "Age in years", "range": [18.0, 90.0]}
    assert raw["sex"] == {"question": "Sex", "responses": {"1": "Male", "2": "Female"}}
    assert raw["comment"] == {"question": "Anything else?"}  # no nulls written
    assert load_metadata(out) == meta


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1=Yes; 2=No", {"responses": {"1": "Yes", "2": "No"}}),
        ("1 = Yes ;2= No;", {"responses": {"1": "Yes", "2": "No"}}),
        ("1: Yes | 2: No", {"responses": {"1": "Yes", "2": "No"}}),
        ("1=Yes, 2=No", {"responses": {"1": "Yes", "2": "No"}}),
        ("01=Yes; 2.0=No; -99=Refused", {"responses": {"1": "Yes", "2": "No", "-99": "Refused"}}),
        ("1=Yes, definitely; 2=No", {"responses": {"1": "Yes, definitely", "2": "No"}}),
        ("a=Apples; b=Pears", {"responses": {"a": "Apples", "b": "Pears"}}),
        ("18-90", {"range": (18.0, 90.0)}),
        ("18 to 90", {"range": (18.0, 90.0)}),
        ("from 0 to 10", {"range": (0.0, 10.0)}),
        ("-5 - 5", {"range": (-5.0, 5.0)}),
        ("0.5..2.5", {"range": (0.5, 2.5)}),
        ("", {"note": None}),
    ],
)
def test_parse_responses(cell: str, expected: dict) -> None:
    assert parse_responses(cell, variable="v", source="dict.csv") == expected


def test_responses_text_reads_like_a_codebook() -> None:
    assert VariableMeta(question="q", responses={"1": "Yes", "2": "No"}).responses_text() == (
        "1 = Yes; 2 = No"
    )
    assert VariableMeta(question="q", range=(18, 90)).responses_text() == "a number from 18 to 90"
    assert VariableMeta(question="q", range=(0, 2.5)).responses_text() == "a number from 0 to 2.5"


def test_unreadable_response_names_file_and_variable() -> None:
    with pytest.raises(MetadataError) as info:
        parse_responses("1=Yes; maybe", variable="vaccsafe", source="dict.csv")
    msg = _single_line(info)
    assert msg.startswith("dict.csv: variable 'vaccsafe': cannot read response 'maybe'")
    assert "'1=Label; 2=Label'" in msg


def test_duplicate_response_code_is_an_error() -> None:
    with pytest.raises(MetadataError) as info:
        parse_responses("1=Yes; 2=No; 01=Maybe", variable="vaccsafe", source="dict.csv")
    msg = _single_line(info)
    assert "dict.csv" in msg and "'vaccsafe'" in msg and "code 1 appears twice" in msg


def test_range_with_min_above_max_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min > max"):
        VariableMeta(question="Age", range=(90, 18))


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_separators(tmp_path: Path, sep: str) -> None:
    meta = metadata_from_csv(_write_dict(tmp_path / "dict.csv", sep=sep))
    assert meta["vaccimportant"].codes() == [1, 2, 3, 4, 5]
    assert meta["age"].range == (18.0, 90.0)


def test_semicolon_csv_with_comma_separated_responses(tmp_path: Path) -> None:
    p = tmp_path / "dict.csv"
    p.write_text(
        "variable;question;responses\n"
        "vaccimportant;How important is it, really?;1=Not at all, 2=Very\n"
        "sex;Sex;1=Male, 2=Female\n"
    )
    meta = metadata_from_csv(p)
    assert meta["vaccimportant"].question == "How important is it, really?"
    assert meta["vaccimportant"].responses == {"1": "Not at all", "2": "Very"}
    assert meta["sex"].responses == {"1": "Male", "2": "Female"}


def test_bom_and_header_aliases(tmp_path: Path) -> None:
    p = tmp_path / "dict.csv"
    p.write_bytes(
        "Name,Label,Value_Labels\nvaccimportant,Wie wichtig?,1=Gar nicht; 2=Sehr\n".encode(
            "utf-8-sig"
        )
    )
    meta = metadata_from_csv(p)
    assert list(meta) == ["vaccimportant"]  # not "\ufeffvaccimportant" nor a missing column
    assert meta["vaccimportant"].responses == {"1": "Gar nicht", "2": "Sehr"}


def test_latin1_dictionary(tmp_path: Path) -> None:
    rows = [("vaccimportant", "Très important ?", "1=Pas du tout; 2=Très")]
    meta = metadata_from_csv(_write_dict(tmp_path / "dict.csv", encoding="latin-1", rows=rows))
    assert meta["vaccimportant"].question == "Très important ?"
    assert meta["vaccimportant"].responses == {"1": "Pas du tout", "2": "Très"}


def test_apostrophes_are_not_quotes(tmp_path: Path) -> None:
    p = tmp_path / "dict.csv"
    p.write_text(
        "variable,question,responses\n"
        "q1,Is it the 'best' option?,1=Yes; 2=Don't know\n"
        "q2,'Tis the season to be vaccinated?,1=Yes; 2=No\n"
        "q3,Say 'hello' to your doctor,1=Yes; 2=No\n"
        "q4,Plain,1=Yes; 2=No\n"
    )
    meta = metadata_from_csv(p)
    assert list(meta) == ["q1", "q2", "q3", "q4"]
    assert meta["q1"].responses == {"1": "Yes", "2": "Don't know"}
    assert meta["q2"].question == "'Tis the season to be vaccinated?"
    assert meta["q4"].responses == {"1": "Yes", "2": "No"}


def test_unquoted_separator_in_a_cell_is_an_error_not_a_lost_code(tmp_path: Path) -> None:
    p = tmp_path / "dict.csv"
    p.write_text(
        "variable,question,responses\n"
        "age,Age,18-90\n"
        "vaccimportant,How important?,1=Not at all, 2=Very\n"
        "sex,Sex,1=Male; 2=Female\n"
    )
    with pytest.raises(MetadataError) as info:
        metadata_from_csv(p)
    msg = _single_line(info)
    assert msg.startswith("dict.csv: line 3 (variable 'vaccimportant') has more cells than")
    assert "quotes" in msg


def test_trailing_empty_cells_are_tolerated(tmp_path: Path) -> None:
    p = tmp_path / "dict.csv"
    p.write_text("variable,question,responses\nsex,Sex,1=Male; 2=Female,,\n")
    assert metadata_from_csv(p)["sex"].responses == {"1": "Male", "2": "Female"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("variable,question,responses\n", "has no rows"),
        ("name,text,codes\nx,q,1=a\n", "no 'responses' column"),
        ("variable,question,responses\n,Age,18-90\n", "line 2 has no variable name"),
        ("variable,question,responses\nx,q,1=a\nx,q,1=b\n", "variable 'x' appears twice"),
        (
            "variable,question,responses\nage,Age,18-90\nx,q,1=a; oops\n",
            "variable 'x': cannot read",
        ),
    ],
)
def test_csv_errors_name_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    p = tmp_path / "my dict.csv"
    p.write_text(text)
    with pytest.raises(MetadataError) as info:
        metadata_from_csv(p)
    msg = _single_line(info)
    assert msg.startswith("my dict.csv: ")
    assert fragment in msg
    assert " — " in msg  # and a fix


def test_question_defaults_to_the_name(tmp_path: Path) -> None:
    p = tmp_path / "dict.csv"
    p.write_text("variable,question,responses\nage,,18-90\n")
    assert metadata_from_csv(p)["age"].question == "age"


# ----- labelled files (pyreadstat) ---------------------------------------------------------------

LABELLED = pd.DataFrame(
    {
        "vaccimportant": [1.0, 5.0, 3.0],
        "sex": [1.0, 2.0, 2.0],
        "age": [34.0, 61.0, 25.0],
    }
)
COLUMN_LABELS = {
    "vaccimportant": "How important is it to get vaccinated?",
    "sex": "Sex of respondent",
    "age": "Age in years",
}
VALUE_LABELS = {
    "vaccimportant": {1: "Not at all", 2: "Slightly", 3: "Moderately", 4: "Very", 5: "Extremely"},
    "sex": {1: "Male", 2: "Female"},
}


@pytest.mark.parametrize("suffix", [".sav", ".dta"])
def test_metadata_from_labelled_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"wave1{suffix}"
    writer = pyreadstat.write_sav if suffix == ".sav" else pyreadstat.write_dta
    writer(LABELLED, str(path), column_labels=COLUMN_LABELS, variable_value_labels=VALUE_LABELS)
    meta = metadata_from_labelled(path)
    assert list(meta) == ["vaccimportant", "sex", "age"]
    assert meta["vaccimportant"].question == "How important is it to get vaccinated?"
    assert meta["vaccimportant"].responses == {
        "1": "Not at all",
        "2": "Slightly",
        "3": "Moderately",
        "4": "Very",
        "5": "Extremely",
    }
    assert meta["sex"] == VariableMeta(
        question="Sex of respondent", responses={"1": "Male", "2": "Female"}
    )
    assert meta["age"].question == "Age in years" and meta["age"].responses is None
    # and it round-trips through JSON like the CSV converter's output
    out = tmp_path / "metadata_wave1.json"
    out.write_text(metadata_to_json(meta))
    assert load_metadata(out) == meta


def test_labelled_file_without_labels_uses_names(tmp_path: Path) -> None:
    path = tmp_path / "plain.sav"
    pyreadstat.write_sav(LABELLED, str(path))
    meta = metadata_from_labelled(path)
    assert meta["age"].question == "age"
    assert meta["sex"].responses is None


def test_measurement_levels_of_an_spss_file_and_none_of_a_stata_file(tmp_path: Path) -> None:
    sav, dta = tmp_path / "w.sav", tmp_path / "w.dta"
    levels = {"vaccimportant": "ordinal", "sex": "nominal", "age": "scale"}
    pyreadstat.write_sav(LABELLED, str(sav), variable_measure=levels)
    assert labelled_measures(read_labelled(sav)[1]) == levels
    pyreadstat.write_sav(LABELLED, str(sav), variable_measure={"sex": "nominal"})
    assert labelled_measures(read_labelled(sav)[1]) == {"sex": "nominal"}  # others: unknown
    pyreadstat.write_dta(LABELLED, str(dta), variable_value_labels=VALUE_LABELS)
    assert labelled_measures(read_labelled(dta)[1]) == {}


def test_type_column_takes_spss_words_and_rows_may_only_declare_a_type(tmp_path: Path) -> None:
    p = tmp_path / "dict.csv"
    p.write_text(
        "variable,question,responses,type\n"
        "income,Household income,,scale\n"
        "party,,,nominal\n"
        'trust,,"1=None; 2=Some; 3=A lot",ordinal\n'
        "id,,,\n"
    )
    read = read_csv_dictionary(p)
    assert read.declared == {
        "income": "a continuous",
        "party": "a categorical",
        "trust": "an ordinal",
    }
    assert read.bare == {"party", "id"}  # nothing but a name (and a type)
    assert read.meta["party"].question == "party"  # the JSON converter still lists them


# ----- load_metadata / load_var_types / load_context ---------------------------------------------


def test_load_metadata_accepts_seed_style_free_text(tmp_path: Path) -> None:
    p = tmp_path / "metadata_wave1.json"
    p.write_text(json.dumps({"age": "Age of the respondent, 18 to 90"}))
    assert load_metadata(p)["age"].question == "Age of the respondent, 18 to 90"


def test_load_metadata_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as info:
        load_metadata(tmp_path / "metadata_wave3.json")
    msg = _single_line(info)
    assert "metadata_wave3.json" in msg and "panelsynth metadata from-csv" in msg


def test_load_metadata_malformed_json(tmp_path: Path) -> None:
    p = tmp_path / "metadata_wave1.json"
    p.write_text('{"age": {"question": "Age",}\n')
    with pytest.raises(MetadataError) as info:
        load_metadata(p)
    msg = _single_line(info)
    assert msg.startswith("metadata_wave1.json: not valid JSON (line 1, column")
    assert msg.endswith("fix it")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[]", "expected an object mapping variable -> description"),
        ("{}", "expected an object mapping variable -> description"),
        ('"text"', "expected an object mapping variable -> description"),
        ('{"age": 3}', "variable 'age': Input should be a valid dictionary"),
        ('{"age": {"question": "Age", "range": [90, 18]}}', "variable 'age': Value error, range"),
        ('{"sex": {"question": "Sex", "responses": ["M", "F"]}}', "variable 'sex': responses:"),
        ('{"sex": {"question": "Sex", "respones": {"1": "M"}}}', "variable 'sex': respones: Extra"),
        ('{"sex": {"responses": {"1": "M"}}}', "variable 'sex': question: Field required"),
    ],
)
def test_load_metadata_wrong_shape(tmp_path: Path, content: str, fragment: str) -> None:
    p = tmp_path / "metadata_wave1.json"
    p.write_text(content)
    with pytest.raises(MetadataError) as info:
        load_metadata(p)
    msg = _single_line(info)
    assert msg.startswith("metadata_wave1.json: ")
    assert fragment in msg
    assert ": :" not in msg


def test_load_var_types(tmp_path: Path) -> None:
    p = tmp_path / "types_wave1.json"
    types = {
        "vaccimportant": "an ordinal",
        "party": "a categorical",
        "age": "a continuous",
        "sex": "a binary",
    }
    p.write_text(json.dumps(types))
    assert load_var_types(p) == types


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            '{"vaccimportant": "ordinal"}',
            "variable 'vaccimportant' has type 'ordinal' — use one of: "
            "an ordinal, a categorical, a continuous, a binary",
        ),
        ('{"age": "a numeric"}', "variable 'age' has type 'a numeric'"),
        ('{"age": 1}', "variable 'age' has type 1"),
        ("{}", "expected a non-empty object"),
        ('["age"]', "expected a non-empty object"),
        ('{"age": "a continuous"', "not valid JSON"),
    ],
)
def test_load_var_types_errors(tmp_path: Path, content: str, fragment: str) -> None:
    p = tmp_path / "types_wave2.json"
    p.write_text(content)
    with pytest.raises(MetadataError) as info:
        load_var_types(p)
    msg = _single_line(info)
    assert msg.startswith("types_wave2.json")
    assert fragment in msg


def test_load_var_types_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as info:
        load_var_types(tmp_path / "types_wave9.json")
    assert "types_wave9.json" in _single_line(info)


def test_load_context(tmp_path: Path) -> None:
    p = tmp_path / "wave1_context.txt"
    p.write_text("\n  Wave 1, autumn 2016. Target: vaccimportant.  \n")
    assert load_context(p) == "Wave 1, autumn 2016. Target: vaccimportant."


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_load_context_empty_file(tmp_path: Path, content: str) -> None:
    p = tmp_path / "wave3_context.txt"
    p.write_text(content)
    with pytest.raises(MetadataError) as info:
        load_context(p)
    msg = _single_line(info)
    assert msg.startswith("wave3_context.txt is empty — describe")


def test_load_context_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as info:
        load_context(tmp_path / "wave4_context.txt")
    assert "wave4_context.txt" in _single_line(info)


# ----- metadata must cover exactly the var types -------------------------------------------------

META = {
    "vaccimportant": VariableMeta(question="q", responses={"1": "a", "2": "b"}),
    "age": VariableMeta(question="Age", range=(18, 90)),
}


def test_check_metadata_covers_accepts_exact_match() -> None:
    check_metadata_covers(
        META, {"vaccimportant": "an ordinal", "age": "a continuous"}, "m.json", "t.json"
    )


def test_check_metadata_covers_missing_variables() -> None:
    types = {"vaccimportant": "an ordinal", "age": "a continuous", "x": "a binary", "y": "a binary"}
    with pytest.raises(MetadataError) as info:
        check_metadata_covers(META, types, "metadata_wave3.json", "types_wave3.json")
    assert _single_line(info) == (
        "metadata_wave3.json lacks variables: x, y — add them or drop them from types_wave3.json"
    )


def test_check_metadata_covers_extra_variables() -> None:
    with pytest.raises(MetadataError) as info:
        check_metadata_covers(
            META, {"age": "a continuous"}, "metadata_wave3.json", "types_wave3.json"
        )
    msg = _single_line(info)
    assert msg.startswith(
        "metadata_wave3.json has variables not in types_wave3.json: vaccimportant"
    )
    assert "remove them or add them to types_wave3.json" in msg


def test_check_metadata_covers_coded_variable_without_codes() -> None:
    meta = {"sex": VariableMeta(question="Sex")}
    with pytest.raises(MetadataError) as info:
        check_metadata_covers(meta, {"sex": "a binary"}, "metadata_wave1.json", "types_wave1.json")
    msg = _single_line(info)
    assert "metadata_wave1.json: variable 'sex' is a binary but lists no response codes" in msg


# ----- formats of real codebooks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (
            "1 = much worse ... 5 = much better",
            {"1": "much worse", "2": "2", "3": "3", "4": "4", "5": "much better"},
        ),
        ("0 = never … 3 = always", {"0": "never", "1": "1", "2": "2", "3": "always"}),
        ("1=Low; 2=Fair ... 4=High", {"1": "Low", "2": "Fair", "3": "3", "4": "High"}),
        ("1=Low, 2=Fair ... 4=High", {"1": "Low", "2": "Fair", "3": "3", "4": "High"}),
        ("1 = bad, very ... 3 = good", {"1": "bad, very", "2": "2", "3": "good"}),
        (
            "-2 = strongly against ... 2",
            {"-2": "strongly against", "-1": "-1", "0": "0", "1": "1", "2": "2"},
        ),
        (
            "Social Democrat=Social Democrat; Green/Left Alliance=Green/Left Alliance",
            {"Social Democrat": "Social Democrat", "Green/Left Alliance": "Green/Left Alliance"},
        ),
        (
            "Conservative; Labour; Social Democrat",
            {
                "Conservative": "Conservative",
                "Labour": "Labour",
                "Social Democrat": "Social Democrat",
            },
        ),
        (
            "Church of England | lower middle | Green/Left Alliance",
            {
                "Church of England": "Church of England",
                "lower middle": "lower middle",
                "Green/Left Alliance": "Green/Left Alliance",
            },
        ),
        ("1; 2; 3", {"1": "1", "2": "2", "3": "3"}),
        ("-1=Disagree; 0=Neither; 1=Agree", {"-1": "Disagree", "0": "Neither", "1": "Agree"}),
    ],
)
def test_real_codebook_response_formats(cell: str, expected: dict) -> None:
    assert parse_responses(cell, variable="v", source="d.csv") == {"responses": expected}


@pytest.mark.parametrize("cell", ["integer", "text", "Number of years", "ID", ""])
def test_id_like_and_free_cells_have_no_codes(cell: str) -> None:
    parsed = parse_responses(cell, variable="id", source="d.csv")
    assert "responses" not in parsed and "range" not in parsed
    meta = VariableMeta(question="Respondent id", **parsed)
    assert meta.codes() == []


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        ("5 = high ... 1 = low", "cannot read the scale '5 = high ... 1 = low'"),
        ("1 = low ... 500 = high", "at most 101 points"),
        ("1=Low ... 5=High; 3=Middle", "code 3 appears twice"),
    ],
)
def test_bad_scales_are_one_line_errors(cell: str, fragment: str) -> None:
    with pytest.raises(MetadataError) as info:
        parse_responses(cell, variable="v", source="d.csv")
    assert fragment in _single_line(info)


def test_every_error_of_a_dictionary_in_one_pass(tmp_path: Path) -> None:
    p = tmp_path / "dict.csv"
    p.write_text(
        "variable,question,responses,type\n"
        "a,A?,1=Yes; maybe,\n"
        ",orphan,1=x,\n"
        "b,B?,1=Yes; 2=No,likertish\n"
        "c,C?,90-18,\n"
        "a,A again?,1=Yes,\n"
        "d,D?,1 = low ... 5 = high,ordinal\n"
    )
    with pytest.raises(MetadataError) as info:
        metadata_from_csv(p)
    lines = str(info.value).splitlines()
    assert len(lines) == 5, lines
    assert lines[0].startswith("dict.csv: variable 'a': cannot read response 'maybe'")
    assert lines[1].startswith("dict.csv: line 3 has no variable name")
    assert lines[2].startswith("dict.csv: line 4: type 'likertish' of 'b' is not one of ordinal")
    assert lines[3].startswith(
        "dict.csv: variable 'c': range '90-18' runs from a larger to a smaller"
    )
    assert lines[4].startswith("dict.csv: line 6: variable 'a' appears twice")
    assert all(" — " in line for line in lines)


def test_type_column_is_read_with_the_metadata(tmp_path: Path) -> None:
    from panelsynth.dictionaries import read_csv_dictionary

    p = tmp_path / "dict.csv"
    p.write_text(
        "variable,question,responses,type\n"
        "a,A?,1=Yes; 2=No; 3=Maybe,categorical\n"
        "b,B?,0-7,Continuous\n"
        "c,C?,1 = low ... 5 = high,\n"
    )
    read = read_csv_dictionary(p)
    assert read.declared == {"a": "a categorical", "b": "a continuous"}
    assert read.meta["c"].codes() == [1, 2, 3, 4, 5]
