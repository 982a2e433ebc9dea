"""Variable types of SPSS and Stata waves: the file's measurement level, the dictionary's word."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from labelled import QUESTIONS, labelled_survey

from panelsynth.prepare import prepare_workspace
from panelsynth.workspace import Workspace


def _types(root: Path) -> dict[str, str]:
    return json.loads((root / "Dictionaries/var_types/full/types_wave1.json").read_text())


def _metadata(root: Path) -> dict:
    return json.loads((root / "Dictionaries/json_metadata/full/metadata_wave1.json").read_text())


def test_spss_measurement_levels_type_the_items(tmp_path: Path) -> None:
    root = labelled_survey(tmp_path / "ws", ".sav")
    result = prepare_workspace(root)
    assert _types(root) == {
        "party": "a categorical",  # 1=Conservative, 2=Labour, ...: nominal in the file
        "agree": "an ordinal",
        "trust": "an ordinal",
        "age": "a continuous",
    }
    assert result.assumed_ordinals() == []
    why = pd.read_csv(root / "Prepare/types.csv").set_index("variable")["why"]
    assert why["party"] == "measurement level nominal in the SPSS file"
    assert _metadata(root)["party"]["responses"]["2"] == "Labour"


def test_the_dictionarys_type_beats_the_files_level(tmp_path: Path) -> None:
    root = labelled_survey(tmp_path / "ws", ".sav")
    Workspace(root).study_dictionary().write_text(
        "variable,question,responses,type\n"
        'party,Party closest to,"1=Con; 2=Lab; 3=LD; 4=Green",\n'  # no type: the file's level
        "agree,,,categorical\n"  # the user's word, the file's texts
        "trust,,,\n",
        encoding="utf-8",
    )
    result = prepare_workspace(root)
    types = _types(root)
    assert types["party"] == "a categorical"  # the dictionary's codes alone would say ordinal
    assert types["agree"] == "a categorical"
    assert types["trust"] == "an ordinal"
    assert result.assumed_ordinals() == []
    meta = _metadata(root)
    assert meta["party"]["question"] == "Party closest to"  # the dictionary's text wins
    assert meta["agree"]["question"] == QUESTIONS["agree"]  # a type-only row keeps the file's
    assert meta["agree"]["responses"]["5"] == "Strongly agree"
    assert meta["trust"]["question"] == QUESTIONS["trust"]
    assert not any("lacks variable" in w for w in result.warnings)


def test_a_stata_wave_keeps_the_codes_rule_and_names_what_it_assumed(tmp_path: Path) -> None:
    root = labelled_survey(tmp_path / "ws", ".dta")
    result = prepare_workspace(root)
    types = _types(root)
    assert types["party"] == types["agree"] == "an ordinal"  # no level in a .dta file
    assert types["age"] == "a continuous"
    assert result.assumed_ordinals() == ["party", "agree", "trust"]
