"""Schema-fixed panels (local decoders): every carried band becomes one exact value, drawn from
the real panel (a decoder given a range writes its floor)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_carry import ID, WAVES, _draw, _frames, _real_for_anchors, _specs, _specs_by_wave

from panelsynth.calibrate import Band
from panelsynth.panel.anchors import draw_first_wave_anchors
from panelsynth.panel.board import AnswerBoard
from panelsynth.panel.carry import Carried, CarryRules, PanelCarry, estimate_carry
from panelsynth.panel.exact import MAX_CHANGES, capped, convolve
from panelsynth.panel.strategy import PanelPrompt, Requested, panel_row_model
from panelsynth.pydantic_models.rows import RowSpec, build_row_model


@pytest.fixture(scope="module")
def rules():
    return estimate_carry(_frames(), _specs_by_wave(), WAVES, WAVES, id_column=ID)


def test_shift_rules_keep_the_real_distribution_of_changes(rules) -> None:
    age = rules.steps[0]["age"]
    changes = dict(age.changes)
    assert set(changes) == {0.0, 1.0} and abs(changes[1.0] - 0.5) < 0.08  # ~half a year older
    two = rules.between("1", "3")["age"]  # composed over two steps: 0, 1 or 2
    assert (two.low, two.high) == (0, 2)
    composed = dict(two.changes)
    assert set(composed) == {0.0, 1.0, 2.0} and abs(sum(composed.values()) - 1) < 1e-9
    assert composed[1.0] > composed[0.0] and composed[1.0] > composed[2.0]
    assert rules.steps[0]["sex"].changes == ()  # fixed items have none
    many = capped([(float(i), 1 / 500) for i in range(500)])
    assert len(many) == MAX_CHANGES and abs(sum(w for _, w in many) - 1) < 1e-9
    assert convolve((), ((0.0, 1.0),)) == ()


def test_schema_fixed_shift_draws_from_the_real_changes_not_the_floor(rules) -> None:
    hosted = PanelCarry(rules, "1")
    local = hosted.schema_fixed(None, "cluster", seed=11)
    prev = {"sex": 2, "age": 40, "educ": 3}
    ages = []
    for k in range(600):
        rid = f"S{k:05d}"
        band = dict(hosted.row_profile(rid, "2", 1, prev, "1").anchors)["age"]
        assert band == Band(40, 41, integer=True)  # hosted: the band, as before
        p = local.row_profile(rid, "2", 1, prev, "1")
        assert p == local.row_profile(rid, "2", 1, prev, "1")  # seeded per respondent
        a = dict(p.anchors)
        assert a["sex"] == 2 and a["educ"] == 3 and isinstance(a["age"], int)
        ages.append(a["age"])
    share = np.mean(np.array(ages) == 41)
    real = dict(rules.steps[0]["age"].changes)[1.0]
    assert set(ages) == {40, 41} and abs(share - real) < 0.08  # not every one on 40
    # at the bound the band is one value
    assert dict(local.row_profile("S1", "2", 1, {**prev, "age": 90}, "1").anchors)["age"] == 90


def test_checkpoint_keys_change_with_the_exact_draws(rules) -> None:
    hosted = PanelCarry(rules, "1")
    a = hosted.schema_fixed(None, "cluster", seed=11)
    b = hosted.schema_fixed(None, "cluster", seed=12)
    key = lambda c: c.request_key("S00001", "2", "1")  # noqa: E731
    assert key(hosted) == PanelCarry(rules, "1").request_key("S00001", "2", "1")
    assert "+0..+1" in json.loads(key(hosted))[0]["age"]
    assert len({key(hosted), key(a), key(b)}) == 3
    other = estimate_carry(_frames(seed=1), _specs_by_wave(), WAVES, WAVES, id_column=ID)
    assert other.steps[0]["age"].changes != rules.steps[0]["age"].changes
    assert key(PanelCarry(other, "1").schema_fixed(None, "cluster", 11)) != key(a)
    assert "exact_values" in a.to_json() and "exact_values" not in hosted.to_json()


def test_schema_fixed_first_wave_anchors_are_real_values_in_the_band() -> None:
    real, specs = _real_for_anchors(), _specs(region=False)
    draw = _draw(1500)
    kw = {"anchors": None, "demographics": ["age", "sex"], "cluster_column": "cluster"}
    anchors = draw_first_wave_anchors(draw, real, specs, seed=7, **kw)
    rules = CarryRules(("1", "2"), ({},), {("1", "2"): {}})
    hosted = PanelCarry(rules, "1", anchors=anchors)
    local = hosted.schema_fixed(real, "cluster", seed=7)
    floors, ages = [], []
    for rid, first in anchors.items():
        band = dict(first.anchors)["age"]
        assert hosted.row_profile(rid, "1", first.cluster, None, None) == first
        p = local.row_profile(rid, "1", first.cluster, None, None)
        value = dict(p.anchors)["age"]
        assert band.contains(value) and dict(p.anchors)["sex"] == dict(first.anchors)["sex"]
        sub = real.loc[real["cluster"] == first.cluster, "age"]
        assert value in set(sub)
        floors.append(value == band.low)
        ages.append(value)
        assert json.loads(local.request_key(rid, "1", None))[0]["age"] == value
    lows = {dict(f.anchors)["age"].low for f in anchors.values()}
    real_floor = float(real["age"].isin(lows).mean())
    assert abs(np.mean(floors) - real_floor) < 0.05  # not a comb of band floors (1.0)
    assert len(set(ages)) > 30


def test_the_local_schema_fixes_the_exact_carried_value() -> None:
    specs = [
        RowSpec("sex", "a binary", codes=(1, 2)),
        RowSpec("age", "a continuous", low=18, high=90, integer=True),
        RowSpec("q1", "an ordinal", codes=(1, 2, 3)),
        RowSpec("cluster", "cluster", codes=(1, 2)),
    ]
    row_model = panel_row_model(build_row_model(specs), ID)
    age = Carried("shift", 0, 1, integer=True, minimum=18, maximum=90, changes=((1.0, 1.0),))
    rules = CarryRules(("1", "2"), ({},), {("1", "2"): {"age": age}})
    board = AnswerBoard()
    board.publish("1", "S00001", {"sex": 2, "age": 40, "q1": 3})
    prompt = PanelPrompt(
        prefix=[{"role": "user", "content": "prefix"}],
        n_examples_used=0,
        requests=[Requested("S00001", 1, None, (("1", 1), ("2", 1)), "1")],
        n_outputs=1,
        wave="2",
        id_column=ID,
        board=board,
        carry=PanelCarry(rules, "1").schema_fixed(None, "cluster", seed=3),
        fixed_row_model=row_model,
        shared_row_model=row_model,
    )
    schema = prompt.response_model(0, row_model).model_json_schema()
    assert schema["properties"]["respondent_1"]["properties"]["age"] == {"const": 41}
    assert "keeps: age 41" in prompt.text(0)
    kept, errors, _ = prompt.check_rows(0, [{ID: "S00001", "cluster": 1, "sex": 2, "age": 41}])
    assert not errors and kept[0]["age"] == 41 and prompt.carried_fixes == 0


def test_a_rule_without_known_changes_spreads_over_the_band() -> None:
    age = Carried("shift", 0, 2, integer=True, minimum=18, maximum=90)
    got = {age.exact(40, u) for u in np.linspace(0, 0.999, 30)}
    assert got == {40, 41, 42}
    income = Carried("shift", -10, 10, integer=False)
    assert income.exact(100.0, 0.5) == 100
    assert income.exact(None, 0.5) is None and Carried("fixed").exact(3, 0.2) == 3
    assert age.exact(90, 0.9) == 90
