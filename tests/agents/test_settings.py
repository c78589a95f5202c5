"""Settings: security passes through to every client, secrets stay out of logs."""

from __future__ import annotations

import pytest

from agents.app import kafka_credentials
from agents.settings import Settings, SettingsError


def test_kafka_security_reaches_both_client_libraries():
    env = {
        "TASTESTREAM_KAFKA_URL": "kafka://broker:9093",
        "TASTESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "TASTESTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "TASTESTREAM_KAFKA_SASL_USERNAME": "svc",
        "TASTESTREAM_KAFKA_SASL_PASSWORD": "hunter2",
    }
    settings = Settings.load(env=env, config_path=None)
    config = settings.kafka_client_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert (config["sasl.username"], config["sasl.password"]) == ("svc", "hunter2")
    credentials = kafka_credentials(settings)
    assert credentials.username == "svc" and credentials.ssl_context is not None
    assert kafka_credentials(Settings()) is None


def test_secrets_never_appear_in_the_settings_repr():
    settings = Settings(api_token="t0ken", kafka_sasl_password="hunter2")
    assert "t0ken" not in repr(settings) and "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("KAFKA_SECURITY_PROTOCOL", "TLS", "kafka_security_protocol must be one of"),
        ("STATE_STORE", "sqlite", "state_store must be memory or rocksdb"),
        ("KAFKA_SASL_MECHANISM", "PLAIN", "needs kafka_sasl_username"),
    ],
)
def test_bad_security_and_store_settings_say_which_key(key, value, words):
    with pytest.raises(SettingsError, match=words):
        Settings.load(env={f"TASTESTREAM_{key}": value}, config_path=None)
