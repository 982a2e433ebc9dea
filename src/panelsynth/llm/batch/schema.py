"""OpenAI's strict structured outputs: a Pydantic JSON schema made acceptable to them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "allOf", "prefixItems")
_SCHEMA_NODES = ("items", "not", "additionalProperties", "contains")
_DROPPED = ("default", "examples")


def strict_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a Pydantic JSON schema that OpenAI's strict structured outputs accept.

    Every object gets ``additionalProperties: false`` and lists all its properties as required
    (a property that was optional becomes nullable); ``oneOf`` becomes ``anyOf``; ``default``
    and ``examples`` are dropped; nested ``$defs`` move to the root, where ``$ref`` finds them.
    """
    root = copy.deepcopy(dict(schema))
    hoisted: dict[str, Any] = {}

    def fix(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key in _DROPPED:
            node.pop(key, None)
        if "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
        if node is not root and "$defs" in node:
            hoisted.update(node.pop("$defs"))
        if node.get("type") == "object" or "properties" in node:
            props = node.setdefault("properties", {})
            required = set(node.get("required", []))
            for name in list(props):
                if name not in required:
                    props[name] = {"anyOf": [props[name], {"type": "null"}]}
            node["required"] = list(props)
            node["additionalProperties"] = False
        for key in _SCHEMA_MAPS:
            if isinstance(node.get(key), dict):
                for sub in node[key].values():
                    fix(sub)
        for key in _SCHEMA_LISTS:
            for sub in node.get(key) or []:
                fix(sub)
        for key in _SCHEMA_NODES:
            fix(node.get(key))

    fix(root)
    while hoisted:
        pending = dict(hoisted)
        hoisted.clear()
        defs = root.setdefault("$defs", {})
        for name, sub in pending.items():
            fix(sub)
            defs.setdefault(name, sub)
    return root
