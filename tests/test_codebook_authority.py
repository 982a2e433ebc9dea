"""The codebook is the authority: step 3 always carries its questions and labels (issue 12, 8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from battery import battery_items, write_battery_workspace
from fakes import fake_answer

from panelsynth.config import load_config
from panelsynth.llm.base import FakeClient
from panelsynth.metadata import codebook_check, format_wave_description
from panelsynth.pydantic_models import FeatureDescription, WaveDescription
from panelsynth.run.wave import RunOptions, load_wave_for_run, run_wave
from panelsynth.workspace import Workspace

MADE_UP = "Adequate description of the survey wave"


def paraphrasing_wrongly(messages: list[dict], model: type) -> Any:
    """Step 2 as the embedded model answered it: one made-up meaning for every item, and a
    party item whose values name one party only."""
    out = fake_answer(messages, model)
    if model.__name__ == "FormattedMetadata":
        for v, f in out["features"].items():
            f["meaning"] = MADE_UP
            f["values"] = "1 = Green; 2 = Green" if v == "party" else "codes"
    return out


def _step3_prompts(client: FakeClient) -> list[str]:
    return [
        c["messages"][-1]["content"]
        for c in client.calls
        if c["response_model"].__name__ == "SyntheticRespondents"
    ]


def test_step3_prompt_carries_every_codebook_question_despite_a_wrong_paraphrase(
    tmp_path: Path,
) -> None:
    ws = write_battery_workspace(tmp_path / "ws")
    client = FakeClient(default=paraphrasing_wrongly)
    res = run_wave(ws, "1", client, "fake", RunOptions(mode="full", n_outputs=2, n_batches=2,
                                                        n_examples=3))
    prompts = _step3_prompts(client)
    assert prompts
    meta = json.loads(Workspace(ws).metadata_json("1").read_text())
    for text in prompts:
        for v, (question, responses) in battery_items().items():
            assert question in text, v
            line = next(x for x in text.splitlines() if x.startswith(f"- {v} ("))
            assert question in line
            for code, label in responses.items():
                assert f"{code} = {label}" in line
        for v in ("age", "sex"):
            assert meta[v]["question"] in text
        assert MADE_UP not in text  # the made-up gloss shared by every item is left out
    m = json.loads(res.manifest.read_text())
    assert any("same meaning" in n for n in m["codebook_check"])
    assert any("party" in n and "contradict" in n for n in m["codebook_check"])
    assert any("disagrees with the codebook" in w for w in m["warnings"])
    log = Workspace(ws).gen_metadata_log("fake", "1").read_text()
    assert "Checked against the codebook" in log and "party" in log


def test_a_faithful_gloss_is_kept_and_one_repeating_the_question_is_not_sent_twice(
    tiny_workspace: Path,
) -> None:
    cfg = load_config(Workspace(tiny_workspace).config_path)
    wd = load_wave_for_run(Workspace(tiny_workspace), "2", cfg, "dense")
    feats = [
        FeatureDescription(name="vaccimportant", meaning="Perceived importance of vaccination",
                           values="1 = level 1 ... 5 = level 5"),
        FeatureDescription(name="vaccsafe", meaning="How safe are vaccines", values="1-5"),
    ] + [
        FeatureDescription(name=v, meaning=f"The respondent's {v}", values="")
        for v in wd.variables if v not in ("vaccimportant", "vaccsafe")
    ]
    desc = WaveDescription(description="A flu panel.", target_variable="vaccimportant",
                           features=feats)
    text = format_wave_description(desc, wd)
    assert ("- vaccimportant (an ordinal): How important is it to get vaccinated? "
            "[Perceived importance of vaccination] Values: 1 = level 1;") in text
    assert "- vaccsafe (an ordinal): How safe are vaccines? Values:" in text
    notes, unreliable = codebook_check(desc, wd)
    assert notes == [] and unreliable == set()


def test_codebook_check_finds_missing_extra_and_contradicting_entries(
    tiny_workspace: Path,
) -> None:
    cfg = load_config(Workspace(tiny_workspace).config_path)
    wd = load_wave_for_run(Workspace(tiny_workspace), "2", cfg, "dense")
    feats = [
        FeatureDescription(name="vaccimportant", meaning="Importance of vaccination",
                           values="1 = level 1; 7 = level 7"),
        FeatureDescription(name="vaccsafety", meaning="Vaccine safety", values=""),
        FeatureDescription(name="sex", meaning="Sex", values="1 = Female; 2 = Male"),
        FeatureDescription(name="age", meaning="Favourite colour", values=""),
    ]
    desc = WaveDescription(description="x", target_variable="vaccimportant", features=feats)
    notes, unreliable = codebook_check(desc, wd)
    text = "\n".join(notes)
    assert "no entry for vaccsafe" in text and "worryflu" in text
    assert "codebook does not have: vaccsafety" in text
    assert "code 7 is not in the codebook" in text
    assert "1 = 'Female', the codebook says 'Male'" in text
    assert "age" in text  # a meaning unrelated to the question
    assert {"vaccimportant", "sex", "age"} <= unreliable
    prompt = format_wave_description(desc, wd)
    assert "Female" not in prompt.split("- sex", 1)[1].split("Values:", 1)[0]
    assert "Favourite colour" not in prompt
    for v in wd.variables:  # even without an entry, every variable is in the prompt
        assert f"- {v} (" in prompt
