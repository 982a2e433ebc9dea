"""make_client: label parsing, registry dispatch, keys, SDK and local-file checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from panelsynth.errors import ProviderError
from panelsynth.llm import registry
from panelsynth.llm.base import FakeClient, LLMClient
from panelsynth.llm.keys import required_key_env, resolve_api_key
from panelsynth.llm.local import LocalLlamaClient
from panelsynth.llm.registry import (
    PROVIDERS,
    ProviderSpec,
    known_providers,
    make_client,
    parse_label,
    register_provider,
)
from panelsynth.llm.structured import InstructorClient


def test_parse_label_keeps_slashes_in_the_model_part() -> None:
    assert parse_label("local//tmp/models/x.gguf") == ("local", "/tmp/models/x.gguf")
    assert parse_label("Anthropic/claude-sonnet-4-20250514") == (
        "anthropic",
        "claude-sonnet-4-20250514",
    )


@pytest.mark.parametrize("label", ["gpt-5", "/gpt-5", "openai/", ""])
def test_malformed_label_is_a_provider_error(label: str) -> None:
    with pytest.raises(ProviderError, match="provider/model"):
        make_client(label)


def test_unknown_provider_lists_known_ones() -> None:
    with pytest.raises(ProviderError) as err:
        make_client("nosuchai/model-1")
    msg = str(err.value)
    assert "unknown provider 'nosuchai'" in msg
    for name in ("anthropic", "google", "local", "ollama", "openai"):
        assert name in msg
    assert "\n" not in msg


def test_dispatch_goes_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, Any]] = []

    def factory(spec: ProviderSpec, label: str, model: str, settings: Any) -> FakeClient:
        seen.append((spec.name, model, settings))
        return FakeClient(label=label)

    monkeypatch.setitem(PROVIDERS, "dummy", ProviderSpec(name="dummy", factory=factory))
    client = make_client("dummy/some/model", timeout=3.0, reask_retries=4)
    assert isinstance(client, FakeClient)
    assert client.label == "dummy/some/model"
    assert seen[0][0] == "dummy" and seen[0][1] == "some/model"
    assert seen[0][2].timeout == 3.0 and seen[0][2].reask_retries == 4
    assert "dummy" in known_providers()


def test_register_provider_adds_an_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PROVIDERS", dict(PROVIDERS))
    spec = ProviderSpec(name="mine", factory=lambda s, lbl, m, st: FakeClient(label=lbl))
    register_provider(spec)
    assert registry.PROVIDERS["mine"] is spec
    assert isinstance(make_client("mine/x"), FakeClient)


@pytest.mark.parametrize(
    ("label", "env"),
    [
        ("anthropic/claude-sonnet-4-20250514", "ANTHROPIC_API_KEY"),
        ("openai/gpt-5", "OPENAI_API_KEY"),
        ("google/gemini-2.5-pro", "GOOGLE_API_KEY"),
    ],
)
def test_missing_key_names_the_env_var_before_any_work(
    label: str, env: str, no_key_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("no SDK lookup may happen before the key check")

    monkeypatch.setattr(registry, "require_sdk", boom)
    with pytest.raises(ProviderError) as err:
        make_client(label)
    msg = str(err.value)
    assert env in msg and "--api-key" in msg
    assert "\n" not in msg


def test_placeholder_flag_falls_back_to_env(
    monkeypatch: pytest.MonkeyPatch, no_key_env: None
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-the-environment")
    assert resolve_api_key("anthropic", "none") == "from-the-environment"
    assert resolve_api_key("anthropic", "  flag-key-123 ") == "flag-key-123"
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key-456")
    assert resolve_api_key("google", None) == "gemini-key-456"
    assert resolve_api_key("local", None) is None
    assert resolve_api_key("ollama", "-") is None


def test_required_key_env() -> None:
    assert required_key_env("anthropic") == "ANTHROPIC_API_KEY"
    assert required_key_env("openai") == "OPENAI_API_KEY"
    assert required_key_env("google") == "GOOGLE_API_KEY"
    assert required_key_env("local") is None
    assert required_key_env("ollama") is None


def test_missing_sdk_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name.split(".")[0] == "anthropic" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ProviderError) as err:
        make_client("anthropic/claude-sonnet-4-20250514", api_key="some-key-123")
    assert "pip install 'panelsynth[anthropic]'" in str(err.value)


def test_hosted_openai_goes_through_from_provider_without_network() -> None:
    client = make_client("openai/gpt-5", api_key="sk-test-not-a-real-key-000")
    assert isinstance(client, InstructorClient)
    assert isinstance(client, LLMClient)
    assert client.label == "openai/gpt-5"
    assert not client.is_local
    sdk = client._sync_client().client
    assert sdk.max_retries == 0  # Tenacity retries, not the SDK
    assert str(sdk.base_url).startswith("https://api.openai.com")
    assert client.count_tokens("x" * 40) == 10
    assert client.context_window is None


def test_base_url_uses_the_openai_compatible_client(no_key_env: None) -> None:
    client = make_client("vllm/Qwen/Qwen2.5-7B", base_url="http://127.0.0.1:9/v1", timeout=7.0)
    assert isinstance(client, InstructorClient)
    assert client.request_model == "Qwen/Qwen2.5-7B"
    assert client.mode == "json_schema"
    sdk = client._sync_client().client
    assert str(sdk.base_url).rstrip("/") == "http://127.0.0.1:9/v1"
    assert sdk.api_key == "not-needed"
    assert sdk.max_retries == 0 and sdk.timeout == 7.0


def test_base_url_overrides_hosted_provider_and_needs_no_key(no_key_env: None) -> None:
    client = make_client("openai/my-model", base_url="http://127.0.0.1:9/v1", mode="tools")
    assert isinstance(client, InstructorClient)
    assert client.mode == "tools"


def test_pseudo_provider_without_base_url_is_an_error() -> None:
    with pytest.raises(ProviderError, match="--base-url"):
        make_client("vllm/some-model")


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ProviderError, match="json_schema"):
        make_client("openai/m", base_url="http://127.0.0.1:9/v1", mode="telepathy")


def test_local_smollm2_resolves_the_packaged_file_without_loading() -> None:
    client = make_client("local/smollm2")
    assert isinstance(client, LocalLlamaClient)
    assert isinstance(client, LLMClient)
    assert client.is_local
    assert client.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert client.context_window == 8192
    assert client.path.is_file()


def test_local_missing_file_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="not found"):
        make_client(f"local/{tmp_path / 'nope.gguf'}")


def test_local_any_gguf_path_is_accepted(tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    client = make_client(f"local/{model}")
    assert isinstance(client, LocalLlamaClient)
    assert client.path == model.resolve()


def test_tame_sdk_client_turns_off_sdk_retries_and_sets_timeout() -> None:
    class Sdk:
        max_retries = 2
        timeout = 600.0

    sdk = Sdk()
    registry._tame_sdk_client(sdk, 12.5)
    assert sdk.max_retries == 0 and sdk.timeout == 12.5
    registry._tame_sdk_client(None, 1.0)  # clients without an SDK object are left alone


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://localhost:8000/v1", True),
        ("http://127.0.0.1:11434/v1", True),
        ("http://127.5.0.9/v1", True),
        ("http://[::1]:8080/v1", True),
        ("http://LOCALHOST/v1", True),
        ("http://vllm.localhost/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),  # the LAN is not this machine
        ("http://localhost.example.com/v1", False),
        ("not a url", False),
    ],
)
def test_is_loopback(url: str, loopback: bool) -> None:
    from panelsynth.llm.registry import is_loopback

    assert is_loopback(url) is loopback


# ----- where the requests go: the effective base URL, whatever its source ----------------------
@pytest.mark.parametrize(
    ("env_url", "host", "on_this_machine"),
    [
        ("https://llm-gateway.example.org/v1", "llm-gateway.example.org", False),
        ("http://127.0.0.1:8001/v1/", "127.0.0.1", True),
        ("https://api.openai.com/v1", None, False),  # the provider's own API, said explicitly
        (None, None, False),
    ],
)
def test_openai_base_url_from_the_environment_is_the_clients_endpoint(
    monkeypatch: pytest.MonkeyPatch, env_url: str | None, host: str | None, on_this_machine: bool
) -> None:
    if env_url is None:
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", env_url)
    client = make_client("openai/gpt-5", api_key="sk-test-not-a-real-key-000")  # no request
    sdk = client._sync_client().client
    assert str(sdk.base_url).rstrip("/") == (env_url or "https://api.openai.com/v1").rstrip("/")
    assert client.endpoint_host == host
    assert client.on_this_machine is on_this_machine


def test_the_base_url_flag_is_the_endpoint_in_every_mode(
    monkeypatch: pytest.MonkeyPatch, no_key_env: None
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://elsewhere.example.org/v1")  # the flag wins
    for mode in ("auto", "json"):
        client = make_client("openai/m", base_url="http://10.0.0.7:8000/v1", mode=mode)
        assert client.endpoint_host == "10.0.0.7", mode
        assert client.on_this_machine is False


def test_the_privacy_warning_names_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from panelsynth.runner import privacy_warning

    monkeypatch.setenv("OPENAI_BASE_URL", "https://llm-gateway.example.org/v1")
    client = make_client("openai/gpt-5", api_key="sk-test-not-a-real-key-000")
    warning = privacy_warning(client, "real")
    assert warning is not None
    assert "real survey rows are sent to openai/gpt-5 at llm-gateway.example.org as" in warning
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8001/v1")  # stays on this machine
    assert privacy_warning(make_client("openai/gpt-5", api_key="sk-test-000000000"), "real") is None


# ----- Anthropic prompt caching: the shared prefix is marked -----------------------------------
class _RecordingInstructor:
    """Stands in for an Instructor client: records the request, answers one fixed instance."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def create_with_completion(self, **kwargs: Any) -> tuple[Any, Any]:
        from types import SimpleNamespace

        self.requests.append(kwargs)
        value = kwargs["response_model"].model_validate({"name": "x"})
        return value, SimpleNamespace(choices=[SimpleNamespace(finish_reason="stop")])


