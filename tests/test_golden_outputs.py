"""Golden outputs: `panelsynth run` with a deterministic fake model writes exactly what it wrote.

The guard for behaviour-preserving refactors (issue 14). A fixed, committed input workspace
(``tests/data/golden/workspace``: two prepared waves of 40 respondents, dictionaries, config) is
copied to ``tmp_path`` and run through the CLI in-process (``panelsynth.cli.app``, as a user
would call it) against the local OpenAI-compatible stub (``tests/servers/openai_stub.py``, on
127.0.0.1) with a deterministic responder and ``--concurrency 1``. Runs, in this order, in one
workspace (so steps 1-2 of the later runs come from the cache, as in the demo):

1. ``plain-dense``: waves 1 and 2, dense mode, plain;
2. ``plain-full``: wave 1, full mode, plain;
3. ``calib-dense``: wave 2, dense mode, calibrated (the responder keeps the listed profiles,
   except one spoiled row per the first call, so the off-profile path is exercised too);
4. ``calib-full``: wave 1, full mode, calibrated, ``--oversample 1.5``.

Then every file the runs created in the workspace is compared with
``tests/data/golden/expected/workspace/<same path>``, plus ``expected/requests.jsonl`` (the body of
every request the model received, in order: the prompts, schemas and sampling parameters):

* ``*.json`` (manifests, steps 1-2 cache): equal after :func:`normalise_json`, which drops every
  key named in :data:`VOLATILE_KEYS` or matching :data:`VOLATILE_KEY_PATTERN` (wall-clock times,
  dates, durations, hosts, ports, versions; today only ``wall_seconds``,
  ``rate_wait_seconds``, ``evaluated_at`` and ``versions`` occur) at any depth and replaces
  the workspace's absolute path by ``<WS>`` and the stub's ``127.0.0.1:<port>`` by
  ``127.0.0.1:<PORT>`` in strings.
  The expected JSON files are stored normalised.
* every other file (CSVs, checkpoints ``.jsonl``, Examples/, cluster descriptions, generated
  metadata logs): byte-identical (after the same two path/port substitutions, which are no-ops
  today).
* the set of created files itself: a missing or an extra file fails.

A second test runs ``panelsynth evaluate`` on a copy of the run workspace and compares
``Evaluation/`` with ``expected/evaluate/`` the same way (metrics JSON normalised, result CSVs
byte-identical; ``report.html`` and the ``*.png`` plots are not compared).

Nothing here imports a panelsynth module but the CLI app, so internal modules may move freely.

Regenerate the expected files ONLY when a behaviour change is intended (and say so in the commit
message): ``python tests/data/golden/regenerate.py`` (or ``python tests/test_golden_outputs.py
--regenerate``).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # run as a script (regenerate)
    sys.path.insert(0, str(TESTS))

import pytest  # noqa: E402
from servers.openai_stub import OpenAIStub, request_schema  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

# moved by issue 14? update here — the only panelsynth name this test uses:
from panelsynth.cli import app  # noqa: E402

GOLDEN = TESTS / "data" / "golden"
INPUT = GOLDEN / "workspace"
EXPECTED = GOLDEN / "expected"

#: Keys dropped from JSON at any depth before comparing (exact names). Today's outputs have
#: exactly four volatile keys: ``wall_seconds`` and ``throttle.rate_wait_seconds`` (manifests),
#: ``evaluated_at`` and ``versions`` (evaluation metrics).
VOLATILE_KEYS = frozenset({"wall_seconds", "rate_wait_seconds", "started", "finished", "versions"})
#: Keys also dropped when one of their ``_``-separated words is one of these, or they end in
#: ``_at`` (a timing, date, host or version field a redesign may add): ``elapsed_s``,
#: ``created_at``, ``python_version``. (``tpr_at_10pct_fpr`` or ``candidates`` are kept.)
VOLATILE_KEY_PATTERN = re.compile(
    r"(^|_)(s|ms|seconds|elapsed|duration|timestamp|time|date|datetime|version|versions|host"
    r"|hostname|pid|port)(_|$)|_at$"
)
PORT = re.compile(r"127\.0\.0\.1:\d+")

COMMON = ["--model", "openai/stub-model", "--n-outputs", "4", "--n-batches", "3"]
COMMON += ["--concurrency", "1", "--seed", "42", "--yes"]
RUNS: list[list[str]] = [
    ["--wave", "1", "--wave", "2", "--mode", "dense", "--model-dir", "plain-dense"],
    ["--wave", "1", "--mode", "full", "--model-dir", "plain-full"],
    ["--wave", "2", "--mode", "dense", "--calibrate", "--model-dir", "calib-dense"],
    ["--wave", "1", "--mode", "full", "--calibrate", "--oversample", "1.5"]
    + ["--model-dir", "calib-full"],
]

PROFILE_LINE = re.compile(r"^Respondent \d+: (.+)$", re.MULTILINE)
RANGE = re.compile(r"(-?\d+(?:\.\d+)?)-(-?\d+(?:\.\d+)?)")


# ---------------------------------------------------------------- the deterministic fake model


def _fill(schema: dict[str, Any], defs: dict[str, Any], rng: random.Random, path: str) -> Any:
    """A valid instance of ``schema``; strings name their path, so every field differs."""
    defs = {**defs, **schema.get("$defs", {})}
    if "$ref" in schema:
        return _fill(defs[schema["$ref"].split("/")[-1]], defs, rng, path)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
        return _fill(options[0], defs, rng, path)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: _fill(v, defs, rng, f"{path}.{k}".strip(".")) for k, v in props.items()}
    if kind == "array":
        n = max(1, int(schema.get("minItems", 1)))
        return [_fill(schema.get("items", {}), defs, rng, path) for _ in range(n)]
    if kind in ("integer", "number"):
        return rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 100)))
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return f"{path} (text {rng.randint(1, 9)})"


def _profiles(text: str) -> list[dict[str, Any]]:
    """``Respondent 1: cluster 1, age 25-34, sex 2`` -> ``{"cluster": 1, "age": (25, 34), ...}``."""
    out = []
    for body in PROFILE_LINE.findall(text):
        prof: dict[str, Any] = {}
        for part in body.split(", "):
            name, value = part.split(" ", 1)
            span = RANGE.fullmatch(value)
            if value.startswith("null"):
                prof[name] = None
            elif span:
                prof[name] = (int(float(span.group(1))), int(float(span.group(2))))
            else:
                prof[name] = int(float(value))
        out.append(prof)
    return out


def responder(body: dict[str, Any]) -> Any:
    """Valid answers seeded by the request text; calibrated requests get their profiles kept,
    except the first row of request 1, which is given the other cluster (an off-profile row)."""
    schema = request_schema(body) or {}
    text = body["messages"][-1]["content"]
    rng = random.Random(json.dumps(body["messages"]))
    out = _fill(schema, {}, rng, "")
    profiles = _profiles(text)
    if not profiles or not isinstance(out, dict) or "rows" not in out:
        return out
    for row, prof in zip(out["rows"], profiles, strict=False):
        for k, v in prof.items():
            row[k] = rng.randint(*v) if isinstance(v, tuple) else v
    if "Request 1:" in text and "cluster" in out["rows"][0]:
        out["rows"][0]["cluster"] = 3 - out["rows"][0]["cluster"]
    return out


# ---------------------------------------------------------------- running and normalising


def produce(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Copy the input workspace to ``root/ws``, run every run of :data:`RUNS` through the CLI;
    return the workspace and the request bodies in order."""
    ws = root / "ws"
    shutil.copytree(INPUT, ws)
    with OpenAIStub(responder=responder) as stub:
        for extra in RUNS:
            args = ["run", "-w", str(ws), "--base-url", stub.base_url, *COMMON, *extra]
            res = CliRunner().invoke(app, args)
            assert res.exit_code == 0, f"panelsynth {' '.join(extra)} failed:\n{res.output}"
        bodies = [r.body for r in stub.requests]
    return ws, bodies


