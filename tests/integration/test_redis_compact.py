"""Redis keeps a prescription's hashes packed (issue 15: Redis <= 2 KB per live prescription):
the servers the project starts raise hash-max-listpack-value (services/common/redis_security.py),
so a ledger, its sale and its retry record, each holding one value longer than Redis's default
64 bytes, are listpacks rather than hash tables a third bigger."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from eprescription.common.v1 import common_pb2

from services.common import dates
from services.kernel.calendar import VIETNAM
from services.pharmacy.adapters.events import prescription_of
from services.pharmacy.adapters.redis_store import RedisLedgerStore
from tests.integration.test_live_state_expiry import sell
from tests.support import empty_redis_database

DB = 6


def long_prescription(lines: int):
    """A prescription of `lines` lines with their instructions: its signed form runs to a few KB."""
    valid_until = (datetime.now(VIETNAM) + timedelta(days=5)).date()
    rx = common_pb2.Prescription(code=f"01001{uuid.uuid4().hex[:7]}-c", facility_code="01001",
                                 valid_until=dates.to_proto(valid_until))
    rx.patient.identifier.citizen_id = "001203004567"
    rx.patient.name = "Nguyễn Thị Minh Khai"
    for n in range(1, lines + 1):
        line = rx.lines.add(line_number=n, drug_code="AB"[n % 2], quantity=20)
        line.directions = "uống sau ăn sáng và tối, không dùng cùng thuốc kháng acid; " * 2
    return prescription_of(rx.SerializeToString(deterministic=True))


async def test_a_ledger_its_sale_and_its_retry_record_are_packed():
    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=timedelta(days=7)), long_prescription(8)
        await store.open_ledger(rx)
        plan, cmd = await sell(store, rx, datetime.now(timezone.utc), (1, "B", 5), (2, "A", 3))
        keys = [store.ledger_key(rx.code), store._sale_key(rx.code, plan.receipt.dispense_id),
                store._idem_key(rx.code, cmd.pharmacy, cmd.idempotency_key)]
        longest = {k: max(len(v) for v in (await client.hgetall(k)).values()) for k in keys}
        assert all(64 < n <= 4096 for n in longest.values()), longest   # beyond the default, within ours
        assert [await client.object("encoding", k) for k in keys] == [b"listpack"] * 3


async def test_a_value_beyond_the_bound_still_works_as_a_hash_table():
    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=timedelta(days=7)), long_prescription(40)
        await store.open_ledger(rx)
        assert await client.object("encoding", store.ledger_key(rx.code)) == b"hashtable"
        assert (await store.ledger(rx.code)).remaining[1] == 20
