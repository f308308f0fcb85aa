"""Kafka security settings: from the environment to the options of every Kafka client."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from revisit_common.settings import ServiceSettings


def test_plaintext_by_default() -> None:
    options = ServiceSettings(kafka_bootstrap="broker:9092").kafka_options()
    assert options == {"bootstrap_servers": "broker:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_over_tls_with_the_password_from_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    for name, value in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SSL_CAFILE": "/etc/revisit/kafka-ca.pem",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "revisit-store",
        "KAFKA_SASL_PASSWORD_FILE": str(secret),
    }.items():
        monkeypatch.setenv(f"REVISIT_{name}", value)
    options = ServiceSettings().kafka_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["ssl_cafile"] == "/etc/revisit/kafka-ca.pem"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == (
        "SCRAM-SHA-512",
        "revisit-store",
    )
    assert options["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(ServiceSettings(kafka_sasl_password="s3cret"))  # type: ignore[arg-type]


def test_sasl_without_a_user_is_a_clear_error() -> None:
    settings = ServiceSettings(kafka_security_protocol="SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="REVISIT_KAFKA_SASL_MECHANISM"):
        settings.kafka_options()


def test_unknown_protocol_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVISIT_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ValidationError, match="SASL_SSL"):
        ServiceSettings()
