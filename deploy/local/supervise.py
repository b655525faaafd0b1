"""Local process supervisor: Kafka, Redis, the topics and credentials, and every service,
relay and worker, with named, interleaved logs.

    supervise.py run [--infra-only]    foreground; Ctrl-C stops everything
    supervise.py up [--infra-only]     the same in the background, returns once all is ready
    supervise.py down                  stops a background run and checks no port is left
    supervise.py status

Nothing here needs Docker: the broker is the official Apache Kafka jars from Maven Central
(fetched by `make kafka-jars`), Redis is Debian's redis-server."""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "build" / "gen")]

from services.common import topology  # noqa: E402
from services.common.config import CommonSettings  # noqa: E402

COLORS = ("36", "33", "35", "32", "34", "31", "96", "93", "95", "92", "94")
KAFKA_HEAP = os.environ.get("EPRX_KAFKA_HEAP", "512m")


@dataclass
class Proc:
    name: str
    argv: list[str]
    ready: Callable[[], bool] | None = None
    oneshot: bool = False
    ports: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    console_filter: Callable[[str], bool] = lambda line: True
    restart: bool = False              # when it dies, start it again instead of stopping everything
    popen: subprocess.Popen | None = field(default=None, repr=False)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0



def kafka_libs() -> Path:
    stamps = sorted((ROOT / ".cache").glob("kafka-*/libs/.stamp"))
    if not stamps:
        sys.exit("Kafka jars are missing: run `make kafka-jars`")
    return stamps[-1].parent


def kafka_ready(settings: CommonSettings) -> Callable[[], bool]:
    def probe() -> bool:
        if not port_open(settings.ports.kafka):
            return False
        from kafka.admin import KafkaAdminClient
        try:
            admin = KafkaAdminClient(request_timeout_ms=3000, client_id="eprx-supervisor",
                                     **settings.kafka_access("admin").kwargs())
        except Exception:
            return False
        try:
            return len(admin.describe_cluster().get("brokers") or []) >= settings.kafka_brokers
        except Exception:
            return False
        finally:
            admin.close()
    return probe


def redis_ready(settings: CommonSettings, port: int | None = None) -> Callable[[], bool]:
    def probe() -> bool:
        import redis
        try:
            if port is not None:   # one node of the cluster
                from services.common.redis_cluster import node_client
                return node_client(settings, port).ping()
            return redis.Redis.from_url(settings.redis_url_for("admin"), socket_timeout=1).ping()
        except Exception:
            return False
    return probe


