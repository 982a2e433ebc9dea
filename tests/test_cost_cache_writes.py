"""Anthropic prompt-cache writes: read from online replies, priced at the cache-write rate in the
manifest and the spending limit, projected by the dry run (fakes at the client seam, no network).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import fake_answer
from pydantic import BaseModel

from panelsynth.config import parse_config
from panelsynth.llm.budget import BudgetedClient
from panelsynth.llm.structured import InstructorClient
from panelsynth.prices import (
    CACHE_WRITE_DOCS,
    CACHE_WRITE_MULTIPLIER,
    PREFIX_CACHE_MIN_TOKENS,
    default_price,
    prefix_cache_plan,
    price_for,
    projected_prefix_writes,
)
from panelsynth.run.dryrun import PlanningClient, StagePlan, format_plans, plan_wave, project_cost
from panelsynth.run.wave import RunOptions, run_wave, with_budget

SONNET = "anthropic/claude-sonnet-4-5"
GPT = "openai/gpt-4o"
#: Tokens of the shared prefix the fake provider reports as written (first call) or read.
PREFIX = 1500


def _text(message: Any) -> str:
    content = message.get("content", "")
    if isinstance(content, list):  # Anthropic content blocks (cache markers)
        return "".join(str(b.get("text", "")) for b in content)
    return str(content)


class _Provider:
    """Stands in for an Instructor client: answers every step with a valid instance and hands
    the per-call hooks a raw reply shaped like the provider's (usage included), as Instructor
    does. ``anthropic``: the first step-3 call writes the prefix to the cache, later ones read
    it (``cache_creation_input_tokens`` / ``cache_read_input_tokens``); otherwise OpenAI usage
    with cached prompt tokens."""

    def __init__(self, anthropic: bool) -> None:
        self.anthropic = anthropic
        self.step3_calls = 0

    def create_with_completion(self, **kwargs: Any) -> tuple[Any, Any]:
        messages = [{"role": m["role"], "content": _text(m)} for m in kwargs["messages"]]
        model = kwargs["response_model"]
        base = next(c for c in model.__mro__ if c.__module__.startswith("panelsynth"))
        value = model.model_validate(fake_answer(messages, base))
        raw = self._raw(messages, "rows" in model.model_fields)
        hooks = kwargs["hooks"]
        hooks.emit_completion_arguments(messages=kwargs["messages"])
        hooks.emit_completion_response(raw)
        return value, raw

    def _raw(self, messages: list[dict[str, str]], step3: bool) -> Any:
        prompt = sum(len(m["content"]) for m in messages) // 4 + PREFIX
        written = read = 0
        if step3:
            self.step3_calls += 1
            written, read = (PREFIX, 0) if self.step3_calls == 1 else (0, PREFIX)
        if self.anthropic:
            usage = SimpleNamespace(
                input_tokens=prompt - written - read,
                output_tokens=400,
                cache_creation_input_tokens=written,
                cache_read_input_tokens=read,
            )
            return SimpleNamespace(usage=usage, stop_reason="tool_use", content=[])
        usage = SimpleNamespace(
            prompt_tokens=prompt,
            completion_tokens=400,
            prompt_tokens_details=SimpleNamespace(cached_tokens=read),
        )
        choice = SimpleNamespace(finish_reason="stop", message=SimpleNamespace(content=""))
        return SimpleNamespace(usage=usage, choices=[choice])


def _client(label: str) -> InstructorClient:
    fake = _Provider(anthropic=label.startswith("anthropic/"))
    return InstructorClient(
        label, sync_factory=lambda: fake, cache_markers=label.startswith("anthropic/")
    )


class _Named(BaseModel):
    name: str


def _raw_anthropic(written: int, read: int, plain: int = 300) -> Any:
    usage = SimpleNamespace(
        input_tokens=plain,
        output_tokens=50,
        cache_creation_input_tokens=written,
        cache_read_input_tokens=read,
    )
    return SimpleNamespace(usage=usage, stop_reason="end_turn")


class _OneReply:
    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def create_with_completion(self, **kwargs: Any) -> tuple[Any, Any]:
        kwargs["hooks"].emit_completion_arguments(messages=kwargs["messages"])
        kwargs["hooks"].emit_completion_response(self.raw)
        return kwargs["response_model"].model_validate({"name": "x"}), self.raw


# ----- prices ------------------------------------------------------------------------------------
def test_cache_writes_cost_the_table_rate_or_the_documented_125x() -> None:
    table = default_price(SONNET)
    assert table is not None and table.cache_write_per_mtok is not None
    assert table.cache_write_rate == pytest.approx(1.25 * table.input_per_mtok)
    assert table.cache_write_basis.startswith(table.source)
    # writes are part of the input tokens: 1M input of which 400k read and 200k written
    expected = (400_000 * 3.0 + 400_000 * 0.3 + 200_000 * 3.75 + 1_000_000 * 15.0) / 1e6
    assert table.cost(1_000_000, 1_000_000, 400_000, 200_000) == pytest.approx(expected)
    assert table.write_surcharge(200_000) == pytest.approx(200_000 * 0.75 / 1e6)
    # a [prices] entry has no cache-write price: Anthropic's documented 1.25x, cited as such
    cfg = parse_config({"prices": {SONNET: {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}})
    own = price_for(SONNET, cfg)
    assert own is not None and own.cache_write_per_mtok is None
    assert own.cache_write_rate == pytest.approx(2.5)
    assert "1.25x" in own.cache_write_basis and CACHE_WRITE_DOCS in own.cache_write_basis
    # one figure for online and batch prices
    from panelsynth.llm.batch import prices as batch_prices

    assert batch_prices.CACHE_WRITE_MULTIPLIER["anthropic"] == CACHE_WRITE_MULTIPLIER["anthropic"]
    # OpenAI has no write surcharge: writes cost the input price
    gpt = default_price(GPT)
    assert gpt is not None and gpt.cache_write_rate == gpt.input_per_mtok
    assert gpt.write_surcharge(10_000) == 0.0 and gpt.write_note(10_000) == ""
    assert gpt.cost(1000, 10, 0, 500) == gpt.cost(1000, 10)


# ----- online calls ------------------------------------------------------------------------------
def test_online_anthropic_reply_carries_its_cache_writes() -> None:
    client = InstructorClient(SONNET, sync_factory=lambda: _OneReply(_raw_anthropic(1200, 800)))
    usage = client.create([{"role": "user", "content": "x" * 40}], _Named).usage
    assert (usage.input_tokens, usage.cached_input_tokens) == (300 + 1200 + 800, 800)
    assert usage.cache_write_tokens == 1200
    assert usage.to_dict()["cache_write_tokens"] == 1200


def test_online_openai_reply_has_no_cache_writes() -> None:
    usage_ns = SimpleNamespace(
        prompt_tokens=2000,
        completion_tokens=50,
        prompt_tokens_details=SimpleNamespace(cached_tokens=1024),
    )
    raw = SimpleNamespace(usage=usage_ns, choices=[SimpleNamespace(finish_reason="stop")])
    usage = (
        InstructorClient(GPT, sync_factory=lambda: _OneReply(raw))
        .create([{"role": "user", "content": "x" * 40}], _Named)
        .usage
    )
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (
        2000,
        1024,
        0,
    )
    assert "cache_write_tokens" not in usage.to_dict()


def test_spending_limit_books_cache_writes_at_the_write_rate() -> None:
    price = default_price(SONNET)
    assert price is not None
    inner = InstructorClient(SONNET, sync_factory=lambda: _OneReply(_raw_anthropic(1200, 800)))
    budgeted = with_budget(inner, parse_config({}), 5.0)
    assert isinstance(budgeted, BudgetedClient)
    budgeted.create([{"role": "user", "content": "x" * 40}], _Named, max_tokens=100)
    billed = price.cost(2300, 50, 800, 1200)
    assert budgeted.spent_usd == pytest.approx(billed)
    assert budgeted.spent_usd > price.cost(2300, 50, 800)  # the writes' surcharge is in


@pytest.mark.parametrize("label", [SONNET, GPT])
def test_spending_limit_reserves_the_shared_prefix_as_written(label: str) -> None:
    from panelsynth.generate import with_request
    from panelsynth.llm.base import FakeClient

    price = default_price(label)
    assert price is not None
    budgeted = with_budget(FakeClient(label=label), parse_config({}), 5.0)
    assert isinstance(budgeted, BudgetedClient)
    static = "codebook and examples " * 300
    messages = with_request([{"role": "user", "content": static}], "\n\nRequest 1: ...")
    usd, n_in, n_out = budgeted.projected(messages, _Named, 100)
    prefix = budgeted.count_tokens(static)
    assert usd == pytest.approx(price.cost(n_in, n_out, 0, prefix))
    if label == SONNET:  # the prefix may be written at 1.25x: the ceiling says so
        assert usd == pytest.approx(budgeted.cost(n_in, n_out) + price.write_surcharge(prefix))
        assert usd > budgeted.cost(n_in, n_out)
    else:
        assert usd == pytest.approx(budgeted.cost(n_in, n_out))
    plain = [{"role": "user", "content": static + "\n\nRequest 1: ..."}]
    assert budgeted.projected(plain, _Named, 100)[0] == pytest.approx(budgeted.cost(n_in, n_out))


# ----- the manifest ------------------------------------------------------------------------------
def test_manifest_prices_anthropic_cache_writes(tiny_workspace: Path) -> None:
    price = default_price(SONNET)
    assert price is not None
    res = run_wave(
        tiny_workspace,
        "2",
        _client(SONNET),
        "sonnet",
        RunOptions(n_outputs=4, n_batches=3, concurrency=1, max_cost_usd=50.0),
    )
    data = res.manifest_data
    step3 = data["tokens"]["per_stage"]["step3"]
    assert step3["cache_write_tokens"] == PREFIX and step3["cached_input_tokens"] == 2 * PREFIX
    assert data["tokens"]["cache_write"] == PREFIX
    assert [c.get("cache_write_tokens", 0) for c in data["calls"] if c["stage"] == "step3"] == [
        PREFIX,
        0,
        0,
    ]
    cost = data["cost"]
    assert cost["per_stage"]["step3"] == pytest.approx(
        price.cost(step3["input_tokens"], step3["output_tokens"], 2 * PREFIX, PREFIX)
    )
    assert cost["cache_write_tokens"] == PREFIX
    assert cost["cache_write_per_mtok"] == pytest.approx(price.cache_write_rate)
    assert cost["cache_write_surcharge_usd"] == pytest.approx(PREFIX * (3.75 - 3.0) / 1e6)
    assert cost["cache_write_price"] == price.cache_write_basis
    without = price.cost(step3["input_tokens"], step3["output_tokens"], 2 * PREFIX)
    assert cost["per_stage"]["step3"] - without == pytest.approx(cost["cache_write_surcharge_usd"])


def test_manifest_of_openai_has_no_cache_writes(tiny_workspace: Path) -> None:
    res = run_wave(tiny_workspace, "2", _client(GPT), "gpt", RunOptions(n_outputs=4, n_batches=3))
    data = res.manifest_data
    assert "cache_write" not in data["tokens"]
    assert "cache_write_tokens" not in data["tokens"]["per_stage"]["step3"]
    assert not any(k.startswith("cache_write") for k in data["cost"])
    price = default_price(GPT)
    assert price is not None
    step3 = data["tokens"]["per_stage"]["step3"]
    assert data["cost"]["per_stage"]["step3"] == pytest.approx(
        price.cost(step3["input_tokens"], step3["output_tokens"], step3["cached_input_tokens"])
    )


def test_config_prices_without_a_write_rate_cite_the_documented_multiplier(
    tiny_workspace: Path,
) -> None:
    with (tiny_workspace / "panelsynth.toml").open("a") as f:
        f.write(f'\n[prices."{SONNET}"]\ninput_per_mtok = 2.0\noutput_per_mtok = 8.0\n')
    res = run_wave(
        tiny_workspace, "2", _client(SONNET), "own", RunOptions(n_outputs=4, n_batches=3)
    )
    cost = res.manifest_data["cost"]
    assert cost["cache_write_per_mtok"] == pytest.approx(2.5)
    assert "1.25x" in cost["cache_write_price"] and CACHE_WRITE_DOCS in cost["basis"]


# ----- the dry run -------------------------------------------------------------------------------
def _stages(calls: int = 35, per_call: int = 4000) -> list[StagePlan]:
    return [
        StagePlan("step1", 1, False, 5000, 800, "estimate"),
        StagePlan("step2", 1, False, 3000, 600, "estimate"),
        StagePlan("step3", calls, False, calls * per_call, calls * 900, "estimate"),
    ]


def test_dry_run_projects_the_write_surcharge_for_anthropic_only() -> None:
    cfg = parse_config({})
    sonnet = default_price(SONNET)
    assert sonnet is not None
    stages = _stages()
    total, _, _, saving, note = project_cost(cfg, PlanningClient(SONNET), stages, 3000, 8)
    st3 = stages[-1]
    assert (st3.cached_input_tokens, st3.cache_write_tokens) == (27 * 3000, 8 * 3000)
    surcharge = sonnet.write_surcharge(8 * 3000)
    assert surcharge > 0 and saving == pytest.approx(sonnet.saving(27 * 3000) - surcharge)
    assert st3.cost_usd == pytest.approx(
        sonnet.cost(st3.input_tokens, st3.output_tokens, 27 * 3000, 8 * 3000)
    )
    assert f"writing it costs ${surcharge:.4f} more" in note and "24,000 tokens" in note
    # OpenAI: no surcharge, no write tokens, the saving as before
    gpt = default_price(GPT)
    assert gpt is not None
    stages = _stages()
    _, _, _, saving, note = project_cost(cfg, PlanningClient(GPT), stages, 3000, 8)
    assert stages[-1].cache_write_tokens == 0 and "writing it" not in note
    assert saving == pytest.approx(gpt.saving(27 * 3000))
    assert total is not None


def test_dry_run_says_when_the_writes_cost_more_than_the_reads_save() -> None:
    # every call is in the first concurrent round: all write, none read
    sonnet = default_price(SONNET)
    assert sonnet is not None
    plan = prefix_cache_plan(SONNET, sonnet, 8, 8 * 4000, 3000, 8)
    assert plan.cached == 0 and plan.written == 8 * 3000
    assert plan.saving == pytest.approx(-sonnet.write_surcharge(8 * 3000))
    assert projected_prefix_writes(SONNET, 8, 500, 8) == 0  # below the cached minimum
    assert prefix_cache_plan(SONNET, None, 8, 32000, 3000, 8).written == 0  # no price


@pytest.mark.parametrize("label", [SONNET, GPT])
def test_dry_run_line_says_the_write_surcharge(
    tiny_workspace: Path, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the tiny workspace's prefix (about 800 tokens) is below the providers' 1,024: lower it
    monkeypatch.setitem(PREFIX_CACHE_MIN_TOKENS, label.split("/")[0], 64)
    price = default_price(label)
    assert price is not None
    opts = RunOptions(n_outputs=4, n_batches=30, concurrency=4)
    plan = plan_wave(tiny_workspace, "2", PlanningClient(label), "m", opts)
    st3 = plan.stages[-1]
    prefix = st3.cached_input_tokens // 26
    assert prefix >= 64 and st3.cached_input_tokens == 26 * prefix
    line = next(x for x in format_plans([plan]).splitlines() if "prefix cache:" in x)
    assert "the first 4 concurrent call(s) write it" in line
    if label == SONNET:
        assert st3.cache_write_tokens == 4 * prefix
        surcharge = price.write_surcharge(4 * prefix)
        assert f"writing it costs ${surcharge:.4f} more" in line
        assert "$3.75 instead of $3 per million" in line
    else:
        assert st3.cache_write_tokens == 0 and "writing it" not in line
        surcharge = 0.0
    assert plan.cache_saving_usd == pytest.approx(price.saving(26 * prefix) - surcharge)
    assert st3.cost_usd == pytest.approx(
        price.cost(st3.input_tokens, st3.output_tokens, 26 * prefix, st3.cache_write_tokens)
    )
    assert plan.to_dict()["stages"][-1]["cache_write_tokens"] == st3.cache_write_tokens
