"""A workspace may come from someone else: nothing in it runs, no link is followed, no key leaks,
and what the tool prints to resume or asks before sending rows is right."""

from __future__ import annotations

import io
import pickle
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import fake_answer, write_tiny_workspace
from relhelpers import (
    PANELSYNTH,
    clean_env,
    hash_tree,
    is_step3,
    nonblank_lines,
    responder,
    rng_for,
    run_cli,
    valid_rows,
)
from servers.openai_stub import OpenAIStub, request_schema, schema_example

import panelsynth.llm.keys as keys
from panelsynth.errors import PanelsynthError, ProviderError
from panelsynth.evaluate import evaluate_workspace
from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.runner import Confirmation
from panelsynth.workspace import Workspace


def _stub_args(ws: Path, url: str, *extra: str, wave: str = "2") -> list[str]:
    return [
        "run", "-w", str(ws), "--wave", wave, "--model", "openai/stub-model", "--base-url", url,
        "--model-dir", "stub", "--n-outputs", "3", "--n-batches", "2", "--yes", *extra,
    ]


# ------------------------------------------------------------------ 7: caches and workspace code
class _Boom:
    """Unpickling this creates ``marker`` (a stand-in for ``os.system``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_a_crafted_pickle_in_the_reference_cache_is_not_executed(
    tiny_workspace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = Workspace(tiny_workspace)
    run_wave(tiny_workspace, "2", FakeClient(default=fake_answer), "fake",
             RunOptions(n_outputs=4, n_batches=6))
    first = evaluate_workspace(tiny_workspace, waves=["2"])
    entries = list(ws.cache_dir().glob("eval-reference-*.json"))
    assert len(entries) == 1 and not list(ws.cache_dir().glob("*.pkl"))
    entry = entries[0]
    marker = tmp_path / "pwned"
    crafted = pickle.dumps(_Boom(marker))
    entry.write_bytes(crafted)  # under the name the evaluation reads
    entry.with_suffix(".pkl").write_bytes(crafted)  # and under the name of earlier versions
    again = evaluate_workspace(tiny_workspace, waves=["2"])
    assert not marker.exists()
    assert "ignoring the cache entry" in caplog.text
    assert [o.summary for o in again.outcomes] == [o.summary for o in first.outcomes]
    assert entry.read_bytes() != crafted  # rebuilt as data
    # a damaged entry (one byte of the payload changed) fails its checksum and is rebuilt
    data = bytearray(entry.read_bytes())
    data[-20] = ord("7") if data[-20] != ord("7") else ord("8")
    entry.write_bytes(bytes(data))
    caplog.clear()
    third = evaluate_workspace(tiny_workspace, waves=["2"])
    assert "checksum mismatch" in caplog.text
    assert [o.summary for o in third.outcomes] == [o.summary for o in first.outcomes]


def test_the_reference_cache_round_trips_exactly(tiny_workspace: Path) -> None:
    from panelsynth.evaluate import refcache
    from panelsynth.evaluate.columns import columns_from_var_types
    from panelsynth.evaluate.suite import build_reference

    real = pd.read_csv(Workspace(tiny_workspace).original_data("2"))
    real = real[real["worryflu"] != -99]
    cols = columns_from_var_types(
        {"vaccimportant": "an ordinal", "worryflu": "an ordinal", "sex": "a binary",
         "age": "a continuous"},
        cluster_column="cluster",
    )
    ref = build_reference(real[cols.names], cols, wave="2", seed=3, target="sex")
    refcache.store_reference(tiny_workspace, "k1", ref)
    back = refcache.load_reference(tiny_workspace, "k1")
    assert back is not None and back.columns == ref.columns
    pd.testing.assert_frame_equal(back.half_a, ref.half_a)
    pd.testing.assert_frame_equal(back.baselines["_baseline_cart"], ref.baselines["_baseline_cart"])
    for name, card in ref.cards.items():
        for key, metric in card.metrics.items():
            got = back.cards[name].metrics[key]
            both_nan = got.score != got.score and metric.score != metric.score
            assert got.score == metric.score or both_nan
    assert refcache.load_reference(tiny_workspace, "other-key") is None


_MODEL_FILE = """
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("ran")
from pydantic import BaseModel