def prepare_kafka(settings: CommonSettings, node: int = 0) -> list[str]:
    """Node `node` of the local KRaft cluster (combined broker and controller): its own
    node.id, ports (+10 per node), folder and log dirs; one cluster id formatted on each."""
    home = settings.run_dir / ("kafka" if node == 0 else f"kafka-{node + 1}")
    data = home / "data"
    kafka_port, controller_port = settings.ports.kafka + 10 * node, settings.ports.kafka_controller + 10 * node
    nodes = settings.kafka_brokers
    voters = ",".join(f"{n + 1}@127.0.0.1:{settings.ports.kafka_controller + 10 * n}" for n in range(nodes))
    internal_rf, internal_isr = min(nodes, 3), (2 if nodes >= 3 else 1)
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    scram: list[str] = []
    if settings.pki.enabled:
        # SASL_SSL (SCRAM-SHA-512) for every client, mutual TLS to the controller, ACLs enforced
        from services.common import kafka_security, tls
        tls.ensure(settings.pki.directory)
        credentials = settings.infra_secrets_dir
        scram = kafka_security.scram_format_args(credentials)
        keystore = home / "keystore.pem"   # the broker's key and certificate chain, as Kafka's PEM keystore reads them
        fd = os.open(keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(settings.pki.key_file("kafka").read_bytes() + settings.pki.cert_file("kafka").read_bytes())
        security = kafka_security.broker_properties(
            credentials_dir=credentials, pki=settings.pki, kafka_port=kafka_port,
            controller_port=controller_port, keystore=keystore)
    else:
        security = [
            f"listeners=PLAINTEXT://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{kafka_port}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"]
    props.write_text("\n".join([
        "process.roles=broker,controller",
        f"node.id={node + 1}",
        f"controller.quorum.voters={voters}",
        "controller.listener.names=CONTROLLER",
        *security,
        f"log.dirs={data}",
        # Topics exist because the project declares them (services/common/topics.py).
        "auto.create.topics.enable=false",
        # Internal topics replicate as far as the nodes allow; sized for a 2-core machine.
        f"offsets.topic.replication.factor={internal_rf}",
        "offsets.topic.num.partitions=12",
        f"transaction.state.log.replication.factor={internal_rf}",
        f"transaction.state.log.min.isr={internal_isr}",
        "transaction.state.log.num.partitions=4",
        f"share.coordinator.state.topic.replication.factor={internal_rf}",
        f"share.coordinator.state.topic.min.isr={internal_isr}",
        f"default.replication.factor={internal_rf}",
        f"min.insync.replicas={internal_isr}",
        "group.initial.rebalance.delay.ms=0",
        "num.network.threads=2",
        "num.io.threads=4",
        "num.partitions=1",
        "log.retention.check.interval.ms=300000",
        "",
    ]))
    log4j = home / "log4j2.properties"
    # Console stays quiet except for warnings and the lines that say what started.
    log4j.write_text("\n".join([
        "status = warn",
        "appender.out.type = Console",
        "appender.out.name = OUT",
        "appender.out.layout.type = PatternLayout",
        "appender.out.layout.pattern = [%d] %p %m (%c)%n",
        "rootLogger.level = WARN",
        "rootLogger.appenderRef.out.ref = OUT",
        "logger.app.name = org.apache.kafka.common.utils.AppInfoParser",
        "logger.app.level = INFO",
        "logger.raft.name = kafka.server.KafkaRaftServer",
        "logger.raft.level = INFO",
        "",
    ]))
    classpath = f"{kafka_libs()}/*"
    java = ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    marker = home / "scram-users.formatted"   # the cluster was formatted with the SCRAM users
    if not (data / "meta.properties").exists():
        shared = settings.run_dir / "kafka-cluster.id"   # every node is formatted with the same id
        if not shared.exists():
            shared.write_text(subprocess.run(java + ["kafka.tools.StorageTool", "random-uuid"], check=True,
                                             capture_output=True, text=True).stdout.strip())
        cluster_id = shared.read_text().strip()
        subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *scram],
                       check=True, capture_output=True, text=True)
        if scram:
            marker.touch()
    elif scram and not marker.exists():
        raise SystemExit(f"{data} was formatted without the Kafka users this version needs (SASL_SCRAM): "
                         "`make clean` starts the run folder anew")
    return ["java", f"-Xms{KAFKA_HEAP}", f"-Xmx{KAFKA_HEAP}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
            "kafka.Kafka", str(props)]


def kafka_nodes(settings: CommonSettings, console_filter) -> list[Proc]:
    """One process per node; the last one waits for every broker to be registered. With three
    nodes or more, a node that dies is restarted and the others go on (the cluster survives it)."""
    nodes = settings.kafka_brokers
    out = []
    for node in range(nodes):
        last = node == nodes - 1
        out.append(Proc("kafka" if node == 0 else f"kafka-{node + 1}", prepare_kafka(settings, node),
                        kafka_ready(settings) if last else None, console_filter=console_filter,
                        ports=(settings.ports.kafka + 10 * node, settings.ports.kafka_controller + 10 * node),
                        restart=nodes >= 3))
    return out


def redis_argv(settings: CommonSettings) -> list[str]:
    from services.common.redis_security import server_argv
    return server_argv(settings, settings.run_dir / "redis")


def redis_nodes(settings: CommonSettings) -> list[Proc]:
    """One Redis, or under EPRX_REDIS_CLUSTER=1 the six nodes of a Redis Cluster (formed by the
    `redis-cluster` step); a node that dies is restarted, and comes back as a replica."""
    if not settings.redis_cluster:
        return [Proc("redis", redis_argv(settings), redis_ready(settings), ports=(settings.ports.redis,),
                     restart=restart_on_exit())]
    from services.common.redis_security import CLUSTER_BUS_OFFSET, cluster_ports, server_argv
    return [Proc("redis" if n == 0 else f"redis-{n + 1}",
                 server_argv(settings, settings.run_dir / "redis" / f"node-{n + 1}", node=n),
                 redis_ready(settings, port), ports=(port, port + CLUSTER_BUS_OFFSET), restart=True)
            for n, port in enumerate(cluster_ports(settings))]


