from __future__ import annotations

import pandas as pd
from imputehelpers import check_files

from panelsynth.impute.baselines import HotDeck
from panelsynth.impute.csvtext import _spans_general, _spans_unquoted, field_spans
from panelsynth.impute.gaps import find_gaps, load_panel
from panelsynth.impute.output import (
    imputed_cells_csv,
    imputed_csv,
    write_imputed,
)


def test_imputed_files_keep_every_real_answer_byte_identical(demo_copy) -> None:
    panel = load_panel(demo_copy, waves=["1", "2", "3"])
    gaps = find_gaps(panel)
    assert len(gaps.absent)
    sets = HotDeck().impute(panel, gaps, 3, seed=4)
    written = write_imputed(demo_copy, panel, sets, "hotdeck")
    assert len(written) == 3 * (3 + 1)
    check_files(demo_copy, panel, sets, "hotdeck")
    assert demo_copy.imputed_dir("hotdeck") == demo_copy.root / "Imputed data" / "hotdeck"


def test_quoting_crlf_bom_and_missing_codes_survive(demo_copy) -> None:
    path = demo_copy.original_data("1")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    head = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    i = head.index("vaccsafe")
    rows[0][i] = '"' + rows[0][i] + '"' if rows[0][i] else '""'  # a quoted cell
    rows[1][i] = "-99"  # a missing code written in the file
    out = "\r\n".join([",".join(head), *(",".join(r) for r in rows)]) + "\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + out.encode("utf-8"))
    panel = load_panel(demo_copy, waves=["1", "2"])
    gaps = find_gaps(panel)
    assert ((gaps.cells["wave"] == "1") & (gaps.cells["variable"] == "vaccsafe")).any()
    sets = HotDeck().impute(panel, gaps, 2, seed=0)
    write_imputed(demo_copy, panel, sets, "q")
    check_files(demo_copy, panel, sets, "q")
    new = imputed_csv(demo_copy, "q", "1", 1).read_bytes()
    assert b"\r\n" in new and b"\n" not in new.replace(b"\r\n", b"")
    assert b"-99" not in new.split(b"\r\n")[2]


def test_field_spans_handle_quotes_and_empty_cells() -> None:
    text = 'a,b,c\n1,"x, ""y""",\n\n2,,3'
    got = [[text[a:b] for a, b in r] for r in field_spans(text, ",")]
    assert got == [["a", "b", "c"], ["1", '"x, ""y"""', ""], [""], ["2", "", "3"]]


def test_sets_write_their_own_files(demo_copy) -> None:
    panel = load_panel(demo_copy, waves=["1"])
    sets = HotDeck().impute(panel, find_gaps(panel), 2, seed=9)
    write_imputed(demo_copy, panel, sets, "m")
    a = pd.read_csv(imputed_csv(demo_copy, "m", "1", 1))
    b = pd.read_csv(imputed_csv(demo_copy, "m", "1", 2))
    assert not a.equals(b)
    assert a.drop(columns=[c for c in a.columns if c == "prev_cluster"]).notna().all().all()


def test_ids_are_written_as_the_files_write_them(demo_copy) -> None:
    for w in ("1", "2"):
        path = demo_copy.original_data(w)
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("\n".join([lines[0], *("00" + x for x in lines[1:])]) + "\n")
    panel = load_panel(demo_copy, waves=["1", "2"])
    assert panel.waves["1"].ids[0] == "100001"  # linked across waves as a number
    assert panel.id_text("100001") == "00100001"
    gaps = find_gaps(panel)
    sets = HotDeck().impute(panel, gaps, 2, seed=0)
    write_imputed(demo_copy, panel, sets, "z")
    check_files(demo_copy, panel, sets, "z")
    appended = pd.read_csv(imputed_csv(demo_copy, "z", "2", 1), dtype=str).iloc[
        len(panel.waves["2"].frame) :
    ]
    assert len(appended) == len(gaps.absent_ids("2")) > 0
    assert appended["respondent_id"].str.startswith("00").all()
    listed = pd.read_csv(imputed_cells_csv(demo_copy, "z", "2"), dtype=str)
    assert listed["respondent_id"].str.startswith("00").all()


def test_the_fast_path_for_unquoted_text_gives_the_same_spans() -> None:
    for text in ("a,b,c\n1,2,\n\n,3,4", "a,b\r\n1,2\r\n", "x,\n,y\r", "a,b\n1,", "\n\n"):
        assert _spans_unquoted(text, ",") == _spans_general(text, ","), repr(text)
    assert field_spans('a,b\n"1",', ",") == [[(0, 1), (2, 3)], [(4, 7), (8, 8)]]
