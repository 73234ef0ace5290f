"""Prometheus metrics: every metric mailwarden exports is defined here, once.

Who calls it: each daemon's ``__main__`` builds the metrics object it needs on a
``CollectorRegistry`` (its own, so tests and several daemons in one process never
collide) and passes it down; ``serve`` exposes the registries over HTTP.

Rules (REFERENCE §11): names start with ``mailwarden_``, counters end in ``_total``,
durations are in seconds, sizes in bytes; label values come from small fixed sets
(outcome, check, result, scanner, verdict, direction) — never an address, a queue id or
a client IP.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCAN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class LdaMetrics:
    """Delivery agent (lmtpd and mailwarden-lda). outcome: delivered|junk|discarded|
    unknown|quota|loop|tempfail|rejected."""

    deliveries: Counter
    bytes: Counter
    latency: Histogram
    quota_rejections: Counter
    vacation: Counter
    junk: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> LdaMetrics:
        return cls(
            deliveries=Counter(
                "mailwarden_lda_deliveries_total",
                "Recipients handled, by outcome",
                ["outcome"],
                registry=registry,
            ),
            bytes=Counter(
                "mailwarden_lda_delivered_bytes_total",
                "Bytes written to Maildirs",
                registry=registry,
            ),
            latency=Histogram(
                "mailwarden_lda_delivery_seconds",
                "Time to deliver to one recipient",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            quota_rejections=Counter(
                "mailwarden_lda_quota_rejections_total",
                "Deliveries refused for quota",
                registry=registry,
            ),
            vacation=Counter(
                "mailwarden_lda_vacation_total",
                "Vacation replies, by result (sent|suppressed)",
                ["result"],
                registry=registry,
            ),
            junk=Counter(
                "mailwarden_lda_junk_filings_total",
                "Messages filed into the Junk folder",
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class PolicyMetrics:
    """Policy daemon. check: relay|recipient|quota|sendas|access|limits|ratelimit|all;
    result: permit|reject|defer|dunno."""

    requests: Counter
    latency: Histogram
    cache: Counter
    store_errors: Counter
    rate_refusals: Counter
    connections: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PolicyMetrics:
        return cls(
            requests=Counter(
                "mailwarden_policy_requests_total",
                "Policy decisions, by check and result",
                ["check", "result"],
                registry=registry,
            ),
            latency=Histogram(
                "mailwarden_policy_request_seconds",
                "Time to answer one policy request",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            cache=Counter(
                "mailwarden_policy_cache_lookups_total",
                "Lookup cache, by result (hit|miss)",
                ["result"],
                registry=registry,
            ),
            store_errors=Counter(
                "mailwarden_policy_store_errors_total",
                "Store failures answered with 4.3.0",
                registry=registry,
            ),
            rate_refusals=Counter(
                "mailwarden_policy_ratelimit_refusals_total",
                "Requests refused by a rate limit",
                ["period"],
                registry=registry,
            ),
            connections=Gauge(
                "mailwarden_policy_connections",
                "Open client connections",
                registry=registry,
                multiprocess_mode="livesum",  # policyd --workers: the sum over live workers
            ),
        )


@dataclass(frozen=True)
class MilterMetrics:
    """Milter. verdict: clean|spam|virus|loop|tempfail|unscanned|allowed;
    scanner: clamav|spamassassin; direction: in|out."""

    messages: Counter
    scan_latency: Histogram
    scanner_errors: Counter
    bytes_scanned: Counter
    traffic_messages: Counter
    traffic_bytes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> MilterMetrics:
        return cls(
            messages=Counter(
                "mailwarden_milter_messages_total",
                "Messages, by verdict",
                ["verdict"],
                registry=registry,
            ),
            scan_latency=Histogram(
                "mailwarden_milter_scan_seconds",
                "Scanner round-trip time",
                ["scanner"],
                buckets=SCAN_BUCKETS,
                registry=registry,
            ),
            scanner_errors=Counter(
                "mailwarden_milter_scanner_errors_total",
                "Scanner failures",
                ["scanner"],
                registry=registry,
            ),
            bytes_scanned=Counter(
                "mailwarden_milter_scanned_bytes_total",
                "Bytes sent to scanners",
                ["scanner"],
                registry=registry,
            ),
            traffic_messages=Counter(
                "mailwarden_traffic_messages_total",
                "Messages for local domains",
                ["direction"],
                registry=registry,
            ),
            traffic_bytes=Counter(
                "mailwarden_traffic_bytes_total",
                "Bytes for local domains",
                ["direction"],
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class ServeMetrics:
    """``mailwarden serve``: the supervisor's view of its children.
    daemon: policyd|milter|lmtpd."""

    restarts: Counter
    up: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ServeMetrics:
        return cls(
            restarts=Counter(
                "mailwarden_serve_restarts",
                "Times a daemon was restarted after it exited",
                ["daemon"],
                registry=registry,
            ),
            up=Gauge(
                "mailwarden_serve_up",
                "1 while the daemon runs and its metrics answer",
                ["daemon"],
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class ApiMetrics:
    """``mailwarden api``: requests by method and status class (2xx, 4xx, 5xx ...)."""

    requests: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ApiMetrics:
        return cls(
            requests=Counter(
                "mailwarden_api_requests",
                "API requests answered, by method and status class",
                ["method", "status"],
                registry=registry,
            ),
        )
