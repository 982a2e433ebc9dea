"""A panel's waves run together (issue 19, scale): a later wave's call starts once its
respondents' previous rows are saved — never before, and not only when the whole previous wave
is done; a wave that stops early blocks only what depends on it; a resume checks that restored
calls were written for the previous answers the earlier checkpoints still hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from panelstub import panel_responder, requested, run_cli
from panelws import write_panel_workspace
from servers.openai_stub import OpenAIStub

from panelsynth.workspace import Workspace

ID = "respondent_id"


def _args(ws: Path, url: str, waves: str, *extra: str, concurrency: int = 4) -> list[str]:
    return [
        "run", "-w", str(ws), "--panel", "--waves", waves, "--model", "openai/stub-model",
        "--base-url", url, "--model-dir", "panel", "--n-outputs", "4", "--concurrency",
        str(concurrency), "--yes", *extra,
    ]  # fmt: skip


def _wave_of(body: dict) -> str:
    text = body["messages"][-1]["content"]
    return re.search(r"write the wave (\S+) answers of the", text).group(1)


def _ids(body: dict) -> list[str]:
    return [rid for rid, *_ in requested(body)]


@pytest.fixture
def panel(tmp_path: Path) -> Path:
    return write_panel_workspace(
        tmp_path / "ws", n=48, waves=3, reentry=0.0, retention=(0.9, 0.8), seed=4
    )


def test_a_later_waves_call_starts_after_its_inputs_are_saved_and_before_the_wave_ends(
    panel: Path,
) -> None:
    with OpenAIStub(panel_responder(), latency=0.15) as stub:
        r = run_cli(_args(panel, stub.base_url, "1,2,3"))
        assert r.exit_code == 0, r.output
        calls = [q for q in stub.requests if requested(q.body)]
    by_wave: dict[str, list] = {}
    for q in calls:
        by_wave.setdefault(_wave_of(q.body), []).append(q)
    # the respondent's row of a wave was written by the call that asked for them (one each:
    # the stub answers every requested respondent validly)
    wrote = {(w, rid): q for w, qs in by_wave.items() for q in qs for rid in _ids(q.body)}
    overlap = False
    for wave, prev in (("2", "1"), ("3", "2")):
        for q in by_wave[wave]:
            for rid in _ids(q.body):
                source = wrote[(prev, rid)]
                assert source.finished <= q.started  # its input existed when it was asked
        last_prev_end = max(q.finished for q in by_wave[prev])
        overlap |= min(q.started for q in by_wave[wave]) < last_prev_end
    assert overlap  # the waves overlap: no partial round at the end of each wave
    ws = Workspace(panel)
    for w in ("1", "2", "3"):
        m = json.loads(ws.manifest("panel", w).read_text())
        assert m["status"] == "complete" and m["rows"] == m["wanted"]


def _stuck(rid: str):  # noqa: ANN202
    """Spoil the rows of ``rid`` in wave 1 (a wrong cluster: rejected every time)."""

    def spoil(body: dict, rows: list[dict]) -> list[dict]:
        if _wave_of(body) != "1":
            return rows
        return [{**r, "cluster": 9} if r[ID] == rid else r for r in rows]

    return spoil


def test_a_wave_that_stops_early_blocks_only_its_dependants_and_resume_finishes(
    panel: Path,
) -> None:
    ws = Workspace(panel)
    stuck = "S00003"
    with OpenAIStub(panel_responder(_stuck(stuck))) as stub:
        r = run_cli(_args(panel, stub.base_url, "1,2,3"))
        assert r.exit_code == 2, r.output
        first = [q.body for q in stub.requests if requested(q.body)]
    assert "wave 1" in r.output  # the cause is named, not the blocked later waves
    assert not any(stuck in _ids(b) for b in first if _wave_of(b) != "1")  # never asked
    assert any(_wave_of(b) == "2" for b in first)  # the others went on
    saved2 = [json.loads(x) for x in ws.checkpoint("panel", "2").read_text().splitlines()[1:]]
    with OpenAIStub(panel_responder()) as stub:
        r = run_cli(_args(panel, stub.base_url, "1,2,3", "--resume"))
        assert r.exit_code == 0, r.output
        second = [q.body for q in stub.requests if requested(q.body)]
    done2 = {int(i) for rec in saved2 for i in rec.get("panel_fulfilled", [])}
    again = [b for b in second if _wave_of(b) == "2"]
    assert again  # the blocked call of wave 2 ...
    out2 = pd.read_csv(ws.output_csv("panel", "2"), dtype={ID: str})
    asked_again = {rid for b in again for rid in _ids(b)}
    assert stuck in asked_again
    assert len(asked_again) + len(done2) == len(out2)  # ... and nothing saved asked again
    for w in ("1", "2", "3"):
        m = json.loads(ws.manifest("panel", w).read_text())
        assert m["status"] == "complete" and m["rows"] == m["wanted"]


def test_resume_refuses_calls_written_for_answers_the_earlier_checkpoint_lost(
    panel: Path,
) -> None:
    ws = Workspace(panel)
    with OpenAIStub(panel_responder()) as stub:
        assert run_cli(_args(panel, stub.base_url, "1,2,3")).exit_code == 0
    # wave 1's first call is lost (a hand-edited checkpoint), and its respondents get other
    # answers when it is asked again
    ckpt = ws.checkpoint("panel", "1")
    lines = ckpt.read_text().splitlines(keepends=True)
    ckpt.write_text(lines[0] + "".join(lines[2:]))
    ws.output_csv("panel", "1").unlink()

    def other(body: dict, rows: list[dict]) -> list[dict]:
        return [{**r, "q1": 1 if r["q1"] != 1 else 2} for r in rows]

    with OpenAIStub(panel_responder(other)) as stub:
        r = run_cli(_args(panel, stub.base_url, "1,2,3", "--resume"))
    assert r.exit_code == 2, r.output
    assert "no longer hold" in r.output and "--restart" in r.output
    assert "Traceback" not in r.output


def test_drop_copies_tops_up_a_row_equal_to_a_real_one_and_formats_export_each_wave(
    panel: Path,
) -> None:
    ws = Workspace(panel)
    real = pd.read_csv(ws.original_data("1"))
    items = ["q1", "q2", "q3", "q4"]
    copied: list[tuple[str, dict]] = []

    def spoil(body: dict, rows: list[dict]) -> list[dict]:
        # once: the first respondent asked in wave 1 gets the answers of a real respondent of
        # their cluster (ids aside, a copy of a real row)
        if _wave_of(body) != "1" or copied:
            return rows
        donor = real[real["cluster"] == rows[0]["cluster"]].iloc[0]
        copy = {q: int(donor[q]) for q in items}
        copied.append((rows[0][ID], copy))
        return [{**rows[0], **copy}, *rows[1:]]

    with OpenAIStub(panel_responder(spoil)) as stub:
        r = run_cli(_args(panel, stub.base_url, "1,2", "--drop-copies", "--format", "parquet"))
        assert r.exit_code == 0, r.output
        asked = [_ids(q.body) for q in stub.requests if requested(q.body)]
    rid, copy = copied[0]
    m = json.loads(ws.manifest("panel", "1").read_text())
    # random answers copy a real row now and then too (4 items of 5 levels): at least ours
    assert m["copies_dropped"] >= 1 and m["settings"]["drop_copies"] is True
    assert sum(rid in ids for ids in asked if ids) >= 2  # dropped, then asked again
    out = pd.read_csv(ws.output_csv("panel", "1"), dtype={ID: str})
    assert {q: int(out.set_index(ID).loc[rid, q]) for q in items} != copy
    keys = ["cluster", *items]
    real_rows = set(real[keys].itertuples(index=False, name=None))
    assert not any(t in real_rows for t in out[keys].itertuples(index=False, name=None))
    for w in ("1", "2"):
        exported = ws.output_csv("panel", w).with_suffix(".parquet")
        csv_ids = pd.read_csv(ws.output_csv("panel", w), dtype={ID: str})[ID].tolist()
        assert pd.read_parquet(exported)[ID].astype(str).tolist() == csv_ids
        assert ws.rel(exported) in json.loads(ws.manifest("panel", w).read_text())["exports"]
