"""Settings resolved once (RunPlan), step 3 as a strategy, typed checkpoint mismatch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fakes import fake_answer

from panelsynth.config import DEFAULT_N_OUTPUTS, DEFAULT_WAVE_ROWS, parse_config
from panelsynth.errors import CheckpointMismatchError, ConfigError
from panelsynth.generate import GenerationResult, GenerationSettings
from panelsynth.generate.strategy import PlainStrategy, Step3Strategy
from panelsynth.llm.base import FakeClient
from panelsynth.run.plan import RunOptions, resolve_plan
from panelsynth.run.wave import run_wave


def test_unknown_option_and_choices_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="unknown run option 'n_output'"):
        RunOptions(n_output=3)
    with pytest.raises(ConfigError, match=r"^--mode must be dense or full, not 'sparse'$"):
        RunOptions(mode="sparse")
    with pytest.raises(ConfigError, match="--examples must be real or synthetic"):
        RunOptions(examples="fake")
    with pytest.raises(ConfigError, match="--structured-output must be one of auto, json_schema"):
        RunOptions(structured_output="xml")


def test_defaults_depend_on_the_client_and_come_from_the_config_module() -> None:
    config = parse_config({})
    local = resolve_plan(config, None, FakeClient(is_local=True))
    hosted = resolve_plan(config, None, FakeClient())
    assert local.settings.n_outputs == DEFAULT_N_OUTPUTS["local"] == 10
    assert hosted.settings.n_outputs == DEFAULT_N_OUTPUTS["hosted"] == 20
    assert local.settings.wanted == hosted.settings.wanted == DEFAULT_WAVE_ROWS
    assert (local.settings.concurrency, hosted.settings.concurrency) == (1, 8)
    assert local.n_examples == 4 and local.mode == "dense" and local.calibration is None


def test_options_override_the_config_and_calibration_is_resolved_once() -> None:
    config = parse_config({"generation": {"n_outputs": 5, "oversample": 3.0, "calibrate": True}})
    plan = resolve_plan(config, RunOptions(n_batches=4, mode="full"), FakeClient())
    assert (plan.settings.n_outputs, plan.settings.n_batches, plan.mode) == (5, 4, "full")
    assert plan.n_examples == 30
    assert plan.calibration is not None and plan.calibration.oversample == 3.0
    assert plan.calibration.temperature is None  # the pool's own temperature
    assert plan.total_calls(2) == 24
    off = resolve_plan(config, RunOptions(calibrate=False, temperature=0.3), FakeClient())
    assert off.calibration is None and off.total_calls(2) == 2 * off.settings.n_batches


def test_plain_strategy_keeps_the_first_rows_in_batch_order() -> None:
    strategy: Step3Strategy = PlainStrategy(GenerationSettings(n_outputs=2, n_batches=2))
    rows = pd.DataFrame({"x": range(6)})
    gen = GenerationResult(rows, [], 0, 6, 0, {}, 0, 0.0, 3)
    kept, section = strategy.select(gen, None, examples=rows)  # type: ignore[arg-type]
    assert list(kept.rows["x"]) == [0, 1, 2, 3] and section == {"enabled": False}
    strategy.fewer_rows(1)
    assert (strategy.settings.n_outputs, strategy.settings.n_batches) == (1, 4)


def test_checkpoint_of_other_settings_says_what_changed(tiny_workspace: Path) -> None:
    client = FakeClient(default=fake_answer)
    opts = {"n_outputs": 3, "n_batches": 2}
    run_wave(tiny_workspace, "1", client, "m", RunOptions(**opts, seed=1))
    with pytest.raises(CheckpointMismatchError, match="other settings") as err:
        run_wave(tiny_workspace, "1", client, "m", RunOptions(**opts, seed=2, resume=True))
    assert err.value.changed["seed"] == (1, 2)
