"""The LLM imputation strategy and ``impute_workspace`` with a fake model (issue 15)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from imputehelpers import check_files, seeded_answer

from panelsynth.config import load_config
from panelsynth.errors import PanelsynthError
from panelsynth.impute.evaluation import EvalSettings, evaluate_imputation
from panelsynth.impute.gaps import find_gaps, load_panel
from panelsynth.impute.llm import LLMImputer, LLMSettings
from panelsynth.impute.output import imputed_cells_csv, imputed_csv
from panelsynth.impute.run import ImputeOptions, impute_workspace
from panelsynth.llm.base import FakeClient


def _client() -> FakeClient:
    return FakeClient(default=seeded_answer, is_local=True, label="fake/imputer")


def _options(**kw) -> ImputeOptions:
    return ImputeOptions(**{"waves": ["1", "2"], "m": 2, "seed": 5, **kw})


def _impute_calls(client: FakeClient) -> list[dict]:
    return [c for c in client.calls if c["response_model"].__name__ == "SyntheticRespondents"]


def test_llm_imputation_keeps_real_answers_and_lists_every_cell(demo_copy) -> None:
    client = _client()
    res = impute_workspace(demo_copy.root, client, "fake", _options())
    panel = load_panel(demo_copy, ["1", "2"])
    gaps = find_gaps(panel)
    # rebuild the sets from the cells file and check the files byte by byte against them
    sets = []
    for k in (1, 2):
        from panelsynth.impute.completed import CompletedSet

        parts, clusters = [], {}
        for w in panel.order:
            cells = pd.read_csv(imputed_cells_csv(demo_copy, "fake", w), dtype=str)
            mine = cells[cells["imputation"] == str(k)]
            cl = mine[mine["variable"] == "cluster"]
            clusters[w] = pd.Series(cl["value"].astype(int).to_numpy(), index=cl["respondent_id"])
            rest = mine[mine["variable"] != "cluster"]
            parts.append(
                pd.DataFrame(
                    {
                        "wave": w,
                        "respondent_id": rest["respondent_id"].to_numpy(),
                        "variable": rest["variable"].to_numpy(),
                        "value": pd.to_numeric(rest["value"]).to_numpy(),
                    }
                )
            )
        sets.append(CompletedSet(k, pd.concat(parts, ignore_index=True), clusters))
    check_files(demo_copy, panel, sets, "fake")
    # exactly the gaps, each once per imputation
    want = {(r.wave, r.respondent_id, r.variable) for r in gaps.all_cells(panel).itertuples()}
    for s in sets:
        got = list(map(tuple, s.cells[["wave", "respondent_id", "variable"]].to_numpy()))
        assert len(got) == len(set(got)) and set(got) == want
        for w in panel.order:
            assert set(s.clusters[w].index) == set(gaps.absent_ids(w))
    # one call per respondent with a gap, per wave and imputation; the manifest says so
    per_wave = {
        w: len({r for r in gaps.cells[gaps.cells["wave"] == w]["respondent_id"]})
        + len(gaps.absent_ids(w))
        for w in panel.order
    }
    assert len(_impute_calls(client)) == 2 * sum(per_wave.values())
    data = json.loads(res.manifest.read_text())
    assert data["status"] == "complete" and data["method"] == "llm"
    assert sum(p["respondents"] for p in data["passes"]) == 2 * sum(per_wave.values())
    assert data["cost"]["usd"] == 0.0 and data["tokens"]["input"] > 0


def test_the_model_is_asked_only_for_the_missing_cells(demo_copy) -> None:
    client = _client()
    panel = load_panel(demo_copy, ["1", "2"])
    gaps = find_gaps(panel)
    cfg = load_config(demo_copy.config_path)
    LLMImputer(demo_copy, client, cfg, demo_copy.root / "ck").impute(panel, gaps, 1, 3)
    missing = gaps.cells.groupby(["wave", "respondent_id"])["variable"].agg(set)
    asked_item = 0
    for call in _impute_calls(client):
        fields = set(
            call["response_model"].model_json_schema()["properties"]["rows"]["items"]["properties"]
        )
        text = call["messages"][-1]["content"]
        wave = text.split("in wave ")[-1].split(" as ")[0]
        sets = [s for (w, _), s in missing.items() if w == wave and s == fields]
        absent = fields == set(panel.waves[wave].variables) and "did not take part" in text
        assert sets or absent
        asked_item += bool(sets)
        # the answers the respondent gave are shown, never asked for
        given = text.split(f"answers given in wave {wave}: ")
        if len(given) > 1:
            shown = {p.split("=")[0] for p in given[1].split("\n")[0].split(", ")}
            assert not shown & fields
    assert asked_item == len(missing)


def test_m3_gives_three_distinct_sets_and_the_seed_reproduces_them(demo_copy) -> None:
    impute_workspace(demo_copy.root, _client(), "a", _options(m=3))
    impute_workspace(demo_copy.root, _client(), "b", _options(m=3))
    impute_workspace(demo_copy.root, _client(), "c", _options(m=3, seed=6))
    for w in ("1", "2"):
        texts = [imputed_csv(demo_copy, "a", w, k).read_bytes() for k in (1, 2, 3)]
        assert len(set(texts)) == 3
        for k in (1, 2, 3):
            assert imputed_csv(demo_copy, "b", w, k).read_bytes() == texts[k - 1]
        assert (
            imputed_cells_csv(demo_copy, "b", w).read_bytes()
            == imputed_cells_csv(demo_copy, "a", w).read_bytes()
        )
        assert (
            imputed_cells_csv(demo_copy, "c", w).read_bytes()
            != imputed_cells_csv(demo_copy, "a", w).read_bytes()
        )


def test_an_item_without_missing_answers_is_left_alone(demo_copy) -> None:
    panel = load_panel(demo_copy, ["1", "2"])
    complete = [v for v in panel.waves["1"].variables if panel.waves["1"].frame[v].notna().all()]
    assert complete, "the demo has a complete variable in wave 1"
    item = complete[0]
    gappy = next(v for v in panel.waves["1"].variables if panel.waves["1"].frame[v].isna().any())
    client = _client()
    impute_workspace(
        demo_copy.root, client, "one", _options(waves=["1"], items=[item, gappy], dropouts=False)
    )
    cells = pd.read_csv(imputed_cells_csv(demo_copy, "one", "1"), dtype=str)
    assert set(cells["variable"]) == {gappy}
    for call in _impute_calls(client):
        props = call["response_model"].model_json_schema()["properties"]["rows"]["items"]
        assert set(props["properties"]) == {gappy}
    orig = pd.read_csv(demo_copy.original_data("1"), dtype=str)
    for k in (1, 2):
        out = pd.read_csv(imputed_csv(demo_copy, "one", "1", k), dtype=str)
        pd.testing.assert_series_equal(out[item], orig[item])


def test_existing_outputs_and_checkpoints_are_not_overwritten(demo_copy) -> None:
    impute_workspace(demo_copy.root, _client(), "x", _options(waves=["1"], m=1))
    before = imputed_csv(demo_copy, "x", "1", 1).read_bytes()
    with pytest.raises(PanelsynthError, match="already exists — pass --restart"):
        impute_workspace(demo_copy.root, _client(), "x", _options(waves=["1"], m=1))
    assert imputed_csv(demo_copy, "x", "1", 1).read_bytes() == before
    # --resume takes every finished call over: no call is made again
    client = _client()
    opts = _options(waves=["1"], m=1, llm=LLMSettings(resume=True))
    impute_workspace(demo_copy.root, client, "x", opts)
    assert not _impute_calls(client)
    assert imputed_csv(demo_copy, "x", "1", 1).read_bytes() == before
    # --restart imputes again and keeps the old checkpoint aside
    client = _client()
    impute_workspace(demo_copy.root, client, "x", _options(waves=["1"], m=1, restart=True))
    assert _impute_calls(client)
    folder = demo_copy.imputed_dir("x") / "checkpoints"
    assert len(list(folder.glob("wave1_imp1.checkpoint.*Z.jsonl"))) == 1
    assert (folder / "wave1_imp1.checkpoint.jsonl").exists()


def test_the_masked_evaluation_scores_the_llm_next_to_the_baselines(demo_copy) -> None:
    doc = evaluate_imputation(
        demo_copy.root,
        ["hot-deck", "locf", "llm"],
        _client(),
        "fake",
        _options(waves=["1", "2"], m=2),
        EvalSettings(masks=1),
    )
    names = [r["method"] for r in doc["table"]]
    assert names == ["hot-deck", "LOCF", "LLM (fake/imputer)"]
    llm = doc["table"][-1]
    assert 0.0 <= llm["accuracy (hidden answers)"] <= 1.0 and llm["TVD"] is not None
    bayes = {r["method"]: r for r in doc["bayes_item"]["rows"]}
    assert {"Bayes-optimal", "LLM (fake/imputer)"} <= set(bayes)
    assert bayes["LLM (fake/imputer)"]["n_cells"] == bayes["Bayes-optimal"]["n_cells"] > 0
    folder = demo_copy.root / "Evaluation" / "fake"
    saved = json.loads((folder / "imputation_metrics.json").read_text())
    assert saved["table"] == json.loads(json.dumps(doc["table"]))
    report = (folder / "imputation_report.html").read_text()
    assert "LLM (fake/imputer)" in report and "Bayes-optimal" in report
    assert "What the LLM imputation cost" in report
