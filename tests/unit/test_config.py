"""Settings: environment, .env, defaults, validation and secret handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider_events import ConfigError, load_settings
from provider_events.settings import CONSUMER_SETTINGS, ENV_VARS, Secret, Settings, redact_dsn


def test_defaults_follow_the_guide(tmp_path: Path) -> None:
    """With nothing configured the broker is the guide's localhost:29092."""
    s = load_settings(environ={"HOME": str(tmp_path)}, dotenv=tmp_path / "none")
    assert s.kafka_bootstrap_servers == "localhost:29092"
    assert s.sources["kafka_bootstrap_servers"] == "default"
    assert (s.namespace, s.source, s.tenant_id) == ("omninode", "omniclaude", "default")
    assert s.delivery_timeout <= 5


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    """A .env file supplies values; a real environment variable overrides it."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        '# comment\nexport KAFKA_BOOTSTRAP_SERVERS="broker:9092"\nPROVIDER_EVENTS_TENANT_ID=acme # x\n'
    )
    s = load_settings(environ={}, dotenv=env_file)
    assert s.kafka_bootstrap_servers == "broker:9092"
    assert s.sources["kafka_bootstrap_servers"].startswith(".env")
    assert s.tenant_id == "acme"
    s2 = load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": "other:1"}, dotenv=env_file)
    assert s2.kafka_bootstrap_servers == "other:1"
    assert s2.sources["kafka_bootstrap_servers"] == "environment (KAFKA_BOOTSTRAP_SERVERS)"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "nohost"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_BOOTSTRAP_SERVERS": ""}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"PROVIDER_EVENTS_DELIVERY_TIMEOUT": "soon"}, "PROVIDER_EVENTS_DELIVERY_TIMEOUT"),
        ({"PROVIDER_EVENTS_DELIVERY_TIMEOUT": "0"}, "PROVIDER_EVENTS_DELIVERY_TIMEOUT"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
            "KAFKA_SASL_USERNAME",
        ),
        ({"KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "KAFKA_SSL_CA_LOCATION"),
        ({"PROVIDER_EVENTS_OUTBOX_MAX_EVENTS": "-1"}, "PROVIDER_EVENTS_OUTBOX_MAX_EVENTS"),
        ({"PROVIDER_EVENTS_SINK": "s3"}, "PROVIDER_EVENTS_SINK"),
    ],
)
def test_misconfiguration_names_the_setting(
    tmp_path: Path, env: dict[str, str], setting: str
) -> None:
    """Every malformed setting raises ConfigError whose one-line message starts with its name."""
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env, dotenv=tmp_path / "none")
    assert info.value.setting == setting
    assert str(info.value).startswith(setting) and "\n" not in str(info.value)


def test_secrets_never_show(tmp_path: Path) -> None:
    """SASL and DSN passwords are hidden in repr/str of settings and in redacted DSNs."""
    s = load_settings(
        environ={
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD": "hunter2-sasl",
            "DATABASE_URL": "postgresql://u:hunter2-db@h:5432/d",
        },
        dotenv=tmp_path / "none",
    )
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert s.kafka_sasl_password.reveal() == "hunter2-sasl"
    assert redact_dsn("postgresql://u:hunter2-db@h:5432/d") == "postgresql://u:********@h:5432/d"
    assert "hunter2" not in redact_dsn("host=h password=hunter2 user=u")
    assert repr(Secret("x")) == "Secret('********')"


def test_consumer_settings_defaults_environment_and_dotenv(tmp_path: Path) -> None:
    """The consumer's settings: the same variables and defaults `consume` always had, .env too."""
    s = load_settings(environ={}, dotenv=tmp_path / "none")
    assert (s.consumer_group, s.consumer_instance_id) == ("provider-events-consumer", None)
    assert (s.consumer_batch_size, s.consumer_batch_timeout) == (5000, 1.0)
    assert (s.metrics_port, s.metrics_addr, s.dlq_topic) == (9464, "127.0.0.1", None)
    env_file = tmp_path / ".env"
    env_file.write_text(
        "PROVIDER_EVENTS_CONSUMER_GROUP=from-dotenv\nPROVIDER_EVENTS_BATCH_SIZE=20_000\n"
        "PROVIDER_EVENTS_METRICS_PORT=off\nPROVIDER_EVENTS_DLQ_TOPIC=dead.letters\n"
    )
    environ = {
        "PROVIDER_EVENTS_CONSUMER_GROUP": "from-env",
        "PROVIDER_EVENTS_BATCH_TIMEOUT": "0.25",
        "PROVIDER_EVENTS_METRICS_ADDR": "0.0.0.0",
        "PROVIDER_EVENTS_CONSUMER_INSTANCE_ID": "pod-1",
        "PROVIDER_EVENTS_METRICS_PORT": " ",  # blank: not set, as `consume` always read it
    }
    s = load_settings(environ=environ, dotenv=env_file)
    assert s.consumer_group == "from-env"
    assert s.sources["consumer_group"] == "environment (PROVIDER_EVENTS_CONSUMER_GROUP)"
    assert (s.consumer_batch_size, s.consumer_batch_timeout) == (20_000, 0.25)
    assert s.sources["consumer_batch_size"].startswith(".env")
    assert (s.metrics_port, s.metrics_addr) == (None, "0.0.0.0")
    assert (s.dlq_topic, s.consumer_instance_id) == ("dead.letters", "pod-1")
    any_port = load_settings(environ={"PROVIDER_EVENTS_METRICS_PORT": "0"}, dotenv=tmp_path / "x")
    assert any_port.metrics_port == 0


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("PROVIDER_EVENTS_BATCH_SIZE", "many"),
        ("PROVIDER_EVENTS_BATCH_SIZE", "0"),
        ("PROVIDER_EVENTS_BATCH_TIMEOUT", "soon"),
        ("PROVIDER_EVENTS_BATCH_TIMEOUT", "0.001"),
        ("PROVIDER_EVENTS_BATCH_TIMEOUT", "inf"),
        ("PROVIDER_EVENTS_METRICS_PORT", "http"),
        ("PROVIDER_EVENTS_METRICS_PORT", "70000"),
    ],
)
def test_malformed_consumer_settings_name_their_variable(
    tmp_path: Path, var: str, raw: str
) -> None:
    """A malformed consumer setting is a one-line ConfigError naming its variable, raised where
    the consumer's settings are required, not when every other command loads its settings."""
    settings = load_settings(environ={var: raw}, dotenv=tmp_path / "none")
    name = next(n for n in CONSUMER_SETTINGS if ENV_VARS[n] == var)
    assert getattr(settings, name) == getattr(Settings(), name)  # the default stands in
    assert "malformed" in settings.sources[name]
    settings.require("kafka_bootstrap_servers")  # nothing wrong with the others
    with pytest.raises(ConfigError) as info:
        settings.require(*CONSUMER_SETTINGS)
    assert info.value.setting == var and "\n" not in str(info.value)
    flag_value = getattr(Settings(), name)
    replaced = settings.with_overrides(**{name: flag_value})  # a flag replaces the bad value
    replaced.require(*CONSUMER_SETTINGS)
    again = load_settings(environ={var: raw}, dotenv=tmp_path / "none", **{name: flag_value})
    again.require(*CONSUMER_SETTINGS)
