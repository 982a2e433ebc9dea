"""Calibrated runs with fake clients: rows, profiles, manifest, resume, CLI, the demo plan."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import fake_answer, write_tiny_workspace
from typer.testing import CliRunner

from panelsynth.calibrate import allocate
from panelsynth.cli import app
from panelsynth.config import parse_config
from panelsynth.errors import ConfigError, PanelsynthError
from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace

PROFILE_LINE = re.compile(r"^Respondent (\d+): (.+)$", re.MULTILINE)
BATCH = re.compile(r"Request (\d+):")


def parse_profiles(text: str) -> list[dict[str, Any]]:
    """The profiles a request lists: ``{"cluster": 2, "age": (35, 44), "sex": 2}`` each."""
    out = []
    for _, body in PROFILE_LINE.findall(text):
        prof: dict[str, Any] = {}
        for part in body.split(", "):
            name, value = part.split(" ", 1)
            if value.startswith("null"):
                prof[name] = None
            elif re.fullmatch(r"-?\d+(\.\d+)?--?\d+(\.\d+)?", value):
                lo, hi = re.match(r"(-?[\d.]+)-(-?[\d.]+)", value).groups()
                prof[name] = (int(float(lo)), int(float(hi)))
            else:
                prof[name] = int(float(value))
        out.append(prof)
    return out


def _from_schema(schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    row = {}
    for name, prop in schema["properties"].items():
        main = next((o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"), prop)
        if "const" in main:
            row[name] = main["const"]
        elif main.get("type") == "null":
            row[name] = None
        elif "enum" in main:
            row[name] = rng.choice(main["enum"])
        else:
            row[name] = rng.randint(int(main["minimum"]), int(main["maximum"]))
    return row


def profile_keeper(spoil: dict[int, int] | None = None, seed_text: bool = True) -> Any:
    """A responder that completes the listed profiles (varied answers, seeded by the request).

    ``spoil`` maps batch -> number of rows (from the first) given a profile of no row of the
    batch (wrong cluster and sex), so they must be rejected as off-profile.
    """
    spoil = spoil or {}

    def respond(messages: list[dict], model: type) -> Any:
        name = model.__name__
        text = messages[-1]["content"]
        if name == "ProfiledRespondents":  # profiles fixed in the schema (local models)
            schema = model.model_json_schema()
            rng = random.Random(text[-400:])
            return {k: _from_schema(v, rng) for k, v in schema["properties"].items()}
        if name != "SyntheticRespondents" or not PROFILE_LINE.search(text):
            return fake_answer(messages, model)  # steps 1-2, and plain runs
        items = model.model_json_schema()["properties"]["rows"]["items"]
        rng = random.Random(text[-400:])
        rows = []
        for prof in parse_profiles(text):
            row = _from_schema(items, rng)
            for k, v in prof.items():
                row[k] = rng.randint(*v) if isinstance(v, tuple) else v
            rows.append(row)
        b = int(BATCH.search(text).group(1)) - 1
        for row in rows[: spoil.get(b, 0)]:
            row["cluster"] = 3 - row["cluster"]
            row["sex"] = 3 - row["sex"]
            row["age"] = 90  # and an age outside every band but the last
        return {"rows": rows}

    return respond


def _run(ws: Path, client: FakeClient, **kw: Any):
    wave, model_dir = kw.pop("wave", "2"), kw.pop("model_dir", "fake")
    opts = RunOptions(
        n_outputs=kw.pop("n_outputs", 4),
        n_batches=kw.pop("n_batches", 5),
        calibrate=kw.pop("calibrate", True),
        **kw,
    )
    return run_wave(ws, wave, client, model_dir, opts)


def _real(ws: Path, wave: str = "2") -> pd.DataFrame:
    return pd.read_csv(Workspace(ws).original_data(wave))


def _checkpoint(ws: Path, md: str = "fake", wave: str = "2") -> list[dict[str, Any]]:
    lines = Workspace(ws).checkpoint(md, wave).read_text().splitlines()
    return [json.loads(x) for x in lines[1:]]


def _keeps(row: dict[str, Any], prof: dict[str, Any]) -> bool:
    for k, v in prof.items():
        if isinstance(v, tuple):
            if not (v[0] <= row[k] <= v[1]):
                return False
        elif row[k] != v:
            return False
    return True


# ----------------------------------------------------------------------------------------------
def test_calibrated_run_writes_exactly_n_rows_with_real_cluster_counts(
    tiny_workspace: Path,
) -> None:
    client = FakeClient(default=profile_keeper())
    res = _run(tiny_workspace, client)
    df = pd.read_csv(res.output)
    assert res.rows == len(df) == 20 == res.wanted
    real = _real(tiny_workspace)
    shares = real["cluster"].value_counts(normalize=True).to_dict()
    assert df["cluster"].value_counts().to_dict() == allocate(
        {int(k): v for k, v in shares.items()}, 20
    )
    assert list(df.columns) == [
        "vaccimportant",
        "vaccsafe",
        "worryflu",
        "age",
        "sex",
        "cluster",
        "prev_cluster",
    ]
    # the pool: 2 x 20 rows in 10 calls of 4
    step3 = [c for c in client.calls if c["response_model"].__name__ == "SyntheticRespondents"]
    assert len(step3) == 10


def test_every_accepted_row_keeps_the_profile_it_was_asked_for(tiny_workspace: Path) -> None:
    client = FakeClient(default=profile_keeper())
    _run(tiny_workspace, client)
    asked = {}
    for call in client.calls:
        if call["response_model"].__name__ == "SyntheticRespondents":
            text = call["messages"][-1]["content"]
            asked[int(BATCH.search(text).group(1)) - 1] = parse_profiles(text)
    records = _checkpoint(tiny_workspace)
    assert sum(len(r["rows"]) for r in records) == 40
    for r in records:
        profs = dict(zip(r["profiles"], asked[r["batch"]], strict=True))
        assert len(r["fulfilled"]) == len(r["rows"])
        for row, pid in zip(r["rows"], r["fulfilled"], strict=True):
            assert _keeps(row, profs[pid]), (row, profs[pid])


def test_off_profile_rows_are_rejected_counted_and_asked_for_again(tiny_workspace: Path) -> None:
    client = FakeClient(default=profile_keeper(spoil={0: 2, 3: 1}))
    res = _run(tiny_workspace, client)
    m = res.manifest_data
    assert res.rows == 20
    assert m["calibration"]["off_profile_rows"] == 3 == m["faults"]["off_profile_rows"]
    records = _checkpoint(tiny_workspace)
    first = next(r for r in records if r["batch"] == 0)
    assert first["off_profile"] == 2 and len(first["rows"]) == 2
    assert "does not keep its profile" in first["off_profile_errors"][0]
    # the three profiles without a row were asked for again in a top-up call
    topup = [r for r in records if r["batch"] >= 10]
    assert topup and set(topup[0]["profiles"][:3]) == {0, 1, 12}
    assert m["calibration"]["fulfilled_planned_profiles"] == 40


def test_manifest_records_settings_and_marginal_distances(tiny_workspace: Path) -> None:
    res = _run(tiny_workspace, FakeClient(default=profile_keeper()), oversample=1.5)
    cal = res.manifest_data["calibration"]
    assert cal["enabled"] is True and cal["oversample"] == 1.5
    assert cal["anchors"] == ["age", "sex"] and cal["pool_rows"] == 32  # ceil(1.5 x 20) -> 8 calls
    assert cal["rows"] == cal["selected_rows"] == 20
    before, after = cal["marginal_distance_before"], cal["marginal_distance_after"]
    assert set(before["per_variable"]["1"]) == {
        "vaccimportant",
        "vaccsafe",
        "worryflu",
        "age",
        "sex",
        "prev_cluster",
    }
    assert 0 <= after["mean_tvd"] <= before["mean_tvd"] <= 1
    assert after["cluster_share_tvd"] <= 0.5 / 20 + 1e-9
    assert cal["copies"]["of_examples"]["selected"] <= cal["copies"]["of_examples"]["pool"]
    # copies are counted on the survey variables, cluster labels aside (as the evaluation does)
    assert cal["copies"]["compared_on"] == ["vaccimportant", "vaccsafe", "worryflu", "age", "sex"]
    on_disk = json.loads(res.manifest.read_text())
    assert on_disk["calibration"]["marginal_distance_after"]["mean_tvd"] == after["mean_tvd"]


def test_pool_temperature_defaults_to_one_unless_the_user_sets_one(tiny_workspace: Path) -> None:
    res = _run(tiny_workspace, FakeClient(default=profile_keeper()), model_dir="a")
    assert res.manifest_data["calibration"]["temperature"] == 1.0
    assert res.manifest_data["settings"]["temperature"] == 1.0
    res = _run(tiny_workspace, FakeClient(default=profile_keeper()), model_dir="b", temperature=0.3)
    assert res.manifest_data["calibration"]["temperature"] == 0.3
    cfg = Workspace(tiny_workspace).config_path
    text = cfg.read_text()
    cfg.write_text(text.replace("\n[generation]\n", "\n[generation]\ntemperature = 0.5\n"))
    res = _run(tiny_workspace, FakeClient(default=profile_keeper()), model_dir="c")
    assert res.manifest_data["calibration"]["temperature"] == 0.5
    plain = _run(tiny_workspace, FakeClient(default=fake_answer), model_dir="d", calibrate=False)
    assert plain.manifest_data["settings"]["temperature"] == 0.5


def test_plain_run_is_unchanged_and_says_so(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer)
    res = _run(tiny_workspace, client, calibrate=False, n_batches=3)
    assert res.rows == 12 and res.manifest_data["calibration"] == {"enabled": False}
    step3 = [c for c in client.calls if c["response_model"].__name__ == "SyntheticRespondents"]
    assert len(step3) == 3
    assert all("Respondent 1:" not in c["messages"][-1]["content"] for c in step3)
    assert all("profile" not in c["messages"][-1]["content"] for c in step3)


def test_full_mode_calibrated_run_matches_na_as_a_category(tiny_workspace: Path) -> None:
    def with_na(messages: list[dict], model: type) -> Any:
        out = profile_keeper()(messages, model)
        if model.__name__ == "SyntheticRespondents" and "rows" in out:
            for k, row in enumerate(out["rows"]):
                if k % 3 == 0:
                    row["worryflu"] = None
        return out

    res = _run(tiny_workspace, FakeClient(default=with_na), mode="full")
    df = pd.read_csv(res.output)
    assert len(df) == 20
    cal = res.manifest_data["calibration"]
    real = _real(tiny_workspace)
    real_na = (real.loc[real["cluster"] == 1, "worryflu"] == -99).mean()
    assert real_na == 0  # the tiny workspace's non-response is in cluster 2 only
    # cluster 1 has no NA in the real data: the selection keeps its NA rows out where it can
    sel1 = df[df["cluster"] == 1]["worryflu"].isna().mean()
    pool_na = cal["marginal_distance_before"]["per_variable"]["1"]["worryflu"]
    assert (
        sel1 < 1 / 3 and cal["marginal_distance_after"]["per_variable"]["1"]["worryflu"] <= pool_na
    )


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path) -> None:
    outs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        ws = write_tiny_workspace(tmp_path / name)
        res = _run(ws, FakeClient(default=profile_keeper()), seed=seed, concurrency=3)
        outs.append(Path(res.output).read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_interrupted_calibrated_run_resumes_to_the_same_rows(tmp_path: Path) -> None:
    whole = write_tiny_workspace(tmp_path / "whole")
    ref = _run(whole, FakeClient(default=profile_keeper(spoil={1: 2})), concurrency=1)
    ws = write_tiny_workspace(tmp_path / "cut")
    keeper = profile_keeper(spoil={1: 2})

    def cut(messages: list[dict], model: type) -> Any:
        text = messages[-1]["content"]
        if model.__name__ == "SyntheticRespondents" and int(BATCH.search(text).group(1)) == 11:
            raise KeyboardInterrupt  # in the first top-up call
        return keeper(messages, model)

    with pytest.raises(KeyboardInterrupt):
        _run(ws, FakeClient(default=cut), concurrency=1)
    assert not Workspace(ws).output_csv("fake", "2").exists()
    res = _run(ws, FakeClient(default=keeper), concurrency=1, resume=True)
    assert res.rows == 20 and res.manifest_data["resumed_batches"] == 10
    assert Path(res.output).read_bytes() == Path(ref.output).read_bytes()
    assert res.manifest_data["calibration"]["off_profile_rows"] == 2


def test_resume_with_other_calibration_settings_is_refused(tiny_workspace: Path) -> None:
    keeper = profile_keeper()

    def cut(messages: list[dict], model: type) -> Any:
        if model.__name__ == "SyntheticRespondents" and "Request 3:" in messages[-1]["content"]:
            raise KeyboardInterrupt
        return keeper(messages, model)

    with pytest.raises(KeyboardInterrupt):
        _run(tiny_workspace, FakeClient(default=cut), concurrency=1)
    with pytest.raises(PanelsynthError, match="other settings"):
        _run(tiny_workspace, FakeClient(default=keeper), resume=True, oversample=3.0)


def test_local_models_get_profiles_fixed_in_the_schema(tiny_workspace: Path) -> None:
    client = FakeClient(default=profile_keeper(), is_local=True, label="local/fake")
    res = _run(tiny_workspace, client)
    assert res.rows == 20 and res.manifest_data["calibration"]["profiles_in_schema"] is True
    calls = [c for c in client.calls if c["response_model"].__name__ == "ProfiledRespondents"]
    assert len(calls) == 10
    real = _real(tiny_workspace)
    text = calls[0]["messages"][-1]["content"]
    schema = calls[0]["response_model"].model_json_schema()
    for k, prof in enumerate(parse_profiles(text)):
        props = schema["properties"][f"respondent_{k + 1}"]["properties"]
        assert list(props)[:3] == ["cluster", "age", "sex"]  # the profile is written first
        assert props["cluster"] == {"const": prof["cluster"]}
        assert props["sex"] == {"const": prof["sex"]}
        # an exact age, not the band as a range (a schema-guided decoder writes its floor): the
        # one the request lists, a real age of the profile's cluster
        assert isinstance(prof["age"], int) and props["age"] == {"const": prof["age"]}
        assert prof["age"] in set(real.loc[real["cluster"] == prof["cluster"], "age"])
    assert "exact_anchor_values" in res.manifest_data["calibration"]


def test_anchors_option_and_unknown_anchor(tiny_workspace: Path) -> None:
    client = FakeClient(default=profile_keeper())
    res = _run(tiny_workspace, client, anchors=["sex", "prev_cluster"])
    assert res.manifest_data["calibration"]["anchors"] == ["sex", "prev_cluster"]
    text = next(
        c["messages"][-1]["content"]
        for c in client.calls
        if c["response_model"].__name__ == "SyntheticRespondents"
    )
    assert re.search(r"Respondent 1: cluster \d, sex \d, prev_cluster \d$", text, re.MULTILINE)
    with pytest.raises(ConfigError, match="anchor 'income' is not a variable"):
        _run(tiny_workspace, FakeClient(default=fake_answer), anchors=["income"], model_dir="x")
    assert not Workspace(tiny_workspace).output_dir("x").exists() or not list(
        Workspace(tiny_workspace).output_dir("x").iterdir()
    )


def test_config_fields_and_bounds() -> None:
    g = parse_config(
        {"generation": {"calibrate": True, "oversample": 3, "anchors": ["age"]}}
    ).generation
    assert (g.calibrate, g.oversample, g.anchors) == (True, 3.0, ["age"])
    assert parse_config({}).generation.calibrate is False
    with pytest.raises(ConfigError, match="generation.oversample"):
        parse_config({"generation": {"oversample": 0.5}})


def test_config_turns_calibration_on(tiny_workspace: Path) -> None:
    cfg = Workspace(tiny_workspace).config_path
    text = cfg.read_text()
    assert text.count("\n[generation]\n") == 1
    cfg.write_text(
        text.replace("\n[generation]\n", "\n[generation]\ncalibrate = true\noversample = 1.5\n")
    )
    res = _run(tiny_workspace, FakeClient(default=profile_keeper()), calibrate=None)
    assert res.manifest_data["calibration"]["oversample"] == 1.5


def test_cli_flags_reach_the_run(tiny_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import panelsynth.runner as runner

    client = FakeClient(default=profile_keeper(), is_local=True, label="local/fake")
    monkeypatch.setattr(runner, "open_client", lambda *a, **k: client)
    r = CliRunner().invoke(
        app,
        [
            "run",
            "-w",
            str(tiny_workspace),
            "--wave",
            "2",
            "--model",
            "local/fake",
            "--model-dir",
            "cal",
            "--n-outputs",
            "4",
            "--n-batches",
            "2",
            "--calibrate",
            "--oversample",
            "1.5",
            "--anchors",
            "sex",
        ],
    )
    assert r.exit_code == 0, r.output
    m = json.loads(Workspace(tiny_workspace).manifest("cal", "2").read_text())
    assert m["calibration"]["oversample"] == 1.5 and m["calibration"]["anchors"] == ["sex"]
    assert len(pd.read_csv(Workspace(tiny_workspace).output_csv("cal", "2"))) == 8
    r = CliRunner().invoke(
        app,
        [
            "run",
            "-w",
            str(tiny_workspace),
            "--wave",
            "2",
            "--model",
            "local/fake",
            "--model-dir",
            "bad",
            "--calibrate",
            "--anchors",
            "income",
        ],
    )
    assert r.exit_code == 2 and "anchor 'income' is not a variable" in r.output
    assert "Traceback" not in r.output


def test_demo_runs_a_calibrated_wave_next_to_the_plain_one() -> None:
    from panelsynth.demo.pipeline import DEMO_PLAN

    plain = next(p for p in DEMO_PLAN if p.model_dir == "smollm2" and p.wave == "1")
    cal = next(p for p in DEMO_PLAN if p.calibrate)
    assert cal.model_dir == "smollm2-calibrated" and (cal.wave, cal.mode) == ("1", "dense")
    assert cal.n_outputs * cal.n_batches == plain.n_outputs * plain.n_batches


def test_demo_passes_calibrate_to_the_run(tmp_path: Path) -> None:
    from panelsynth.demo.pipeline import DemoRun, run_demo

    seen: list[RunOptions] = []

    def hook(root: Path, wave: str, client: Any, md: str, opts: RunOptions) -> Any:
        seen.append(opts)
        return run_wave(root, wave, client, md, opts)

    plan = (
        DemoRun("1", "dense", "p", n_outputs=3, n_batches=2),
        DemoRun("1", "dense", "c", n_outputs=3, n_batches=2, calibrate=True),
    )
    client = FakeClient(default=profile_keeper())
    out = run_demo(
        tmp_path / "demo",
        n_respondents=120,
        client=client,
        plan=plan,
        run=hook,
        evaluate=False,
        panel=None,
    )
    assert [o.calibrate for o in seen] == [None, True]
    assert [r.rows for r in out.runs] == [6, 6]
    assert out.runs[1].manifest_data["calibration"]["enabled"] is True


@pytest.mark.slow
def test_tiny_calibrated_run_with_the_embedded_model(tiny_workspace: Path) -> None:
    from panelsynth.runner import open_client

    client = open_client("local/smollm2")
    res = _run(tiny_workspace, client, n_outputs=3, n_batches=2, oversample=1.5)
    df = pd.read_csv(res.output)
    assert len(df) == 6
    real = _real(tiny_workspace)
    shares = real["cluster"].value_counts(normalize=True).to_dict()
    assert df["cluster"].value_counts().to_dict() == allocate(
        {int(k): v for k, v in shares.items()}, 6
    )
    assert df["age"].between(18, 90).all() and set(df["sex"]) <= {1, 2}
    cal = res.manifest_data["calibration"]
    assert cal["profiles_in_schema"] is True and cal["off_profile_rows"] == 0
    assert cal["pool_rows"] == 9 and cal["selected_rows"] == 6
    # every pooled row kept the profile it was asked for (the schema fixed it)
    for r in _checkpoint(tiny_workspace):
        assert len(r["fulfilled"]) == len(r["rows"]) == 3
        for row in r["rows"]:  # an exact real age of its cluster, not a band's floor
            assert row["age"] in set(real.loc[real["cluster"] == row["cluster"], "age"])


def test_dry_run_projects_the_calibrated_pool(tiny_workspace: Path) -> None:
    """--dry-run --calibrate plans the oversampled pool's calls and their real prompts."""
    from panelsynth.run.dryrun import plan_wave

    client = FakeClient(default=profile_keeper())
    res = _run(tiny_workspace, client)  # steps 1-2 now cached; 10 pool calls, no top-up
    opts = RunOptions(n_outputs=4, n_batches=5, calibrate=True)
    plan = plan_wave(tiny_workspace, "2", client, "other", opts)
    st3 = plan.stages[2]
    assert st3.calls == 10 and st3.counted == "exact"  # 2 x 20 rows in calls of 4
    real = res.manifest_data["tokens"]["per_stage"]["step3"]
    assert real["calls"] == 10
    assert st3.input_tokens == real["input_tokens"]  # the same profile lines, call by call
    assert any("pool of 40 rows (10 calls) for 20 kept rows" in n for n in plan.notes)
    plain = plan_wave(tiny_workspace, "2", client, "other", RunOptions(n_outputs=4, n_batches=5))
    assert plain.stages[2].calls == 5
