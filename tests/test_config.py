"""``panelsynth.toml`` (SPEC §6): defaults, one line per error, bad syntax, template, round trip."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from panelsynth.config import (
    DEFAULT_MISSING_CODES,
    PanelsynthConfig,
    load_config,
    parse_config,
)
from panelsynth.errors import ConfigError, PanelsynthError


def _template() -> str:
    return resources.files("panelsynth").joinpath("templates/panelsynth.toml").read_text("utf-8")


def _uncomment(text: str) -> str:
    """Turn the template's commented example lines (``# key = ...``, ``# [table]``) into TOML."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^#\s?(\[.*|[A-Za-z_][\w.]*\s*=.*|)$", line)
        out.append(m.group(1) if m else line)
    return "\n".join(out) + "\n"


def test_defaults_match_the_seed() -> None:
    cfg = load_config(None)
    assert cfg == PanelsynthConfig()
    g = cfg.generation
    # rows per call and calls per wave depend on the model (pipeline.resolve_settings)
    assert (g.mode, g.n_outputs, g.n_batches, g.seed, g.n_examples) == (
        "dense",
        None,
        None,
        42,
        None,
    )
    assert cfg.study.cluster_column == "cluster"
    assert cfg.study.prev_cluster_column == "prev_cluster"
    assert cfg.study.waves == []
    assert cfg.clustering.k == 2 and cfg.clustering.method == "lca"
    assert {-99, -98, "Refused", "Don't know"} <= set(cfg.study.missing_codes)
    assert cfg.study.missing_codes == DEFAULT_MISSING_CODES
    assert cfg.study.missing_codes is not DEFAULT_MISSING_CODES  # no shared mutable default
    assert cfg.models == [] and cfg.prices == {}


def test_missing_and_empty_files_give_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "panelsynth.toml") == PanelsynthConfig()
    empty = tmp_path / "panelsynth.toml"
    empty.write_text("")
    assert load_config(empty) == PanelsynthConfig()


def test_every_field_has_a_description() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            ann = field.annotation
            for sub in getattr(ann, "__args__", ()) + (ann,):
                if isinstance(sub, type) and hasattr(sub, "model_fields"):
                    missing += walk(sub)
        return missing

    assert walk(PanelsynthConfig) == []


