"""Settings shared by every service, read from `REVISIT_*` environment variables."""

from __future__ import annotations

from pathlib import Path

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
    - ``REVISIT_RETRY_INITIAL_S`` / ``REVISIT_RETRY_MAX_S``: backoff of transient retries.
    - ``REVISIT_LOG_LEVEL``: ``INFO`` by default.
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
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    log_level: str = "INFO"
