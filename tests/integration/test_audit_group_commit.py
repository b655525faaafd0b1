"""The audit record of a call is kept before its answer leaves (services/common/audit.py); the
records of concurrent calls share a round trip to Redis (issue 15: one XADD per audited call
was 8% of a service), and a record that could not be kept fails its own call, every one."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import redis.exceptions

from services.common.audit import Audited, Auditor
from services.common.auth import Caller, Role
from services.common.events import decode
from services.common.outbox import OutboxLayout
from services.common.pseudonyms import Pseudonyms
from tests.support import admin_redis_async, empty_redis_database, eventually

DB = 6
LAYOUT = OutboxLayout("audittest", 4)
READ = Audited(subject=lambda request, response: (("citizen_id", request.citizen_id), request.code))
CALLER = Caller("k1", Role.PHARMACY, "PH0001")


class Counting:
    """The real client, counting its round trips (a single XADD or a pipeline)."""

    def __init__(self, client):
        self._client, self.trips = client, 0

    async def xadd(self, *args, **kwargs):
        self.trips += 1
        return await self._client.xadd(*args, **kwargs)

    def pipeline(self, *args, **kwargs):
        self.trips += 1
        return self._client.pipeline(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


async def record(auditor: Auditor, n: int) -> None:
    request = SimpleNamespace(citizen_id=f"0012030{n:05d}", code=f"01001abc{n:04d}-c")
    await auditor.record(method="/eprescription.pharmacy.v1.PharmacyService/LookupPrescription", audited=READ,
                         caller=CALLER, request=request, response=None, outcome="OK", correlation_id=f"cid-{n}")


async def kept(client) -> list:
    entries = []
    for shard in range(LAYOUT.shards):
        entries += [fields for _, fields in await client.xrange(LAYOUT.stream(shard))]
    return entries


async def test_a_thousand_concurrent_records_are_each_kept_in_fewer_round_trips():
    async with empty_redis_database(DB) as client:
        counting = Counting(client)
        auditor = Auditor(counting, LAYOUT, Pseudonyms(b"k" * 32))
        await asyncio.gather(*(record(auditor, n) for n in range(1000)))
        entries = await kept(client)
        assert len(entries) == 1000
        codes = {decode(fields[b"value"]).access_recorded.prescription_code for fields in entries}
        assert codes == {f"01001abc{n:04d}-c" for n in range(1000)}
        assert counting.trips < 100, counting.trips   # they shared round trips
        # alone, a record goes at once, by itself, and is there when the call returns
        await record(auditor, 1000)
        assert len(await kept(client)) == 1001


async def test_when_redis_refuses_every_waiting_call_fails_and_the_next_ones_work():
    async with empty_redis_database(DB) as admin:
        from services.common.config import CommonSettings
        refusing = admin_redis_async(CommonSettings.from_env().redis_url_for("pharmacy"), db=DB)  # not its keys
        auditor = Auditor(refusing, LAYOUT, Pseudonyms(b"k" * 32))
        results = await asyncio.gather(*(record(auditor, n) for n in range(50)), return_exceptions=True)
        assert all(isinstance(r, redis.exceptions.RedisError) for r in results), results[:3]
        assert await kept(admin) == []
        await refusing.aclose()
        auditor._redis = admin                     # Redis answers again: the same auditor goes on
        await asyncio.gather(*(record(auditor, n) for n in range(50)))
        assert len(await kept(admin)) == 50


class Gated:
    """The real client, whose round trips wait until the test opens the gate."""

    def __init__(self, client):
        self._client, self.reached, self.open = client, asyncio.Event(), asyncio.Event()

    async def xadd(self, *args, **kwargs):
        self.reached.set()
        await self.open.wait()
        return await self._client.xadd(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.parametrize("cancelled", [0, 7])
async def test_a_cancelled_call_does_not_stop_the_others(cancelled):
    """Call 0's record is on its way when it is cancelled; call 7's waits for the next batch."""
    async with empty_redis_database(DB) as client:
        gated = Gated(client)
        auditor = Auditor(gated, LAYOUT, Pseudonyms(b"k" * 32))
        first = asyncio.ensure_future(record(auditor, 0))
        await asyncio.wait_for(gated.reached.wait(), timeout=5)        # call 0's XADD is on its way
        calls = [first] + [asyncio.ensure_future(record(auditor, n)) for n in range(1, 20)]
        async def all_waiting():
            return len(auditor._waiting) == 19
        await eventually(all_waiting, timeout=5, interval=0.001, message="the other 19 waiting for the next batch")
        calls[cancelled].cancel()
        gated.open.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 1
        assert sum(r is None for r in results) == 19
        assert len(await kept(client)) >= 19
