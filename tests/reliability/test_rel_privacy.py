"""Privacy guard: one warning when real rows leave the machine, synthetic examples, dropped copies.

* ``panelsynth run`` and the seed script warn exactly once per run (whatever the number of waves)
  that real respondents' rows go to a hosted/remote model as examples; not with
  ``--examples synthetic`` (or ``generation.examples = "synthetic"``), not for ``local/`` models.
* ``--examples synthetic`` draws every variable of every example from its cluster's marginal
  (NA share included), seeded, so the prompt carries no real row; the choice is recorded in the
  manifest and the examples log.
* ``--drop-copies`` drops synthetic rows identical to a real row or a few-shot example inside the
  generation loop, tops up to the exact row count, and counts the copies in the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import fake_answer, write_tiny_workspace
from relhelpers import nonblank_lines, prompt_text, responder, row_keys, run_cli, stub_args
from servers.openai_stub import OpenAIStub

from panelsynth import seed_compat
from panelsynth.config import load_config
from panelsynth.describe import cluster_statistics, encode_table, synthetic_examples
from panelsynth.llm import registry
from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import load_wave_for_run
from panelsynth.workspace import Workspace

WARNING = "Warning: real survey rows are sent to"
COLUMNS = ["vaccimportant", "vaccsafe", "worryflu", "age", "sex", "cluster", "prev_cluster"]


def _warnings(output: str) -> list[str]:
    return [x for x in nonblank_lines(output) if x.startswith(WARNING)]


LOOPBACK = registry.is_loopback


@pytest.fixture(autouse=True)
def _stub_is_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stub listens on 127.0.0.1 but stands for a remote server in these tests."""
    monkeypatch.setattr(registry, "is_loopback", lambda url: False)


def test_a_server_on_this_machine_gets_no_warning_and_is_not_a_third_party(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "is_loopback", LOOPBACK)  # the real check
    root = write_tiny_workspace(tmp_path / "ws")
    with OpenAIStub(responder()) as stub:
        r = run_cli(stub_args(root, stub.base_url, "1"))
    assert r.exit_code == 0, r.output
    assert not _warnings(r.output)
    ws = Workspace(root)
    manifest = json.loads(ws.manifest("stub", "1").read_text())
    assert manifest["examples"]["third_party"] is False
    assert manifest["examples"]["real_rows_in_prompt"] > 0


# ----- the warning ------------------------------------------------------------------------------


def test_one_warning_per_run_and_none_without_real_rows_going_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    with OpenAIStub(responder()) as stub:
        two_waves = [*stub_args(root, stub.base_url, "1"), "--wave", "2"]
        r = run_cli(two_waves)
        assert r.exit_code == 0, r.output
        assert len(_warnings(r.output)) == 1  # once for the run, not once per wave
        assert "openai/stub-model" in _warnings(r.output)[0] and "--examples synthetic" in r.output

        r = run_cli(
            [*stub_args(root, stub.base_url, "1"), "--model-dir", "syn", "--examples", "synthetic"]
        )
        assert r.exit_code == 0, r.output
        assert not _warnings(r.output)

        # the seed script: one warning on stderr, naming the config switch
        (root / "panelsynth.toml").write_text(
            f'[[models]]\nlabel = "openai/stub-model"\ndir = "seed"\nbase_url = "{stub.base_url}"\n'
            "[generation]\nn_outputs = 2\nn_batches = 1\n"
        )
        capsys.readouterr()
        assert seed_compat.main(["1", "openai/stub-model", "seed", "none", "--yes"], root) == 0
        err = capsys.readouterr().err
        assert len(_warnings(err)) == 1 and 'generation.examples = "synthetic"' in err
        with open(root / "panelsynth.toml", "a") as fh:
            fh.write('examples = "synthetic"\n')
        assert seed_compat.main(["2", "openai/stub-model", "seed", "none", "--yes"], root) == 0
        assert not _warnings(capsys.readouterr().err)

    # a local/ model keeps the rows in the process: no warning
    local = FakeClient(default=fake_answer, label="local/fake", is_local=True)
    monkeypatch.setattr("panelsynth.runner.open_client", lambda *a, **k: local)
    (root / "panelsynth.toml").write_text("")
    r = run_cli(
        [
            "run",
            "-w",
            str(root),
            "--wave",
            "2",
            "--model",
            "local/fake",
            "--model-dir",
            "loc",
            "--n-outputs",
            "2",
            "--n-batches",
            "1",
        ]
    )
    assert r.exit_code == 0, r.output
    assert local.calls and not _warnings(r.output)


# ----- synthetic examples -----------------------------------------------------------------------


