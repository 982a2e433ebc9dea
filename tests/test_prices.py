"""Prices: the dated default table (genai-prices), ``[prices]`` overrides, prompt-cache savings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_answer

from panelsynth.config import parse_config
from panelsynth.llm.base import Completion, FakeClient
from panelsynth.prices import (
    GENAI_PRICES_RELEASED,
    default_price,
    genai_prices_version,
    price_for,
    projected_prefix_cache,
)
from panelsynth.run.dryrun import PlanningClient, format_plans, plan_wave
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace

HOSTED = ["anthropic/claude-sonnet-4-20250514", "openai/gpt-4o", "google/gemini-2.5-pro"]


@pytest.mark.parametrize("label", HOSTED)
def test_default_table_knows_common_models_with_cached_rates(label: str) -> None:
    price = default_price(label)
    assert price is not None
    assert price.source == f"genai-prices {genai_prices_version()}"
    assert price.date == GENAI_PRICES_RELEASED[genai_prices_version()]  # the pinned version
    assert 0 < price.input_per_mtok < price.output_per_mtok
    assert price.cached_input_per_mtok is not None
    assert 0 < price.cached_input_per_mtok < price.input_per_mtok


def test_batch_prices_where_the_provider_has_them() -> None:
    gpt = default_price("openai/gpt-4o")
    assert gpt is not None and gpt.batch_input_per_mtok == pytest.approx(gpt.input_per_mtok / 2)
    assert gpt.batch_output_per_mtok == pytest.approx(gpt.output_per_mtok / 2)


def test_config_overrides_the_table_and_unknown_models_stay_unknown() -> None:
    cfg = parse_config(
        {"prices": {"openai/gpt-4o": {"input_per_mtok": 1.0, "output_per_mtok": 2.0,
                                      "cached_input_per_mtok": 0.5, "date": "2026-01-02"}}}
    )
    price = price_for("openai/gpt-4o", cfg)
    assert price is not None and (price.input_per_mtok, price.output_per_mtok) == (1.0, 2.0)
    assert price.cited == "config prices (2026-01-02)"
    assert price_for("openai/no-such-model-xyz", cfg) is None
    assert price_for("vllm/Qwen/Qwen2.5-7B", cfg) is None  # self-hosted: no list price
    assert price.cost(1_000_000, 0, 400_000) == pytest.approx(0.6 + 0.2)
    assert price.saving(400_000) == pytest.approx(0.2)


def test_prefix_cache_projection() -> None:
    cached, why = projected_prefix_cache(
        "openai/gpt-4o", calls=35, prefix_tokens=3000, concurrency=8
    )
    assert cached == 27 * 3000 and "27 of 35" in why
    assert projected_prefix_cache("openai/gpt-4o", 35, 500, 8)[0] == 0  # below the minimum
    assert projected_prefix_cache("fake/fake", 35, 5000, 8)[0] == 0  # no known cache


@pytest.mark.parametrize("label", HOSTED)
def test_dry_run_prices_every_stage_with_source_date_and_cache_saving(
    tiny_workspace: Path, label: str
) -> None:
    plan = plan_wave(
        tiny_workspace, "2", PlanningClient(label), "m", RunOptions(n_outputs=4, n_batches=30)
    )
    assert plan.cost_usd is not None and plan.cost_usd > 0
    assert all(s.cost_usd is not None for s in plan.stages)
    text = format_plans([plan])
    assert re.search(r"step3\s+30\s.*\$\d+\.\d{4}", text)
    assert "genai-prices" in text and GENAI_PRICES_RELEASED[genai_prices_version()] in text
    assert "prefix cache:" in text


class _CachingClient(FakeClient):
    """A fake provider that reports half of every step-3 prompt as read from its cache."""

    def create(self, messages: Any, response_model: Any, **kw: Any) -> Completion[Any]:
        comp = super().create(messages, response_model, **kw)
        if "rows" in response_model.model_fields:
            comp.usage.cached_input_tokens = comp.usage.input_tokens // 2
        return comp


def test_manifest_records_source_date_and_the_actual_cache_saving(tiny_workspace: Path) -> None:
    client = _CachingClient(default=fake_answer, label="openai/gpt-4o")
    res = run_wave(tiny_workspace, "2", client, "gpt", RunOptions(n_outputs=4, n_batches=3))
    cost = res.manifest_data["cost"]
    step3 = res.manifest_data["tokens"]["per_stage"]["step3"]
    price = default_price("openai/gpt-4o")
    assert price is not None
    assert cost["source"] == price.source and cost["date"] == price.date
    assert cost["cached_input_tokens"] == step3["cached_input_tokens"] > 0
    assert cost["prefix_cache_saving_usd"] == pytest.approx(
        step3["cached_input_tokens"] * (price.input_per_mtok - price.cached_input_per_mtok) / 1e6
    )
    assert cost["per_stage"]["step3"] == pytest.approx(
        price.cost(step3["input_tokens"], step3["output_tokens"], step3["cached_input_tokens"])
    )
    assert Workspace(tiny_workspace).manifest("gpt", "2").exists()
