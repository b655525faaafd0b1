"""The local Redis Cluster (EPRX_REDIS_CLUSTER=1): three masters and a replica of each, formed
once from the six nodes the supervisor starts (`python -m services.common.redis_cluster`).
Idempotent: a cluster already formed (its nodes.conf kept) is left as it is; either way this
returns once every slot is served."""
from __future__ import annotations

import subprocess
import sys
import time

import redis

from services.common.config import CommonSettings
from services.common.redis_security import ADMIN, cluster_ports, ensure_passwords


def node_client(settings: CommonSettings, port: int) -> redis.Redis:
    password = ensure_passwords(settings.infra_secrets_dir)[ADMIN] if settings.pki.enabled else None
    return redis.Redis(host="127.0.0.1", port=port, username=ADMIN if password else None, password=password,
                       socket_timeout=2)


def state_ok(settings: CommonSettings, port: int) -> bool:
    try:
        return node_client(settings, port).cluster("info").get("cluster_state") == "ok"
    except redis.RedisError:
        return False


def create(settings: CommonSettings, timeout: float = 60.0) -> None:
    ports = cluster_ports(settings)
    if not state_ok(settings, ports[0]):
        auth = ["--user", ADMIN, "--pass", ensure_passwords(settings.infra_secrets_dir)[ADMIN]] \
            if settings.pki.enabled else []
        known = node_client(settings, ports[0]).cluster("info").get("cluster_known_nodes", 1)
        if int(known) <= 1:   # never formed
            subprocess.run(["redis-cli", "--no-auth-warning", *auth, "--cluster", "create",
                            *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "1", "--cluster-yes"],
                           check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not all(state_ok(settings, p) for p in ports):
        if time.monotonic() > deadline:
            sys.exit("the Redis Cluster did not reach state ok")
        time.sleep(0.3)
    print(f"Redis Cluster ok on ports {ports[0]}-{ports[-1]}")


if __name__ == "__main__":
    create(CommonSettings.from_env())
