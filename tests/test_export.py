"""``--format sav|dta|parquet``: labelled statistical files next to the CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes import fake_answer

from panelsynth.errors import PanelsynthError
from panelsynth.export import Labels, export_table, parse_formats, wave_labels
from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace

OPTS = {"n_outputs": 4, "n_batches": 3, "mode": "full"}


def test_parse_formats_always_keeps_csv_and_accepts_lists() -> None:
    assert parse_formats(None) == ["csv"]
    assert parse_formats(["sav,dta", "sav", " .parquet "]) == ["csv", "sav", "dta", "parquet"]
    with pytest.raises(PanelsynthError, match="--format must be one of"):
        parse_formats(["xlsx"])


def _check_labelled(path: Path, meta: dict, df: pd.DataFrame) -> None:
    import pyreadstat

    reader = pyreadstat.read_sav if path.suffix == ".sav" else pyreadstat.read_dta
    back, info = reader(str(path))
    assert list(back.columns) == list(df.columns)
    labels = info.column_names_to_labels
    for col in df.columns:
        assert labels[col], f"{col} has no variable label"
        if col in meta:
            want = meta[col]["question"]
            assert labels[col] == (want if path.suffix == ".sav" else want[:80])
            if "responses" in meta[col]:
                got = {int(k): v for k, v in info.variable_value_labels[col].items()}
                assert got == {int(k): v for k, v in meta[col]["responses"].items()}
        else:  # cluster columns
            assert info.variable_value_labels[col] == {1: "Cluster 1", 2: "Cluster 2"}
    # missing answers are system missing, every value is kept
    pd.testing.assert_frame_equal(
        back.astype("float64"), df.astype("float64"), check_dtype=False, check_names=False
    )


def test_run_writes_labelled_sav_dta_and_parquet(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer)
    res = run_wave(
        tiny_workspace, "2", client, "fake",
        RunOptions(**OPTS, formats=["sav", "dta", "parquet"]),
    )
    ws = Workspace(tiny_workspace)
    csv = ws.output_csv("fake", "2")
    df = pd.read_csv(csv)
    meta = json.loads(ws.metadata_json("2").read_text())
    for suffix in (".sav", ".dta"):
        _check_labelled(csv.with_suffix(suffix), meta, df)
    import pyarrow.parquet as pq

    table = pq.read_table(csv.with_suffix(".parquet"))
    stored = json.loads(table.schema.metadata[b"panelsynth.labels"])
    assert stored["variables"]["vaccsafe"] == meta["vaccsafe"]["question"]
    pd.testing.assert_frame_equal(table.to_pandas(), df, check_dtype=False)
    assert res.manifest_data["exports"] == [
        ws.rel(csv.with_suffix(s)) for s in (".sav", ".dta", ".parquet")
    ]
    assert not list(csv.parent.glob(".*.tmp"))


def test_missing_answers_are_system_missing(tmp_path: Path) -> None:
    import pyreadstat

    frame = pd.DataFrame({"q": [1, None, 3], "cluster": [1, 2, 1]})
    labels = wave_labels(
        {"q": _meta("Question?", {"1": "low", "3": "high"})}, frame.columns, "cluster", None
    )
    csv = tmp_path / "gen_data_wave1.csv"
    written = export_table(frame, labels, csv, ["csv", "sav", "dta"])
    assert [p.suffix for p in written] == [".sav", ".dta"]
    for path in written:
        reader = pyreadstat.read_sav if path.suffix == ".sav" else pyreadstat.read_dta
        back, info = reader(str(path))
        assert np.isnan(back["q"][1]) and back["q"][0] == 1
        assert info.missing_ranges == {} or "q" not in info.missing_ranges  # system missing
        assert info.variable_value_labels["q"] == {1: "low", 3: "high"}


def test_write_failure_is_one_line(tmp_path: Path) -> None:
    frame = pd.DataFrame({"q": [1, 2]})
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder")
    with pytest.raises(PanelsynthError, match="cannot write"):
        export_table(frame, Labels(), blocker / "gen_data_wave1.csv", ["sav"])


def _meta(question: str, responses: dict[str, str]):  # type: ignore[no-untyped-def]
    from panelsynth.dictionaries import VariableMeta

    return VariableMeta(question=question, responses=responses)


def test_cli_format_sav_and_dta_on_the_demo_panel(tmp_path: Path) -> None:
    """``panelsynth run --format sav --format dta`` on the demo workspace (an OpenAI-compatible
    stub answers): every variable comes back with its question text and response labels."""
    import pyreadstat
    from fakes import varied_rows
    from servers.openai_stub import OpenAIStub
    from typer.testing import CliRunner

    from panelsynth.cli import app
    from panelsynth.demo import build_demo

    root = build_demo(tmp_path / "demo").workspace.root
    with OpenAIStub(responder=varied_rows) as stub:
        r = CliRunner().invoke(
            app,
            ["run", "-w", str(root), "--wave", "2", "--model", "openai/stub-model",
             "--base-url", stub.base_url, "--model-dir", "stub", "--n-outputs", "5",
             "--n-batches", "2", "--mode", "full", "--format", "sav", "--format", "dta", "--yes"],
        )
    assert r.exit_code == 0, r.output
    ws = Workspace(root)
    csv = ws.output_csv("stub", "2")
    df = pd.read_csv(csv)
    meta = json.loads(ws.metadata_json("2", "full").read_text())
    assert len(df) == 10 and set(meta) <= set(df.columns)
    for suffix, reader in ((".sav", pyreadstat.read_sav), (".dta", pyreadstat.read_dta)):
        back, info = reader(str(csv.with_suffix(suffix)))
        assert len(back) == 10
        for col in df.columns:
            label = info.column_names_to_labels[col]
            assert label, f"{suffix}: {col} has no label"
            if col in meta:
                assert label == meta[col]["question"][:80 if suffix == ".dta" else None]
                if meta[col].get("responses"):
                    got = {str(int(k)): v for k, v in info.variable_value_labels[col].items()}
                    assert got == meta[col]["responses"], (suffix, col)
