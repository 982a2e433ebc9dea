"""``panelsynth run --panel`` against the OpenAI-compatible stub (issue 19, items 1-3)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from panelstub import PANELSYNTH, panel_responder, requested, run_cli, subprocess_env
from panelws import write_panel_workspace
from servers.openai_stub import OpenAIStub

from panelsynth.workspace import Workspace

ID = "respondent_id"
ITEMS = ["q1", "q2", "q3", "q4"]


def _args(ws: Path, url: str, waves: str, *extra: str) -> list[str]:
    return [
        "run", "-w", str(ws), "--panel", "--waves", waves, "--model", "openai/stub-model",
        "--base-url", url, "--model-dir", "panel", "--n-outputs", "4", "--concurrency", "1",
        "--yes", *extra,
    ]  # fmt: skip


def _step3(stub: OpenAIStub) -> list[dict]:
    return [r.body for r in stub.requests if requested(r.body)]


def _wave_of(body: dict) -> str:
    text = body["messages"][-1]["content"]
    return re.search(r"write the wave (\S+) answers of the", text).group(1)


def _batch(body: dict) -> int:
    text = body["messages"][-1]["content"]
    return int(re.search(r"\n\nRequest (\d+): write the wave", text).group(1)) - 1


def _out(ws: Workspace, wave: str) -> pd.DataFrame:
    return pd.read_csv(ws.output_csv("panel", wave), dtype={ID: str})


@pytest.fixture
def no_reentry(tmp_path: Path) -> Path:
    """Five study waves, drop-out by cluster, no re-entry."""
    return write_panel_workspace(
        tmp_path / "ws", n=40, waves=5, reentry=0.0, retention=(0.85, 0.7), seed=2
    )


def test_later_waves_carry_each_respondents_previous_answers_after_a_shared_prefix(
    no_reentry: Path,
) -> None:
    ws = Workspace(no_reentry)
    with OpenAIStub(panel_responder()) as stub:
        r = run_cli(_args(no_reentry, stub.base_url, "1,2,3"))
        assert r.exit_code == 0, r.output
        bodies = _step3(stub)
    assert {_wave_of(b) for b in bodies} == {"1", "2", "3"}
    for wave, prev in (("2", "1"), ("3", "2")):
        calls = [b for b in bodies if _wave_of(b) == wave]
        assert len(calls) >= 2
        prefixes = set()
        for b in calls:
            text = b["messages"][-1]["content"]
            head, sep, _ = text.partition("\n\nRequest ")
            assert sep
            prefixes.add((b["messages"][0]["content"], head))
        assert len(prefixes) == 1  # byte-identical shared prefix in every call of the wave
        prefix = next(iter(prefixes))[1]
        assert "Respondent S0" not in prefix  # nothing per respondent before the request
        assert f"followed from wave {prev} to wave {wave}" in prefix  # real trajectories
        before = _out(ws, prev).set_index(ID)
        seen = 0
        for b in calls:
            text = b["messages"][-1]["content"].partition("\n\nRequest ")[2]
            for block in text.split("\n\nRespondent ")[1:]:
                rid = block.split(" ", 1)[0]
                lines = block.splitlines()
                i = lines.index(f"Their answers in wave {prev}:")
                header, values = lines[i + 1].split(","), lines[i + 2].split(",")
                assert header == ITEMS
                want = [str(int(before.at[rid, q])) for q in ITEMS]
                assert values == want, rid
                seen += 1
        assert seen == len(_out(ws, wave))  # every requested respondent, once
    # the trajectories used are logged
    log = ws.examples_csv("panel", "2")
    assert log.exists() and "prev_q1" in log.read_text().splitlines()[0]
    manifest = json.loads((ws.output_dir("panel") / "panel_manifest.json").read_text())
    assert manifest["trajectories"]["2"] and manifest["seed"] == 42


def test_structure_counts_and_prev_cluster_over_non_consecutive_waves(no_reentry: Path) -> None:
    ws = Workspace(no_reentry)

    def spoil(body: dict, rows: list[dict]) -> list[dict]:
        # the first row of every call changes its cluster: rejected, topped up for that person
        if "Request 1:" in body["messages"][-1]["content"]:
            rows[0] = {**rows[0], "cluster": 3 - rows[0]["cluster"]}
        return rows

    with OpenAIStub(panel_responder(spoil)) as stub:
        r = run_cli(_args(no_reentry, stub.base_url, "1,3,5", "--respondents", "30"))
        assert r.exit_code == 0, r.output
    draw = pd.read_csv(ws.output_dir("panel") / "panel_draw.csv", dtype={ID: str, "wave": str})
    path = draw.pivot(index=ID, columns="wave", values="cluster")
    outs = {w: _out(ws, w) for w in ("1", "3", "5")}
    first = set(outs["1"][ID])
    assert len(first) == 30 and len(outs["1"]) == 30
    for w, frame in outs.items():
        present = set(draw.loc[(draw["wave"] == w) & draw["present"], ID])
        assert frame[ID].is_unique and set(frame[ID]) == present  # exactly one row each
        assert set(frame[ID]) <= first  # nobody new after the first generated wave
        if w != "1":  # prev_cluster = the drawn cluster in the study's previous wave: 100%
            prev_w = str(int(w) - 1)
            truth = path.loc[frame[ID], prev_w].to_numpy()
            got = frame["prev_cluster"].to_numpy()
            assert all(
                (pd.isna(a) and pd.isna(b)) or a == b for a, b in zip(got, truth, strict=True)
            )
            assert (frame["cluster"].to_numpy() == path.loc[frame[ID], w].to_numpy()).all()
    # no real re-entry: once absent, absent in every later study wave
    present = draw.pivot(index=ID, columns="wave", values="present")[list("12345")]
    for _, row in present.iterrows():
        flags = row.tolist()
        if False in flags:
            assert not any(flags[flags.index(False) :])
    assert len(outs["5"]) < 30  # drop-out happened
    wm = json.loads(ws.manifest("panel", "1").read_text())
    assert wm["rows"] == wm["wanted"] == 30
    pm = json.loads((ws.output_dir("panel") / "panel_manifest.json").read_text())
    assert pm["per_wave"]["1"]["rejected_rows"] >= 1
    assert pm["drawn_waves"] == list("12345") and pm["structure"]["reentry"]
    long = pd.read_csv(ws.output_dir("panel") / "gen_panel.csv", dtype={ID: str, "wave": str})
    assert list(long.columns[:2]) == [ID, "wave"]
    assert len(long) == sum(len(f) for f in outs.values())
    assert not long.duplicated([ID, "wave"]).any()


def test_resume_after_a_kill_in_the_middle_of_wave_2_loses_and_repeats_nothing(
    no_reentry: Path,
) -> None:
    ws = Workspace(no_reentry)
    with OpenAIStub(panel_responder()) as stub:
        env = subprocess_env(PANELSYNTH_FAULT_AT="panel-call:2:2")  # after wave 2's 2nd saved call
        proc = subprocess.run(
            [PANELSYNTH, *_args(no_reentry, stub.base_url, "1,2,3")],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
        first = _step3(stub)
        assert {_wave_of(b) for b in first} == {"1", "2"}
        assert not ws.output_csv("panel", "2").exists()
        stub.reset()
        r = run_cli(_args(no_reentry, stub.base_url, "1,2,3", "--resume"))
        assert r.exit_code == 0, r.output
        second = _step3(stub)
    assert "1" not in {_wave_of(b) for b in second}  # wave 1 is taken from its checkpoint
    saved = [
        json.loads(line)["batch"]
        for line in ws.checkpoint("panel", "2").read_text().splitlines()[1:3]
    ]
    assert saved == [0, 1]  # the two calls saved before the kill ...
    asked = [_batch(b) for b in second if _wave_of(b) == "2"]
    assert not set(saved) & set(asked)  # ... are never asked again
    # what the kill lost: the calls in flight, or answered while the saved line was being
    # written (their replies never reached the disk) — asked again, and only they
    again = {_batch(b) for b in first if _wave_of(b) == "2" and json.dumps(b) in
             {json.dumps(x) for x in second}}  # fmt: skip
    assert again.isdisjoint(saved)
    for w in ("1", "2", "3"):
        m = json.loads(ws.manifest("panel", w).read_text())
        assert m["status"] == "complete" and m["rows"] == m["wanted"]
    m2 = json.loads(ws.manifest("panel", "2").read_text())
    assert m2["resumed_batches"] == 2  # ... are kept, not repeated
    n_calls = sum(1 for b in second if _wave_of(b) == "2")
    assert n_calls + 2 == m2["settings"]["n_batches"]


def test_a_finished_panel_is_refused_without_resume_or_restart(tmp_path: Path) -> None:
    root = write_panel_workspace(tmp_path / "ws", n=12, waves=2, seed=1)
    with OpenAIStub(panel_responder()) as stub:
        assert run_cli(_args(root, stub.base_url, "1,2")).exit_code == 0
        r = run_cli(_args(root, stub.base_url, "1,2"))
        assert r.exit_code == 2 and "--resume" in r.output
        stub.reset()
        r = run_cli(_args(root, stub.base_url, "1,2", "--resume"))
        assert r.exit_code == 0, r.output
        assert _step3(stub) == []  # nothing paid again


def _error(r) -> str:
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    return lines[0]


def test_bad_panel_requests_get_one_line_and_exit_2(tmp_path: Path) -> None:
    root = write_panel_workspace(tmp_path / "ws", n=12, waves=3, seed=1)
    url = "http://127.0.0.1:9/v1"  # never called: refused before any model call
    assert "at least two waves" in _error(run_cli(_args(root, url, "2")))
    oversample = _args(root, url, "1,2", "--calibrate", "--oversample", "2")
    assert "--oversample does not apply to --panel" in _error(run_cli(oversample))
    for extra, says in (
        (["--batch"], "--panel with --batch is not supported"),
        (["--n-batches", "3"], "--n-batches does not apply to --panel"),
        (["--trust-workspace-models"], "does not use the workspace's pydantic_models"),
    ):
        assert says in _error(run_cli(_args(root, url, "1,2", *extra)))
    ws = Workspace(root)
    f = pd.read_csv(ws.original_data("2"))
    f.drop(columns=[ID]).to_csv(ws.original_data("2"), index=False)
    assert "no id column" in _error(run_cli(_args(root, url, "1,2")))
    f[ID] = f[ID] + 10_000  # nobody of wave 1 in wave 2
    f.to_csv(ws.original_data("2"), index=False)
    assert "do not link" in _error(run_cli(_args(root, url, "1,2")))
    assert not ws.output_dir("panel").exists() or not any(ws.output_dir("panel").iterdir())


def test_dry_run_plans_every_wave_and_writes_nothing(no_reentry: Path) -> None:
    ws = Workspace(no_reentry)
    r = run_cli(_args(no_reentry, "http://127.0.0.1:9/v1", "1,3", "--dry-run"))
    assert r.exit_code == 0, r.output
    assert "synthetic respondents drawn" in r.output and "nothing was written" in r.output
    assert "wave 1" in r.output and "wave 3" in r.output
    assert not ws.output_dir("panel").exists() or not any(ws.output_dir("panel").iterdir())
    # each wave's step 3 is one call per 4 present respondents, with the panel's own prefix
    drawn = r.output.split("present ", 1)[1].split("\n")[0]
    present = dict(re.findall(r"wave (\d+): (\d+)", drawn))
    step3 = re.findall(r"^  step3\s+(\d+)", r.output, re.MULTILINE)
    assert [int(c) for c in step3] == [-(-int(present[w]) // 4) for w in ("1", "3")]
    assert "real example rows" in r.output and "real trajectories" in r.output
    assert "counted at the widest real answers" in r.output
    # the projection's placeholder step-2 answers are not checked against the codebook
    assert "disagrees with the codebook" not in r.output


def test_a_per_wave_dry_run_does_not_warn_about_its_own_placeholders(no_reentry: Path) -> None:
    r = run_cli(
        ["run", "-w", str(no_reentry), "--wave", "1", "--model", "openai/gpt-4o-mini",
         "--dry-run"]
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "step3" in r.output and "disagrees with the codebook" not in r.output


def test_dry_run_with_resume_counts_only_the_calls_left(no_reentry: Path) -> None:
    ws = Workspace(no_reentry)
    with OpenAIStub(panel_responder()) as stub:
        env = subprocess_env(PANELSYNTH_FAULT_AT="panel-call:1:3")  # after wave 1's 3rd call
        proc = subprocess.run(
            [PANELSYNTH, *_args(no_reentry, stub.base_url, "1,3")],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    full = run_cli(_args(no_reentry, "http://127.0.0.1:9/v1", "1,3", "--dry-run"))
    left = run_cli(_args(no_reentry, "http://127.0.0.1:9/v1", "1,3", "--dry-run", "--resume"))
    assert full.exit_code == 0 and left.exit_code == 0, left.output
    calls = [int(c) for c in re.findall(r"^  step3\s+(\d+)", full.output, re.MULTILINE)]
    calls_left = [int(c) for c in re.findall(r"^  step3\s+(\d+)", left.output, re.MULTILINE)]
    done = len(ws.checkpoint("panel", "1").read_text().splitlines()) - 1
    assert done >= 3 and calls_left[0] == calls[0] - done
    assert "--resume: " in left.output


@pytest.mark.slow
def test_local_model_writes_a_tiny_panel(tmp_path: Path) -> None:
    root = write_panel_workspace(tmp_path / "ws", n=6, waves=2, seed=4, reentry=0.0)
    r = run_cli(
        [
            "run",
            "-w",
            str(root),
            "--panel",
            "--waves",
            "1,2",
            "--model",
            "local/smollm2",
            "--model-dir",
            "panel",
            "--n-outputs",
            "3",
            "--n-examples",
            "2",
        ]  # fmt: skip
    )
    assert r.exit_code == 0, r.output
    ws = Workspace(root)
    one, two = _out(ws, "1"), _out(ws, "2")
    assert len(one) == 6 and set(two[ID]) <= set(one[ID]) and two[ID].is_unique
    assert two[ITEMS].notna().all().all()


def test_full_mode_with_reentry_shows_the_last_generated_answers(tmp_path: Path) -> None:
    root = write_panel_workspace(
        tmp_path / "ws", n=60, waves=4, reentry=0.5, retention=(0.7, 0.6), seed=3
    )
    ws = Workspace(root)
    with OpenAIStub(panel_responder()) as stub:
        r = run_cli(_args(root, stub.base_url, "1,2,4", "--mode", "full"))
        assert r.exit_code == 0, r.output
        bodies = [b for b in _step3(stub) if _wave_of(b) == "4"]
    outs = {w: _out(ws, w).set_index(ID) for w in ("1", "2", "4")}
    back = set(outs["4"].index) - set(outs["2"].index)
    assert back and back <= set(outs["1"].index)  # re-entry, never a newcomer
    shown = {}
    for b in bodies:
        text = b["messages"][-1]["content"].partition("\n\nRequest ")[2]
        for block in text.split("\n\nRespondent ")[1:]:
            rid = block.split(" ", 1)[0]
            lines = block.splitlines()
            found = re.search(r"Their answers in wave (\S+):", block)
            wave = found.group(1)
            row = lines[lines.index(f"Their answers in wave {wave}:") + 2].split(",")
            shown[rid] = (wave, row)
    assert set(shown) == set(outs["4"].index)
    for rid, (wave, row) in shown.items():
        assert wave == ("2" if rid in outs["2"].index else "1")
        assert row == [str(int(outs[wave].at[rid, q])) for q in ITEMS]
    # the full mode's item non-response, real vs synthetic, as a per-wave run reports it
    na = json.loads(ws.manifest("panel", "4").read_text())["item_nonresponse"]
    assert set(na["per_variable"]) == set(ITEMS) and na["method"].startswith("plain")


def test_the_config_keys_make_a_panel_run(no_reentry: Path) -> None:
    ws = Workspace(no_reentry)
    text = ws.config_path.read_text().replace(
        "[generation]\n", "[generation]\npanel = true\nrespondents = 17\n", 1
    )
    ws.config_path.write_text(text)
    args = [a for a in _args(no_reentry, "http://127.0.0.1:9/v1", "1,2") if a != "--panel"]
    r = run_cli([*args, "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "Panel: 17 synthetic respondents drawn" in " ".join(r.output.split())