class Wave2Data(BaseModel):
    vaccimportant: int
    vaccsafe: int
    worryflu: int
    age: int
    sex: int
    cluster: int
    prev_cluster: int
"""


def test_workspace_models_are_imported_only_when_trusted_on_the_command_line(
    tiny_workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = Workspace(tiny_workspace)
    (ws.user_models_dir() / "wave2.py").write_text(_MODEL_FILE)
    marker = ws.user_models_dir() / "imported.marker"
    res = run_wave(tiny_workspace, "2", FakeClient(default=fake_answer), "plain",
                   RunOptions(n_outputs=4, n_batches=2))
    assert not marker.exists()
    m = res.manifest_data
    assert m["row_model"] == "factory"
    assert any("--trust-workspace-models" in w for w in m["warnings"])
    assert caplog.text.count("--trust-workspace-models") == 1  # one warning
    # the dry run does not import it either
    r = run_cli(["run", "-w", str(tiny_workspace), "--wave", "2", "--model", "openai/gpt-4o",
                 "--dry-run"])
    assert r.exit_code == 0, r.output
    assert not marker.exists()
    res = run_wave(tiny_workspace, "2", FakeClient(default=fake_answer), "trusted",
                   RunOptions(n_outputs=4, n_batches=2, trust_workspace_models=True))
    assert marker.exists() and res.manifest_data["row_model"] == "workspace"


def test_the_workspace_config_cannot_trust_its_own_code(tiny_workspace: Path) -> None:
    cfg = tiny_workspace / "panelsynth.toml"
    cfg.write_text("[generation]\ntrust_workspace_models = true\n")
    r = run_cli(["run", "-w", str(tiny_workspace), "--wave", "2", "--dry-run"])
    assert r.exit_code == 2 and "trust_workspace_models" in r.output


# ------------------------------------------------------------------ 8: resume hint, fingerprint
def test_the_resume_hint_reproduces_every_setting_quoted(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "my study's ws")
    ws = Workspace(root)
    with OpenAIStub(responder()) as stub:
        args = [
            "run", "-w", str(root), "--wave", "2", "--model", "openai/stub-model",
            "--base-url", stub.base_url, "--model-dir", "stub", "--mode", "full",
            "--n-examples", "5", "--n-outputs", "3", "--n-batches", "6", "--seed", "7",
            "--temperature", "0.9", "--concurrency", "1", "--examples", "synthetic",
            "--keep-copies", "--yes",
        ]
        env = clean_env(PANELSYNTH_FAULT_AT="checkpoint-append", PANELSYNTH_FAULT_SIGNAL="INT")
        proc = subprocess.run([PANELSYNTH, *args], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 130, proc.stdout + proc.stderr
        line = next(x for x in proc.stdout.splitlines() if "Resume with: " in x)
        hint = shlex.split(line.split("Resume with: ", 1)[1])
        assert hint[:2] == ["panelsynth", "run"] and hint[-1] == "--resume"
        pairs = {hint[i]: hint[i + 1] for i in range(2, len(hint) - 1) if hint[i].startswith("--")
                 and not hint[i + 1].startswith("--")}
        assert pairs["--workspace"] == str(ws.root)  # the quote in the folder name survives
        assert pairs["--base-url"] == stub.base_url
        for opt, value in [("--mode", "full"), ("--n-examples", "5"), ("--n-outputs", "3"),
                           ("--n-batches", "6"), ("--seed", "7"), ("--temperature", "0.9"),
                           ("--concurrency", "1"), ("--examples", "synthetic"),
                           ("--model", "openai/stub-model"), ("--model-dir", "stub"),
                           ("--wave", "2")]:
            assert pairs[opt] == value, opt
        assert "--keep-copies" in hint and "--yes" in hint and "--restart" not in hint
        saved = proc.stdout.split("Every finished call is saved in ", 1)[1]
        assert saved.startswith(ws.rel(ws.checkpoint("stub", "2")))
        stub.reset()
        # pasted as printed, it resumes against the same local server
        proc = subprocess.run([PANELSYNTH, *hint[1:]], capture_output=True, text=True,
                              env=clean_env(), timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert any(is_step3(r.body) for r in stub.requests)
    assert len(pd.read_csv(ws.output_csv("stub", "2"))) == 18


def test_the_servers_host_is_part_of_the_checkpoint_fingerprint(tiny_workspace: Path) -> None:
    def client(host: str | None) -> FakeClient:
        c = FakeClient(default=fake_answer)
        c.endpoint_host = host  # type: ignore[attr-defined]
        return c

    interrupted = FakeClient(default=lambda m, model: (
        KeyboardInterrupt() if model.__name__ == "SyntheticRespondents" and "Request 3:" in
        m[-1]["content"] else fake_answer(m, model)))
    interrupted.endpoint_host = "127.0.0.1"  # type: ignore[attr-defined]
    opts = RunOptions(n_outputs=4, n_batches=4, concurrency=1)
    with pytest.raises(KeyboardInterrupt):
        run_wave(tiny_workspace, "2", interrupted, "fake", opts)
    resume = RunOptions(n_outputs=4, n_batches=4, concurrency=1, resume=True)
    with pytest.raises(PanelsynthError, match="endpoint: 127.0.0.1 -> api.example.com"):
        run_wave(tiny_workspace, "2", client("api.example.com"), "fake", resume)
    with pytest.raises(PanelsynthError, match="other settings"):
        run_wave(tiny_workspace, "2", client(None), "fake", resume)
    assert run_wave(tiny_workspace, "2", client("127.0.0.1"), "fake", resume).rows == 16


def test_without_a_terminal_real_rows_to_a_third_party_need_yes(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    before = hash_tree(root)
    base = ["run", "-w", str(root), "--wave", "1", "--model", "openai/gpt-4o",
            "--base-url", "http://192.0.2.1/v1", "--model-dir", "remote"]  # never contacted
    env = clean_env(OPENAI_API_KEY="sk-not-a-real-key-000000")
    proc = subprocess.run([PANELSYNTH, *base], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [x for x in nonblank_lines(proc.stderr) if x.startswith("Error:")]
    assert len(errors) == 1 and "pass --yes" in errors[0] and "Traceback" not in proc.stderr
    assert hash_tree(root) == before
    # the seed script too
    script = root / "run_data_gen_pipeline.py"
    toml = root / "panelsynth.toml"
    toml.write_text(toml.read_text() + '\n[[models]]\nlabel = "openai/gpt-4o"\ndir = "remote"\n'
                    'base_url = "http://192.0.2.1/v1"\n')
    before = hash_tree(root)
    proc = subprocess.run([sys.executable, str(script), "1", "openai/gpt-4o", "remote", "none"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=root,
                          env=env, timeout=60)
    assert proc.returncode == 2 and "pass --yes" in proc.stderr, proc.stdout + proc.stderr
    assert hash_tree(root) == before


def test_without_a_terminal_other_runs_still_do_not_block() -> None:
    said: list[str] = []
    stdin = sys.stdin
    try:
        sys.stdin = io.StringIO("")  # not a terminal, no answer waiting
        assert Confirmation(timeout=0.01)("Continue?", said.append) is True
        with pytest.raises(PanelsynthError, match="pass --yes"):
            Confirmation(timeout=0.01, needs_yes="nobody confirmed — pass --yes")(
                "Continue?", said.append)
        sys.stdin = io.StringIO("y\n")  # an answer piped in is an answer
        assert Confirmation(timeout=0.01, needs_yes="x")("Continue?", said.append) is True
    finally:
        sys.stdin = stdin
    assert said[0].endswith("(non-interactive: continuing)")


# ------------------------------------------------------------------ 9: key echoed by the model
LONG_KEY = "pk-proj-SENTINEL" + "q7Zr2XwLp9" * 6 + "ENDKEY"


def _echoing(key: str):
    free_text = {"skew", "spread", "shape", "na_frequency", "description", "meaning", "values"}

    def deep(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: f"skewed towards high values (ref {key}, {key[:9]})"
                if k in free_text and isinstance(v, str) else deep(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [deep(v) for v in value]
        return value

    def respond(body: dict[str, Any]) -> Any:
        if not is_step3(body):
            return deep(schema_example(request_schema(body) or {}))
        rows = valid_rows(body, rng_for(body))
        rows[0]["sex"] = key  # an invalid row: the validation error quotes (a cut of) the key
        return {"rows": rows}

    return respond


def test_a_key_echoed_in_a_reply_is_scrubbed_before_it_is_written_or_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    root = write_tiny_workspace(tmp_path / "ws")
    key_file = tmp_path / "key.txt"
    key_file.write_text(LONG_KEY + "\n")
    with OpenAIStub(_echoing(LONG_KEY)) as stub:
        r = run_cli(["-v", *_stub_args(root, stub.base_url, "--api-key", f"@{key_file}",
                                       "--mode", "full")])
        assert r.exit_code == 0, r.output
        assert stub.requests[-1].headers["authorization"] == f"Bearer {LONG_KEY}"
    texts = {"output": r.output, "log": caplog.text}
    logs = [rec.getMessage() for rec in caplog.records]
    assert any("sex" in m and "***" in m for m in logs), "no validation error was logged"
    fragments = [LONG_KEY[:8], LONG_KEY[-8:], LONG_KEY[20:40]]
    hits = [n for n, t in texts.items() if any(f in t for f in fragments)]
    for p in root.rglob("*"):
        if p.is_file() and any(f.encode() in p.read_bytes() for f in fragments):
            hits.append(str(p.relative_to(root)))
    assert not hits
    ws = Workspace(root)
    assert "***" in ws.cluster_descriptions_log("stub", "2").read_text()
    assert "***" in ws.gen_metadata_log("stub", "2").read_text()


def test_scrub_masks_starts_and_ends_of_a_key() -> None:
    keys.register_secret(LONG_KEY)
    cut = f"input_value='{LONG_KEY[:24]}...{LONG_KEY[-23:]}'"
    out = keys.scrub(f"{cut}; {LONG_KEY[:8]}; {LONG_KEY}; pk-proj ok")
    assert LONG_KEY[:8] not in out and LONG_KEY[-8:] not in out
    assert out.endswith("pk-proj ok")  # 7 characters of it are not a fragment
    scrubbed = keys.scrub_data({"a": [LONG_KEY[:12], 3], LONG_KEY: None})
    assert scrubbed == {"a": ["***", 3], "***": None}


# ------------------------------------------------------------------ 10: how keys arrive
def test_keys_from_stdin_a_file_and_a_literal_argument_warned_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys, "_literal_warned", False)
    assert keys.key_from_argument("-", stdin=io.StringIO("k-from-stdin-123\nnext\n")) == (
        "k-from-stdin-123", None)
    f = tmp_path / "key"
    f.write_text("\n  k-from-file-456  \n")
    assert keys.key_from_argument(f"@{f}") == ("k-from-file-456", None)
    with pytest.raises(ProviderError, match="empty"):
        (tmp_path / "empty").write_text("\n")
        keys.key_from_argument(f"@{tmp_path / 'empty'}")
    with pytest.raises(ProviderError, match="cannot read the key file"):
        keys.key_from_argument(f"@{tmp_path / 'missing'}")
    with pytest.raises(ProviderError, match="standard input held no key"):
        keys.key_from_argument("-", stdin=io.StringIO(""))
    assert keys.key_from_argument("none") == ("none", None)
    assert keys.key_from_argument("-", allow_stdin=False) == ("-", None)
    key, warning = keys.key_from_argument("literal-key-789")
    assert key == "literal-key-789" and warning and "ps" in warning and "@FILE" in warning
    assert keys.key_from_argument("literal-key-789") == ("literal-key-789", None)  # once


def test_the_cli_takes_the_key_from_stdin_or_a_file_and_warns_about_a_literal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    key_file = tmp_path / "key.txt"
    key_file.write_text("file-key-0001\n")
    with OpenAIStub(responder()) as stub:
        r = run_cli(_stub_args(root, stub.base_url, "--api-key", f"@{key_file}", wave="1"))
        assert r.exit_code == 0 and "Warning: an API key" not in r.output, r.output
        assert stub.requests[-1].headers["authorization"] == "Bearer file-key-0001"
        r = run_cli([*_stub_args(root, stub.base_url, "--api-key", "-", wave="1"), "--restart"],
                    input="stdin-key-0002\n")
        assert r.exit_code == 0 and "Warning: an API key" not in r.output, r.output
        assert stub.requests[-1].headers["authorization"] == "Bearer stdin-key-0002"
        monkeypatch.setattr(keys, "_literal_warned", False)
        r = run_cli(["run", "-w", str(root), "--wave", "1", "--wave", "2", "--model",
                     "openai/stub-model", "--base-url", stub.base_url, "--model-dir", "lit",
                     "--n-outputs", "3", "--n-batches", "2", "--yes", "--api-key",
                     "literal-key-0003"])
        assert r.exit_code == 0, r.output
        assert r.output.count("Warning: an API key given on the command line") == 1
        assert "literal-key-0003" not in r.output
    # the seed script's positional key keeps working, with the warning (wave 9 has no data: the
    # run stops at that one line before any call)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from panelsynth.cli.seed import main; "
         "sys.exit(main(['9', 'openai/stub-model', 'stub', 'literal-key-0004', '--yes']))"],
        capture_output=True, text=True, cwd=root, env=clean_env(), timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("Warning: an API key given on the command line") == 1
    assert "literal-key-0004" not in proc.stdout + proc.stderr


# ------------------------------------------------------------------ 11: symbolic links
@pytest.mark.parametrize("link", ["checkpoint", "checkpoints", "output_dir", "cache"])
def test_symlinks_in_generated_folders_are_refused_never_followed(
    tmp_path: Path, link: str
) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "wave2.jsonl"
    victim.write_text("precious\n")
    ck = ws.checkpoint("stub", "2")
    if link == "checkpoint":
        ck.parent.mkdir(parents=True)
        ck.symlink_to(victim)
    elif link == "checkpoints":
        ck.parent.parent.mkdir(parents=True)
        ck.parent.symlink_to(elsewhere, target_is_directory=True)
    elif link == "output_dir":
        ws.output_dir("stub").parent.mkdir(parents=True, exist_ok=True)
        ws.output_dir("stub").symlink_to(elsewhere, target_is_directory=True)
    else:
        ws.cache_dir().parent.mkdir(parents=True, exist_ok=True)
        ws.cache_dir().symlink_to(elsewhere, target_is_directory=True)
    before = hash_tree(elsewhere)
    with OpenAIStub(responder()) as stub:
        for extra in ([], ["--resume"]):
            r = run_cli(_stub_args(root, stub.base_url, *extra))
            assert r.exit_code == 2, r.output
            errors = [x for x in nonblank_lines(r.output) if x.startswith("Error:")]
            assert len(errors) == 1 and "is a symbolic link" in errors[0], r.output
            assert "Traceback" not in r.output
        assert stub.requests == []
    assert hash_tree(elsewhere) == before and sorted(p.name for p in elsewhere.iterdir()) == [
        "wave2.jsonl"
    ]


def test_a_symlinked_evaluation_folder_is_refused(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    run_wave(root, "2", FakeClient(default=fake_answer), "fake",
             RunOptions(n_outputs=4, n_batches=2))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results = root / "Evaluation" / "Evaluation results"
    for p in results.iterdir():
        p.unlink()
    results.rmdir()
    results.symlink_to(elsewhere, target_is_directory=True)
    r = run_cli(["evaluate", "-w", str(root)])
    assert r.exit_code == 2 and "is a symbolic link" in r.output, r.output
    assert list(elsewhere.iterdir()) == []