def test_unknown_key_and_out_of_range_value_give_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "panelsynth.toml"
    path.write_text('[study]\nnmae = "typo"\n\n[generation]\nn_outputs = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert isinstance(err, PanelsynthError) and err.exit_code == 2
    lines = str(err).splitlines()
    assert lines == [
        "panelsynth.toml: study.nmae: unknown key — remove it or check its spelling",
        "panelsynth.toml: generation.n_outputs: Input should be greater than or equal to 1",
    ]


@pytest.mark.parametrize(
    ("toml", "path", "fragment"),
    [
        ("[generation]\nn_batches = -1\n", "generation.n_batches", "greater than or equal to 1"),
        ("[generation]\ntemperature = 2.5\n", "generation.temperature", "less than or equal to 2"),
        ('[generation]\nmode = "sparse"\n', "generation.mode", "'dense' or 'full'"),
        ("[prepare]\ndensity_threshold = 1.5\n", "prepare.density_threshold", "less than or equal"),
        ('[prepare]\nraw_pattern = "wave.csv"\n', "prepare.raw_pattern", "pattern"),
        ("[clustering]\nk = 0\n", "clustering.k", "greater than or equal to 1"),
        ('[clustering]\nmethod = "dbscan"\n', "clustering.method", "'lca', 'kmodes' or 'kmeans'"),
        ('[study]\nwaves = ["1", "../2"]\n', "study.waves.1", "pattern"),
        ('[[models]]\nlabel = "gpt-5"\ndir = "gpt"\n', "models.0.label", "pattern"),
        ('[[models]]\nlabel = "openai/gpt-5"\n', "models.0.dir", "Field required"),
        (
            '[prices."openai/gpt-5"]\ninput_per_mtok = -1\noutput_per_mtok = 1\n',
            "prices.openai/gpt-5.input_per_mtok",
            "greater than or equal to 0",
        ),
        ("unknown_section = 1\n", "unknown_section", "unknown key"),
        ("[study]\nmissing_codes = [-99, true]\n", "study.missing_codes", "not a missing code"),
        ("[generation]\nn_outputs = 10\nn_output = 10\n", "generation.n_output", "unknown key"),
    ],
)
def test_each_bad_value_names_its_path(tmp_path: Path, toml: str, path: str, fragment: str) -> None:
    p = tmp_path / "panelsynth.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"panelsynth.toml: {path}: ")
    assert fragment in lines[0]


def test_many_errors_are_all_reported(tmp_path: Path) -> None:
    p = tmp_path / "panelsynth.toml"
    p.write_text(
        "[generation]\nn_outputs = 0\nn_batches = 0\ntemperature = 9\nseed = -1\n"
        "[clustering]\nk = 99\nfoo = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(p)
    paths = [line.split(": ")[1] for line in str(info.value).splitlines()]
    assert sorted(paths) == sorted(
        [
            "generation.n_outputs",
            "generation.n_batches",
            "generation.temperature",
            "generation.seed",
            "clustering.k",
            "clustering.foo",
        ]
    )


def test_bad_toml_syntax_is_one_line_naming_the_file(tmp_path: Path) -> None:
    p = tmp_path / "panelsynth.toml"
    p.write_text('[generation]\nn_outputs = \n[study\nname = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("panelsynth.toml: not valid TOML (")
    assert "line 2" in msg
    assert msg.endswith("fix the syntax")


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "panelsynth.toml"
    p.write_bytes('[study]\nname = "Étude"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^panelsynth.toml: not valid TOML"):
        load_config(p)


def test_bom_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "panelsynth.toml"
    p.write_bytes('[study]\nname = "Étude"\n'.encode("utf-8-sig"))
    assert load_config(p).study.name == "Étude"


FULL = """
[study]
name = "FluPaths"
waves = ["1", 2, "8a", "8b", "14"]
id_column = "pid"
cluster_column = "cl"
prev_cluster_column = "prev_cl"
outcome = "already_vaccinated"
missing_codes = [-99, -98, -9.5, "Refused", "Don't know"]

[prepare]
raw_dir = "raw"
raw_pattern = "FluPaths_w{W}.sav"
include = ["vaccimportant"]
exclude = ["comments"]
demographics = ["age", "sex", "income"]
density_threshold = 0.7
n_dense_items = 4

[clustering]
k = 3
method = "kmodes"
orientation_item = "vaccimportant"
orientation_higher_is_positive = false
seed = 7
n_init = 10

[generation]
mode = "full"
n_examples = 30
n_outputs = 20
n_batches = 35
seed = 1
max_attempts_factor = 2.5
concurrency = 16
requests_per_minute = 50
tokens_per_minute = 40000
temperature = 0.2
max_tokens = 4096
max_retries = 3
timeout = 60

[[models]]
label = "anthropic/claude-sonnet-4-20250514"
dir = "claude-sonnet-4"
api_key_env = "MY_ANTHROPIC_KEY"

[[models]]
label = "openai/llama-3.1-8b"
dir = "llama8b"
base_url = "http://127.0.0.1:8000/v1"

[prices."anthropic/claude-sonnet-4-20250514"]
input_per_mtok = 3.0
output_per_mtok = 15.0
"""


def test_full_config_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "panelsynth.toml"
    p.write_text(FULL)
    cfg = load_config(p)
    assert cfg.study.waves == ["1", "2", "8a", "8b", "14"]  # wave ids become strings
    assert cfg.study.missing_codes == [-99, -98, -9.5, "Refused", "Don't know"]
    assert cfg.prepare.raw_pattern == "FluPaths_w{W}.sav"
    assert cfg.clustering.k == 3 and cfg.clustering.orientation_higher_is_positive is False
    g = cfg.generation
    assert (g.mode, g.n_examples, g.n_outputs, g.n_batches, g.concurrency) == (
        "full",
        30,
        20,
        35,
        16,
    )
    assert g.requests_per_minute == 50 and g.timeout == 60
    assert cfg.model_dir_for("anthropic/claude-sonnet-4-20250514") == "claude-sonnet-4"
    assert cfg.model_dir_for("openai/gpt-5") is None
    entry = cfg.model_entry("openai/llama-3.1-8b")
    assert entry is not None and entry.base_url == "http://127.0.0.1:8000/v1"
    assert cfg.prices["anthropic/claude-sonnet-4-20250514"].output_per_mtok == 15.0
    # everything survives a dump and re-validation
    again = parse_config(cfg.model_dump())
    assert again == cfg
    # every key of the file is reflected (nothing silently dropped)
    raw = tomllib.loads(FULL)
    dumped = cfg.model_dump()
    for section, values in raw.items():
        if isinstance(values, dict) and section != "prices":
            assert set(values) <= set(dumped[section]), section


def test_assignment_is_validated() -> None:
    cfg = PanelsynthConfig()
    with pytest.raises(ValueError):
        cfg.generation.n_outputs = 0


def test_commented_template_parses_to_defaults() -> None:
    text = _template()
    assert load_config(None) == parse_config(tomllib.loads(text))


def test_uncommented_template_examples_validate() -> None:
    text = _uncomment(_template())
    # the uncommenting really happened: every example key is now live
    data = tomllib.loads(text)
    assert data["generation"]["n_batches"] == 35
    assert data["study"]["waves"] == ["1", "2", "3"]
    assert len(data["models"]) == 2
    cfg = parse_config(data)
    assert cfg.clustering.orientation_item == "vaccimportant"
    assert cfg.model_dir_for("local/smollm2") == "smollm2"
    assert cfg.prices["anthropic/claude-sonnet-4-20250514"].input_per_mtok == 3.0
    assert cfg.generation.concurrency == 8


def test_uncommented_template_through_the_loader(tmp_path: Path) -> None:
    p = tmp_path / "panelsynth.toml"
    p.write_text(_uncomment(_template()))
    cfg = load_config(p)
    assert cfg.study.outcome == "already_vaccinated"
    assert cfg.study.name == "My panel"
