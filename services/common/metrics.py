"""Prometheus metrics of every process, on a port of its own (EPRX_METRICS_PORT; 0: none).

gRPC metrics carry the names and labels of go-grpc-prometheus and the Java interceptors, so the
dashboards operators already have work: grpc_server_started_total, grpc_server_handled_total
{grpc_type, grpc_service, grpc_method, grpc_code}, grpc_server_handling_seconds, and the
grpc_client_* twins for the pharmacy's calls to insurance. The platform's own: consumer lag per
partition, outbox depth and age of its oldest entry per shard, dead letters, the time from a
dispense to its adjudication, Redis connections in use."""
from __future__ import annotations

import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GRPC_SERVER_STARTED = Counter("grpc_server_started_total", "RPCs started on the server",
                              ("grpc_type", "grpc_service", "grpc_method"))
GRPC_SERVER_HANDLED = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code",
                              ("grpc_type", "grpc_service", "grpc_method", "grpc_code"))
GRPC_SERVER_SECONDS = Histogram("grpc_server_handling_seconds", "Time to handle an RPC on the server",
                                ("grpc_type", "grpc_service", "grpc_method"), buckets=LATENCY_BUCKETS)
GRPC_CLIENT_STARTED = Counter("grpc_client_started_total", "RPCs started by the client",
                              ("grpc_type", "grpc_service", "grpc_method"))
GRPC_CLIENT_HANDLED = Counter("grpc_client_handled_total", "RPCs completed by the client, by status code",
                              ("grpc_type", "grpc_service", "grpc_method", "grpc_code"))
GRPC_CLIENT_SECONDS = Histogram("grpc_client_handling_seconds", "Time from the client's call to its answer",
                                ("grpc_type", "grpc_service", "grpc_method"), buckets=LATENCY_BUCKETS)

CONSUMER_LAG = Gauge("eprx_consumer_lag_messages", "Messages between a consumer's position and the partition's end",
                     ("consumer", "topic", "partition"))
TABLES_RECOVERED_SECONDS = Gauge("eprx_worker_tables_recovered_seconds",
                                 "Seconds from a worker's start until its tables were recovered", ("app",))
OUTBOX_DEPTH = Gauge("eprx_outbox_depth_entries", "Events in a service's outbox shard not yet shipped to Kafka",
                     ("service", "shard"))
OUTBOX_AGE = Gauge("eprx_outbox_oldest_age_seconds", "Age of the oldest event waiting in an outbox shard",
                   ("service", "shard"))
DEAD_LETTERS = Counter("eprx_dead_letters_total", "Messages a consumer sent to its dead-letter topic",
                       ("consumer", "topic"))
OUTBOX_DEAD = Counter("eprx_outbox_dead_entries_total", "Outbox entries Kafka refused for good", ("service",))
DISPENSE_TO_ADJUDICATED = Histogram("eprx_dispense_to_adjudicated_seconds",
                                    "From a sale (its claim's event time) to the claim's adjudication",
                                    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0))
REDIS_IN_USE = Gauge("eprx_redis_connections_in_use", "Connections of the process's Redis pool in use")
REDIS_POOL_SIZE = Gauge("eprx_redis_pool_size", "Connections the process's Redis pool may open")
HTTP_REQUESTS = Counter("http_server_requests_total", "HTTP requests answered (the FHIR facade), by route and status",
                        ("method", "route", "code"))
HTTP_SECONDS = Histogram("http_server_request_duration_seconds", "Time to answer an HTTP request (the FHIR facade)",
                         ("method", "route"), buckets=LATENCY_BUCKETS)

# Every name the code exports, for the dashboard's check (deploy/grafana).
EXPORTED = ("grpc_server_started_total", "grpc_server_handled_total", "grpc_server_handling_seconds",
            "grpc_client_started_total", "grpc_client_handled_total", "grpc_client_handling_seconds",
            "eprx_consumer_lag_messages", "eprx_outbox_depth_entries", "eprx_outbox_oldest_age_seconds",
            "eprx_dead_letters_total", "eprx_outbox_dead_entries_total", "eprx_dispense_to_adjudicated_seconds",
            "eprx_redis_connections_in_use", "eprx_redis_pool_size", "http_server_requests_total",
            "http_server_request_duration_seconds", "eprx_worker_tables_recovered_seconds")


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


def serve(port: int, host: str = "127.0.0.1") -> bool:
    """Serves /metrics on `port`; False when metrics are off (port 0) or the port is taken: a
    process without its metrics still serves its traffic, and says why in its log."""
    if not port:
        return False
    if port in _SERVING:   # one process, several parts (services/common/combined.py): one server
        return True
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        structlog.get_logger("metrics").error("metrics.port_unavailable", port=port, error=str(exc))
        return False
    _SERVING.add(port)
    return True


_SERVING: set[int] = set()


def observe_redis_pool(pool) -> None:
    """Reads a redis-py connection pool's use at scrape time."""
    REDIS_IN_USE.set_function(lambda: len(getattr(pool, "_in_use_connections", ())))
    REDIS_POOL_SIZE.set(getattr(pool, "max_connections", 0) or 0)
