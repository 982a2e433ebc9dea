"""The step-1/2 cache: its key (everything a reply depends on) and its entries."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from panelsynth.cache import StepCache, fingerprint, step_key

MESSAGES = [{"role": "user", "content": "describe"}]
SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}}


def _key(**kw: object) -> str:
    args: dict[str, object] = {"seed": 1, "temperature": 0.2} | kw
    return step_key("step1", "fake/fake", MESSAGES, SCHEMA, **args)  # type: ignore[arg-type]


def test_the_key_holds_the_seed_the_temperature_and_the_context() -> None:
    assert _key() == _key()  # stable
    keys = {
        _key(),
        _key(seed=7),
        _key(seed=None),
        _key(temperature=0.7),
        _key(context_window=8192),
        _key(context_window=4096),
        step_key("step2", "fake/fake", MESSAGES, SCHEMA, seed=1, temperature=0.2),
        step_key("step1", "other/model", MESSAGES, SCHEMA, seed=1, temperature=0.2),
        step_key(
            "step1",
            "fake/fake",
            [{"role": "user", "content": "x"}],
            SCHEMA,
            seed=1,
            temperature=0.2,
        ),
        step_key("step1", "fake/fake", MESSAGES, {}, seed=1, temperature=0.2),
    }
    assert len(keys) == 10
    assert _key(context_window=None) == _key()  # no known context: nothing to split by


def test_no_new_key_is_an_old_key_without_the_sampling() -> None:
    old = fingerprint("step1", "fake/fake", MESSAGES, SCHEMA)
    assert old not in {_key(), _key(seed=None), _key(context_window=8192)}


class _Entry(BaseModel):
    x: str


def test_entries_round_trip_and_a_disabled_cache_neither_reads_nor_writes(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / "cache")
    cache.put("step1", _key(), {"x": "a"})
    assert cache.get("step1", _key(), _Entry) == {"x": "a"}
    assert cache.get("step1", _key(seed=7), _Entry) is None
    off = StepCache(tmp_path / "cache", enabled=False)
    assert off.get("step1", _key(), _Entry) is None
    off.put("step1", _key(seed=9), {"x": "b"})
    assert not (tmp_path / "cache" / f"step1-{_key(seed=9)}.json").exists()
