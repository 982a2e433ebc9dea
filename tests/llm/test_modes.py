"""Structured-output modes for OpenAI-compatible servers: detection of a rejected mode, ``auto``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import varied_rows
from pydantic import BaseModel
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.llm.base import LLMCallError
from panelsynth.llm.modes import UNSUPPORTED_KIND, AutoModeClient, unsupported_request
from panelsynth.llm.registry import make_client
from panelsynth.llm.retry import RetryPolicy
from panelsynth.runner import open_client
from panelsynth.workspace import Workspace
from tests.servers.openai_stub import OpenAIStub, rejection


class Pet(BaseModel):
    name: str
    age: int


MESSAGES = [{"role": "user", "content": "A pet, please."}]
#: The error llama-cpp-python 0.3.36's server returns (HTTP 500) for response_format json_schema.
LLAMA_CPP_PYTHON_500 = (
    "Error code: 500 - {'error': {'message': \"1 validation error:\\n  {'type': "
    "'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be "
    "'text' or 'json_object'\", 'input': 'json_schema', 'ctx': {'expected': \"'text' or "
    "'json_object'\"}}\\n\", 'type': 'internal_server_error', 'param': None, 'code': None}}"
)


class _StatusError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status_code = status


def test_a_rejected_response_format_is_recognised() -> None:
    err = _StatusError(500, LLAMA_CPP_PYTHON_500)
    assert unsupported_request(err, "json_schema") == "response_format.type=json_schema"
    # the same answer says nothing about the other modes' fields
    assert unsupported_request(err, "tools") is None
    assert unsupported_request(err, "md_json") is None


@pytest.mark.parametrize(
    "status,text",
    [
        (500, "stub server_error"),
        (503, "model is loading; response_format json_schema invalid"),  # not a rejection status
        (429, "rate limit: response_format invalid"),
        (400, "model 'x' not found"),
        (500, "CUDA out of memory while decoding with response_format"),
    ],
)
def test_other_failures_are_not_taken_for_an_unsupported_mode(status: int, text: str) -> None:
    assert unsupported_request(_StatusError(status, text), "json_schema") is None


def test_vllm_and_openai_style_rejections_name_the_field() -> None:
    vllm = _StatusError(400, "Error code: 400 - tools is not supported with this model")
    assert unsupported_request(vllm, "tools") == "tools"
    openai_like = _StatusError(
        400, "Invalid parameter: 'response_format' of type 'json_object' is not supported"
    )
    assert unsupported_request(openai_like, "json") == "response_format.type=json_object"


def test_fixed_unsupported_mode_fails_once_in_one_line(fast_policy: RetryPolicy) -> None:
    with OpenAIStub(rejects=("json_schema",)) as stub:
        client = make_client(
            "openai/stub-model", base_url=stub.base_url, retry_policy=fast_policy,
            mode="json_schema",
        )
        with pytest.raises(LLMCallError) as info:
            client.create(MESSAGES, Pet)
        assert len(stub.requests) == 1  # no retry
    err = info.value
    message = str(err)
    assert err.kind == UNSUPPORTED_KIND and "\n" not in message
    assert "response_format.type=json_schema" in message
    assert "--structured-output json" in message
    assert err.usage.retries == 0


def test_json_mode_sends_the_schema_in_response_format(fast_policy: RetryPolicy) -> None:
    with OpenAIStub(responder=lambda body: {"name": "Rex", "age": 3}) as stub:
        client = make_client(
            "openai/stub-model", base_url=stub.base_url, retry_policy=fast_policy, mode="json"
        )
        out = client.create(MESSAGES, Pet)
        body = stub.requests[0].body
    assert out.value == Pet(name="Rex", age=3)
    assert body["response_format"]["type"] == "json_object"
    assert body["response_format"]["schema"]["properties"].keys() == {"name", "age"}


def test_auto_falls_back_once_and_keeps_the_working_mode(fast_policy: RetryPolicy) -> None:
    pet = {"name": "Rex", "age": 3}
    with OpenAIStub(responder=lambda body: pet, rejects=("json_schema",)) as stub:
        client = make_client(
            "openai/stub-model", base_url=stub.base_url, retry_policy=fast_policy, mode="auto"
        )
        assert isinstance(client, AutoModeClient) and client.mode == "json_schema"
        first = client.create(MESSAGES, Pet)
        second = client.create(MESSAGES, Pet)
        kinds = [r.body.get("response_format", {}).get("type") for r in stub.requests]
    assert first.value == second.value == Pet(name="Rex", age=3)
    assert kinds == ["json_schema", "json_object", "json_object"]  # json_schema tried once
    assert client.mode == "json" and client.structured_output == "auto (json)"
    assert first.usage.attempts == 2 and second.usage.attempts == 1


def test_auto_reaches_md_json_when_the_server_takes_no_response_format(
    fast_policy: RetryPolicy,
) -> None:
    with OpenAIStub(
        responder=lambda body: {"name": "Rex", "age": 3}, rejects=("json_schema", "json_object")
    ) as stub:
        client = make_client(
            "openai/stub-model", base_url=stub.base_url, retry_policy=fast_policy, mode="auto"
        )
        client.create(MESSAGES, Pet)
        assert "response_format" not in stub.requests[-1].body
    assert client.mode == "md_json" and len(stub.requests) == 3


def test_the_stub_rejects_like_llama_cpp_python() -> None:
    text = rejection({"response_format": {"type": "json_schema"}}, ("json_schema",))
    assert text is not None
    assert "('body', 'response_format', 'type')" in text
    assert "Input should be 'text' or 'json_object'" in text
    assert rejection({"response_format": {"type": "json_object"}}, ("json_schema",)) is None


def test_open_client_defaults_to_auto_for_servers_only(no_key_env: None) -> None:
    auto = open_client("openai/x", base_url="http://127.0.0.1:9/v1")
    assert isinstance(auto, AutoModeClient)
    fixed = open_client("openai/x", base_url="http://127.0.0.1:9/v1", structured_output="tools")
    assert getattr(fixed, "mode", None) == "tools"
    from panelsynth.errors import ProviderError

    with pytest.raises(ProviderError, match="--base-url"):
        open_client("openai/gpt-4o", api_key="sk-test-000", structured_output="json")


def _run(ws: Path, url: str, *extra: str) -> Any:
    return CliRunner().invoke(
        app,
        ["run", "-w", str(ws), "--wave", "2", "--model", "openai/stub-model", "--base-url", url,
         "--model-dir", "stub", "--n-outputs", "4", "--n-batches", "3", "--yes", *extra],
    )


def test_run_with_auto_succeeds_against_a_server_without_json_schema(tiny_workspace: Path) -> None:
    with OpenAIStub(responder=varied_rows, rejects=("json_schema",)) as stub:
        r = _run(tiny_workspace, stub.base_url)
        assert r.exit_code == 0, r.output
        kinds = [req.body.get("response_format", {}).get("type") for req in stub.requests]
    assert kinds.count("json_schema") == 1 and kinds[0] == "json_schema"
    assert kinds[1:] == ["json_object"] * 5  # step 1 again, step 2, 3 batches
    ws = Workspace(tiny_workspace)
    assert len(pd.read_csv(ws.output_csv("stub", "2"))) == 12
    m = json.loads(ws.manifest("stub", "2").read_text())
    assert m["structured_output"] == "auto (json)"


def test_run_with_a_fixed_rejected_mode_fails_in_one_line_without_retries(
    tiny_workspace: Path,
) -> None:
    with OpenAIStub(responder=varied_rows, rejects=("json_schema",)) as stub:
        started = time.monotonic()
        r = _run(tiny_workspace, stub.base_url, "--structured-output", "json_schema")
        took = time.monotonic() - started
        assert len(stub.requests) == 1
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and r.output.count("validation error") == 1, r.output
    assert "response_format.type=json_schema" in lines[0]
    assert "--structured-output json" in lines[0] and "Traceback" not in r.output
    assert took < 10  # not five retries with back-off
    assert not Workspace(tiny_workspace).output_csv("stub", "2").exists()


def test_unknown_structured_output_value_is_a_one_line_error(tiny_workspace: Path) -> None:
    r = _run(tiny_workspace, "http://127.0.0.1:9/v1", "--structured-output", "grammar")
    assert r.exit_code == 2 and "--structured-output must be one of" in r.output


def test_models_entry_chooses_the_mode(no_key_env: None) -> None:
    from panelsynth.config import parse_config

    cfg = parse_config(
        {"models": [{"label": "openai/qwen", "dir": "qwen", "base_url": "http://127.0.0.1:9/v1",
                     "structured_output": "md_json"}]}
    )
    client = open_client("openai/qwen", config=cfg)
    assert getattr(client, "mode", None) == "md_json"
    # the flag wins over the entry
    flag = open_client("openai/qwen", config=cfg, structured_output="json")
    assert getattr(flag, "mode", None) == "json"
    with pytest.raises(Exception, match="structured_output"):
        parse_config({"models": [{"label": "a/b", "dir": "b", "structured_output": "grammar"}]})
