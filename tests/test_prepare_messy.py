"""``prepare`` on the messy survey (tests/messy.py): real-survey conventions, not the demo's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from messy import (
    BATTERY,
    BROKEN_ROWS,
    CATEGORICAL,
    ELLIPSIS,
    LIKERT,
    TRINARY,
    MessySurvey,
    write_dictionary,
    write_messy_survey,
)

from panelsynth.calibrate import default_anchors
from panelsynth.config import DEFAULT_MISSING_CODES, load_config
from panelsynth.data import load_wave
from panelsynth.errors import MetadataError
from panelsynth.missing import looks_missing
from panelsynth.prepare import PrepareResult, prepare_workspace
from panelsynth.workspace import Workspace


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> tuple[MessySurvey, PrepareResult]:
    """The messy survey (300 respondents, 3 waves) prepared with the default settings."""
    survey = write_messy_survey(tmp_path_factory.mktemp("messy") / "ws")
    return survey, prepare_workspace(survey.root)


def _json(root: Path, rel: str) -> dict:
    return json.loads((root / rel).read_text(encoding="utf-8"))


def _labelled_answers(responses: str) -> set[str]:
    """Codes a dictionary cell lists as answers (not as 'Don't know' and the like)."""
    from panelsynth.dictionaries import parse_responses

    parsed = parse_responses(responses, variable="v", source="d")
    return {c for c, label in (parsed.get("responses") or {}).items() if not looks_missing(label)}


def test_no_labelled_answer_becomes_na(messy) -> None:
    survey, result = messy
    cells = {name: resp for name, _, resp, _ in survey.dictionary}
    for wave, raw in survey.raw.items():
        out = pd.read_csv(survey.root / "Original data" / f"wave{wave}.csv").set_index("id")
        raw = raw.set_index("id").loc[out.index]
        for var in [*BATTERY, *CATEGORICAL]:
            answers = _labelled_answers(cells[var])
            as_text = raw[var].map(lambda v: "" if pd.isna(v) else str(v))
            is_answer = as_text.isin(answers)
            assert is_answer.sum() > 0
            kept = out.loc[is_answer, var]
            assert kept.notna().all(), (wave, var)  # no labelled answer became NA
            assert (kept.astype(str).str.replace(".0", "", regex=False) == as_text[is_answer]).all()
            # and every missing code did become NA
            assert out.loc[as_text.isin(["-99", "-9"]), var].isna().all(), (wave, var)
        # the -1s of the -1/0/1 battery are answers although -1 is a default missing code
        assert (out[TRINARY[0]] == -1).sum() == (raw[TRINARY[0]].astype(str) == "-1").sum() > 10


def test_missing_code_counts_are_reported_per_variable(messy) -> None:
    survey, result = messy
    report = pd.read_csv(survey.root / "Prepare" / "missing_codes.csv", dtype={"code": str})
    raw = survey.raw["1"]

    def row(var: str, code: str) -> pd.Series:
        hit = report[(report.wave == 1) & (report.variable == var) & (report.code == code)]
        assert len(hit) == 1, (var, code)
        return hit.iloc[0]

    trinary = row(TRINARY[0], "-1")
    assert trinary.action == "kept as answer"
    assert trinary.n == (raw[TRINARY[0]].astype(str) == "-1").sum()
    assert "Disagree" in trinary.why
    dk = row(LIKERT[0], "-9")
    assert dk.action == "set to NA" and dk.n == (raw[LIKERT[0]].astype(str) == "-9").sum() > 0
    refused = row("party", "-99")
    assert refused.action == "set to NA" and refused.n == (raw["party"].astype(str) == "-99").sum()
    # one warning per -1/0/1 item naming it, not one per wave
    kept = [w for w in result.warnings if "kept as an answer" in w]
    assert len(kept) == len(TRINARY)
    assert all(any(f"'{v}'" in w for w in kept) for v in TRINARY)


def test_types_follow_declared_and_observed_codes(messy) -> None:
    survey, _ = messy
    types = _json(survey.root, "Dictionaries/var_types/full/types_wave1.json")
    for var in BATTERY:
        assert types[var] == "an ordinal", var  # -1/0/1 is 3 codes, an ellipsis 1..5 is 5
    for var in CATEGORICAL:
        assert types[var] == "a categorical", var
    assert types["gender"] == "a categorical"  # a demographic with 3 codes
    assert types["age"] == "a continuous"
    assert types["days_active"] == "an ordinal"  # a count 0-7: 8 whole-number points
    assert "id" not in types and "comment" not in types
    report = pd.read_csv(survey.root / "Prepare" / "types.csv")
    wave1 = report[report.wave == 1].set_index("variable")
    assert set(wave1.index) == set(types)
    assert (wave1["type"] == pd.Series(types)).all()
    assert wave1.loc[LIKERT[0], "why"] == "declared in the dictionary's type column"
    assert wave1.loc[TRINARY[0], "why"].startswith("3 ordered numeric codes")
    assert wave1.loc["days_active", "why"].startswith("dictionary range 0-7")
    assert wave1.loc["gender", "role"] == "demographic"
    assert wave1["why"].notna().all()


def test_every_category_is_in_the_metadata_with_its_label(messy) -> None:
    survey, _ = messy
    for wave, raw in survey.raw.items():
        meta = _json(survey.root, f"Dictionaries/json_metadata/full/metadata_wave{wave}.json")
        for var, labels in CATEGORICAL.items():
            assert meta[var]["responses"] == {lab: lab for lab in labels}
            seen = {str(v) for v in raw[var].dropna()} - {"-99"}
            assert seen <= set(meta[var]["responses"])
        assert meta[ELLIPSIS[0]]["responses"] == {
            "1": "much worse", "2": "2", "3": "3", "4": "4", "5": "much better"
        }
        assert meta[TRINARY[0]]["responses"] == {"-1": "Disagree", "0": "Neither", "1": "Agree"}
        assert "-9" not in meta[LIKERT[0]]["responses"]  # "Don't know" is missing, not an answer
        assert meta["days_active"]["responses"] == {str(i): str(i) for i in range(8)}
        assert meta["party"]["question"].startswith("Which party did you vote for")


def test_gender_is_used_as_the_demographic(messy) -> None:
    survey, result = messy
    assert all(r.demographics == ["age", "gender"] for r in result.waves)
    assert all("gender" not in r.items for r in result.waves)  # not clustered on
    fit = _json(survey.root, "Prepare/fit_wave1.json")
    assert fit["demographics"] == ["age", "gender"]
    notes = [w for w in result.warnings if "'sex'" in w]
    assert len(notes) == 1 and "'gender' is used" in notes[0]
    dense = _json(survey.root, "Dictionaries/var_types/types_wave1.json")
    assert {"age", "gender"} <= set(dense)
    # ... and the calibrated mode takes it as a default anchor
    assert default_anchors(["age", "sex"], list(dense)) == ["age", "gender"]


def test_run_time_reading_keeps_the_labelled_answers(messy, caplog) -> None:
    survey, _ = messy
    cfg = load_config(survey.root / "panelsynth.toml")
    assert cfg.study.missing_codes == DEFAULT_MISSING_CODES
    with caplog.at_level(logging.INFO, logger="panelsynth"):
        for _ in range(2):
            wd = load_wave(
                Workspace(survey.root), "2", mode="full", missing_codes=cfg.study.missing_codes
            )
    said = [r.getMessage() for r in caplog.records if "kept as answers" in r.getMessage()]
    assert len(said) == 1  # one line per metadata file, not one per variable or per load
    assert said[0].startswith(
        "Dictionaries/json_metadata/full/metadata_wave2.json lists the missing code(s) -1 as "
        f"answers of {len(TRINARY)} variables (att01, att02"
    )
    raw = survey.raw["2"]
    for var in TRINARY:
        assert (wd.frame[var] == -1).sum() == (raw[var].astype(str) == "-1").sum() > 0


def test_every_dictionary_error_in_one_pass(tmp_path: Path) -> None:
    survey = write_messy_survey(tmp_path / "ws", waves=("1",), n=80)
    write_dictionary(survey.root / "Dictionaries" / "dictionary.csv", BROKEN_ROWS)
    with pytest.raises(MetadataError) as info:
        prepare_workspace(survey.root)
    lines = str(info.value).splitlines()
    assert len(lines) == 4, lines
    assert all(line.startswith("dictionary.csv: ") and " — " in line for line in lines)
    assert "'att01': cannot read response 'maybe'" in lines[0]
    assert "'att02': cannot read the scale '5 = high ... 1 = low'" in lines[1]
    assert "type 'likertish' of 'att03'" in lines[2]
    assert "line 6: variable 'gender' appears twice" in lines[3]
    assert not (survey.root / "Original data" / "wave1.csv").exists()


def test_value_labels_of_a_sav_wave_keep_their_answers_too(tmp_path: Path) -> None:
    import pyreadstat

    survey = write_messy_survey(tmp_path / "ws", waves=("1",), n=120)
    (survey.root / "Dictionaries" / "dictionary.csv").unlink()  # the file's own labels only
    csv_path = survey.root / "Raw data" / "wave1.csv"
    df = pd.read_csv(csv_path)[["id", "gender", "age", *TRINARY]]
    labels = {v: {-1.0: "Disagree", 0.0: "Neither", 1.0: "Agree"} for v in TRINARY}
    pyreadstat.write_sav(
        df.astype(float),
        str(survey.root / "Raw data" / "wave1.sav"),
        column_labels={c: f"label of {c}" for c in df.columns},
        variable_value_labels=labels,
    )
    csv_path.unlink()
    result = prepare_workspace(survey.root)
    out = pd.read_csv(survey.root / "Original data" / "wave1.csv")
    assert (out[TRINARY[0]] == -1).sum() == (df[TRINARY[0]] == -1).sum() > 0
    kept = [w for w in result.warnings if "kept as an answer" in w]
    assert len(kept) == len(TRINARY) and "Raw data/wave1.sav's labels" in kept[0]
