"""What the host carries in ``panelsynth run --panel`` (plain and calibrated), against the
OpenAI-compatible stub, whose answers are random: whatever a respondent keeps in the real panel
(the demo's sex and age) is kept because the host keeps it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panelstub import panel_responder, requested
from servers.openai_stub import OpenAIStub

from panelsynth import run_panel
from panelsynth.calibrate import Band
from panelsynth.data import id_text
from panelsynth.demo import build_demo
from panelsynth.errors import PanelsynthError
from panelsynth.panel.board import AnswerBoard
from panelsynth.panel.carry import Carried, CarryRules, PanelCarry
from panelsynth.panel.strategy import PanelPrompt, Requested, panel_row_model
from panelsynth.pydantic_models.rows import RowSpec, build_row_model
from panelsynth.run.plan import RunOptions
from panelsynth.runner import open_client
from panelsynth.workspace import Workspace

ID = "respondent_id"
WAVES = ["1", "2", "3"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("carryrun") / "ws", n_respondents=400).workspace.root


def _run(root: Path, model_dir: str, n: int, **opts) -> tuple[object, list[dict]]:
    with OpenAIStub(panel_responder()) as stub:
        client = open_client("openai/stub-model", base_url=stub.base_url)
        options = RunOptions(n_outputs=40, concurrency=4, **opts)
        res = run_panel(root, WAVES, client, model_dir, options, respondents=n)
        bodies = [r.body for r in stub.requests if requested(r.body)]
    return res, bodies


def _out(ws: Workspace, model_dir: str, wave: str) -> pd.DataFrame:
    f = pd.read_csv(ws.output_csv(model_dir, wave), dtype={ID: str})
    return f.assign(**{ID: f[ID].map(id_text)}).set_index(ID)


def _real(ws: Workspace, wave: str) -> pd.DataFrame:
    return pd.read_csv(ws.original_data(wave))


def test_a_random_writer_keeps_sex_and_age_in_every_row(demo: Path) -> None:
    ws = Workspace(demo)
    res, bodies = _run(demo, "plain", 150)
    outs = {w: _out(ws, "plain", w) for w in WAVES}
    m = res.manifest_data
    pairs = m["carry"]["pairs"]
    assert pairs["1-2"]["sex"] == "fixed" and pairs["2-3"]["sex"] == "fixed"
    assert set(pairs["1-2"]) == {"sex", "age"}  # the items the real panel keeps, nothing else
    assert m["carry"]["calibrated"] is False and m["carry"]["first_wave_anchors"] == []
    fixes = 0
    for a, b in (("1", "2"), ("2", "3"), ("1", "3")):
        both = outs[a].index.intersection(outs[b].index)
        assert len(both) > 50
        assert (outs[a].loc[both, "sex"] == outs[b].loc[both, "sex"]).all()  # 100% of rows
        rule = res.manifest_data["carry"]["pairs"].get(f"{a}-{b}")
        if rule is None:  # 1-3: respondents who skipped wave 2
            continue
        lo, hi = (
            (int(x) for x in re.findall(r"[+-]\d+", rule["age"]))
            if rule["age"] != "fixed"
            else (0, 0)
        )
        change = outs[b].loc[both, "age"] - outs[a].loc[both, "age"]
        top = outs[a].loc[both, "age"] >= 90
        assert change[~top].between(lo, hi).all()
    for w in ("2", "3"):
        fixes += m["per_wave"][w]["carried_fixes"]
    assert fixes > 50  # the random writer was corrected, counted, never rejected for it
    assert m["per_wave"]["1"]["carried_fixes"] == 0  # plain first wave: nothing to keep yet
    # the request shows what the respondent keeps, after the shared prefix
    later = [b for b in bodies if "write the wave 2 answers" in b["messages"][-1]["content"]]
    text = later[0]["messages"][-1]["content"].partition("\n\nRequest ")[2]
    assert re.search(r"This respondent keeps: age \d+(-\d+)?, sex \d\.", text)
    assert "Where a respondent keeps values, write exactly those" in text
    wave2 = json.loads(ws.manifest("plain", "2").read_text())
    assert wave2["panel"]["carried_fixes"] == m["per_wave"]["2"]["carried_fixes"]


def test_calibrated_panel_first_wave_anchors_follow_the_real_shares(demo: Path) -> None:
    ws = Workspace(demo)
    res, _ = _run(demo, "cal", 400, calibrate=True)
    m = res.manifest_data["carry"]
    assert m["calibrated"] is True and m["first_wave_anchors"] == ["age", "sex"]
    assert "not used" in m["oversample"]
    one, real = _out(ws, "cal", "1"), _real(ws, "1")
    assert res.manifest_data["per_wave"]["1"]["carried_fixes"] > 0  # random sex corrected
    for c in (1, 2):
        syn, rl = one[one["cluster"] == c], real[real["cluster"] == c]
        share = float((rl["sex"] == 2).mean())
        got = float((syn["sex"] == 2).mean())
        assert abs(got - share) < 4 * np.sqrt(share * (1 - share) / len(syn)) + 0.01
        for lo, hi in ((18, 34), (35, 54), (55, 90)):
            want = float(rl["age"].between(lo, hi).mean())
            have = float(syn["age"].between(lo, hi).mean())
            assert abs(have - want) < 4 * np.sqrt(want * (1 - want) / len(syn)) + 0.01
    two = _out(ws, "cal", "2")
    both = one.index.intersection(two.index)
    assert (one.loc[both, "sex"] == two.loc[both, "sex"]).all()


def test_calibrated_full_mode_draws_each_waves_missingness_patterns(demo: Path) -> None:
    ws = Workspace(demo)
    res, _ = _run(demo, "calfull", 400, calibrate=True, mode="full")
    m = res.manifest_data["carry"]
    assert set(m["missingness_patterns"]) == set(WAVES)
    for w in WAVES:
        syn, real = _out(ws, "calfull", w), _real(ws, w)
        items = [c for c in m["missingness_patterns"][w] if c in real.columns]
        assert items
        real_na = real[items].isin([-99, -98]) | real[items].isna()
        for c in (1, 2):
            want = real_na[real["cluster"] == c].any(axis=1).mean()
            got = syn[syn["cluster"] == c][items].isna().any(axis=1).mean()
            n = int((syn["cluster"] == c).sum())
            assert abs(got - want) < 4 * np.sqrt(want * (1 - want) / n) + 0.02, (w, c)
    # the stub never writes null: every gap is the host's, and the sex of a person is kept
    one, three = _out(ws, "calfull", "1"), _out(ws, "calfull", "3")
    both = one.index.intersection(three.index)
    kept = one.loc[both, "sex"].notna() & three.loc[both, "sex"].notna()
    assert kept.sum() > 50 and (one.loc[both, "sex"] == three.loc[both, "sex"])[kept].all()


def test_resume_keeps_a_calibrated_panel_and_other_anchors_are_refused(demo: Path) -> None:
    res, _ = _run(demo, "resume", 60, calibrate=True)
    again, bodies = _run(demo, "resume", 60, calibrate=True, resume=True)
    assert bodies == [] and again.rows == res.rows  # nothing paid again
    with pytest.raises(PanelsynthError, match="other settings or inputs"):
        _run(demo, "resume", 60, calibrate=True, resume=True, anchors=["sex"])


def test_the_local_schema_fixes_what_the_host_carries() -> None:
    specs = [
        RowSpec("sex", "a binary", codes=(1, 2)),
        RowSpec("age", "a continuous", low=18, high=90, integer=True),
        RowSpec("q1", "an ordinal", codes=(1, 2, 3)),
        RowSpec("cluster", "cluster", codes=(1, 2)),
    ]
    row_model = panel_row_model(build_row_model(specs), ID)
    rules = CarryRules(
        ("1", "2"),
        ({},),
        {
            ("1", "2"): {
                "sex": Carried("fixed", codes=(1, 2)),
                "age": Carried("shift", 0, 1, integer=True, minimum=18, maximum=90),
            }
        },
    )
    board = AnswerBoard()
    board.publish("1", "S00001", {"sex": 2, "age": 40, "q1": 3})
    prompt = PanelPrompt(
        prefix=[{"role": "user", "content": "prefix"}],
        n_examples_used=0,
        requests=[Requested("S00001", 1, None, (("1", 1), ("2", 1)), "1")],
        n_outputs=1,
        wave="2",
        id_column=ID,
        board=board,
        carry=PanelCarry(rules, "1"),
        fixed_row_model=row_model,
        shared_row_model=row_model,
    )
    schema = prompt.response_model(0, row_model).model_json_schema()
    props = schema["properties"]["respondent_1"]["properties"]
    assert props["sex"] == {"const": 2}
    assert props["age"] == {"type": "integer", "minimum": 40, "maximum": 41}
    assert prompt.profile(0).anchors == (("sex", 2), ("age", Band(40, 41, integer=True)))
    kept, errors, book = prompt.check_rows(0, [{ID: "S00001", "cluster": 1, "sex": 1, "age": 45}])
    assert not errors and kept[0]["sex"] == 2 and kept[0]["age"] == 41
    assert book["panel_carried_fixes"] == 2 and prompt.carried_fixes == 2


def test_only_a_schema_fixed_client_gets_exact_values_drawn_for_its_bands(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``panel/run.py`` and the panel dry run hand a local (schema-guided) client's carry to
    :meth:`PanelCarry.schema_fixed` — a range in its schema gets the range's floor written —
    and a hosted client's carry keeps its bands (the model reads them as text)."""
    from panelsynth.config import load_config
    from panelsynth.panel.dryrun import plan_panel

    calls: list[bool] = []
    real = PanelCarry.schema_fixed

    def spy(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(True)
        return real(self, *a, **kw)

    monkeypatch.setattr(PanelCarry, "schema_fixed", spy)
    ws = Workspace(demo)
    cfg = load_config(ws.config_path)
    opts = RunOptions(n_outputs=10)
    plan_panel(ws, cfg, ["1", "2"], "openai/gpt-4o-mini", "dry", opts, respondents=20)
    assert calls == []
    plan_panel(ws, cfg, ["1", "2"], "local/smollm2", "dry", opts, respondents=20)
    assert calls == [True]
    calls.clear()
    _run(demo, "hosted-bands", 20)
    assert calls == []
    with OpenAIStub(panel_responder()) as stub:
        client = open_client("openai/stub-model", base_url=stub.base_url)
        client.is_local = True  # as a schema-guided decoder: one call at a time, schemas fixed
        run_panel(demo, ["1", "2"], client, "local-exact", RunOptions(n_outputs=10),
                  respondents=20)  # fmt: skip
    assert calls == [True]
