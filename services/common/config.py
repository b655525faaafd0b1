"""Environment variables into frozen settings, with defaults that work on a laptop."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from services.common.tls import Pki

PREFIX = "EPRX_"


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the process must not start."""


class Env:
    """Typed reads of EPRX_* variables that name the variable in every error."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(PREFIX + name)
        return None if value is None or value.strip() == "" else value.strip()

    def text(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(f"{PREFIX}{name} is required")
            return default
        return value

    def integer(self, name: str, default, *, minimum: int = 0, maximum: int | None = None):
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name} must be an integer, got {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(f"{PREFIX}{name} must be {bound}, got {number}")
        return number

    def number(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name} must be a number, got {value!r}") from None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{PREFIX}{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def path(self, name: str, default: Path | None) -> Path | None:
        value = self.raw(name)
        return Path(value) if value is not None else default


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ports:
    kafka: int
    kafka_controller: int
    redis: int
    prescribing: int
    pharmacy: int
    insurance: int
    fhir: int
    insurance_internal: int   # InsuranceService for platform services only: mutual TLS, no bearer token

    @classmethod
    def from_env(cls, env: Env) -> "Ports":
        port = lambda name, default: env.integer(name, default, minimum=1, maximum=65535)  # noqa: E731
        return cls(
            kafka=port("KAFKA_PORT", 9092),
            kafka_controller=port("KAFKA_CONTROLLER_PORT", 9093),
            redis=port("REDIS_PORT", 6380),
            prescribing=port("PRESCRIBING_PORT", 50051),
            pharmacy=port("PHARMACY_PORT", 50052),
            insurance=port("INSURANCE_PORT", 50053),
            fhir=port("FHIR_PORT", 8180),
            insurance_internal=port("INSURANCE_INTERNAL_PORT", 50063),
        )


@dataclass(frozen=True)
class CommonSettings:
    """What every service and worker needs: where the infrastructure is and how to behave."""

    run_dir: Path
    ports: Ports
    kafka_bootstrap: str
    redis_url: str
    credentials_file: Path
    topic_partitions: int
    replication_factor: int
    min_insync_replicas: int
    outbox_shards: int
    log_format: str
    log_level: str
    log_mask_key: str | None
    max_concurrent_rpcs: int = 200  # per gRPC server; beyond it a call gets RESOURCE_EXHAUSTED
    redis_pool_size: int = 64       # connections per process; a call waits for a free one
    redis_pool_timeout: float = 2.0           # seconds to wait for a connection, then UNAVAILABLE
    redis_socket_timeout: float = 5.0         # seconds for Redis to answer one command
    replica: str = "0"              # tells replicas of one process apart (relay leases, e2e runs)
    crash_at: str = ""              # a named crash point, armed only by reliability tests
    profile_dir: Path | None = None  # where a gRPC service writes cProfile stats on stop (benchmarks)
    metrics_port: int = 0           # Prometheus /metrics of this process; 0: not served
    producer_linger_ms: int = 5     # how long a worker's producer waits to batch records into one request
    retention_days: int = 7         # Redis keeps a prescription's live state this long after it can no longer
                                    # be dispensed or reversed (the topics keep the history)
    # How long a relay waits after its first entry for more to ship with it, and how long the
    # broker may hold a worker's fetch to gather fetch_min_bytes. None: the process's own default,
    # from the latency its events are allowed (outbox_relay.GATHER_MS, each worker's FETCH_WAIT_MS).
    relay_gather_ms: int | None = None
    fetch_wait_ms: int | None = None
    fetch_min_bytes: int = 65536    # what a worker's fetch waits for (or fetch_wait_ms), instead of any record
    access_log_every: int = 100     # one access line per this many OK calls (every refusal and failure logged)
    health_port: int = 0            # a gRPC service's health statuses in plaintext (kubelet probes); 0: none
    combined_processes: bool = False  # EPRX_PROCESSES=combined: a service's server, relay and worker in one process
    kafka_brokers: int = 1          # nodes of the local KRaft cluster (EPRX_KAFKA_BROKERS)
    outbox_alarm_depth: int = 50_000  # events waiting in a service's outbox before it reports NOT_SERVING
    # How long a consumer remembers an event id it handled. Redeliveries are the work done since the
    # last offset commit (1 s) before a worker stopped; they come when the partition is read again.
    dedup_ttl_seconds: int = 3600
    table_store: str = "rocksdb"    # where a Faust worker keeps its tables: rocksdb (on disk) or memory
    table_standby_replicas: int = 1  # other workers of the group that keep a warm copy of each table partition
    # The CA and certificates; plaintext only under the explicit development setting EPRX_PLAINTEXT_DEV=1.
    pki: Pki = Pki(Path("tls"), enabled=False)
    redis_tls: bool = False         # EPRX_REDIS_TLS=1: Redis serves TLS only, clients trust the run's CA
    redis_cluster: bool = False     # EPRX_REDIS_CLUSTER=1: Redis Cluster (redis_url names one seed node)
    redis_replicas_to_wait: int = 0  # a write is acknowledged once this many replicas hold it (cluster: 1)
    pseudonym_key: str | None = None   # EPRX_PSEUDONYM_KEY; on a laptop one is made per run folder
    # Kafka and Redis passwords, one file per principal (EPRX_INFRA_SECRETS_DIR); apart from the
    # API credentials file, which a test or a deployment may point elsewhere.
    infra_secrets_dir: Path = Path("credentials")

    def pseudonyms(self):
        """Keyed pseudonyms of patients, the same in every process of the deployment."""
        from services.common.pseudonyms import Pseudonyms, load_key
        return Pseudonyms(load_key(self.run_dir, self.pseudonym_key))

    def redis_url_for(self, user: str) -> str:
        """`redis_url` with `user`'s own credentials (Redis ACL users, services/common/redis_security.py);
        without them only under EPRX_PLAINTEXT_DEV=1."""
        if not self.pki.enabled:
            return self.redis_url
        from urllib.parse import urlsplit, urlunsplit
        from services.common.redis_security import password_file
        path = password_file(self.infra_secrets_dir, user)
        try:
            password = path.read_text().strip()
        except OSError:
            raise ConfigError(f"no Redis password for {user} ({path}); `make up` creates them") from None
        parts = urlsplit(self.redis_url)
        scheme = "rediss" if self.redis_tls else parts.scheme
        query = f"ssl_ca_certs={self.pki.ca_file}" if self.redis_tls else parts.query
        return urlunsplit((scheme, f"{user}:{password}@{parts.hostname}:{parts.port}", parts.path, query, ""))

    def kafka_access(self, principal: str):
        """How `principal` reaches Kafka: SASL_SSL with its own password file (made at first
        start), trusting the run's CA; plaintext only under EPRX_PLAINTEXT_DEV=1."""
        from services.common.kafka_security import KafkaAccess, password_file
        if not self.pki.enabled:
            return KafkaAccess(self.kafka_bootstrap, principal, None, None)
        path = password_file(self.infra_secrets_dir, principal)
        try:
            password = path.read_text().strip()
        except OSError:
            raise ConfigError(f"no Kafka password for {principal} ({path}); `make up` creates them") from None
        return KafkaAccess(self.kafka_bootstrap, principal, password, self.pki.ca_file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "CommonSettings":
        env = Env(environ)
        run_dir = env.path("RUN_DIR", project_root() / ".run").resolve()
        ports = Ports.from_env(env)
        # EPRX_KAFKA_BROKERS=3: a local cluster of three KRaft nodes, broker n on the Kafka and
        # controller ports + 10 n; replication 3 and min.insync.replicas 2 unless set.
        brokers = env.integer("KAFKA_BROKERS", 1, minimum=1, maximum=9)
        replication = env.integer("REPLICATION_FACTOR", min(brokers, 3), minimum=1)
        min_isr = env.integer("MIN_INSYNC_REPLICAS", 2 if brokers >= 3 else 1, minimum=1)
        if min_isr > replication:
            raise ConfigError(
                f"{PREFIX}MIN_INSYNC_REPLICAS ({min_isr}) cannot exceed "
                f"{PREFIX}REPLICATION_FACTOR ({replication})"
            )
        cluster = env.choice("REDIS_CLUSTER", "0", ("0", "1")) == "1"
        return cls(
            run_dir=run_dir,
            ports=ports,
            kafka_bootstrap=env.text("KAFKA_BOOTSTRAP", ",".join(f"127.0.0.1:{ports.kafka + 10 * n}"
                                                                 for n in range(brokers))),
            kafka_brokers=brokers,
            outbox_alarm_depth=env.integer("OUTBOX_ALARM_DEPTH", 50_000, minimum=1),
            dedup_ttl_seconds=env.integer("DEDUP_TTL_SECONDS", 3600, minimum=60, maximum=30 * 24 * 3600),
            table_store=env.choice("TABLE_STORE", "rocksdb", ("rocksdb", "memory")),
            table_standby_replicas=env.integer("TABLE_STANDBY_REPLICAS", 1, minimum=0, maximum=8),
            redis_url=env.text("REDIS_URL", f"redis://127.0.0.1:{ports.redis}/0"),
            credentials_file=env.path("CREDENTIALS_FILE", run_dir / "credentials" / "credentials.json"),
            topic_partitions=env.integer("TOPIC_PARTITIONS", 6, minimum=1, maximum=1024),
            replication_factor=replication,
            min_insync_replicas=min_isr,
            outbox_shards=env.integer("OUTBOX_SHARDS", 8, minimum=1, maximum=4096),
            log_format=env.choice("LOG_FORMAT", "auto", ("auto", "json", "console")),
            log_level=env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            log_mask_key=env.raw("LOG_MASK_KEY"),
            max_concurrent_rpcs=env.integer("MAX_CONCURRENT_RPCS", 200, minimum=1, maximum=100_000),
            redis_pool_size=env.integer("REDIS_POOL_SIZE", 64, minimum=1, maximum=10_000),
            redis_pool_timeout=env.number("REDIS_POOL_TIMEOUT_SECONDS", 2.0),
            redis_socket_timeout=env.number("REDIS_SOCKET_TIMEOUT_SECONDS", 5.0),
            replica=env.text("REPLICA", "0"),
            crash_at=env.text("CRASH_AT", ""),
            profile_dir=env.path("PROFILE_DIR", None),
            metrics_port=env.integer("METRICS_PORT", 0, minimum=0, maximum=65535),
            health_port=env.integer("HEALTH_PORT", 0, minimum=0, maximum=65535),
            combined_processes=env.choice("PROCESSES", "separate", ("separate", "combined")) == "combined",
            access_log_every=env.integer("ACCESS_LOG_EVERY", 100, minimum=1, maximum=1_000_000),
            producer_linger_ms=env.integer("PRODUCER_LINGER_MS", 5, minimum=0, maximum=1000),
            retention_days=env.integer("RETENTION_DAYS", 7, minimum=1, maximum=3650),
            relay_gather_ms=env.integer("RELAY_GATHER_MS", None, minimum=0, maximum=1000),
            fetch_wait_ms=env.integer("FETCH_WAIT_MS", None, minimum=0, maximum=1500),
            fetch_min_bytes=env.integer("FETCH_MIN_BYTES", 65536, minimum=1, maximum=50 * 2**20),
            redis_tls=env.choice("REDIS_TLS", "0", ("0", "1")) == "1",
            redis_cluster=cluster,
            redis_replicas_to_wait=env.integer("REDIS_REPLICAS_TO_WAIT", 1 if cluster else 0, minimum=0, maximum=5),
            pseudonym_key=env.raw("PSEUDONYM_KEY"),
            infra_secrets_dir=env.path("INFRA_SECRETS_DIR", run_dir / "credentials").resolve(),
            pki=Pki(env.path("TLS_DIR", run_dir / "tls").resolve(),
                    enabled=env.choice("PLAINTEXT_DEV", "0", ("0", "1")) != "1"),
        )
