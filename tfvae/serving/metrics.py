"""Prometheus metrics of the predict APIs, served as text at TF Serving's path
``/monitoring/prometheus/metrics`` on the REST port.

Every :class:`Metrics` has its own ``CollectorRegistry`` (no global state: two servers in one
process, e.g. in tests, do not share counters). Label values come only from what the server
knows (configured model names, loaded versions, existing signature keys, status-code names), never
from raw request text, so a client cannot grow the number of time series by sending made-up names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: TF Serving's path of the Prometheus exposition (``monitoring_config { prometheus_config { ... } }``)
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

_LABELS = ("model", "version", "signature", "api", "code")
#: latency buckets (seconds): sub-millisecond calls of small encoders up to the 30 s REST timeout
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class RequestInfo:
    """What a predict request resolved to, filled in as it is resolved (empty: not known)."""

    api: str
    model: str = ""
    version: str = ""
    signature: str = ""
    t0: float = field(default_factory=time.perf_counter)

    def servable(self, servable) -> None:
        self.model, self.version = servable.name, str(servable.version)

    def known_model(self, manager, name: str) -> None:
        """Label the model by ``name`` only if it is a configured model."""
        if name in manager.models:
            self.model = name


class Metrics:
    """Request counter and latency histogram per model, version, signature, API and status code."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tfvae_serving_requests", "Predict requests answered, by model, version, signature, API (rest|grpc) "
            "and status code (gRPC code name; OK for success)", _LABELS, registry=self.registry)
        self.latency = Histogram(
            "tfvae_serving_request_latency_seconds", "Predict latency in seconds, from the request's arrival "
            "(after its headers, for REST) to its answer", _LABELS, buckets=_BUCKETS, registry=self.registry)
        self.rejected = Counter(
            "tfvae_serving_rest_rejected", "REST requests refused by the front end before reaching a model "
            "(reason: overloaded, too_large, body_timeout, deadline)", ("reason",), registry=self.registry)
        self.in_flight = Gauge(
            "tfvae_serving_rest_admitted", "REST predict requests queued or running in the worker pool",
            registry=self.registry)

    def observe(self, info: RequestInfo, code: str) -> None:
        labels = (info.model, info.version, info.signature, info.api, code)
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(time.perf_counter() - info.t0)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
