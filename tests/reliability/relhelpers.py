"""Helpers of the reliability tests: stub responders, CLI invocation, workspace hashing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from servers.openai_stub import request_schema, schema_example
from typer.testing import CliRunner, Result

from panelsynth.cli import app

#: The console script of the venv running the tests (subprocess runs).
PANELSYNTH = str(Path(sys.executable).with_name("panelsynth"))

#: What each stub fault becomes in a run's books (``LLMCallError.kind`` / manifest ``faults``).
STUB_TO_KIND: dict[str, str] = {
    "rate_limit": "rate_limit",
    "server_error": "server_error",
    "unavailable": "server_error",
    "drop": "connection",
    "malformed": "invalid_output",
    "truncated": "truncated",
    "stall": "timeout",
    "bad_request": "bad_request",
    "auth": "auth",
}

_REQUEST_RE = re.compile(r"Request (\d+):")


def rows_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The ``rows`` array schema of a step-3 request, ``None`` for the other steps."""
    schema = request_schema(body) or {}
    return schema.get("properties", {}).get("rows")


def is_step3(body: dict[str, Any]) -> bool:
    """Whether a chat-completions request is a generation (step 3) call."""
    return rows_schema(body) is not None


def batch_of(body: dict[str, Any]) -> int | None:
    """The 0-based batch number a step-3 request asks for (re-asks keep it)."""
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, str):
            found = _REQUEST_RE.search(content)
            if found:
                return int(found.group(1)) - 1
    return None


def prompt_text(body: dict[str, Any]) -> str:
    """Every message of a request, joined."""
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []))


def valid_rows(body: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """As many valid, varied rows as the request's schema asks for."""
    spec = rows_schema(body)
    assert spec is not None
    out = []
    for _ in range(spec["minItems"]):
        row = {}
        for name, prop in spec["items"]["properties"].items():
            main = next(o for o in prop.get("anyOf", [prop]) if o.get("type") != "null")
            if "enum" in main:
                row[name] = rng.choice(main["enum"])
            else:
                row[name] = rng.randint(int(main["minimum"]), int(main["maximum"]))
        out.append(row)
    return out


def rng_for(body: dict[str, Any]) -> random.Random:
    """A generator seeded by the request (same request, same rows)."""
    return random.Random(json.dumps(body.get("messages"))[-300:])


Step3 = Callable[[dict[str, Any], list[dict[str, Any]]], Any]


def responder(step3: Step3 | None = None) -> Callable[[dict[str, Any]], Any]:
    """A stub responder: valid answers for steps 1-2; step 3 through ``step3(body, valid)``.

    ``step3`` gets the request and a list of valid rows and returns the content to send
    (default: the valid rows).
    """

    def respond(body: dict[str, Any]) -> Any:
        if not is_step3(body):
            return schema_example(request_schema(body) or {})
        rows = valid_rows(body, rng_for(body))
        return {"rows": rows} if step3 is None else step3(body, rows)

    return respond


def run_cli(args: Sequence[str], **kwargs: Any) -> Result:
    """``panelsynth <args>`` in process (stdout and stderr both land in ``result.output``)."""
    return CliRunner().invoke(app, list(args), **kwargs)


def stub_args(ws: Path, base_url: str, wave: str = "2", *extra: str) -> list[str]:
    """``run`` arguments of a small run of ``wave`` against the stub (model dir ``stub``)."""
    return [
        "run",
        "-w",
        str(ws),
        "--wave",
        wave,
        "--model",
        "openai/stub-model",
        "--base-url",
        base_url,
        "--model-dir",
        "stub",
        "--n-outputs",
        "3",
        "--n-batches",
        "2",
        "--yes",
        *extra,
    ]


def hash_tree(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (hidden folders included), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without provider keys, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("OPENAI_BASE_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def nonblank_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def row_keys(frame: pd.DataFrame, columns: Iterable[str]) -> set[tuple[Any, ...]]:
    """Rows as comparable tuples: numbers as floats, NA as None."""
    out = set()
    for rec in frame[list(columns)].itertuples(index=False):
        out.add(tuple(_norm(v) for v in rec))
    return out


def _norm(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)
