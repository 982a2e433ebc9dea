"""A stub responder for panel runs: every requested respondent gets one valid row that keeps
their id and cluster (parsed from the request after the shared prefix)."""

from __future__ import annotations

import json
import os
import random
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from servers.openai_stub import request_schema, schema_example
from typer.testing import CliRunner, Result

from panelsynth.cli import app

#: The installed command (for runs in a subprocess that is killed).
PANELSYNTH = str(Path(sys.executable).with_name("panelsynth"))

REQUESTED = re.compile(
    r"^Respondent (\S+) \((\S+) \S+\): cluster path .*?; write their wave \S+ answers in "
    r"(\S+) (\d+)\.$",
    re.MULTILINE,
)


def requested(body: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(id, id column, cluster column, cluster) of every respondent a step-3 request asks for."""
    text = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
    return [(a, b, c, int(d)) for a, b, c, d in REQUESTED.findall(text)]


def _value(prop: dict[str, Any], rng: random.Random) -> Any:
    main = next(o for o in prop.get("anyOf", [prop]) if o.get("type") != "null")
    if "enum" in main:
        return rng.choice(main["enum"])
    if main.get("type") == "string":
        return "x"
    return rng.randint(int(main.get("minimum", 0)), int(main.get("maximum", 9)))


def panel_responder(
    spoil: Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
) -> Callable[[dict[str, Any]], Any]:
    """Valid answers for steps 1-2; for step 3 one row per requested respondent (``spoil`` may
    change the rows)."""

    def respond(body: dict[str, Any]) -> Any:
        schema = request_schema(body) or {}
        spec = schema.get("properties", {}).get("rows")
        if spec is None:
            return schema_example(schema)
        rng = random.Random(json.dumps(body["messages"])[-300:])
        rows = []
        for rid, id_col, cl_col, cluster in requested(body):
            row = {n: _value(p, rng) for n, p in spec["items"]["properties"].items()}
            row[id_col], row[cl_col] = rid, cluster
            rows.append(row)
        return {"rows": spoil(body, rows) if spoil else rows}

    return respond


def run_cli(args: Sequence[str]) -> Result:
    """``panelsynth <args>`` in process."""
    return CliRunner().invoke(app, list(args))


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment without provider keys, plus ``extra`` (for a killed subprocess)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("OPENAI_BASE_URL", None)
    return {**env, "PYTHONUNBUFFERED": "1", **extra}