def plan(settings: CommonSettings, infra_only: bool) -> list[list[Proc]]:
    py = sys.executable
    kafka_console = lambda line: any(w in line for w in (" WARN ", " ERROR ", "Kafka version", "Server started"))  # noqa: E731
    stages = []
    if settings.pki.enabled:   # before anything that serves TLS
        stages.append([Proc("certificates", [py, "-m", "services.common.tls", str(settings.pki.directory)],
                            oneshot=True)])
    stages += [
        [*kafka_nodes(settings, kafka_console), *redis_nodes(settings)],
        *([[Proc("redis-cluster", [py, "-m", "services.common.redis_cluster"], oneshot=True)]]
          if settings.redis_cluster else []),
        [Proc("topics", [py, "-m", "services.common.topics"], oneshot=True),
         Proc("credentials", [py, "-m", "services.common.auth", str(settings.credentials_file.parent)],
              oneshot=True),
         Proc("signing-keys", [py, "-m", "services.common.signatures", str(settings.run_dir / "keys"),
                               str(ROOT / "reference" / "v1" / "prescribers.csv")], oneshot=True),
         Proc("members", [py, "-m", "services.insurance.import_members",
                          str(ROOT / "reference" / "demo" / "members.csv")], oneshot=True)],
    ]
    if infra_only:
        return stages
    services = []
    metrics = topology.metrics_ports(metrics_base_port(), settings.combined_processes)
    restart = restart_on_exit()
    for process in topology.application(settings.combined_processes):
        env = {"EPRX_METRICS_PORT": str(metrics[process.name])}
        ports = (metrics[process.name],) if metrics[process.name] else ()
        if process.grpc_service:
            port = getattr(settings.ports, process.grpc_service)
            if process.grpc_service == "insurance" and settings.pki.enabled:
                ports = (settings.ports.insurance_internal, *ports)
            services.append(Proc(process.name, [py, *process.module_args], grpc_ready(port, settings),
                                 ports=(port, *ports), env=env, restart=restart))
        elif process.http_port:
            port = getattr(settings.ports, process.http_port)
            services.append(Proc(process.name, [py, *process.module_args], http_ready(port, settings),
                                 ports=(port, *ports), env=env, restart=restart))
        else:
            services.append(Proc(process.name, [py, *process.module_args], ports=ports, env=env, restart=restart))
            if process.name.endswith("-relay"):   # more relays of the service share its shards by lease
                services += [Proc(f"{process.name}-{n}", [py, *process.module_args], restart=restart,
                                  env={"EPRX_METRICS_PORT": "0", "EPRX_REPLICA": str(n - 1)})
                             for n in range(2, relay_replicas() + 1)]
    return stages + [services]


def restart_on_exit() -> bool:
    """EPRX_SUPERVISOR_RESTART=1: a process that dies is started again (as an orchestrator
    would) instead of stopping everything; the fault tests run this way. Kafka nodes of a
    three-node cluster are restarted in any case."""
    return os.environ.get("EPRX_SUPERVISOR_RESTART", "0") == "1"


def relay_replicas() -> int:
    """EPRX_RELAY_REPLICAS (default 1): relays per service; they share its outbox shards by lease."""
    return max(1, int(os.environ.get("EPRX_RELAY_REPLICAS", "1")))


def metrics_base_port() -> int:
    """EPRX_METRICS_BASE_PORT (default 9400): process n serves /metrics on base + n; 0 turns them off."""
    return int(os.environ.get("EPRX_METRICS_BASE_PORT", "9400"))


def grpc_ready(port: int, settings: CommonSettings) -> Callable[[], bool]:
    def probe() -> bool:
        from services.common.grpc_server import is_serving
        return is_serving(f"127.0.0.1:{port}", settings.pki if settings.pki.enabled else None)
    return probe


def http_ready(port: int, settings: CommonSettings) -> Callable[[], bool]:
    def probe() -> bool:
        from services.fhir.config import is_serving
        return is_serving(port, settings.pki)
    return probe


