"""Limits a hostile server cannot get past (issue 13, items 16-19).

* ``generation.timeout`` bounds a whole request: headers, then a body trickled one byte at a time,
  still ends as a timeout after about ``timeout`` seconds.
* A reply larger than ``max_tokens`` allows (16 bytes a token plus a margin) is cut off early as
  an ``oversized`` failure; memory stays bounded.
* Reported token usage is not trusted blindly: negative counts are clamped, missing, zero or
  implausible ones are estimated from the text (``usage_estimated`` in the manifest), and
  ``--max-cost`` stops a server reporting zero usage exactly where it stops an honest one.
* A key the provider refuses (401/403) ends with "check the key / permissions", whatever the
  call budget.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from fakes import write_tiny_workspace
from pydantic import BaseModel
from relhelpers import is_step3, nonblank_lines, responder, run_cli, stub_args
from servers.openai_stub import OpenAIStub

from panelsynth.llm import make_client
from panelsynth.llm.base import LLMCallError
from panelsynth.llm.limits import ReplyTooLargeError, _httpx, limit_transport, reply_byte_cap
from panelsynth.llm.retry import RetryPolicy
from panelsynth.llm.structured import plausible_usage
from panelsynth.workspace import Workspace

MESSAGES = [{"role": "user", "content": "Name a colour."}]


class Answer(BaseModel):
    name: str


def _client(stub: OpenAIStub, timeout: float = 30.0):
    return make_client(
        "openai/stub-model",
        base_url=stub.base_url,
        timeout=timeout,
        retry_policy=RetryPolicy(max_retries=0),
        reask_retries=0,
    )


def _error_line(output: str) -> str:
    errors = [x for x in nonblank_lines(output) if x.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def _manifest(root: Path, wave: str = "2") -> dict:
    return json.loads(Workspace(root).manifest("stub", wave).read_text())


def _config(root: Path, text: str) -> None:
    """Add ``text`` (a table header and its keys) to the workspace's config."""
    cfg = root / "panelsynth.toml"
    header, _, body = text.partition("\n")
    current = cfg.read_text()
    if f"\n{header}\n" in f"\n{current}":  # the template has this table already
        cfg.write_text(current.replace(f"{header}\n", f"{header}\n{body}\n", 1))
    else:
        cfg.write_text(current + "\n" + text + "\n")


# ----- 16: a trickled reply --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sync", "async"])
def test_a_trickled_reply_ends_as_a_timeout_after_the_timeout(how: str) -> None:
    with OpenAIStub(trickle_seconds=0.4) as stub:
        client = _client(stub, timeout=1.5)
        stub.script("trickle")  # ~100 bytes at 0.4 s each: 40 s without an overall deadline
        started = time.monotonic()
        with pytest.raises(LLMCallError) as err:
            if how == "sync":
                client.create(MESSAGES, Answer, max_tokens=50)
            else:
                asyncio.run(client.acreate(MESSAGES, Answer, max_tokens=50))
        elapsed = time.monotonic() - started
        assert err.value.kind == "timeout" and err.value.usage.faults == {"timeout": 1}
        assert 1.4 < elapsed < 6.0, elapsed  # 40 s without the deadline
        assert client.create(MESSAGES, Answer, max_tokens=50).value.name  # the next call is fine


