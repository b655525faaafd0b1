"""Members with fresh identifiers, an insurance server in the test process, a real worker."""
from __future__ import annotations

from datetime import date, datetime, timezone, timedelta

import pytest
from eprescription.insurance.v1 import insurance_pb2_grpc

from services.common.auth import load_tokens, write_credentials
from services.insurance.adapters.grpc_api import InsuranceServicer, binding
from services.insurance.adapters.redis_store import RedisInsuranceStore
from services.insurance.bootstrap import bootstrap
from services.insurance.config import Settings
from services.insurance.domain.model import CardPeriod, Member
from tests.support.prescribing_fixtures import Clock, in_process_server, start_process, stop_process
from tests.support import admin_redis_async, random_digits


def new_member(digit=4, *, valid=(date(2026, 1, 1), date(2026, 12, 31)), five_years_from=None,
               exempt_from=None) -> Member:
    ssn, cccd = random_digits(10), "0" + random_digits(11)
    return Member(ssn, cccd, "Thành viên Thử", date(1970, 1, 1), "female",
                  (CardPeriod(f"DN{digit}01{ssn}", valid[0], valid[1], "01001"),),
                  copay_exempt_from=exempt_from, five_years_from=five_years_from)


@pytest.fixture
async def store():
    client = admin_redis_async(Settings.from_env().common.redis_url_for("admin"), protocol=3)
    yield RedisInsuranceStore(client, timedelta(days=365 * 100))   # fixed dates; Redis expires by its clock
    await client.aclose()


@pytest.fixture
async def insurance(tmp_path):
    """(stub, tokens, clock, handlers) over a real channel."""
    settings = Settings.from_env()
    clock = Clock(datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc))
    client = admin_redis_async(settings.common.redis_url_for("admin"), protocol=3)
    handlers, close = bootstrap(settings, clock=clock, redis_client=client)
    write_credentials(tmp_path)
    async with in_process_server(binding(InsuranceServicer(handlers)), tmp_path) as channel:
        yield insurance_pb2_grpc.InsuranceServiceStub(channel), load_tokens(tmp_path / "tokens.json"), clock, handlers
    await close()


@pytest.fixture(scope="module")
def insurance_worker():
    worker = start_process(["-m", "services.insurance.worker", "worker", "-l", "warn", "--without-web"])
    holder = {"proc": worker}
    yield holder
    output = stop_process(holder["proc"])
    assert holder["proc"].returncode in (0, -15), output[-3000:]
