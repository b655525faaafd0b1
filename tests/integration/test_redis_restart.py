"""A Redis restarted from its AOF (the project's own server settings and ACL users) comes back
with every write it acknowledged, those of scripts and transactions included.

Redis replays a script's writes from the AOF as a MULTI/EXEC block, on a client that is the
default user; EXEC checks its commands against that user's ACL again, and with the default
user stripped of every command the block was refused and silently dropped (Redis 7.0.15, the
Debian package; redis/redis#14541): a SIGKILL of Redis lost acknowledged sales."""
import signal
import subprocess

import redis

from services.common.config import CommonSettings
from services.common.redis_security import ADMIN, ensure_passwords, server_argv
from tests.support import free_port, wait_until


def start(argv):
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def client(port, user, password):
    return redis.Redis(host="127.0.0.1", port=port, username=user, password=password, socket_timeout=5)


def wait_ready(port, password):
    def answers():
        try:
            return client(port, ADMIN, password).ping()
        except redis.exceptions.RedisError:
            return False
    wait_until(answers, timeout=20, message=f"Redis on {port}")


def test_a_sigkilled_redis_keeps_what_scripts_and_transactions_wrote(tmp_path):
    port = free_port()
    settings = CommonSettings.from_env({"EPRX_RUN_DIR": str(tmp_path), "EPRX_REDIS_PORT": str(port)})
    argv = server_argv(settings, tmp_path / "redis")
    argv[argv.index("--appendfsync") + 1] = "always"   # what the fault runs use
    passwords = ensure_passwords(settings.infra_secrets_dir)
    proc = start(argv)
    try:
        wait_ready(port, passwords[ADMIN])
        pharmacy = client(port, "pharmacy", passwords["pharmacy"])
        script = pharmacy.register_script(
            "redis.call('HSET', KEYS[1], 'sold', ARGV[1]); redis.call('XADD', KEYS[2], '*', 'event', ARGV[1]); return 1")
        for n in range(50):   # the way every sale is written: a script, keys of one shard
            script(keys=[f"{{pharmacy:s{n % 8:04d}}}:ledger:{n}", f"{{pharmacy:s{n % 8:04d}}}:outbox"], args=[n])
        with pharmacy.pipeline(transaction=True) as tx:   # and a MULTI/EXEC of its own
            tx.set("{pharmacy:s0000}:tx", "kept")
            tx.incr("{pharmacy:s0000}:count")
            tx.execute()
        pharmacy.set("{pharmacy:s0000}:plain", "kept")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        proc = start(argv)
        wait_ready(port, passwords[ADMIN])
        admin = client(port, ADMIN, passwords[ADMIN])
        assert admin.get("{pharmacy:s0000}:plain") == b"kept"
        assert admin.get("{pharmacy:s0000}:tx") == b"kept" and admin.get("{pharmacy:s0000}:count") == b"1"
        assert [admin.hget(f"{{pharmacy:s{n % 8:04d}}}:ledger:{n}", "sold") for n in range(50)] == \
            [str(n).encode() for n in range(50)]
        assert sum(admin.xlen(f"{{pharmacy:s{s:04d}}}:outbox") for s in range(8)) == 50
        # The default user still lets nobody in.
        try:
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).get("{pharmacy:s0000}:plain")
            raise AssertionError("a connection without credentials was served")
        except redis.exceptions.AuthenticationError:
            pass
    finally:
        proc.kill()
        proc.wait(10)