def test_generation_timeout_bounds_each_call_of_a_run(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    _config(root, "[generation]\ntimeout = 1.5")
    with OpenAIStub(responder(), trickle_seconds=0.5, fault_filter=is_step3) as stub:
        stub.script("trickle")  # the first generation call trickles, the retry is answered
        started = time.monotonic()
        r = run_cli(stub_args(root, stub.base_url))
        assert r.exit_code == 0, r.output
        assert time.monotonic() - started < 30
    assert _manifest(root)["faults"].get("timeout") == 1


# ----- 18: a reply far larger than max_tokens ----------------------------------------------------


@pytest.mark.parametrize("how", ["sync", "async"])
def test_a_huge_reply_is_cut_off_early(how: str) -> None:
    with OpenAIStub() as stub:
        client = _client(stub)
        stub.script("huge")  # up to 300 MB of body, no length announced
        started = time.monotonic()
        with pytest.raises(LLMCallError) as err:
            if how == "sync":
                client.create(MESSAGES, Answer, max_tokens=100)
            else:
                asyncio.run(client.acreate(MESSAGES, Answer, max_tokens=100))
        assert err.value.kind == "oversized" and "max_tokens" in str(err.value)
        assert time.monotonic() - started < 10
        waited = time.monotonic() + 10  # the server notices the closed connection at its next write
        while not stub.config.huge_sent and time.monotonic() < waited:
            time.sleep(0.05)
        # the server could push only what the client read (its cap) plus the socket buffers
        assert stub.config.huge_sent and stub.config.huge_sent[0] < 32_000_000
    assert reply_byte_cap(100) == 16 * 100 + 256 * 1024


def test_an_announced_huge_reply_is_refused_before_reading() -> None:
    httpx = _httpx()
    seen: list[int] = []

    def handler(request):  # type: ignore[no-untyped-def]
        seen.append(1)
        return httpx.Response(200, headers={"content-length": str(300_000_000)}, content=b"{}")

    transport = limit_transport(httpx.MockTransport(handler), 5.0, is_async=False)
    with httpx.Client(transport=transport) as http, pytest.raises(ReplyTooLargeError):
        http.get("http://127.0.0.1/v1/x")
    assert seen == [1]


def test_an_oversized_reply_in_a_run_is_counted_and_replaced(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    with OpenAIStub(responder(), fault_filter=is_step3) as stub:
        stub.script("huge")
        r = run_cli(stub_args(root, stub.base_url))
        assert r.exit_code == 0, r.output
    m = _manifest(root)
    assert m["faults"].get("oversized") == 1 and m["rows"] == 6


# ----- 17: token usage ----------------------------------------------------------------------


def test_reported_usage_is_clamped_and_estimated_when_implausible() -> None:
    prompt, reply = "p" * 400, "r" * 200  # about 100 and 50 tokens
    assert plausible_usage((120, 60, 0), prompt, reply, 500) == ((120, 60, 0), False)
    assert plausible_usage(None, prompt, reply, 500) == ((100, 50, 0), True)
    assert plausible_usage((-5, -9, -1), prompt, reply, 500) == ((100, 50, 0), True)
    assert plausible_usage((0, 0, 0), prompt, reply, 500) == ((100, 50, 0), True)
    assert plausible_usage((3, 60, 0), prompt, reply, 500) == ((100, 60, 0), True)  # far below
    assert plausible_usage((120, 10**9, 0), prompt, reply, 500) == ((120, 500, 0), True)
    assert plausible_usage((120, 60, 999), prompt, reply, 500) == ((120, 60, 120), False)


def test_negative_usage_is_clamped_and_flagged_in_the_manifest(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    _config(root, '[prices."openai/stub-model"]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0')

    def negative(u: dict) -> dict:
        return {"prompt_tokens": -5, "completion_tokens": -40_000_000_000, "total_tokens": -1}

    with OpenAIStub(responder(), usage=negative) as stub:
        r = run_cli(stub_args(root, stub.base_url))
        assert r.exit_code == 0, r.output
        replies = len(stub.requests)
    m = _manifest(root)
    assert m["tokens"]["input"] > 0 and m["tokens"]["output"] > 0
    assert 0 < m["cost"]["usd"] < 1
    assert m["usage_estimated"] == replies


def _budget_run(tmp_path: Path, name: str, usage, max_cost: float | None) -> tuple[int, str]:
    root = write_tiny_workspace(tmp_path / name)
    _config(root, '[prices."openai/stub-model"]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0')
    extra = ["--concurrency", "1"]
    if max_cost is not None:
        extra += ["--max-cost", str(max_cost)]
    with OpenAIStub(responder(), usage=usage) as stub:
        args = stub_args(root, stub.base_url, "2", *extra)
        args[args.index("--n-batches") + 1] = "12"
        r = run_cli(args)
        calls = sum(1 for q in stub.requests if is_step3(q.body))
    if max_cost is None:
        assert r.exit_code == 0, r.output
        return calls, json.dumps(_manifest(root)["cost"]["usd"])
    return calls, r.output


def test_max_cost_stops_a_server_reporting_zero_usage_where_it_stops_an_honest_one(
    tmp_path: Path,
) -> None:
    _, full = _budget_run(tmp_path, "full", None, None)
    limit = round(float(full) * 0.5, 4)  # about half of the run
    honest, out_h = _budget_run(tmp_path, "honest", None, limit)
    zero, out_z = _budget_run(tmp_path, "zero", lambda u: {k: 0 for k in u}, limit)
    assert 0 < honest < 12 and zero == honest, (honest, zero)
    for out in (out_h, out_z):
        assert "budget" in _error_line(out)


# ----- 19: a refused key ----------------------------------------------------------------------


@pytest.mark.parametrize("n_batches", ["1", "12"])  # the call budget first / the breaker first
def test_a_refused_key_says_check_the_key_whatever_the_budget(tmp_path: Path, n_batches: str):
    root = write_tiny_workspace(tmp_path / "ws")
    with OpenAIStub(responder(), fault_rates={"auth": 1.0}, fault_filter=is_step3) as stub:
        args = stub_args(root, stub.base_url, "2", "--concurrency", "1")
        args[args.index("--n-batches") + 1] = n_batches
        r = run_cli(args)
    assert r.exit_code == 2, r.output
    line = _error_line(r.output)
    assert "check the key / permissions" in line and "max_attempts_factor" not in line


def test_hosted_sdk_clients_are_bounded_too() -> None:
    client = make_client("openai/gpt-4o", api_key="sk-test-" + "x" * 40)  # no request is made
    sdk = client._sync_client().client
    assert type(sdk._client._transport).__qualname__.endswith("SyncTransport")