def _drop_volatile(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: _drop_volatile(v)
            for k, v in obj.items()
            if k not in VOLATILE_KEYS and not VOLATILE_KEY_PATTERN.search(k)
        }
    if isinstance(obj, list):
        return [_drop_volatile(v) for v in obj]
    return obj


def _subst(text: str, ws: Path) -> str:
    return PORT.sub("127.0.0.1:<PORT>", text.replace(str(ws), "<WS>"))


def normalise_json(text: str, ws: Path) -> str:
    """The JSON text without volatile keys, paths and ports, pretty-printed with sorted keys."""
    data = _drop_volatile(json.loads(_subst(text, ws)))
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _normalised(path: Path, ws: Path) -> bytes:
    text = path.read_bytes().decode("utf-8")
    return (normalise_json(text, ws) if path.suffix == ".json" else _subst(text, ws)).encode()


def snapshot(ws: Path, bodies: list[dict[str, Any]]) -> dict[str, bytes]:
    """Every file the runs created (``workspace/<relative path>`` -> normalised content, the
    ``Evaluation`` folder excluded), and the requests (``requests.jsonl``)."""
    inputs = {p.relative_to(INPUT).as_posix() for p in INPUT.rglob("*") if p.is_file()}
    out: dict[str, bytes] = {}
    for p in sorted(ws.rglob("*")):
        rel = p.relative_to(ws).as_posix()
        if p.is_file() and rel not in inputs and not rel.startswith("Evaluation/"):
            out[f"workspace/{rel}"] = _normalised(p, ws)
    lines = [json.dumps(b, sort_keys=True, ensure_ascii=False) for b in bodies]
    out["requests.jsonl"] = _subst("\n".join(lines) + "\n", ws).encode("utf-8")
    return out


