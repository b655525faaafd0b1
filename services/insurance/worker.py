"""The insurance stream worker:

- adjudicates every claim on rx.claims.v1 (keyed by member) and publishes ClaimAdjudicated,
  keeping each member's state in a Faust table (changelog in Kafka);
- reads rx.prescriptions.v1 to know the prescriptions claims refer to, and raises
  doctor-shopping SafetyAlerts on rx.alerts.v1.

    python -m services.insurance.worker worker"""
from __future__ import annotations

import asyncio
from datetime import timezone
from typing import Awaitable, Callable

import faust

from services.common import metrics
from services.common.streams import (DeadLetters, Deduplicator, EnvelopeProcessor, InOrderAcks, MemoryDeduplicator, create_app,
                                     as_current_event, durable_dedup, keyed_table, process_in_order,
                                     source_topic)
from services.common.topics import ALERTS, CLAIMS, CLAIMS_ADJUDICATED, PRESCRIPTIONS
from services.insurance.adapters.events import decode_claim_event, decode_prescription_event, encode
from services.insurance.bootstrap import bootstrap
from services.insurance.config import Settings
from services.insurance.domain.events import ClaimSubmitted, Outgoing
from services.insurance.domain.state import REVERSAL, SUBMITTED, MemberState
from services.insurance.handlers import Insurance
from services.kernel.calendar import utc_now

# Claims are adjudicated within 500 ms of the sale at p99: an event may wait at the broker
# this long to come with others (issue 15).
FETCH_WAIT_MS = 50
BATCH_SIZE = 200
BATCH_WITHIN_SECONDS = 0.05   # a batch every 50 ms at most: within the 500 ms a claim may take
ADJUDICATOR, PRESCRIPTION_WATCHER = "insurance-adjudicator", "insurance-prescriptions"
TABLE = "member-accumulators"

Publish = Callable[[list[Outgoing]], Awaitable[None]]


def build(settings: Settings, *, handlers: Callable[[], Insurance] | None = None, publish: Publish | None = None,
          dead_letters: Callable[[faust.App, str], DeadLetters] = DeadLetters,
          dedup: Callable[[str], Deduplicator] | None = None) -> faust.App:
    """The worker's app. `handlers`, `publish`, `dead_letters` and `dedup` replace the real ones in tests."""
    app = create_app("insurance", settings.common, fetch_wait_ms=FETCH_WAIT_MS)
    pseudonyms = settings.common.pseudonyms()
    claims = source_topic(app, CLAIMS)
    outputs = {CLAIMS_ADJUDICATED: source_topic(app, CLAIMS_ADJUDICATED), ALERTS: source_topic(app, ALERTS)}
    # Keyed like rx.claims.v1: a member's changelog records land in the partition of the
    # member's claims, whichever event of a batch is being handled.
    members = keyed_table(app, TABLE, settings.common.topic_partitions, default=None)
    make_handlers = handlers or (lambda: bootstrap(settings)[0])

    async def to_kafka(events: list[Outgoing]) -> None:
        """Hands the records to Faust's producer, which flushes before it commits the source
        offsets: a crash before that re-delivers the source event, and it is sent again."""
        for event in events:
            record = encode(event)
            await outputs[record.topic].send(key=record.key, value=record.value, headers=list(record.headers))

    send = publish or to_kafka

    @app.agent(claims, name=ADJUDICATOR)
    async def adjudicate(stream):
        h = make_handlers()
        processor = EnvelopeProcessor(ADJUDICATOR, MemoryDeduplicator(), dead_letters(app, ADJUDICATOR))

        async def handle(member: bytes | None, envelope) -> None:
            event = decode_claim_event(envelope)
            if not member:
                raise ValueError("a claim event needs the member id as its key")
            kind = SUBMITTED if isinstance(event, ClaimSubmitted) else REVERSAL
            claim_id = event.claim.claim_id if kind == SUBMITTED else event.claim_id
            state = MemberState.from_json(members.get(member))
            if state.handled(claim_id, kind, envelope.event_id) or state.was_pruned(claim_id):
                # Redelivered after its outcome was recorded (or long after, its mark pruned): send
                # that outcome again, in case the crash lost it; the same event id lets every
                # consumer drop the copy.
                await send(await h.republish(envelope.event_id, claim_id, state))
                return
            if kind == SUBMITTED:
                outgoing, state = await h.on_claim_submitted(event, state)
                if outgoing:
                    sold_at = envelope.occurred_at.ToDatetime(tzinfo=timezone.utc)
                    metrics.DISPENSE_TO_ADJUDICATED.observe(max((utc_now() - sold_at).total_seconds(), 0.0))
            else:
                outgoing, state = await h.on_claim_reversal(event, state)
            await send(outgoing)
            state = state.marked(claim_id, kind, envelope.event_id)
            newest = max((mark.day for mark in state.claims.values()), default=None)
            members[member] = (state.pruned(newest) if newest else state).to_json()   # bounded, however many claims

        async def in_order(events, acks: InOrderAcks) -> None:
            for event in events:
                # The table's store files a key under the partition of Faust's "current event"
                # (RocksDB keeps one database per partition); in a batch that is the batch's last
                # event. Each member's task makes its own event current (a task's context is its
                # own), so a member's state is read and written in its own partition.
                as_current_event(event)
                await processor.process(event, lambda envelope, key=event.key: handle(key, envelope))
                await acks.handled(event)

        # Claims of different members are independent: a batch is handled member by member in
        # parallel, each member's claims in their order. An event is acknowledged once it and
        # every earlier event of its partition are handled (InOrderAcks): take_events
        # acknowledges a batch in a `finally`, so a batch cancelled half-way (a crash, a stop, a
        # rebalance) would have counted as done; acknowledgements out of partition order let
        # Faust commit past an event still being handled.
        async for events in stream.noack_take(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            acks = InOrderAcks(stream, events)
            by_member: dict = {}
            for event in events:
                by_member.setdefault(event.key, []).append(event)
            await asyncio.gather(*(in_order(member_events, acks) for member_events in by_member.values()))

    @app.agent(source_topic(app, PRESCRIPTIONS), name=PRESCRIPTION_WATCHER)
    async def watch_prescriptions(stream):
        h = make_handlers()

        async def handle(envelope) -> None:
            issued = decode_prescription_event(envelope, pseudonyms)
            if issued is not None:
                await send(await h.on_prescription_issued(issued))

        await process_in_order(app, PRESCRIPTION_WATCHER, stream, handle, dead_letters=dead_letters,
                               dedup=(dedup or (lambda consumer: durable_dedup(settings.common, "insurance", consumer)))(
                                   PRESCRIPTION_WATCHER))

    return app


if __name__ == "__main__":
    from services.common import eventloop
    eventloop.install()   # before the worker makes its loop
    build(Settings.from_env()).main()
