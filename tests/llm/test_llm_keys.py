"""Key hygiene: a sentinel key never shows in errors, logs or reprs."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel

from panelsynth.errors import ProviderError
from panelsynth.llm.base import LLMCallError
from panelsynth.llm.keys import install_log_scrubber, register_secret, scrub
from panelsynth.llm.registry import ClientSettings, make_client
from panelsynth.llm.retry import RetryPolicy
from tests.servers.openai_stub import Fault, OpenAIStub

SENTINEL_KEY = "sk-SENTINEL-0123456789abcdefXYZ"


class Answer(BaseModel):
    """A tiny response model."""

    text: str


def test_scrub_masks_registered_secrets_and_key_shapes() -> None:
    register_secret("plain-secret-value")
    assert scrub("token=plain-secret-value;") == "token=***;"
    assert scrub("Incorrect API key provided: sk-abcdefghijklmnop1234") == (
        "Incorrect API key provided: ***"
    )
    assert scrub("nothing to hide") == "nothing to hide"
    register_secret("abc")  # too short to register: would mask ordinary words
    assert scrub("abcdef") == "abcdef"


def test_log_filter_scrubs_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    register_secret(SENTINEL_KEY)
    install_log_scrubber()
    log = logging.getLogger("panelsynth")
    with caplog.at_level(logging.DEBUG):
        log.warning("key is %s", SENTINEL_KEY)
        try:
            raise RuntimeError(f"boom {SENTINEL_KEY}")
        except RuntimeError:
            log.exception("failed")
        logging.getLogger("instructor.v2.retry").error("API call failed: %s", SENTINEL_KEY)
    assert "key is ***" in caplog.text
    assert "boom ***" in caplog.text
    assert SENTINEL_KEY not in caplog.text


def test_settings_repr_hides_the_key() -> None:
    settings = ClientSettings(api_key=SENTINEL_KEY)
    assert SENTINEL_KEY not in repr(settings)
    assert "***" in repr(settings)


def test_sentinel_key_never_in_errors_logs_or_reprs(
    caplog: pytest.LogCaptureFixture, fast_policy: RetryPolicy
) -> None:
    echo = f"Incorrect API key provided: {SENTINEL_KEY}. You can find your key at ..."
    with OpenAIStub() as stub, caplog.at_level(logging.DEBUG):
        client = make_client(
            "openai/stub-model",
            api_key=SENTINEL_KEY,
            base_url=stub.base_url,
            retry_policy=fast_policy,
        )
        stub.script(Fault("auth", message=echo))
        with pytest.raises(LLMCallError) as err:
            client.create([{"role": "user", "content": "hi"}], Answer)
        # the key did reach the server (that is its purpose) ...
        assert stub.requests[0].headers["authorization"] == f"Bearer {SENTINEL_KEY}"
        # ... a server echoing it in a retryable error is scrubbed as well
        stub.script(Fault("server_error", message=echo), Fault("server_error", message=echo))
        stub.script(Fault("server_error", message=echo), Fault("server_error", message=echo))
        with pytest.raises(LLMCallError) as err2:
            client.create([{"role": "user", "content": "hi"}], Answer)
    assert err.value.kind == "auth"
    assert err2.value.kind == "server_error"
    for e in (err.value, err2.value):
        assert SENTINEL_KEY not in str(e)
        assert SENTINEL_KEY not in repr(e)
        cause = e.__cause__
        while cause is not None:
            assert SENTINEL_KEY not in str(cause)
            cause = cause.__cause__
    assert "Incorrect API key provided: ***" in str(err.value)
    assert SENTINEL_KEY not in repr(client)
    assert SENTINEL_KEY not in caplog.text
    assert "***" in caplog.text  # the echoed key was logged, masked


def test_missing_key_error_contains_no_key_material(no_key_env: None) -> None:
    with pytest.raises(ProviderError) as err:
        make_client("anthropic/claude-sonnet-4-20250514", api_key="none")
    assert str(err.value).startswith("no API key for provider 'anthropic': set ANTHROPIC_API_KEY")
