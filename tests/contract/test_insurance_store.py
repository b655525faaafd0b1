"""One suite, two insurance stores: Redis and the in-memory one of the handler and agent
tests (services/insurance/ports.py states the contract)."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from services.insurance.adapters.redis_store import RedisInsuranceStore
from services.insurance.domain.adjudication import Adjudication, LineDecision, QuotedLine
from services.insurance.domain.coverage import PricedLine, Sale
from services.insurance.domain.alerts import ControlledPrescription
from services.insurance.domain.identifiers import Identifier
from services.insurance.domain.model import CardPeriod, Member
from services.insurance.domain.state import VisitState, YearState
from tests.support import random_digits
from tests.support import empty_redis_database
from tests.support.memory_insurance import MemoryInsuranceStore
from tests.support.members import prescription_facts

CONTRACT_DB = 4
AT = datetime(2026, 11, 20, 3, tzinfo=timezone.utc)


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        yield MemoryInsuranceStore()
        return
    async with empty_redis_database(CONTRACT_DB) as client:
        yield RedisInsuranceStore(client, timedelta(days=365 * 100))   # fixed dates; Redis expires by its clock


def member(card_from=date(2026, 1, 1), ssn=None, cccd=None) -> Member:
    ssn = ssn or random_digits(10)
    return Member(ssn, cccd or "0" + random_digits(11), "Thành viên", date(1970, 1, 1), "female",
                  (CardPeriod(f"DN401{ssn}", card_from, date(card_from.year, 12, 31), "01001"),))


async def test_a_member_is_found_by_each_of_its_identifiers_and_cards_merge(store):
    m = member()
    assert await store.upsert_member(m) == ("changed", "")
    assert await store.upsert_member(m) == ("same", "")
    for identifier in (Identifier("ssn", m.member_id), Identifier("cccd", m.citizen_id),
                       Identifier("card", m.cards[0].card_code)):
        assert await store.resolve(identifier) == m
    renewed = replace(m, cards=(CardPeriod(m.cards[0].card_code, date(2027, 1, 1), date(2027, 12, 31), "01001"),))
    assert (await store.upsert_member(renewed))[0] == "changed"
    assert [c.valid_from for c in (await store.member(m.member_id)).cards] == [date(2026, 1, 1), date(2027, 1, 1)]
    assert await store.resolve(Identifier("ssn", "0000000000")) is None


async def test_a_citizen_id_belongs_to_one_member(store):
    first = member()
    await store.upsert_member(first)
    assert await store.upsert_member(member(cccd=first.citizen_id)) == ("conflict", first.member_id)


async def test_quotes_and_prescriptions_come_back_as_saved(store):
    lines = [QuotedLine(1, "B01AF01-20T", 30, 58_000), QuotedLine(2, "N02BE01-500T", 10, 1_050)]
    await store.save_quote("q1", "0123456789", lines)
    assert await store.quote("q1") == {1: lines[0], 2: lines[1]}
    assert await store.quote("nope") is None and await store.quote("") is None
    facts = prescription_facts((1, "B01AF01-20T", 30), (2, "N02BE01-500T", 10), card="DN4010123456789",
                               encounter="K-2026-001", other_costs=150_000)
    await store.save_prescription(facts)
    assert await store.prescription("01001abcdefg-c") == facts
    undated = replace(facts, code="01001abcdefh-c", visit=replace(facts.visit, day=None))
    await store.save_prescription(undated)
    assert await store.prescription("01001abcdefh-c") == undated
    assert await store.prescription("01001zzzzzzz-c") is None


async def test_the_latest_outcome_of_a_claim_wins_and_carries_the_member_s_year(store):
    line = LineDecision(1, "B01AF01-20T", "approved", "OK", 30, 2**62, 50, 15_000_000, 12_000_000, 3_000_000, 3_000_000)
    first = Adjudication("c1", "0123456789", "approved", AT, "d1", "DN4010123456789", "", 12_000_000, 3_000_000, 80,
                         "PH0001", "01001abcdefg-c", False, date(2026, 11, 20), (line,))
    await store.save_adjudication(first, (2026, YearState(3_000_000)))
    assert await store.adjudication("c1") == first
    assert await store.year("0123456789", 2026) == YearState(3_000_000)
    reversed_ = replace(first, outcome="reversed", reason="sale reversed", adjudicated_at=AT + timedelta(hours=1))
    await store.save_adjudication(reversed_, (2026, YearState(0, None, None)))
    assert await store.adjudication("c1") == reversed_
    assert await store.year("0123456789", 2026) == YearState(0)
    assert await store.year("0123456789", 2025) is None and await store.adjudication("c2") is None
    exempt = YearState(16_000_000, date(2026, 11, 20), "c9")
    await store.save_adjudication(replace(first, claim_id="c9"), (2026, exempt))
    assert await store.year("0123456789", 2026) == exempt


async def test_a_visit_comes_back_with_its_sales_for_the_counter(store):
    sale = Sale("c1", (PricedLine(1, "N02BE01-500T", 20, 1_200, 1_050, "facility_bid", 100, True,
                                  "PRICE_ABOVE_REFERENCE"),), 80, "")
    visit = VisitState(date(2026, 11, 20), 150_000, AT.isoformat(), (sale,), {"c1": ((21_000, 21_000, 0),)})
    adjudication = Adjudication("c1", "0123456789", "partial", AT, visit_key="01001:K-1", revision=2,
                                adjusted_by="c2", visit_cost_vnd=171_000)
    await store.save_adjudication(adjudication, None, ("01001:K-1", visit))
    assert await store.visit("0123456789", "01001:K-1") == visit
    assert await store.adjudication("c1") == adjudication
    assert await store.visit("0123456789", "01001:K-2") is None and await store.visit("9", "01001:K-1") is None
    # a quote reads the member's year and the visit at once
    assert await store.year_and_visit("0123456789", 2026, "01001:K-1") == (None, visit)
    await store.save_adjudication(adjudication, (2026, YearState(21_000)))
    assert await store.year_and_visit("0123456789", 2026, "01001:K-1") == (YearState(21_000), visit)
    assert await store.year_and_visit("0123456789", 2026, None) == (YearState(21_000), None)
    assert await store.year_and_visit("0123456789", 2025, "01001:K-2") == (None, None)


async def test_controlled_history_is_the_window_on_either_side(store):
    key = "citizen_id:001203004567"
    seen = []
    for n, days in enumerate((0, 25, -25, 40)):
        new = ControlledPrescription(f"rx{n}", f"P{n}", AT + timedelta(days=days))
        seen.append(sorted(p.code for p in await store.controlled_history(key, new)))
    assert seen == [[], ["rx0"], ["rx0"], ["rx1"]]
    again = await store.controlled_history(key, ControlledPrescription("rx0", "P0", AT))
    assert sorted(p.code for p in again) == ["rx1", "rx2"]
