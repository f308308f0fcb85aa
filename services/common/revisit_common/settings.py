"""Settings shared by every service, read from `REVISIT_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every service has. Environment variables:

    - ``REVISIT_KAFKA_BOOTSTRAP``: Kafka bootstrap servers, ``host:port[,host:port]``.
    - ``REVISIT_METRICS_HOST`` / ``REVISIT_METRICS_PORT``: where ``/metrics`` and
      ``/healthz`` are served (port 0 picks a free port).
    - ``REVISIT_PAYLOAD_URL``: where the payload store is: a local path, ``file://path``
      or ``s3://bucket/prefix`` (any S3-compatible store); empty: ``REVISIT_PAYLOAD_DIR``.
    - ``REVISIT_PAYLOAD_DIR``: root of the local payload store (when no URL is given).
    - ``REVISIT_PAYLOAD_S3_ENDPOINT_URL``: the S3 endpoint (MinIO, Ceph, ...; empty: AWS).
      Credentials come from the standard ``AWS_ACCESS_KEY_ID`` /
      ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``)
      environment variables, never from settings.
    - ``REVISIT_PAYLOAD_RETENTION_DAYS``: payloads older than this are deleted, hourly,
      by the inference service, their last reader (0: kept forever).
    - ``REVISIT_MAX_POLL_RECORDS``: messages handled between two offset commits.
    - ``REVISIT_MAX_EVENT_BYTES``: the largest event a service sends (1,000,000: under
      the 1 MiB a Kafka broker and producer accept by default). A record whose outputs
      would be larger goes to the DLQ instead, and a dead letter that would be larger
      keeps only the start of the original value (see ``DeadLetter.value_cut_from``).
    - ``REVISIT_RETRY_INITIAL_S`` / ``REVISIT_RETRY_MAX_S``: backoff of transient retries.
    - ``REVISIT_KAFKA_GROUP_INSTANCE_ID``: a stable id of this replica (the pod's name):
      its consumer is a static member of the group, so a restarted replica takes its
      partitions back at once instead of waiting for the crashed one's session to
      expire; empty: a dynamic member.
    - ``REVISIT_KAFKA_SESSION_TIMEOUT_MS``: how long the broker waits for a silent
      consumer (crashed, partitioned) before giving its partitions to the others
      [10000; kafka-python's own default, 45000, left a crashed stage idle 40 s].
    - ``REVISIT_LOG_LEVEL``: ``INFO`` by default.
    - Kafka security (all empty: a plaintext listener, as the embedded stack has):
      ``REVISIT_KAFKA_SECURITY_PROTOCOL`` (``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``,
      ``SASL_SSL``); ``REVISIT_KAFKA_SSL_CAFILE``, ``REVISIT_KAFKA_SSL_CERTFILE``,
      ``REVISIT_KAFKA_SSL_KEYFILE`` (PEM files: the broker's CA, a client certificate
      for mutual TLS); ``REVISIT_KAFKA_SASL_MECHANISM`` (``PLAIN``, ``SCRAM-SHA-256``,
      ``SCRAM-SHA-512``), ``REVISIT_KAFKA_SASL_USERNAME`` and the password in
      ``REVISIT_KAFKA_SASL_PASSWORD`` or, better, a mounted secret file named by
      ``REVISIT_KAFKA_SASL_PASSWORD_FILE``.
    - PostgreSQL TLS goes in the database URL: ``?sslmode=verify-full&sslrootcert=<CA>``.
    """

    model_config = SettingsConfigDict(env_prefix="REVISIT_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    payload_dir: Path = Path(".revisit/payloads")
    payload_url: str = ""
    payload_s3_endpoint_url: str = ""
    payload_retention_days: float = 0.0
    max_poll_records: int = 16
    max_event_bytes: int = Field(default=1_000_000, ge=10_000)
    kafka_group_instance_id: str = ""
    kafka_session_timeout_ms: int = Field(default=10_000, ge=6_000)
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    log_level: str = "INFO"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_sasl_password_file: Path | None = None

    def kafka_options(self) -> dict[str, Any]:
        """Connection options of every Kafka client (kafka-python keyword arguments)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        for name in ("cafile", "certfile", "keyfile"):
            path = getattr(self, f"kafka_ssl_{name}")
            if path is not None:
                options[f"ssl_{name}"] = str(path)
        if self.kafka_security_protocol.startswith("SASL"):
            if not self.kafka_sasl_mechanism or not self.kafka_sasl_username:
                raise ValueError(
                    f"Kafka security protocol {self.kafka_security_protocol} needs "
                    "REVISIT_KAFKA_SASL_MECHANISM and REVISIT_KAFKA_SASL_USERNAME"
                )
            password = self.kafka_sasl_password.get_secret_value()
            if self.kafka_sasl_password_file is not None:
                password = self.kafka_sasl_password_file.read_text().strip()
            options.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=password,
            )
        return options