def test_synthetic_examples_follow_each_clusters_marginals(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    wd = load_wave_for_run(ws, "2", load_config(ws.config_path), "full")
    stats = cluster_statistics(wd)
    big = synthetic_examples(wd, 4000, seed=7)
    assert list(big.columns) == wd.columns
    assert big.equals(synthetic_examples(wd, 4000, seed=7))
    assert not big.equals(synthetic_examples(wd, 4000, seed=8))
    for c in wd.clusters:
        fake = big[big["cluster"] == c]
        real = wd.frame[wd.frame["cluster"] == c]
        assert len(fake) == 4000
        for v in ("vaccimportant", "vaccsafe", "worryflu", "sex"):
            shares = stats[c][v]["shares"]
            drawn = fake[v].value_counts() / len(fake)  # shares among all, NA included
            for code, share in shares.items():
                assert drawn.get(float(code), 0.0) == pytest.approx(share, abs=0.03), (c, v, code)
            assert fake[v].isna().mean() == pytest.approx(stats[c][v]["na_share"], abs=0.03)
            assert set(fake[v].dropna()) <= {float(k) for k in shares}
        age = fake["age"]
        assert age.min() >= real["age"].min() and age.max() <= real["age"].max()
        assert (age % 1 == 0).all() and abs(age.median() - real["age"].median()) <= 3
        prev = real["prev_cluster"].value_counts(normalize=True)
        got = fake["prev_cluster"].value_counts(normalize=True)
        for k, share in prev.items():
            assert got.get(k, 0.0) == pytest.approx(share, abs=0.03)
    assert wd.frame["worryflu"].isna().any() and big["worryflu"].isna().any()  # NA is drawn too


def test_examples_synthetic_sends_no_real_row(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    real = row_keys(pd.read_csv(ws.original_data("2")), COLUMNS)
    with OpenAIStub(responder()) as stub:
        for model_dir, extra in (("real", []), ("syn", ["--examples", "synthetic"])):
            args = stub_args(root, stub.base_url, "2", *extra)
            args[args.index("--model-dir") + 1] = model_dir
            r = run_cli(args)
            assert r.exit_code == 0, r.output
        step3 = [prompt_text(q.body) for q in stub.requests if "Request 1:" in prompt_text(q.body)]
    assert len(step3) == 2
    for model_dir, prompt in zip(("real", "syn"), step3, strict=True):
        examples = pd.read_csv(ws.examples_csv(model_dir, "2"))
        assert len(examples) == 8
        for c in (1, 2):  # what the log says is what the prompt carried
            assert encode_table(examples[examples["cluster"] == c]) in prompt
        copies = row_keys(examples, COLUMNS) & real
        manifest = json.loads(ws.manifest(model_dir, "2").read_text())
        log = ws.examples_log(model_dir, "2").read_text()
        if model_dir == "real":
            assert len(copies) == 8 and manifest["examples"]["real_rows_in_prompt"] == 8
            assert "Synthetic examples" not in log
        else:
            assert not copies
            assert manifest["examples"] == {
                "source": "synthetic",
                "rows": 8,
                "real_rows_in_prompt": 0,
                "third_party": True,
            }
            assert manifest["settings"]["examples"] == "synthetic"
            assert log.splitlines()[1].startswith("Synthetic examples: each variable drawn")


# ----- dropping copies --------------------------------------------------------------------------


def _example_rows(prompt: str) -> list[dict[str, Any]]:
    """The example tables of a step-3 prompt, as rows."""
    lines = prompt.splitlines()
    header = ",".join(COLUMNS)
    out = []
    for i, line in enumerate(lines):
        if line == header:
            for row in lines[i + 1 :]:
                cells = row.split(",")
                if len(cells) != len(COLUMNS):
                    break
                out.append(
                    {k: None if v == "NA" else int(v) for k, v in zip(COLUMNS, cells, strict=True)}
                )
    return out


@pytest.mark.parametrize("examples", ["real", "synthetic"])
def test_drop_copies_tops_up_to_exact_rows_without_copies(tmp_path: Path, examples: str) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    real_frame = pd.read_csv(ws.original_data("2")).replace(-99, pd.NA).dropna()
    real_rows = [{k: int(v) for k, v in r.items()} for r in real_frame[COLUMNS].to_dict("records")]
    sent: dict[str, list[dict[str, Any]]] = {}

    def copying(body: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        prompt = prompt_text(body)
        n = len(sent.setdefault(prompt[-40:], []))
        rows[0] = dict(real_rows[(len(prompt) + n) % len(real_rows)])  # a real respondent
        shown = _example_rows(prompt)
        rows[1] = dict(shown[(len(prompt) + n) % len(shown)])  # a few-shot example
        sent[prompt[-40:]].extend(rows)
        return {"rows": rows}

    outputs = {}
    with OpenAIStub(responder(copying)) as stub:
        for model_dir, drop in (("keep", []), ("drop", ["--drop-copies"])):
            sent.clear()
            args = [
                *stub_args(root, stub.base_url, "2", "--examples", examples, *drop),
                "--concurrency",
                "1",
            ]
            args[args.index("--model-dir") + 1] = model_dir
            args[args.index("--n-outputs") + 1] = "4"
            args[args.index("--n-batches") + 1] = "3"
            r = run_cli(args)
            assert r.exit_code == 0, r.output
            out = pd.read_csv(ws.output_csv(model_dir, "2"))
            shown = pd.read_csv(ws.examples_csv(model_dir, "2"))
            forbidden = row_keys(real_frame, COLUMNS) | row_keys(shown, COLUMNS)
            all_sent = pd.DataFrame([r for rs in sent.values() for r in rs], columns=COLUMNS)
            expected = sum(1 for k in _keys_in_order(all_sent) if k in forbidden)
            outputs[model_dir] = (out, forbidden, expected, len(all_sent))

    out, forbidden, expected, n_sent = outputs["keep"]
    assert len(out) == 12 and row_keys(out, COLUMNS) & forbidden  # control: copies get through

    out, forbidden, expected, n_sent = outputs["drop"]
    assert len(out) == 12
    assert not row_keys(out, COLUMNS) & forbidden
    m = json.loads(ws.manifest("drop", "2").read_text())
    assert expected >= n_sent // 2  # two copies in every answer
    assert m["copies_dropped"] == m["faults"]["copied_rows"] == expected
    assert m["settings"]["drop_copies"] is True
    assert len([c for c in m["calls"] if c["stage"] == "step3"]) == n_sent // 4 > 3  # topped up


def _keys_in_order(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [
        tuple(None if pd.isna(v) else float(v) for v in r) for r in frame.itertuples(index=False)
    ]
