"""Settings: read from the environment, validated at start-up, secrets kept out of repr."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from pats_trio.admission import Limits
from pats_trio.config import Settings, SettingsError, load_settings
from pats_trio.hub import Hub

SECRETS = {
    "TWITTER_CONSUMER_KEY": "ck-visible-nowhere",
    "TWITTER_CONSUMER_SECRET": "cs-visible-nowhere",
    "TWITTER_ACCESS_TOKEN": "at-visible-nowhere",
    "TWITTER_ACCESS_TOKEN_SECRET": "ats-visible-nowhere",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*SECRETS, "TWITTER_STREAM_URL", "TWITTER_DELIMITED", "PATS_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_without_credentials_the_emulator_runs() -> None:
    settings = load_settings()
    assert settings.source == "emulator"
    assert settings.credentials is None


def test_credentials_select_twitter_and_never_show_in_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.source == "twitter"
    for text in (repr(settings), str(settings), repr(settings.credentials)):
        assert not any(secret in text for secret in SECRETS.values())


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PATS_PORT=9123\nTWITTER_DELIMITED=length\n")
    settings = load_settings()
    assert (settings.port, settings.twitter_delimited) == (9123, True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PATS_PORT", "70000"),
        ("TWITTER_DELIMITED", "yes"),
        ("TWITTER_STREAM_URL", "ftp://example.com"),
        ("PATS_MAX_CONNECTS_PER_5MIN", "1"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_values_fail_at_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_every_setting_has_one_variable_and_unset_ones_keep_the_tables_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = [spec.metadata["env"] for spec in dataclasses.fields(Settings)]
    assert len(variables) == len(set(variables)), "one variable per setting"
    for name in variables:
        monkeypatch.delenv(name, raising=False)
    assert load_settings() == Settings()


def test_a_variable_set_to_its_default_gives_the_same_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATS_CLIENT_QUEUE_SIZE", str(Settings().client_queue_size))
    monkeypatch.setenv("PATS_BLUESKY_HOSTS", ",".join(Settings().bluesky_hosts) + ",")
    assert load_settings() == Settings()


def test_the_constructors_defaults_are_the_settings_defaults() -> None:
    settings = Settings()
    assert dataclasses.asdict(Limits()) == {
        name: getattr(settings, name) for name in dataclasses.asdict(Limits())
    }
    hub = inspect.signature(Hub).parameters
    assert (
        hub["queue_size"].default,
        hub["slow_client_seconds"].default,
        hub["history_size"].default,
    ) == (settings.client_queue_size, settings.slow_client_seconds, settings.history_size)


def test_a_value_that_cannot_be_read_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATS_PORT", "abc")
    with pytest.raises(SettingsError, match="PATS_PORT must be a whole number, got 'abc'"):
        load_settings()
