"""The bad-input matrix: every user error ends with exit 2, one actionable line, inputs untouched.

Each case starts from a fresh two-wave workspace, spoils one thing, and runs ``panelsynth run``
through the CLI against the local stub. Error cases must fail before any LLM call, print exactly
one ``Error: ...`` line naming the file/column (or option) and the fix, show no traceback, and
leave every file that existed before byte-identical. A few inputs are *not* errors and must run
to the end (exit 0): a cluster smaller than ``n_examples`` (warning, all its rows are used),
Latin-1, BOM and semicolon-separated CSVs, and unrelated extra columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes import write_tiny_workspace
from relhelpers import hash_tree, nonblank_lines, responder, run_cli, stub_args
from servers.openai_stub import OpenAIStub

from panelsynth.workspace import Workspace

OTHER_LINES = ("Warning: real survey rows", "INFO ", " ")
REGION_CODES = {"Île-de-France": "Paris region", "Bretagne": "Brittany"}


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(responder=responder()) as s:
        yield s


# ----- workspace edits --------------------------------------------------------------------------


def _csv(root: Path, wave: str = "2") -> Path:
    return Workspace(root).original_data(wave)


def _frame(root: Path, wave: str = "2") -> pd.DataFrame:
    return pd.read_csv(_csv(root, wave))


def _write(root: Path, df: pd.DataFrame, wave: str = "2", **kw: object) -> None:
    encoding = str(kw.pop("encoding", "utf-8"))
    text = df.to_csv(index=False, **kw)  # type: ignore[arg-type]
    _csv(root, wave).write_bytes(text.encode(encoding))


def _edit(fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> Callable[[Path], None]:
    def go(root: Path) -> None:
        df = _frame(root)
        out = fn(df)
        _write(root, df if out is None else out)

    return go


def _json_edit(kind: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def go(root: Path) -> None:
        ws = Workspace(root)
        path = ws.metadata_json("2") if kind == "meta" else ws.var_types("2")
        data = json.loads(path.read_text())
        fn(data)
        path.write_text(json.dumps(data, indent=1))

    return go


def _text(rel: str, text: str | None) -> Callable[[Path], None]:
    def go(root: Path) -> None:
        p = root / rel
        if text is None:
            p.unlink()
        else:
            p.write_text(text)

    return go


def _raw_lines(fn: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def go(root: Path) -> None:
        p = _csv(root)
        p.write_text("\n".join(fn(p.read_text().splitlines())) + "\n")

    return go


def _set(col: str, value: object, rows: slice | list[int] = slice(0, 1)) -> Callable[[Path], None]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df[col] = df[col].astype(object)
        df.loc[df.index[rows], col] = value
        return df

    return _edit(fn)


def _config(text: str) -> Callable[[Path], None]:
    def go(root: Path) -> None:
        (root / "panelsynth.toml").write_text(text)

    return go


def _small_cluster(root: Path) -> None:
    df = _frame(root)
    complete = df.replace(-99, np.nan).dropna()
    two = complete[complete["cluster"] == 2].index[:3]
    df = df[(df["cluster"] == 1) | df.index.isin(two)]
    _write(root, df)


def _no_complete_case(root: Path) -> None:
    df = _frame(root)
    df.loc[df["cluster"] == 2, "worryflu"] = -99
    _write(root, df)


def _with_region(encoding: str, sep: str = ",", decimal: str = ".") -> Callable[[Path], None]:
    """Add a categorical item whose codes have accents, and write the wave as asked."""

    def go(root: Path) -> None:
        ws = Workspace(root)
        meta = json.loads(ws.metadata_json("2").read_text())
        meta["region"] = {"question": "Région de résidence", "responses": REGION_CODES}
        ws.metadata_json("2").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        types = json.loads(ws.var_types("2").read_text())
        types["region"] = "a categorical"
        ws.var_types("2").write_text(json.dumps(types))
        df = _frame(root)
        df["region"] = np.where(np.arange(len(df)) % 3 == 0, "Île-de-France", "Bretagne")
        if decimal == ",":
            df["age"] = df["age"] + 0.5  # decimals, written with a comma
        text = df.to_csv(index=False, sep=sep, decimal=decimal)
        _csv(root).write_bytes(text.encode(encoding))

    return go


def _all_rows_of_the_small_cluster(ws: Workspace) -> None:
    examples = pd.read_csv(ws.examples_csv("stub", "2"))
    assert (examples["cluster"] == 2).sum() == 3 and (examples["cluster"] == 1).sum() == 4


def _dup_column(lines: list[str]) -> list[str]:
    head = lines[0].split(",")
    at = head.index("vaccsafe")
    out = []
    for line in lines:
        cells = line.split(",")
        out.append(",".join([*cells, cells[at]]))
    return out


# ----- the matrix -------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    edit: Callable[[Path], None] | None = None
    expect: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    wave: str = "2"
    model: list[str] | None = None  # replaces the stub model and base URL
    exit_code: int = 2
    env_unset: tuple[str, ...] = ()
    check: Callable[[Workspace], None] | None = None  # more checks of a run that succeeds


CASES: list[Case] = [
    # columns
    Case(
        "missing column",
        _edit(lambda df: df.drop(columns=["vaccsafe"])),
        ["wave2.csv", "vaccsafe", "add it or remove it"],
    ),
    Case("duplicated column", _raw_lines(_dup_column), ["wave2.csv", "vaccsafe", "twice"]),
    Case(
        "extra cells in one row",
        _raw_lines(lambda ls: [*ls[:3], ls[3] + ",7", *ls[4:]]),
        ["wave2.csv", "line 4", "cells"],
    ),
    Case(
        "extra cell in every row",
        _raw_lines(lambda ls: [ls[0]] + [x + ",7" for x in ls[1:]]),
        ["wave2.csv", "cells", "header"],
    ),
    Case(
        "no cluster column",
        _edit(lambda df: df.drop(columns=["cluster"])),
        ["wave2.csv", "'cluster'", "panelsynth prepare"],
    ),
    # cluster labels
    Case(
        "labels other than 1/2",
        _edit(lambda df: df.assign(cluster=df["cluster"] - 1)),
        ["wave2.csv", "'cluster'", "labels 0", "use 1, 2"],
    ),
    Case(
        "a third cluster",
        _set("cluster", 3, [0, 1]),
        ["wave2.csv", "'cluster'", "labels 3", "use 1, 2"],
    ),
    Case(
        "an empty cluster",
        _edit(lambda df: df.assign(cluster=1)),
        ["wave2.csv", "cluster 2 has no respondents", "clustering"],
    ),
    Case(
        "an empty cluster label",
        _set("cluster", None, [2]),
        ["wave2.csv", "'cluster'", "empty label"],
    ),
    Case(
        "no complete case in a cluster (dense)",
        _no_complete_case,
        ["wave2.csv", "cluster 2", "complete case", "--mode full"],
    ),
    Case(
        "later wave without prev_cluster",
        _edit(lambda df: df.drop(columns=["prev_cluster"])),
        ["wave2.csv", "'prev_cluster'", "previous-wave cluster"],
    ),
    Case(
        "prev_cluster outside 1/2",
        _set("prev_cluster", 5),
        ["wave2.csv", "'prev_cluster'", "labels 5"],
    ),
    # values
    Case(
        "an all-NA variable",
        _edit(lambda df: df.assign(vaccsafe=-99)),
        ["wave2.csv", "'vaccsafe'", "all NA", "drop it"],
    ),
    Case(
        "non-numeric code in an ordinal item",
        _set("vaccsafe", "high"),
        ["wave2.csv", "'vaccsafe'", "'high'", "study.missing_codes"],
    ),
    Case(
        "code outside the metadata",
        _set("vaccsafe", 9),
        ["wave2.csv", "'vaccsafe'", "values 9", "add them"],
    ),
    Case("non-numeric continuous value", _set("age", "forty"), ["wave2.csv", "'age'", "'forty'"]),
    Case("header-only data file", _raw_lines(lambda ls: ls[:1]), ["wave2.csv", "no rows"]),
    Case("empty data file", _text("Original data/wave2.csv", ""), ["wave2.csv", "empty"]),
    # dictionaries
    Case(
        "metadata missing a variable",
        _json_edit("meta", lambda d: d.pop("vaccsafe")),
        ["metadata_wave2.json", "lacks variables: vaccsafe", "types_wave2.json"],
    ),
    Case(
        "metadata with an extra variable",
        _json_edit("meta", lambda d: d.update(income={"question": "Income"})),
        ["metadata_wave2.json", "income", "remove them"],
    ),
    Case(
        "metadata without response codes",
        _json_edit("meta", lambda d: d["vaccsafe"].pop("responses")),
        ["metadata_wave2.json", "'vaccsafe'", "responses"],
    ),
    Case(
        "malformed metadata JSON",
        _text("Dictionaries/json_metadata/metadata_wave2.json", '{"age": {'),
        ["metadata_wave2.json", "not valid JSON", "fix it"],
    ),
    Case(
        "missing metadata file",
        _text("Dictionaries/json_metadata/metadata_wave2.json", None),
        ["metadata_wave2.json", "not found", "panelsynth metadata"],
    ),
    Case(
        "unknown variable type",
        _json_edit("types", lambda d: d.update(vaccsafe="a likert")),
        ["types_wave2.json", "'vaccsafe'", "use one of"],
    ),
    Case(
        "empty context file",
        _text("Dictionaries/wave_contexts/wave2_context.txt", "  \n"),
        ["wave2_context.txt", "empty", "describe the wave"],
    ),
    Case(
        "missing context file",
        _text("Dictionaries/wave_contexts/wave2_context.txt", None),
        ["wave2_context.txt", "not found"],
    ),
    # waves, config, models, budget
    Case(
        "unknown wave id",
        wave="9",
        expect=["wave '9'", "wave9.csv", "waves with data: 1, 2", "--wave"],
    ),
    Case("invalid wave id", wave="../1", expect=["wave id '../1'", "letters, digits"]),
    Case(
        "unknown config key",
        _config("[generation]\nn_batchez = 3\n"),
        ["panelsynth.toml", "generation.n_batchez", "unknown key"],
    ),
    Case(
        "malformed config", _config("[generation\n"), ["panelsynth.toml", "not valid TOML", "fix"]
    ),
    Case("bad --mode", args=["--mode", "sparse"], expect=["--mode", "dense or full"]),
    Case(
        "unknown provider", model=["--model", "nosuch/model"], expect=["nosuch", "known providers"]
    ),
    Case(
        "missing key",
        model=["--model", "anthropic/claude-sonnet-4-20250514"],
        expect=["ANTHROPIC_API_KEY", "--api-key"],
        env_unset=("ANTHROPIC_API_KEY",),
    ),
    Case(
        "budget smaller than one call",
        _config('[prices."openai/stub-model"]\ninput_per_mtok = 5.0\noutput_per_mtok = 20.0\n'),
        ["--max-cost", "one call", "openai/stub-model", "raise"],
        args=["--max-cost", "0.0001"],
    ),
    Case(
        "budget without a price",
        args=["--max-cost", "5"],
        expect=["--max-cost", '[prices."openai/stub-model"]', "panelsynth.toml"],
    ),
    # not errors: these run to the end
    Case(
        "cluster smaller than n_examples",
        _small_cluster,
        ["fewer than n_examples=4"],
        exit_code=0,
        check=_all_rows_of_the_small_cluster,
    ),
    Case("Latin-1 CSV", _with_region("latin-1"), exit_code=0),
    Case("UTF-8 CSV with BOM", _with_region("utf-8-sig"), exit_code=0),
    Case(
        "semicolon CSV with decimal commas",
        _with_region("cp1252", sep=";", decimal=","),
        exit_code=0,
    ),
    Case("unrelated extra column", _edit(lambda df: df.assign(interviewer="Zoë")), exit_code=0),
]


def test_the_matrix_is_big_enough() -> None:
    assert len([c for c in CASES if c.exit_code == 2]) >= 20
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(
    case: Case, tmp_path: Path, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in case.env_unset:
        monkeypatch.delenv(name, raising=False)
    root = write_tiny_workspace(tmp_path / "ws")
    if case.edit:
        case.edit(root)
    before = hash_tree(root)
    stub.reset()
    args = stub_args(root, stub.base_url, case.wave, *case.args)
    if case.model is not None:
        at = args.index("--model")
        args[at : at + 4] = case.model  # --model M --base-url URL -> the case's model
    r = run_cli(args)

    assert "Traceback" not in r.output
    assert r.exit_code == case.exit_code, r.output
    after = hash_tree(root)
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"input files changed: {changed}"
    ws = Workspace(root)
    if case.exit_code == 2:
        assert isinstance(r.exception, SystemExit), r.exception
        # besides the error: the privacy warning and INFO log records (wrapped, indented)
        lines = [x for x in nonblank_lines(r.output) if not x.startswith(OTHER_LINES)]
        assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
        assert nonblank_lines(r.output)[-1] == lines[0]
        for part in case.expect:
            assert part in lines[0], f"{part!r} not in {lines[0]!r}"
        assert not stub.requests, "an input error must stop the run before any LLM call"
        assert not set(after) - set(before), "a failed run wrote files"
        return
    out = pd.read_csv(ws.output_csv("stub", "2"))
    assert len(out) == 6
    manifest = json.loads(ws.manifest("stub", "2").read_text())
    for part in case.expect:
        assert part in r.output
        assert any(part in w for w in manifest["warnings"])
    if case.check:
        case.check(ws)
    if "region" in out.columns:
        assert set(out["region"]) <= set(REGION_CODES)
        examples = ws.examples_log("stub", "2").read_text(encoding="utf-8")
        assert "Île-de-France" in examples or "Bretagne" in examples
