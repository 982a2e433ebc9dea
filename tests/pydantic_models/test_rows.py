"""Row-model factory: codes, bounds, NA only where allowed, user override."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from panelsynth.dictionaries import VariableMeta
from panelsynth.errors import MetadataError
from panelsynth.pydantic_models.rows import (
    batch_model,
    build_row_model,
    build_specs,
    row_model_for_wave,
    validate_rows,
)

META = {
    "q": VariableMeta(question="Q?", responses={"1": "a", "2": "b", "3": "c"}),
    "age": VariableMeta(question="Age", range=(18, 90)),
}
TYPES = {"q": "an ordinal", "age": "a continuous"}


def _model(nullable: bool, prev: bool = False):
    specs = build_specs(
        TYPES, META, nullable=nullable, prev_cluster_column="prev_cluster" if prev else None
    )
    return build_row_model(specs), specs


def test_codes_and_bounds_enforced() -> None:
    model, _ = _model(False)
    assert model.model_validate({"q": 2, "age": 40, "cluster": 1}).q == 2
    assert model.model_validate({"q": "3", "age": "41", "cluster": "2"}).q == 3  # numeric strings
    for bad in (
        {"q": 4, "age": 40, "cluster": 1},
        {"q": 1, "age": 200, "cluster": 1},
        {"q": 1, "age": 15, "cluster": 1},
        {"q": 1, "age": 40, "cluster": 3},
        {"q": None, "age": 40, "cluster": 1},
        {"age": 40, "cluster": 1},
    ):
        with pytest.raises(ValidationError):
            model.model_validate(bad)


def test_none_only_in_full_mode() -> None:
    full, _ = _model(True)
    assert full.model_validate({"q": None, "age": "NA", "cluster": 1}).age is None
    with pytest.raises(ValidationError):
        full.model_validate({"q": 1, "age": 40, "cluster": None})  # cluster never NA


def test_schema_has_enums_and_exact_row_count() -> None:
    model, _ = _model(False, prev=True)
    schema = batch_model(model, 7).model_json_schema()
    rows = schema["properties"]["rows"]
    assert rows["minItems"] == rows["maxItems"] == 7
    props = rows["items"]["properties"]
    assert props["q"]["enum"] == [1, 2, 3]
    assert props["age"]["minimum"] == 18 and props["age"]["maximum"] == 90
    assert props["prev_cluster"]["enum"] == [1, 2]


def test_validate_rows_keeps_good_rows() -> None:
    model, specs = _model(False)
    cols = [s.name for s in specs]
    good, errors = validate_rows(
        [{"q": 1, "age": 30, "cluster": 1}, {"q": 9, "age": 30, "cluster": 1}, "junk"], model, cols
    )
    assert good == [{"q": 1, "age": 30, "cluster": 1}] and len(errors) == 2


def test_spec_allows_matches_model() -> None:
    _, specs = _model(False)
    q = specs[0]
    assert q.allows(2) and q.allows(2.0) and not q.allows(4) and not q.allows(None)


def test_workspace_model_overrides_factory(tmp_path: Path) -> None:
    (tmp_path / "wave1.py").write_text(
        "from typing import Literal\nfrom pydantic import BaseModel\n"
        "class Wave1Data(BaseModel):\n    q: Literal[1, 2]\n    age: int\n"
        "    cluster: Literal[1, 2]\n"
    )
    _, specs = _model(False)
    model, source = row_model_for_wave(specs, tmp_path, "1")
    assert source == "workspace" and model.__name__ == "Wave1Data"
    model2, source2 = row_model_for_wave(specs, tmp_path, "2")
    assert source2 == "factory"
    (tmp_path / "wave3.py").write_text(
        "from pydantic import BaseModel\nclass Wave3Data(BaseModel):\n    q: int\n"
    )
    with pytest.raises(MetadataError, match="lacks fields"):
        row_model_for_wave(specs, tmp_path, "3")
