"""The Redis client on uvloop (every process's loop): a connection the server closed is a
connection error, retried, not a crash. uvloop refuses to write on a closed transport with a
RuntimeError where asyncio's own loop raises an OSError; redis-py passed it up as it was, and a
call answered INTERNAL while a Redis Cluster master was killed (the fault runs)."""
import pytest
import redis.exceptions
import uvloop

from services.common.redis_client import connect


async def closed_under_the_client(settings):
    client = connect(settings, "pharmacy")
    try:
        await client.set("{pharmacy:s0000}:uvloop", "1")
        # The server side goes away between two commands: the pool's connection is closed.
        for connection in client.connection_pool._available_connections:
            connection._writer.transport.close()
            assert connection._writer.transport.is_closing()
        with pytest.raises(redis.exceptions.ConnectionError):   # Redis away: UNAVAILABLE, retried
            await client.get("{pharmacy:s0000}:uvloop")
        return await client.get("{pharmacy:s0000}:uvloop")   # the next call, on a new connection
    finally:
        await client.aclose()


def test_a_connection_the_server_closed_is_a_connection_error_on_uvloop(settings):
    assert uvloop.run(closed_under_the_client(settings)) == b"1"