def readable(line: str) -> str:
    """A JSON log line as a person reads it on a console; the file keeps the JSON."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "event" not in record:
        return line
    stamp = str(record.pop("timestamp", ""))[11:23]
    level = str(record.pop("level", "")).upper()
    event = record.pop("event")
    record.pop("service", None)
    fields = " ".join(f"{k}={v}" for k, v in record.items())
    return f"{stamp} {level:<7} {event} {fields}".rstrip()


class Supervisor:
    def __init__(self, settings: CommonSettings, infra_only: bool):
        self.settings = settings
        self.infra_only = infra_only
        self.logs = settings.run_dir / "logs"
        self.pids = settings.run_dir / "pids"
        self.stopping = threading.Event()
        self.running: list[Proc] = []
        self._print_lock = threading.Lock()
        self._console_gone = False
        self._logged: set[str] = set()

    def say(self, name: str, line: str, color: str = "1") -> None:
        with self._print_lock:
            if self._console_gone:
                return
            try:
                if sys.stdout.isatty():
                    print(f"\x1b[{color}m{name:>20} |\x1b[0m {line}", flush=True)
                else:
                    print(f"{name:>20} | {line}", flush=True)
            except (BrokenPipeError, OSError):
                # `make run | tee log` and Ctrl-C: the reader is gone before we are. Keep
                # stopping the children; the logs under .run/logs still get every line.
                self._console_gone = True
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def _pump(self, proc: Proc, color: str) -> None:
        # A fresh log per run; a process the supervisor restarts appends, keeping what it wrote
        # before it died.
        mode = "a" if proc.name in self._logged else "w"
        self._logged.add(proc.name)
        with open(self.logs / f"{proc.name}.log", mode, buffering=1) as log:
            for raw in proc.popen.stdout:
                line = raw.rstrip("\n")
                log.write(line + "\n")
                if proc.console_filter(line):
                    self.say(proc.name, readable(line), color)

    def start(self, proc: Proc, color: str) -> None:
        taken = [p for p in proc.ports if port_open(p)]
        if taken:
            raise RuntimeError(f"{proc.name}: port {taken} already in use by another process")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **proc.env)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "build" / "gen"), env.get("PYTHONPATH", "")])
        proc.popen = subprocess.Popen(proc.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, process_group=0)
        (self.pids / f"{proc.name}.pid").write_text(str(proc.popen.pid))
        threading.Thread(target=self._pump, args=(proc, color), daemon=True).start()
        self.running.append(proc)

    def wait_ready(self, proc: Proc, timeout: float = 120.0) -> None:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            if proc.oneshot:
                if proc.popen.poll() is not None:
                    (self.pids / f"{proc.name}.pid").unlink(missing_ok=True)
                    if proc.popen.returncode != 0:
                        raise RuntimeError(f"{proc.name} failed with exit code {proc.popen.returncode}")
                    return
            else:
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode} while starting")
                # Without a probe, a process counts as started once it has stayed up a moment.
                settled = proc.ready is None and time.monotonic() - started > 1.5
                if settled or (proc.ready is not None and proc.ready()):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{proc.name} not ready after {timeout:.0f}s (see {self.logs / (proc.name + '.log')})")

    def run(self) -> int:
        for d in (self.logs, self.pids):
            d.mkdir(parents=True, exist_ok=True)
        ready_file = self.settings.run_dir / "ready"
        ready_file.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        n = 0
        try:
            for stage in plan(self.settings, self.infra_only):
                for proc in stage:
                    t0 = time.monotonic()
                    self.start(proc, COLORS[n % len(COLORS)])
                    n += 1
                    self.wait_ready(proc)
                    self.say("supervisor", f"{proc.name} {'done' if proc.oneshot else 'ready'} "
                                           f"in {time.monotonic() - t0:.1f}s")
            self.print_endpoints()
            ready_file.write_text(str(os.getpid()))
            while not self.stopping.wait(0.5):
                for proc in list(self.running):
                    if not proc.oneshot and proc.popen.poll() is not None:
                        if proc.restart and not self.stopping.is_set():
                            self.say("supervisor", f"{proc.name} exited with code {proc.popen.returncode}; "
                                                   "starting it again (the others go on)")
                            self.running.remove(proc)
                            try:
                                self.start(proc, COLORS[n % len(COLORS)])
                            except RuntimeError as exc:   # its port not free yet: next round
                                self.say("supervisor", f"{proc.name} not restarted yet: {exc}")
                                self.running.append(proc)
                            continue
                        self.say("supervisor", f"{proc.name} exited with code {proc.popen.returncode}; stopping all")
                        return self.stop(1)
            return self.stop(0)
        except RuntimeError as exc:
            self.say("supervisor", f"FAILED: {exc}")
            return self.stop(1)

    def print_endpoints(self) -> None:
        s = self.settings
        self.say("supervisor", f"Kafka {s.kafka_bootstrap}  Redis {s.redis_url}")
        if not self.infra_only:
            for service in topology.SERVICES:
                self.say("supervisor", f"{service:>12} gRPC 127.0.0.1:{getattr(s.ports, service)}")
            scheme = "https" if s.pki.enabled else "http"
            self.say("supervisor", f"{'FHIR R4':>12} {scheme}://127.0.0.1:{s.ports.fhir}/fhir")
            if s.pki.enabled:
                self.say("supervisor", f"TLS on every port; clients trust {s.pki.ca_file}")
            else:
                self.say("supervisor", "PLAINTEXT (EPRX_PLAINTEXT_DEV=1): for development only")
            for name, port in topology.metrics_ports(metrics_base_port(), s.combined_processes).items():
                if port:
                    self.say("supervisor", f"{name:>20} metrics http://127.0.0.1:{port}/metrics")
        self.say("supervisor", f"demo credentials: {s.credentials_file.parent / 'tokens.json'}")
        self.say("supervisor", f"logs: {self.logs}/")

    def stop(self, code: int) -> int:
        for proc in reversed(self.running):
            if proc.popen.poll() is None:
                proc.popen.terminate()
                try:
                    proc.popen.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.say("supervisor", f"{proc.name} ignored SIGTERM; killing it")
                    proc.popen.kill()
                    proc.popen.wait()
            (self.pids / f"{proc.name}.pid").unlink(missing_ok=True)
        (self.settings.run_dir / "ready").unlink(missing_ok=True)
        self.say("supervisor", "all stopped")
        return code


def supervisor_pidfile(settings: CommonSettings) -> Path:
    return settings.run_dir / "supervisor.pid"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def up(settings: CommonSettings, infra_only: bool) -> int:
    pidfile = supervisor_pidfile(settings)
    if pidfile.exists() and alive(int(pidfile.read_text())):
        print(f"already running (pid {pidfile.read_text()}); `make down` first")
        return 1
    (settings.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    log = settings.run_dir / "logs" / "supervisor.log"
    argv = [sys.executable, __file__, "run"] + (["--infra-only"] if infra_only else [])
    with open(log, "w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=ROOT)
    pidfile.write_text(str(child.pid))
    ready = settings.run_dir / "ready"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 240:
        if ready.exists() and ready.read_text() == str(child.pid):
            print(f"up in {time.monotonic() - t0:.1f}s; logs in {log.parent}/")
            print("".join(l for l in log.read_text().splitlines(True) if "supervisor |" in l), end="")
            return 0
        if child.poll() is not None:
            print(log.read_text()[-4000:])
            print(f"failed to start (exit {child.returncode}); full log: {log}")
            pidfile.unlink(missing_ok=True)
            return 1
        time.sleep(0.3)
    print(log.read_text()[-4000:])
    print(f"not ready after 240s; full log: {log}")
    return 1


def down(settings: CommonSettings) -> int:
    pidfile = supervisor_pidfile(settings)
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 90
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
    # A supervisor that died hard leaves children behind: their pids are on record.
    for child in (settings.run_dir / "pids").glob("*.pid") if (settings.run_dir / "pids").exists() else ():
        pid = int(child.read_text())
        if alive(pid):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
        child.unlink()
    ports = settings.ports
    busy = [p for p in (ports.kafka, ports.kafka_controller, ports.redis, ports.prescribing,
                        ports.pharmacy, ports.insurance) if port_open(p)]
    if busy:
        print(f"down, but ports still answer: {busy}")
        return 1
    print("down: no process or port left")
    return 0


def status(settings: CommonSettings) -> int:
    pids = settings.run_dir / "pids"
    rows = sorted(pids.glob("*.pid")) if pids.exists() else []
    if not rows:
        print("nothing running")
        return 1
    for row in rows:
        pid = int(row.read_text())
        print(f"{row.stem:>20}  pid {pid:<8} {'running' if alive(pid) else 'DEAD'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "up", "down", "status"))
    parser.add_argument("--infra-only", action="store_true", help="Kafka, Redis, topics and credentials only")
    args = parser.parse_args()
    settings = CommonSettings.from_env()
    if args.command == "run":
        return Supervisor(settings, args.infra_only).run()
    if args.command == "up":
        return up(settings, args.infra_only)
    if args.command == "down":
        return down(settings)
    return status(settings)


if __name__ == "__main__":
    sys.exit(main())
