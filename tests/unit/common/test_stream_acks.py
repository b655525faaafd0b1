"""Acknowledgements a worker gives Faust: only what was handled, in partition order."""
import asyncio
from collections import defaultdict
from types import SimpleNamespace

import faust.transport.consumer as faust_consumer
import pytest
from hypothesis import given, settings, strategies as st
from intervaltree import IntervalTree

from services.common.streams import InOrderAcks


class RecordingStream:
    def __init__(self):
        self.acked = []

    async def ack(self, event):
        self.acked.append(event)


def batch(offsets_by_partition: dict[int, int]):
    """Events of a batch as the stream gives them: each partition's in offset order, interleaved."""
    events = []
    for partition, count in offsets_by_partition.items():
        events += [SimpleNamespace(message=SimpleNamespace(tp=("rx.claims.v1", partition), offset=100 + i))
                   for i in range(count)]
    return sorted(events, key=lambda e: (e.message.offset, e.message.tp))


def faust_next_commit(acked: list[int], committed: int | None):
    """What Faust's consumer would commit for one partition, given what was acknowledged."""
    tp = ("t", 0)
    consumer = SimpleNamespace(_acked={tp: list(acked)}, _gap=defaultdict(IntervalTree),
                               _committed_offset=defaultdict(lambda: None, {tp: committed}),
                               _acked_index=defaultdict(set, {tp: set(acked)}))
    return faust_consumer.Consumer._new_offset(consumer, tp)


def test_faust_commits_past_an_event_still_being_handled_when_acknowledgements_come_out_of_order():
    # The reason InOrderAcks exists: committed 7 (the next to read), 8 acknowledged, 7 still
    # being handled: Faust commits 9, and a crash then loses 7.
    assert faust_next_commit([8], committed=7) == 9
    assert faust_next_commit([7, 8], committed=7) == 9


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 3), st.integers(1, 12), min_size=1), st.randoms(use_true_random=False))
def test_each_event_is_acknowledged_after_every_earlier_event_of_its_partition_is_handled(sizes, rnd):
    events = batch(sizes)
    stream = RecordingStream()
    acks = InOrderAcks(stream, events)
    order = list(events)
    rnd.shuffle(order)   # members handled in parallel finish in any order
    handled = set()

    async def run():
        for event in order:
            handled.add(id(event))
            before = len(stream.acked)
            await acks.handled(event)
            for acked in stream.acked[before:]:
                earlier = [e for e in events if e.message.tp == acked.message.tp
                           and e.message.offset <= acked.message.offset]
                assert all(id(e) in handled for e in earlier)

    asyncio.run(run())
    # Every event acknowledged exactly once, and per partition in offset order.
    assert sorted(map(id, stream.acked)) == sorted(map(id, events))
    for partition in sizes:
        offsets = [e.message.offset for e in stream.acked if e.message.tp[1] == partition]
        assert offsets == sorted(offsets)
        # Faust, given these acknowledgements as they come, never commits past an unhandled event.
        assert faust_next_commit(offsets, committed=100) == 100 + sizes[partition]


def test_an_event_whose_handling_never_finished_holds_back_the_later_ones_of_its_partition():
    events = batch({0: 3, 1: 2})
    stream = RecordingStream()
    acks = InOrderAcks(stream, events)
    p0 = [e for e in events if e.message.tp[1] == 0]
    p1 = [e for e in events if e.message.tp[1] == 1]

    async def run():
        await acks.handled(p0[1])
        await acks.handled(p0[2])
        for event in p1:
            await acks.handled(event)

    asyncio.run(run())   # p0's first event was cancelled half-way (a crash, a rebalance)
    assert stream.acked == p1


class Message:   # hashable, as Faust's are
    def __init__(self, tracked: bool):
        self.tracked, self.acked, self.tp, self.offset, self.topic = tracked, False, ("t", 0), 5, "t"


def message(tracked: bool):
    return Message(tracked)


def test_a_message_a_stream_skipped_during_a_rebalance_does_not_count_as_acknowledged():
    consumer = SimpleNamespace(
        _committed_offset=defaultdict(lambda: None), _acked_index=defaultdict(set), _acked=defaultdict(list),
        _unacked_messages=set(), _n_acked=0, _waiting_for_ack=None,
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True)))
    # Never handed to an agent (faust.streams skips it untracked): not recorded for a commit.
    assert faust_consumer.Consumer.ack(consumer, message(tracked=False)) is False
    assert consumer._acked == {}
    # One that reached an agent counts as before.
    assert faust_consumer.Consumer.ack(consumer, message(tracked=True)) is True
    assert consumer._acked[("t", 0)] == [5]


def test_resuming_a_flow_that_is_on_keeps_the_messages_queued_for_the_agents():
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    async def run():
        flow = FlowControlEvent()
        queue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()                       # the flow starts (recovery done)
        queue.put_nowait("fetched during the seek")
        flow.resume()                       # the end of Faust's recovery resumes it again
        assert queue.qsize() == 1           # still there for the agent
        flow.suspend()                      # a rebalance: what is queued is stale
        flow.resume()
        assert queue.qsize() == 0

    asyncio.run(run())


async def test_a_flush_at_stop_runs_to_its_end_through_repeated_cancels():
    """A worker's stop cancels an agent more than once; what the agent flushes at its stop (the
    handled ids) must still be written, and the agent still ends cancelled."""
    from services.common.streams import through_cancellation
    gate, started, written = asyncio.Event(), asyncio.Event(), []

    async def flush():
        started.set()
        await gate.wait()
        written.append("ids")

    async def agent():
        try:
            await asyncio.Event().wait()   # consuming, until the stop
        finally:
            await through_cancellation(flush())

    task = asyncio.create_task(agent())
    await asyncio.wait({task}, timeout=0.05)
    task.cancel()                              # the stop: the agent goes to its flush
    await started.wait()
    for _ in range(2):                         # more cancels, the flush still waiting on Redis
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
        assert not task.done()
    assert not written
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert written == ["ids"]


async def test_a_failed_flush_is_raised_to_the_agent():
    from services.common.streams import through_cancellation

    async def refused():
        raise ConnectionError("redis down")
    with pytest.raises(ConnectionError):
        await through_cancellation(refused())
