"""Hand-made panels for the imputation tests."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.dictionaries import VariableMeta
from panelsynth.impute.csvtext import field_spans
from panelsynth.impute.gaps import Panel, PanelWave
from panelsynth.impute.output import imputed_cells_csv, imputed_csv
from panelsynth.io import csv_dialect

N_SMALL = 150  # respondents of the small demo workspace


def ordinal(codes: int = 4) -> VariableMeta:
    return VariableMeta(question="q", responses={str(c): f"L{c}" for c in range(1, codes + 1)})


def hand_panel(n: int = 40, seed: int = 0) -> Panel:
    """Two waves, variables a/b (ordinal 1-4) and c (never missing); cluster 1 answers low."""
    rng = np.random.default_rng(seed)
    waves = {}
    ids = [str(i) for i in range(1, n + 1)]
    for w, present in (("1", ids), ("2", ids[: n - 5])):
        cl = np.array([1 if int(i) % 2 else 2 for i in present])
        a = np.where(cl == 1, rng.integers(1, 3, len(cl)), rng.integers(3, 5, len(cl))).astype(
            float
        )
        b = a.copy()
        c = np.where(cl == 1, 1.0, 4.0)
        a[::7] = np.nan
        b[3::9] = np.nan
        frame = pd.DataFrame(
            {"a": a, "b": b, "c": c, "cluster": cl}, index=pd.Index(present, name="respondent_id")
        )
        if w == "2":
            frame["prev_cluster"] = pd.array(cl, dtype="Int64")
        types = {"a": "an ordinal", "b": "an ordinal", "c": "an ordinal"}
        waves[w] = PanelWave(w, frame, types, {v: ordinal() for v in types})
    return Panel(waves)


def cells_of(text: str) -> list[list[str]]:
    sep, _ = csv_dialect(text)
    return [[text[a:b] for a, b in rec] for rec in field_spans(text, sep)]


def check_files(ws, panel, sets, model_dir: str) -> None:
    for w, pw in panel.waves.items():
        raw = ws.original_data(w).read_bytes()
        orig = raw.decode("utf-8-sig")
        o = cells_of(orig)
        header = [h.strip().strip('"') for h in o[0]]
        listed = pd.read_csv(imputed_cells_csv(ws, model_dir, w), dtype=str)
        assert list(listed.columns) == ["respondent_id", "variable", "imputation", "value"]
        for s in sets:
            data = imputed_csv(ws, model_dir, w, s.k).read_bytes()
            assert data.startswith(b"\xef\xbb\xbf") == raw.startswith(b"\xef\xbb\xbf")
            new = data.decode("utf-8-sig")
            n = cells_of(new)
            assert n[0] == o[0]
            drawn = s.clusters.get(w)
            assert len(n) == len(o) + (0 if drawn is None else len(drawn))
            written = set()
            for r, (old_row, new_row) in enumerate(zip(o[1:], n[1:], strict=False)):
                assert len(old_row) == len(new_row)
                for j, (a, b) in enumerate(zip(old_row, new_row, strict=True)):
                    if a != b:
                        assert pw.frame.iloc[r][header[j]] is pd.NA or pd.isna(
                            pw.frame.iloc[r][header[j]]
                        ), "an observed answer changed"
                        written.add((pw.id_text.get(pw.ids[r], pw.ids[r]), header[j], b))
            for row in n[len(o) :]:
                rid = row[header.index("respondent_id")]
                assert rid not in {pw.id_text.get(i, i) for i in pw.ids}
                for j, b in enumerate(row):
                    if b and header[j] not in ("respondent_id", "prev_cluster"):
                        written.add((rid, header[j], b))
            mine = listed[listed["imputation"] == str(s.k)]
            assert written == set(
                map(tuple, mine[["respondent_id", "variable", "value"]].to_numpy())
            )
            assert len(mine) == len(written)  # nothing listed twice, nothing extra


def seeded_answer(messages: list[dict], response_model: type) -> dict[str, Any]:
    """A fake model's answer: valid for the requested schema, drawn from a hash of the whole
    request (so another imputation, which says ``imputation k of m``, gets other values)."""
    from fakes import fake_answer

    if response_model.__name__ != "SyntheticRespondents":
        return fake_answer(messages, response_model)
    digest = hashlib.sha256(messages[-1]["content"].encode()).hexdigest()
    rng = np.random.default_rng(int(digest[:12], 16))
    schema = response_model.model_json_schema()["properties"]["rows"]
    rows = []
    for _ in range(schema["minItems"]):
        row: dict[str, Any] = {}
        for name, prop in schema["items"]["properties"].items():
            main = next(o for o in prop.get("anyOf", [prop]) if o.get("type") != "null")
            if "enum" in main:
                row[name] = main["enum"][int(rng.integers(len(main["enum"])))]
            else:
                row[name] = int(rng.integers(int(main["minimum"]), int(main["maximum"]) + 1))
        rows.append(row)
    return {"rows": rows}
