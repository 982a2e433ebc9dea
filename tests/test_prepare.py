"""``prepare_workspace``: raw waves -> Original data/, var types, metadata and reports."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from panelsynth.config import parse_config
from panelsynth.data import load_wave
from panelsynth.errors import ConfigError, DataError, WorkspaceError
from panelsynth.prepare import infer_var_type, prepare_workspace
from panelsynth.prepare.clustering import adjusted_rand_index
from panelsynth.scaffold import init_workspace
from panelsynth.workspace import Workspace

#: item -> separation strength (0 = the item says nothing about the class)
ITEMS = {"vaccimportant": 2.4, "vaccsafe": 2.0, "doctortrust": 0.9, "noise1": 0.0, "noise2": 0.0}


def _answers(rng: np.random.Generator, positive: np.ndarray, strength: float) -> np.ndarray:
    """Ordinal answers 1..5; the positive class answers higher when strength > 0."""
    base = np.linspace(-1.0, 1.0, 5)
    out = np.empty(positive.size, dtype=float)
    for flag, sign in ((True, 1.0), (False, -1.0)):
        p = np.exp(base * strength * sign)
        idx = positive == flag
        out[idx] = rng.choice(5, size=int(idx.sum()), p=p / p.sum()) + 1
    return out


def write_raw_panel(
    root: Path,
    *,
    n: int = 600,
    waves: tuple[str, ...] = ("1", "2", "3"),
    seed: int = 0,
    dictionary: bool = True,
    config: str = "",
) -> dict[str, pd.DataFrame]:
    """A raw panel with two latent classes, transitions, attrition, entrants and -99 codes.

    Returns the truth per wave (``respondent_id``, ``true_class``: 1 = positive).
    """
    ws, _ = init_workspace(root)
    rng = np.random.default_rng(seed)
    raw = root / "Raw data"
    raw.mkdir(exist_ok=True)
    ids = np.arange(1, n + 1)
    positive = rng.random(n) < 0.55
    age = rng.integers(18, 90, n)
    sex = rng.integers(1, 3, n)
    alive = np.ones(n, dtype=bool)
    truth = {}
    for i, w in enumerate(waves):
        if i:
            positive = np.where(rng.random(n) < 0.1, ~positive, positive)
            alive &= rng.random(n) > 0.08
        present = alive.copy()
        if i == 1:
            present[: n // 10] = False  # skip wave 2, come back in wave 3
        idx = np.flatnonzero(present)
        df = pd.DataFrame({"respondent_id": ids[idx]})
        for item, strength in ITEMS.items():
            x = _answers(rng, positive[idx], strength)
            miss = rng.random(idx.size) < np.where(positive[idx], 0.05, 0.12)
            x[miss] = -99
            df[item] = x.astype(int)
        df["age"] = age[idx]
        df["sex"] = sex[idx]
        if i:
            df["vaccinated"] = (rng.random(idx.size) < np.where(positive[idx], 0.7, 0.2)).astype(
                int
            )
        df.to_csv(raw / f"wave{w}.csv", index=False)
        truth[w] = pd.DataFrame(
            {"respondent_id": ids[idx], "true_class": np.where(positive[idx], 1, 2)}
        )
    if dictionary:
        rows = ["variable,question,responses"]
        rows += [f'{it},How about {it}?,"1=Low; 2=2; 3=3; 4=4; 5=High"' for it in ITEMS]
        rows += [
            "age,Age in years,18-90",
            'sex,Sex,"1=Male; 2=Female"',
            'vaccinated,Vaccinated?,"0=No; 1=Yes"',
        ]
        ws.study_dictionary().write_text("\n".join(rows) + "\n", encoding="utf-8")
    text = '[study]\noutcome = "vaccinated"\nmissing_codes = [-99]\n' + config
    ws.config_path.write_text(text, encoding="utf-8")
    return truth


@pytest.fixture
def raw_panel(tmp_path: Path) -> tuple[Path, dict[str, pd.DataFrame]]:
    """A three-wave raw panel (600 respondents) without an orientation item."""
    root = tmp_path / "ws"
    return root, write_raw_panel(root)


def _wave(root: Path, w: str) -> pd.DataFrame:
    return pd.read_csv(root / "Original data" / f"wave{w}.csv")


def test_prepare_writes_waves_with_aligned_labels_and_prev_cluster(raw_panel):
    root, truth = raw_panel
    result = prepare_workspace(root)
    assert [r.wave for r in result.waves] == ["1", "2", "3"]
    previous = None
    for w in ("1", "2", "3"):
        df = _wave(root, w)
        assert list(df.columns[:1]) == ["respondent_id"]
        assert set(df["cluster"]) == {1, 2}
        assert (df[list(ITEMS)] == -99).sum().sum() == 0  # missing codes cleaned to NA
        assert df[list(ITEMS)].isna().any().any()
        merged = df.merge(truth[w], on="respondent_id")
        accuracy = float((merged["cluster"] == merged["true_class"]).mean())
        assert accuracy > 0.85, (w, accuracy)  # label 1 = positive in every wave, not up to swap
        if previous is None:
            assert "prev_cluster" not in df.columns
        else:
            linked = df.merge(
                previous[["respondent_id", "cluster"]], on="respondent_id", how="left"
            )
            expected = linked["cluster_y"].astype("Int64")
            assert df["prev_cluster"].astype("Int64").equals(expected.rename("prev_cluster"))
            # those who skipped wave 2 come back in wave 3 without a previous label
            assert df["prev_cluster"].isna().any() == (w == "3")
        previous = df
    assert "profiles matched to wave 1" in result.waves[1].alignment


def test_orientation_item_decides_which_class_is_1(tmp_path):
    root = tmp_path / "ws"
    config = '[clustering]\norientation_item = "vaccsafe"\norientation_higher_is_positive = false\n'
    truth = write_raw_panel(root, config=config, waves=("1", "2"))
    result = prepare_workspace(root)
    for w in ("1", "2"):
        merged = _wave(root, w).merge(truth[w], on="respondent_id")
        # lower answers on vaccsafe are "positive" here, so cluster 1 is the true class 2
        assert ((merged["cluster"] == 3 - merged["true_class"]).mean()) > 0.85
    assert result.waves[0].alignment == "orientation item 'vaccsafe'"


def test_same_seed_gives_identical_original_data(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_raw_panel(a, seed=3)
    write_raw_panel(b, seed=3)
    prepare_workspace(a)
    prepare_workspace(b)
    for w in ("1", "2", "3"):
        assert (a / "Original data" / f"wave{w}.csv").read_bytes() == (
            b / "Original data" / f"wave{w}.csv"
        ).read_bytes()
    first = (a / "Original data" / "wave2.csv").read_bytes()
    prepare_workspace(a)  # a second run over its own output needs no --force
    assert (a / "Original data" / "wave2.csv").read_bytes() == first


def test_all_na_variable_is_dropped_with_a_warning(raw_panel, caplog):
    root, _ = raw_panel
    path = root / "Raw data" / "wave2.csv"
    df = pd.read_csv(path)
    df["emptyitem"] = -99
    df.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="panelsynth"):
        result = prepare_workspace(root)
    assert any(
        "'emptyitem'" in r.getMessage() and "all NA" in r.getMessage() for r in caplog.records
    )
    assert "emptyitem" not in _wave(root, "2").columns
    assert result.waves[1].dropped == ["emptyitem"]
    types = json.loads((root / "Dictionaries/var_types/full/types_wave2.json").read_text())
    assert "emptyitem" not in types


def test_ranking_puts_separating_items_first_and_fills_dense_types(tmp_path):
    root = tmp_path / "ws"
    write_raw_panel(root, config="[prepare]\nn_dense_items = 2\n")
    result = prepare_workspace(root)
    ranking = pd.read_csv(root / "Prepare" / "item_ranking.csv")
    assert ranking["item"].tolist()[:2] == ["vaccimportant", "vaccsafe"]
    assert set(ranking["item"].tolist()[-2:]) == {"noise1", "noise2"}
    assert {"mi_cluster_w1", "mi_trajectory_w2", "mi_trajectory_w3"} <= set(ranking.columns)
    assert ranking.equals(result.ranking)
    ws = Workspace(root)
    dense1 = json.loads(ws.var_types_for_write("1").read_text())
    assert dense1 == {
        "vaccimportant": "an ordinal",
        "vaccsafe": "an ordinal",
        "age": "a continuous",
        "sex": "a binary",
    }
    dense2 = json.loads(ws.var_types_for_write("2").read_text())
    assert list(dense2) == ["vaccimportant", "vaccsafe", "age", "sex", "vaccinated"]
    full2 = json.loads(ws.var_types_for_write("2", "full").read_text())
    assert list(full2) == [*ITEMS, "age", "sex", "vaccinated"]
    for w in ("1", "2"):
        for mode in (None, "full"):
            types = json.loads(ws.var_types_for_write(w, mode).read_text())
            meta = json.loads(ws.metadata_json_for_write(w, mode).read_text())
            assert list(meta) == list(types)
    # what prepare writes, the rest of the pipeline loads (given the user's wave context)
    assert any("wave_contexts" in w for w in result.warnings)
    ws.wave_context("2").write_text("Wave 2 of a test panel. Target: vaccinated. Previous: 1.")
    wave = load_wave(ws, "2", mode="full", missing_codes=[-99], study_waves=["1", "2", "3"])
    assert wave.prev_cluster_column == "prev_cluster"
    assert wave.metadata["age"].range == (18.0, 90.0)


def test_fit_report_has_bic_for_k_1_to_4_and_transitions(raw_panel):
    root, _ = raw_panel
    prepare_workspace(root)
    fit = json.loads((root / "Prepare" / "fit_wave1.json").read_text())
    assert sorted(fit["bic"]) == ["1", "2", "3", "4"]
    assert fit["best_k_by_bic"] == 2
    assert sum(fit["class_sizes"].values()) == fit["n_respondents"]
    assert all(0.5 <= p <= 1 for p in fit["average_posterior"].values())
    assert 0 < fit["relative_entropy"] <= 1
    report = pd.read_csv(root / "Prepare" / "fit_report.csv")
    assert report["wave"].tolist() == [1, 2, 3]
    assert {"bic_k1", "bic_k2", "bic_k3", "bic_k4", "cluster1_avg_posterior"} <= set(report.columns)
    trans = pd.read_csv(root / "Prepare" / "transitions.csv", dtype=str)
    pair = trans[(trans["from_wave"] == "1") & (trans["to_wave"] == "2")]
    w2 = _wave(root, "2")
    stayed = pair[(pair["from_cluster"] != "absent") & (pair["to_cluster"] != "absent")]
    assert stayed["n"].astype(int).sum() == int(w2["prev_cluster"].notna().sum())
    both_1 = stayed[(stayed["from_cluster"] == "1") & (stayed["to_cluster"] == "1")]["n"].astype(
        int
    )
    assert int(both_1.iloc[0]) == int(((w2["prev_cluster"] == 1) & (w2["cluster"] == 1)).sum())


def test_fewer_waves_later_warns_about_stale_wave_files(raw_panel, caplog):
    root, _ = raw_panel
    prepare_workspace(root)
    cfg = parse_config({"study": {"missing_codes": [-99], "waves": ["1", "2"]}})
    with caplog.at_level(logging.WARNING, logger="panelsynth"):
        result = prepare_workspace(root, cfg)
    assert [r.wave for r in result.waves] == ["1", "2"]
    assert any("still holds wave 3 from an earlier prepare run" in w for w in result.warnings)
    assert not (root / "Prepare" / "fit_wave3.json").exists()
    assert (root / "Original data" / "wave3.csv").exists()  # never deleted: only flagged


def test_refuses_to_replace_files_it_did_not_write(raw_panel):
    root, _ = raw_panel
    user_file = root / "Original data" / "wave1.csv"
    user_file.write_text("respondent_id,cluster\n1,1\n", encoding="utf-8")
    with pytest.raises(WorkspaceError, match=r"Original data/wave1.csv exists and was not written"):
        prepare_workspace(root)
    assert user_file.read_text(encoding="utf-8") == "respondent_id,cluster\n1,1\n"
    assert not (root / "Original data" / "wave2.csv").exists()  # nothing written
    result = prepare_workspace(root, force=True)
    backup = root / "Prepare" / "replaced" / "Original data" / "wave1.csv"
    assert backup.read_text(encoding="utf-8") == "respondent_id,cluster\n1,1\n"
    assert result.replaced == ["Prepare/replaced/Original data/wave1.csv"]


def test_missing_id_column_is_one_clear_error_and_writes_nothing(raw_panel):
    root, _ = raw_panel
    path = root / "Raw data" / "wave3.csv"
    pd.read_csv(path).rename(columns={"respondent_id": "rid"}).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        prepare_workspace(root)
    msg = str(err.value)
    assert msg.startswith("Raw data/wave3.csv has no id column 'respondent_id' (columns: rid, ")
    assert msg.endswith("— add it or set study.id_column in panelsynth.toml")
    assert "\n" not in msg
    assert not list((root / "Original data").glob("*"))  # waves 1 and 2 were not written either


def test_duplicate_ids_and_unknown_orientation_item(raw_panel):
    root, _ = raw_panel
    path = root / "Raw data" / "wave1.csv"
    df = pd.read_csv(path)
    pd.concat([df, df.head(1)]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"id 1 appears 2 times"):
        prepare_workspace(root)
    df.to_csv(path, index=False)
    cfg = parse_config(
        {"study": {"missing_codes": [-99]}, "clustering": {"orientation_item": "vacsafe"}}
    )
    with pytest.raises(ConfigError, match="orientation_item 'vacsafe' is not a column"):
        prepare_workspace(root, cfg)


def test_types_without_dictionary_and_declared_types(tmp_path, caplog):
    root = tmp_path / "ws"
    write_raw_panel(root, dictionary=False, waves=("1",))
    with caplog.at_level(logging.WARNING, logger="panelsynth"):
        prepare_workspace(root)
    types = json.loads((root / "Dictionaries/var_types/full/types_wave1.json").read_text())
    assert types == {**{it: "an ordinal" for it in ITEMS}, "age": "a continuous", "sex": "a binary"}
    meta = json.loads((root / "Dictionaries/json_metadata/full/metadata_wave1.json").read_text())
    assert meta["vaccsafe"]["responses"] == {str(i): str(i) for i in range(1, 6)}
    assert meta["age"]["range"][0] >= 18
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Dictionaries/dictionary.csv not found") for m in messages)
    assert not any("lacks variable" in m for m in messages)  # one warning, not one per variable

    s = pd.Series([1, 2, 3, np.nan])
    assert infer_var_type(s) == "an ordinal"
    assert infer_var_type(s, demographic=True) == "a categorical"
    assert infer_var_type(pd.Series([0.5, 1.7, 2.2, 9.1])) == "a continuous"
    assert infer_var_type(pd.Series(["a", "b", "c"])) == "a categorical"
    assert infer_var_type(pd.Series([1, 2]), declared="a categorical") == "a categorical"


def test_declared_type_column_and_labelled_sav_wave(tmp_path):
    import pyreadstat

    root = tmp_path / "ws"
    write_raw_panel(root, waves=("1", "2"))
    dictionary = Workspace(root).study_dictionary()
    text = dictionary.read_text().splitlines()
    lines = [text[0] + ",type"] + [
        line + (",categorical" if line.startswith("doctortrust") else ",") for line in text[1:]
    ]
    dictionary.write_text("\n".join(lines) + "\n")
    csv2 = root / "Raw data" / "wave2.csv"
    df = pd.read_csv(csv2)
    pyreadstat.write_sav(
        df,
        str(root / "Raw data" / "wave2.sav"),
        column_labels={c: f"label of {c}" for c in df.columns},
    )
    csv2.unlink()
    result = prepare_workspace(root)
    assert result.waves[1].source.name == "wave2.sav"
    types = json.loads((root / "Dictionaries/var_types/full/types_wave2.json").read_text())
    assert types["doctortrust"] == "a categorical"
    assert set(_wave(root, "2")["cluster"]) == {1, 2}


@pytest.fixture(scope="module")
def demo_prepared(tmp_path_factory) -> object:
    """The demo workspace (2,000 respondents, 7 waves) prepared with computed labels."""
    demo = pytest.importorskip("panelsynth.demo")
    if not hasattr(demo, "build_demo"):
        pytest.skip("the demo simulator is not available yet")
    root = tmp_path_factory.mktemp("demo") / "demo"
    demo.build_demo(root, seed=2024, n_respondents=2000)
    # the demo ships its own Original data/ (true classes); prepare replaces it with computed labels
    return prepare_workspace(root, force=True)


def test_demo_recovers_true_classes_close_to_bayes(demo_prepared):
    result = demo_prepared
    assert len(result.truth) == 7
    for t in result.truth:
        print(
            f"wave {t.wave}: ARI {t.ari:.3f} vs Bayes {t.ari_bayes:.3f} "
            f"(ratio {t.ari_ratio:.2f}); accuracy {t.accuracy:.3f} vs Bayes "
            f"{t.accuracy_bayes:.3f} (ratio {t.accuracy_ratio:.2f})"
        )
        assert t.ari >= 0.8 * t.ari_bayes, t
        assert t.accuracy >= 0.8 * t.accuracy_bayes, t
    check = pd.read_csv(result.workspace.prepare_dir() / "truth_check.csv")
    assert check["passed"].all()
    assert len(check) == 7


def test_demo_labels_agree_with_truth_file(demo_prepared):
    ws = demo_prepared.workspace
    for w in ("1", "4", "7"):
        mine = pd.read_csv(ws.original_data(w))
        truth = pd.read_csv(ws.ground_truth_dir() / f"truth_wave{w}.csv")
        merged = mine.merge(truth, on="respondent_id")
        assert len(merged) == len(mine) == len(truth)
        ari = adjusted_rand_index(merged["cluster"], merged["true_class"])
        assert ari == pytest.approx(demo_prepared.waves[int(w) - 1].truth.ari)
    top = demo_prepared.ranking["item"].tolist()[:3]
    assert top == ["vaccimportant", "vaccsafe", "howoftenvaccine"]  # the simulator's strongest


def _reference_csv(df: pd.DataFrame) -> str:
    """What prepare wrote before: whole-number float columns as nullable integers, then pandas."""
    out = df.copy()
    for c in out.columns:
        s = out[c]
        if pd.api.types.is_float_dtype(s):
            vals = s.dropna().to_numpy()
            if len(vals) == 0 or bool(np.all(vals == np.round(vals))):
                out[c] = s.round().astype("Int64")
    return out.to_csv(index=False, lineterminator="\n")


def test_csv_writer_matches_pandas() -> None:
    from panelsynth.prepare.csvtext import csv_text as _csv_text

    rng = np.random.default_rng(3)
    n = 200
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "big": rng.integers(-(10**12), 10**12, n),  # spelled by numpy, not a table
            "big_na": np.where(rng.random(n) < 0.2, np.nan, rng.integers(-(10**9), 10**9, n)),
            "code": np.where(rng.random(n) < 0.2, np.nan, rng.integers(1, 6, n).astype(float)),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n) * 1e3),
            "tiny": rng.random(n) * 1e-6,
            "huge": rng.random(n) * 1e17,
            "all_na": np.full(n, np.nan),
            "nullable": pd.array(
                np.where(rng.random(n) < 0.3, None, rng.integers(0, 9, n)), dtype="Int64"
            ),
            "flag": rng.random(n) < 0.5,
            "text": rng.choice(["plain", "with, comma", 'say "hi"', "two\nlines", "", None], n),
            "label with, comma": rng.choice(["a", "b"], n),
            "day": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, n), "D"),
        }
    )
    assert _csv_text(df) == _reference_csv(df)
    # an infinite value (which made the old conversion to integers fail) keeps the float format
    inf = pd.DataFrame({"x": [1.0, np.inf, np.nan, 3.0]})
    assert _csv_text(inf) == inf.to_csv(index=False, lineterminator="\n")
    assert _csv_text(df.iloc[:0]) == _reference_csv(df.iloc[:0])
    # and it reads back to the same values
    back = pd.read_csv(io.StringIO(_csv_text(df)))
    assert back["text"].fillna("").tolist() == df["text"].fillna("").tolist()


def _outputs(root: Path) -> dict[str, bytes]:
    """Every file prepare wrote (its manifest lists them), by path."""
    skip = {"manifest.json"}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for d in ("Original data", "Dictionaries", "Prepare")
        for p in sorted((root / d).rglob("*"))
        if p.is_file() and p.name not in skip
    }


def test_waves_fitted_in_worker_processes_give_the_same_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import panelsynth.prepare.fit as prep

    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        write_raw_panel(root, seed=5, waves=("1", "2", "3", "4"))
    serial = prepare_workspace(a)
    monkeypatch.setattr(prep, "PARALLEL_MIN_RAW_BYTES", 0)  # the demo-sized waves go parallel
    assert prep.fit_workers([prep.FitJob(w, b / "Raw data" / f"wave{w}.csv", w) for w in "12"]) == 2
    parallel = prepare_workspace(b)
    assert _outputs(a) == _outputs(b)
    assert serial.warnings == parallel.warnings
    assert [r.bic for r in serial.waves] == [r.bic for r in parallel.waves]


def test_an_error_in_a_worker_is_the_same_one_line_error_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import panelsynth.prepare.fit as prep

    root = tmp_path / "ws"
    write_raw_panel(root, waves=("1", "2", "3"))
    (root / "Raw data" / "wave3.csv").write_text("respondent_id,vaccimportant\n")  # no rows
    monkeypatch.setattr(prep, "PARALLEL_MIN_RAW_BYTES", 0)
    with pytest.raises(DataError, match=r"wave3.csv has no rows — export the wave again"):
        prepare_workspace(root)
    assert not any((root / "Original data").glob("*.csv"))
