"""Counters of a running service, read from its /metrics endpoint."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from revisit_cli.services import ServicesConfig, endpoints


def counter(services: ServicesConfig, service: str, family: str, label: str) -> dict[str, float]:
    """The `_total` samples of counter `family` of `service`, by the value of `label`."""
    (url,) = [e.metrics_url for e in endpoints(services) if e.name == service]
    with urllib.request.urlopen(url, timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
        return {
            s.labels[label]: s.value
            for f in families
            if f.name == family
            for s in f.samples
            if s.name.endswith("_total")
        }
