"""Redis Cluster (EPRX_REDIS_CLUSTER=1): three masters and a replica of each, from Debian's
redis-server, started by this test on its own ports. The pharmacy's ledger store runs its real
scripts on it; a sale is acknowledged only once a replica holds it (WAIT on the script's own
connection, services/common/redis_client.py). Under a steady flow of sales a master is
SIGKILLed, its replica promoted, the killed node restarted (it rejoins as a replica): every
acknowledged sale is still recorded, none counted twice. A point of sale retries a request until
it has an answer, even at the end of the run: a sale applied whose answer was lost (refused as not
yet replicated) is answered by its retry, so the ledgers hold exactly the sales answered."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections import Counter

import pytest
import redis
import redis.exceptions

from services.common.redis_client import BoundedRedisCluster, NotReplicated
from services.pharmacy.adapters.redis_store import RedisLedgerStore
from services.pharmacy.domain.dispensing import Applied
from tests.contract.test_pharmacy_store import command, plan_for, prescription
from tests.support import eventually, wait_until

PORTS = [26480 + n for n in range(6)]   # below the range of connections' own ports (32768-60999)
BUS = 1000


def node(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2)


def state_ok(port: int) -> bool:
    try:
        return node(port).cluster("info").get("cluster_state") == "ok"
    except redis.RedisError:
        return False


@pytest.fixture
def cluster(tmp_path):
    procs = {}

    def start(port: int) -> None:
        """Node `port`; started again on the same folder, it rejoins from its nodes.conf."""
        home = tmp_path / str(port)
        home.mkdir(exist_ok=True)
        procs[port] = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--cluster-port",
             str(port + BUS), "--appendonly", "yes", "--save", "", "--dir", str(home), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    for port in PORTS:
        start(port)
    procs["start"] = start
    try:
        for port in PORTS:
            wait_until(lambda port=port: _pings(port), timeout=20, message=f"redis {port}")
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in PORTS],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, stdout=subprocess.DEVNULL)
        wait_until(lambda: all(state_ok(p) for p in PORTS) and all(converged(p) for p in PORTS), timeout=30,
                   message="cluster state ok, every node known, every replica in sync")
        yield procs
    finally:
        for name, proc in procs.items():
            if name != "start":
                proc.kill()
                proc.wait()


def converged(port: int) -> bool:
    try:
        info = node(port).info("replication")
        known = int(node(port).cluster("info").get("cluster_known_nodes", 0))
    except redis.RedisError:
        return False
    return known == len(PORTS) and (info["role"] == "master" or info.get("master_link_status") == "up")


async def _at_least(items: list, n: int) -> bool:
    return len(items) >= n


async def _victim_served(after_kill: list[str], on_victim: set[str]) -> bool:
    return len(after_kill) >= 200 and sum(code in on_victim for code in after_kill) >= 50


POS_RETRY_PAUSE = 0.1   # seconds: a point of sale's pause before it sends the same request again


async def backoff() -> None:
    """The behaviour under test (a client's retry pause), not a wait for a condition."""
    await asyncio.sleep(POS_RETRY_PAUSE)


def _pings(port: int) -> bool:
    try:
        return node(port).ping()
    except redis.RedisError:
        return False


def master_of(key: str) -> int:
    """The port of the master that serves the key's slot, as a live node sees it."""
    from redis.crc import key_slot
    slot = key_slot(key.encode())
    for port in PORTS:
        try:
            slots = node(port).execute_command("CLUSTER", "SLOTS")
        except redis.RedisError:
            continue
        for start, end, master, *_ in slots:
            if start <= slot <= end:
                return int(master[1])
    raise LookupError(slot)


async def test_losing_a_master_loses_no_acknowledged_sale(cluster):
    client = BoundedRedisCluster.from_url(f"redis://127.0.0.1:{PORTS[0]}/0", protocol=3, socket_timeout=2,
                                          socket_connect_timeout=2, max_connections=128)
    client.eprx_replicas_to_wait = 1
    client.bound(64, 5.0)
    store = RedisLedgerStore(client, shards=8)
    ledgers = [prescription(("A", 100_000)) for _ in range(24)]
    for rx in ledgers:
        await store.open_ledger(rx)
    victim = master_of(store.ledger_key(ledgers[0].code))
    on_victim = {rx.code for rx in ledgers if master_of(store.ledger_key(rx.code)) == victim}
    acknowledged: list[tuple[str, str]] = []
    after_kill: list[str] = []
    errors = Counter()
    killed_at: list[float] = []
    stop = asyncio.Event()

    async def seller(n: int) -> None:
        i = n
        while not stop.is_set():
            code = ledgers[i % len(ledgers)].code
            cmd = command(code, (1, "A", 1), key=str(uuid.uuid4()))
            while True:   # the point of sale retries the same request until it has an answer
                try:
                    prior = await store.prior(code, cmd.pharmacy, cmd.idempotency_key)
                    outcome = "prior" if prior else await store.dispense(await plan_for(store, cmd))
                    assert outcome == "prior" or isinstance(outcome, Applied), outcome
                    acknowledged.append((code, cmd.idempotency_key))
                    if killed_at:
                        after_kill.append(code)
                    break
                except (redis.exceptions.RedisError, NotReplicated, ConnectionError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    await backoff()
            i += 7

    sellers = [asyncio.create_task(seller(n)) for n in range(16)]
    await eventually(lambda: _at_least(acknowledged, 300), message="300 sales before the fault")
    before = len(acknowledged)
    cluster[victim].send_signal(signal.SIGKILL)
    cluster[victim].wait()
    killed_at.append(time.monotonic())
    # Its replica is promoted (node timeout 2 s); until the killed node is back (as an orchestrator
    # restarts it) and has become the new master's replica, that master's sales cannot be
    # replicated, so they are refused (UNAVAILABLE: retry), never acknowledged unreplicated.
    wait_until(lambda: master_of(store.ledger_key(ledgers[0].code)) != victim, timeout=20, message="failover")
    cluster["start"](victim)
    await eventually(lambda: _victim_served(after_kill, on_victim), timeout=60,
                     message="200 sales after the failover, 50 of them on the failed-over master's codes")
    stop.set()
    # Each point of sale has its last request answered (a sale applied but refused as not yet
    # replicated is answered by its retry) before the ledgers are compared with the answers.
    await asyncio.wait_for(asyncio.gather(*sellers), 60)

    assert before > 0 and await _victim_served(after_kill, on_victim), (before, len(after_kill), errors)  # it went on
    assert master_of(store.ledger_key(ledgers[0].code)) != victim                     # the replica took over
    per_code = Counter(code for code, _ in acknowledged)
    for rx in ledgers:
        ledger = await store.ledger(rx.code)
        assert ledger.dispensed.get(1, 0) == per_code[rx.code], rx.code   # none lost, none counted twice
    for code, key in acknowledged:
        assert await store.prior(code, "pharmacy-a", key) is not None
    await client.aclose()
