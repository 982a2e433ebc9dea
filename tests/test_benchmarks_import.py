"""The benchmark scripts keep up with the library (a restructure must not break them silently).

Every ``benchmarks/*.py`` is imported (no output, no work done at import: ``main`` runs only
under ``if __name__ == "__main__"``), every ``from panelsynth... import name`` it makes — also
the ones inside functions, which an import does not execute — must resolve, and the one
projection-only benchmark (``bench_batch_cost.py``, no model) runs on one wave.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(BENCH.glob("*.py"))


@pytest.fixture
def bench_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The scripts' own folders on the path, as running them gives; restored afterwards."""
    monkeypatch.setattr(sys, "path", [str(BENCH), str(ROOT / "tests"), *sys.path])
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(BENCH)):
            del sys.modules[name]


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_main_guard(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        and any(
            isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators
        )
    )


def test_every_benchmark_is_found() -> None:
    assert len(SCRIPTS) >= 10
    assert BENCH / "bench_impute.py" in SCRIPTS


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_imports_without_side_effects(path: Path, bench_path: None) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guards = [n for n in tree.body if _is_main_guard(n)]
    assert len(guards) == 1, f"{path.name}: main() must run only under __name__ == '__main__'"
    calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert not calls, (
        f"{path.name}: a call at module level (line {calls[0].lineno if calls else 0})"
    )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        module = _load(path)
    assert out.getvalue() == "" and err.getvalue() == "", f"{path.name} prints when imported"
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
    assert module.__doc__, f"{path.name} has no docstring (its --help is its first line)"


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_panelsynth_import_of_a_benchmark_resolves(path: Path, bench_path: None) -> None:
    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
            continue
        if node.module.split(".")[0] != "panelsynth":
            continue
        module = importlib.import_module(node.module)
        for alias in node.names:
            if hasattr(module, alias.name):
                continue
            try:
                importlib.import_module(f"{node.module}.{alias.name}")
            except ImportError:
                missing.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    assert not missing, f"{path.name}: " + "; ".join(missing)


def test_batch_cost_projection_runs_on_one_wave(bench_path: None) -> None:
    """The B5 projection end to end (demo, steps 1-2 cached, dry-run planner, step-3 prefix)."""
    module = _load(BENCH / "bench_batch_cost.py")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert module.main(["--waves", "1", "--models", "openai/gpt-4o-mini"]) == 0
    (row,) = json.loads(out.getvalue().strip().splitlines()[-1])
    assert row["wave"] == "1" and row["calls"] == 35
    assert 0 < row["prefix_tokens"] < row["input_tokens"] / row["calls"]
    assert row["batch_usd"] == pytest.approx(row["online_usd"] / 2)
    assert row["batch_cached_usd"] < row["batch_usd"] < row["online_cached_usd"] < row["online_usd"]