class _Named(BaseModel):
    name: str


def _prefix_and_request() -> Any:
    from panelsynth.generate import with_request

    prefix = [
        {"role": "system", "content": "You generate."},
        {"role": "user", "content": "CODEBOOK"},
    ]
    return with_request(prefix, "\n\nRequest 3: ...")


@pytest.mark.parametrize("markers", [True, False])
def test_cache_markers_split_the_shared_prefix(markers: bool) -> None:
    fake = _RecordingInstructor()
    client = InstructorClient(
        "anthropic/claude-x", sync_factory=lambda: fake, cache_markers=markers
    )
    messages = _prefix_and_request()
    assert messages.shared_chars == len("CODEBOOK")
    assert client.create(messages, _Named).value == _Named(name="x")
    sent = fake.requests[0]["messages"]
    assert sent[0] == {"role": "system", "content": "You generate."}
    if markers:
        assert sent[1]["content"] == [
            {"type": "text", "text": "CODEBOOK", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "\n\nRequest 3: ..."},
        ]
    else:
        assert sent[1]["content"] == "CODEBOOK\n\nRequest 3: ..."
    # the caller's messages are not changed, and plain lists (steps 1-2) carry no marker
    assert messages[1]["content"] == "CODEBOOK\n\nRequest 3: ..."
    client.create([{"role": "user", "content": "describe"}], _Named)
    assert fake.requests[1]["messages"] == [{"role": "user", "content": "describe"}]


def test_only_anthropic_clients_send_cache_markers(monkeypatch: pytest.MonkeyPatch) -> None:
    import instructor

    monkeypatch.setattr(registry, "require_sdk", lambda spec: None)
    monkeypatch.setattr(instructor, "from_provider", lambda label, **kw: _RecordingInstructor())
    assert make_client("anthropic/claude-x", api_key="k-123456").cache_markers is True
    assert make_client("openai/gpt-x", api_key="k-123456").cache_markers is False
    assert make_client("openai/m", base_url="http://127.0.0.1:9/v1").cache_markers is False


def test_step3_prompts_know_their_shared_prefix() -> None:
    from panelsynth.generate import GenerationPrompt

    prefix = [{"role": "system", "content": "S"}, {"role": "user", "content": "static part"}]
    msgs = GenerationPrompt(prefix, 4).for_batch(7, 10)
    assert msgs.shared_chars == len("static part")
    assert msgs[-1]["content"].startswith("static part\n\nRequest 8:")
    assert prefix[-1]["content"] == "static part"  # the prefix itself is untouched
