"""Redis as each service's user sees it: its own keys only, no administration, the default
user off (services/common/redis_security.py)."""
import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

OWN = {"prescribing": "prescribing:read:acl-test", "pharmacy": "{pharmacy:s0001}:acl-test",
       "insurance": "insurance:acl-test"}


def as_user(settings, user):
    return redis.Redis.from_url(settings.redis_url_for(user), socket_timeout=5)


@pytest.mark.parametrize("user", sorted(OWN))
def test_a_service_reads_and_writes_its_own_keys_and_no_other_service_s(settings, user):
    client = as_user(settings, user)
    client.set(OWN[user], "mine")
    assert client.get(OWN[user]) == b"mine"
    for other, key in OWN.items():
        if other == user:
            continue
        with pytest.raises(NoPermissionError):
            client.get(key)
        with pytest.raises(NoPermissionError):
            client.set(key, "theirs")
    for command in (("FLUSHALL",), ("CONFIG", "GET", "maxmemory"), ("KEYS", "*"), ("ACL", "LIST")):
        with pytest.raises((NoPermissionError, ResponseError)):
            client.execute_command(*command)


def test_the_agency_reads_members_and_writes_nothing(settings):
    agency = as_user(settings, "agency")
    as_user(settings, "insurance").set("insurance:member:{acl-test}", "x")
    assert agency.get("insurance:member:{acl-test}") == b"x"
    with pytest.raises(NoPermissionError):
        agency.set("insurance:member:{acl-test}", "forged")
    with pytest.raises(NoPermissionError):
        agency.get("insurance:claim:c-1")


def test_the_default_user_is_off_and_a_wrong_password_is_refused(settings):
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(settings.redis_url, socket_timeout=5).ping()
    with pytest.raises(AuthenticationError):
        redis.Redis(host="127.0.0.1", port=settings.ports.redis, username="pharmacy", password="wrong").ping()


def test_with_redis_tls_on_the_port_speaks_tls_only(settings, tmp_path):
    import dataclasses
    import subprocess

    from services.common.redis_security import server_argv
    from tests.support import free_port, wait_until
    port = free_port()
    tls_settings = dataclasses.replace(settings, redis_tls=True,
                                       ports=dataclasses.replace(settings.ports, redis=port),
                                       redis_url=f"redis://127.0.0.1:{port}/0")
    server = subprocess.Popen(server_argv(tls_settings, tmp_path / "redis"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        url = tls_settings.redis_url_for("pharmacy")
        assert url.startswith("rediss://pharmacy:") and "ssl_ca_certs=" in url

        def up():
            try:
                return redis.Redis.from_url(url, socket_timeout=2).ping()
            except redis.exceptions.ConnectionError:
                return False
        wait_until(up, timeout=20, message="redis with TLS")
        client = redis.Redis.from_url(url, socket_timeout=2)
        client.set(OWN["pharmacy"], "over tls")
        assert client.get(OWN["pharmacy"]) == b"over tls"
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, username="pharmacy", password="x", socket_timeout=2).ping()
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_a_piling_outbox_makes_the_service_not_ready(settings):
    """Issue 13 (5): health reports NOT_SERVING (its probe fails) while the service's outbox holds
    more than the alarm depth, and ready again once it drains."""
    import dataclasses

    from services.common.outbox import OutboxLayout
    from services.common.redis_client import OutboxBacklog, Readiness
    admin = as_user(settings, "admin")
    stream = OutboxLayout("insurance", settings.outbox_shards).stream(0)
    depth = sum(admin.xlen(s) for s in OutboxLayout("insurance", settings.outbox_shards).streams())
    readiness = Readiness(dataclasses.replace(settings, outbox_alarm_depth=depth + 2), "insurance")
    try:
        await readiness.check()                                  # under the alarm: ready
        ids = [admin.xadd(stream, {"event_id": f"e{i}", "topic": "none", "key": "k", "headers": "", "value": "v"})
               for i in range(5)]
        try:
            with pytest.raises(OutboxBacklog):
                await readiness.check()
        finally:
            admin.xdel(stream, *ids)
        await readiness.check()
    finally:
        await readiness.aclose()