def evaluate(ws: Path) -> dict[str, bytes]:
    """Run ``panelsynth evaluate`` on the run workspace; ``evaluate/<path under Evaluation>`` ->
    normalised content for every file but the HTML report and the plots (``report.html`` carries
    the date and versions in its text; ``*.png`` are not byte-stable)."""
    res = CliRunner().invoke(app, ["evaluate", "-w", str(ws)])
    assert res.exit_code == 0, f"panelsynth evaluate failed:\n{res.output}"
    root = ws / "Evaluation"
    return {
        f"evaluate/{p.relative_to(root).as_posix()}": _normalised(p, ws)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix not in (".png", ".html")
    }


def expected(prefix: str) -> dict[str, bytes]:
    """The expected files whose path (under ``expected/``) starts with one of ``prefix``."""
    return {
        name: p.read_bytes()
        for p in sorted(EXPECTED.rglob("*"))
        if p.is_file() and (name := p.relative_to(EXPECTED).as_posix()).startswith(prefix)
    }


def first_difference(name: str, want: bytes, got: bytes) -> str:
    """Which line of ``name`` first differs, with both versions around the first differing
    character (long lines, e.g. a request body, are cut to 300 characters around it)."""
    a, b = want.decode("utf-8").splitlines(), got.decode("utf-8").splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            at = next((j for j, (c, d) in enumerate(zip(x, y, strict=False)) if c != d), None)
            at = min(len(x), len(y)) if at is None else at
            lo = max(0, at - 100)
            return (
                f"{name}: line {i} differs (from character {at + 1})\n"
                f"  expected: {x[lo : at + 200]!r}\n  got:      {y[lo : at + 200]!r}"
            )
    return f"{name}: {len(a)} lines expected, {len(b)} got (or line endings differ)"


def compare(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    problems = [f"missing (expected but not written): {n}" for n in sorted(set(want) - set(got))]
    problems += [f"unexpected (written, not expected): {n}" for n in sorted(set(got) - set(want))]
    for name in sorted(set(got) & set(want)):
        if got[name] != want[name]:
            problems.append(first_difference(name, want[name], got[name]))
    return problems


def regenerate() -> None:
    """Rewrite ``tests/data/golden/expected`` from the current code (intended changes only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ws, bodies = produce(Path(tmp))
        got = snapshot(ws, bodies) | evaluate(ws)
    shutil.rmtree(EXPECTED, ignore_errors=True)
    for name, data in got.items():
        path = EXPECTED / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(got)} files under {EXPECTED}")


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The four runs, once for this module."""
    return produce(tmp_path_factory.mktemp("golden"))


def _fail_on(problems: list[str]) -> None:
    assert not problems, (
        f"{len(problems)} golden file(s) differ from the outputs (tests/data/golden/expected); "
        "if the change is intended, run `python tests/data/golden/regenerate.py` and say so in "
        "the commit message:\n" + "\n".join(problems)
    )


def test_run_outputs_match_the_golden_files(
    golden_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    want = expected(("workspace/", "requests.jsonl"))
    assert want, f"no expected files under {EXPECTED}"
    _fail_on(compare(snapshot(*golden_run), want))


def test_evaluation_of_the_runs_matches_the_golden_files(
    golden_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(golden_run[0], ws)
    want = expected(("evaluate/",))
    assert want, f"no expected evaluation files under {EXPECTED}"
    _fail_on(compare(evaluate(ws), want))


def test_the_golden_runs_cover_plain_full_and_calibrated_modes() -> None:
    """The expected files show what the runs exercise (guards a regeneration gone wrong)."""
    want = expected(("workspace/",))
    manifests = {n: json.loads(d) for n, d in want.items() if n.endswith("_manifest.json")}
    assert len(manifests) == 5, sorted(manifests)
    seen = {
        (m["model_dir"], m["wave"], m["mode"], m["calibration"]["enabled"])
        for m in manifests.values()
    }
    assert seen == {
        ("plain-dense", "1", "dense", False),
        ("plain-dense", "2", "dense", False),
        ("plain-full", "1", "full", False),
        ("calib-dense", "2", "dense", True),
        ("calib-full", "1", "full", True),
    }
    assert all(m["status"] == "complete" for m in manifests.values())
    calib = manifests["workspace/Final_gen_data/calib-dense/wave2_manifest.json"]
    assert calib["calibration"]["off_profile_rows"] >= 1
    csvs = [n for n in want if n.endswith(".csv") and "Final_gen_data" in n]
    assert len(csvs) == 5 and sum("/.checkpoints/" in n for n in want) == 5
    metrics = [n for n in expected(("evaluate/",)) if n.endswith("_metrics.json")]
    assert len(metrics) == 5, metrics


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python tests/test_golden_outputs.py --regenerate")
    regenerate()
