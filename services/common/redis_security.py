"""Redis users: the default user off (unusable by any connection), one ACL user per service restricted to its own key
patterns and to the command categories it uses, a read-only user for the agency's export, and
`admin` for operators and the test harness. Passwords are made at first start, one file per
user (0600), so each process reads only its own; Redis gets their SHA-256 in its ACL file.
TLS on the Redis port when EPRX_REDIS_TLS=1 (clients then trust the run's CA)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.files import password_files

if TYPE_CHECKING:
    from services.common.config import CommonSettings

ADMIN = "admin"
# Every key a service touches starts with one of these (its outbox shards are `{service:sNNNN}`).
KEYS = {
    "prescribing": ("prescribing:*", "{prescribing:*"),
    "pharmacy": ("{pharmacy:*",),
    "insurance": ("insurance:*", "{insurance:*"),
}
# A Redis Cluster client learns the slot map itself (read-only commands, none of them admin).
CLUSTER_MAP = "+cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid"
SERVICE_COMMANDS = ("+@read +@write +@stream +@scripting +@connection +@transaction +@keyspace -@dangerous -@admin "
                    + CLUSTER_MAP)
# The agency's export reads members and their identifiers, nothing else, and writes nothing.
AGENCY_READS = ("insurance:member:*", "insurance:idx:*")
USERS = (ADMIN, *KEYS, "agency")


def password_file(credentials_dir: Path, user: str) -> Path:
    return credentials_dir / "redis" / f"{user}.password"


def ensure_passwords(credentials_dir: Path) -> dict[str, str]:
    """Every user's password, made when missing."""
    return password_files(credentials_dir / "redis", USERS)


def acl_lines(passwords: dict[str, str]) -> list[str]:
    def hashed(user: str) -> str:
        return "#" + hashlib.sha256(passwords[user].encode()).hexdigest()
    # The default user is off: no connection can use it, every client logs in as its own user.
    # It keeps every permission all the same, because Redis replays the AOF as the default user
    # and EXEC checks a transaction's commands against that user again: without them every
    # MULTI/EXEC block and every script's writes were refused and dropped on a restart, silently
    # (Redis 7.0 and 7.4; redis/redis#14541, fixed in later releases).
    lines = ["user default off resetpass ~* &* +@all",
             f"user {ADMIN} on {hashed(ADMIN)} ~* &* +@all"]
    for service, patterns in KEYS.items():
        keys = " ".join(f"~{p}" for p in patterns)
        lines.append(f"user {service} on {hashed(service)} resetchannels {keys} -@all {SERVICE_COMMANDS}")
    reads = " ".join(f"%R~{p}" for p in AGENCY_READS)
    lines.append(f"user agency on {hashed('agency')} resetchannels {reads} -@all +@read +@connection -@dangerous "
                 + CLUSTER_MAP)
    return lines


def write_acl_file(credentials_dir: Path, path: Path) -> Path:
    lines = acl_lines(ensure_passwords(credentials_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


CLUSTER_NODES = 6            # EPRX_REDIS_CLUSTER=1: 3 masters and a replica of each
CLUSTER_BUS_OFFSET = 1000    # a node's cluster bus port: its port + this (not Redis's +10000)


# A small hash is stored as one listpack (a packed array) instead of a hash table, but only while
# every value fits in hash-max-listpack-value, 64 bytes by default. Every per-prescription hash
# holds one longer value (the signed prescription, a receipt, a fingerprint), so all were hash
# tables: 30-40% bigger (issue 15's inventory: a ledger 1,208 -> 728 bytes, a prescription record
# 1,240 -> 856). Values up to 4 KB keep a prescription of many lines packed too; a hash with a
# bigger value or more than 128 fields becomes a hash table as before. Read at start-up by Redis
# (local run and cluster manifests alike); an existing key is packed when the AOF is rewritten.
COMPACT_ENCODING = {"hash-max-listpack-value": "4096", "hash-max-listpack-entries": "128"}


def cluster_ports(settings: "CommonSettings") -> list[int]:
    return [settings.ports.redis + n for n in range(CLUSTER_NODES)]


def server_argv(settings: "CommonSettings", home: Path, node: int = 0) -> list[str]:
    """redis-server's command line for the local run: AOF (the outbox holds the only copy of an
    accepted command until the relay ships it), noeviction (Redis must refuse a write rather
    than drop state or an unshipped event), the ACL users, and TLS when EPRX_REDIS_TLS=1.
    Under EPRX_REDIS_CLUSTER=1, node `node` of the cluster (its own port and folder; replicas
    authenticate to their master as `admin`)."""
    home.mkdir(parents=True, exist_ok=True)
    port = settings.ports.redis + node
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
            "--dir", str(home), "--appendonly", "yes",
            "--appendfsync", os.environ.get("EPRX_REDIS_APPENDFSYNC", "everysec"),
            "--save", "", "--maxmemory", os.environ.get("EPRX_REDIS_MAXMEMORY", "1gb"),
            "--maxmemory-policy", "noeviction", "--daemonize", "no",
            "--logfile", "", "--loglevel", "warning"]
    for name, value in COMPACT_ENCODING.items():
        argv += [f"--{name}", value]
    if settings.redis_cluster:
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "3000",
                 "--cluster-port", str(port + CLUSTER_BUS_OFFSET)]
    if settings.pki.enabled:
        from services.common import tls
        argv += ["--aclfile", str(write_acl_file(settings.infra_secrets_dir, home / "users.acl"))]
        if settings.redis_cluster:
            argv += ["--masteruser", ADMIN, "--masterauth", ensure_passwords(settings.infra_secrets_dir)[ADMIN]]
        if settings.redis_tls:   # TLS only: the plain port closed
            tls.ensure(settings.pki.directory)
            argv[argv.index("--port") + 1] = "0"
            argv += ["--tls-port", str(port), "--tls-cert-file", str(settings.pki.cert_file("redis")),
                     "--tls-key-file", str(settings.pki.key_file("redis")),
                     "--tls-ca-cert-file", str(settings.pki.ca_file), "--tls-auth-clients", "no"]
    return argv
