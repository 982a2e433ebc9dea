"""No tracebacks, and messages that say the right thing (issue 13, items 21-22).

* One line, exit 2, no paid call: a TOML nested 100,000 levels; variables named ``_private``,
  ``model_config`` or ``json`` (no Pydantic warning either); a range ``5-1`` in
  ``metadata from-csv``; ``missing_codes`` that include the cluster labels.
* A cache entry of the wrong shape (``{}``) is ignored with a warning and computed again.
* A quoted 2 MB cell is cut to a few dozen characters; Ctrl-C during steps 1-2 does not claim a
  checkpoint; ``--wave 2 --wave 2`` runs wave 2 once; a 50,000-character question text gets a
  warning in the run and in the dry run (which shows the prompt sizes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fakes import write_tiny_workspace
from relhelpers import hash_tree, is_step3, nonblank_lines, responder, run_cli, stub_args
from servers.openai_stub import OpenAIStub

from panelsynth.errors import cap_long_words
from panelsynth.run import wave as pipeline
from panelsynth.workspace import Workspace


def _error_line(output: str) -> str:
    errors = [x for x in nonblank_lines(output) if x.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def _refused(root: Path, check: str) -> str:
    """Run wave 2 against a stub: exit 2, one line containing ``check``, no call, no change."""
    before = hash_tree(root)
    with OpenAIStub(responder()) as stub:
        r = run_cli(stub_args(root, stub.base_url))
        assert not stub.requests, "a model was called"
    line = _error_line(r.output)
    assert r.exit_code == 2 and check in line, line
    assert hash_tree(root) == before
    return r.output


def test_a_toml_nested_100000_levels(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    (root / "panelsynth.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    _refused(root, "nested too deeply")


@pytest.mark.parametrize("name", ["_private", "model_config", "json", "model_fields"])
def test_variable_names_that_cannot_be_fields_are_refused_before_any_call(
    tmp_path: Path, name: str
) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    df = pd.read_csv(ws.original_data("2")).rename(columns={"worryflu": name})
    df.to_csv(ws.original_data("2"), index=False)
    for path in (ws.metadata_json("2"), ws.var_types("2")):
        doc = json.loads(path.read_text())
        doc[name] = doc.pop("worryflu")
        path.write_text(json.dumps(doc))
    out = _refused(root, f"variable name '{name}'")
    assert "rename the variable" in out and "Warning" not in out and "shadows" not in out


def test_a_range_from_high_to_low_in_metadata_from_csv(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    csv = tmp_path / "dictionary.csv"
    csv.write_text("variable,question,responses\nscore,A score,5-1\n")
    r = run_cli(["metadata", "from-csv", str(csv), "--wave", "3", "-w", str(root)])
    line = _error_line(r.output)
    assert r.exit_code == 2 and "'score'" in line and "'1-5'" in line
    assert not Workspace(root).metadata_json_for_write("3").exists()


def test_missing_codes_that_are_cluster_labels_name_the_clash(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    cfg = root / "panelsynth.toml"
    cfg.write_text(cfg.read_text().replace("[study]", "[study]\nmissing_codes = [-99, 1, 2]", 1))
    out = _refused(root, "study.missing_codes lists 1, 2, which are cluster labels")
    assert "empty labels" not in out


def test_a_cache_entry_of_the_wrong_shape_is_recomputed(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    with OpenAIStub(responder()) as stub:
        assert run_cli(stub_args(root, stub.base_url)).exit_code == 0
        entries = sorted(ws.cache_dir().glob("step*.json"))
        assert [p.name[:5] for p in entries] == ["step1", "step2"]
        for p in entries:
            p.write_text("{}")
        before = len(stub.requests)
        r = run_cli(stub_args(root, stub.base_url, "2", "--restart"))
        assert r.exit_code == 0, r.output
        assert "wrong shape" in r.output
        assert sum(not is_step3(q.body) for q in stub.requests[before:]) == 2  # both redone
    for p in entries:
        assert json.loads(p.read_text()) != {}


def test_a_quoted_2mb_cell_is_cut(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    df = pd.read_csv(ws.original_data("2"))
    df["vaccsafe"] = df["vaccsafe"].astype(object)
    df.loc[3, "vaccsafe"] = "x" * 2_000_000
    df.to_csv(ws.original_data("2"), index=False)
    out = _refused(root, "non-numeric values such as 'xxxx")
    assert len(_error_line(out)) < 400 and "…" in out


def test_ctrl_c_during_steps_1_2_claims_no_checkpoint(tmp_path: Path, monkeypatch) -> None:
    root = write_tiny_workspace(tmp_path / "ws")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "format_metadata", interrupted)  # Ctrl-C in step 2
    with OpenAIStub(responder()) as stub:
        r = run_cli(stub_args(root, stub.base_url))
    assert r.exit_code == 130
    assert "Interrupted during steps 1-2" in r.output and "no checkpoint" in r.output
    assert "is saved in" not in r.output and "--resume" not in r.output
    assert not Workspace(root).checkpoint("stub", "2").exists()


def test_the_same_wave_twice_runs_once(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    with OpenAIStub(responder()) as stub:
        r = run_cli([*stub_args(root, stub.base_url), "--wave", "2"])
        assert r.exit_code == 0, r.output
        assert sum(is_step3(q.body) for q in stub.requests) == 2
    assert r.output.count("wave 2: 6/6 rows") == 1


def test_a_huge_question_text_is_warned_about_and_sized_in_the_dry_run(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    meta = json.loads(ws.metadata_json("2").read_text())
    meta["vaccsafe"]["question"] = "Is it safe? " * 5000  # 60,000 characters (+35 of labels)
    ws.metadata_json("2").write_text(json.dumps(meta))
    r = run_cli(["run", "-w", str(root), "--wave", "2", "--model", "openai/gpt-4o", "--dry-run"])
    assert r.exit_code == 0, r.output
    note = "the texts of variable 'vaccsafe' have 60,035 characters (more than 10,000)"
    assert f"note: Dictionaries/json_metadata/metadata_wave2.json: {note}" in r.output
    assert "input tokens" in r.output
    with OpenAIStub(responder()) as stub:
        r = run_cli(stub_args(root, stub.base_url))
        assert r.exit_code == 0, r.output
    assert "WARNING" in r.output and "60,035 characters" in r.output
    warnings = json.loads(ws.manifest("stub", "2").read_text())["warnings"]
    assert any(note in w for w in warnings)


def test_a_huge_cluster_label_is_cut_and_any_huge_word_of_an_error_too(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    df = pd.read_csv(ws.original_data("2"))
    df["cluster"] = df["cluster"].astype(object)
    df.loc[1, "cluster"] = "z" * 1_000_000
    df.to_csv(ws.original_data("2"), index=False)
    out = _refused(root, "column 'cluster' has labels zzz")
    assert len(_error_line(out)) < 400
    # the CLI's last guard, for a message that quotes a value without capping it
    line = cap_long_words("bad value " + "q" * 2_000_000 + " — fix it")
    assert line.startswith("bad value qqq") and line.endswith("… — fix it") and len(line) < 120
