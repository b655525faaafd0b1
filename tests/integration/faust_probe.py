"""A Faust worker built with the platform's kit, for the integration tests:
python tests/integration/faust_probe.py worker  (PROBE_TOPIC names its source topic).

It records each handled event id in Redis; an event whose reason is "explode" makes the
handler fail, as a message the domain rejects would."""
from __future__ import annotations

import os


from services.common.config import CommonSettings
from services.common.events import payload_of
from services.common.streams import DeadLetters, EnvelopeProcessor, RedisDeduplicator, create_app, source_topic
from tests.support import admin_redis_async

settings = CommonSettings.from_env()
TOPIC = os.environ["PROBE_TOPIC"]
app = create_app(f"probe-{TOPIC}", settings, principal="admin")   # a test harness, not a service
topic = source_topic(app, TOPIC)


@app.agent(topic)
async def consume(stream):
    client = admin_redis_async(settings.redis_url_for("admin"))
    processor = EnvelopeProcessor(f"probe-{TOPIC}", RedisDeduplicator(client, f"probe-{TOPIC}"),
                                  DeadLetters(app, f"probe-{TOPIC}"))

    async def handle(envelope):
        if payload_of(envelope).reason == "explode":
            raise ValueError("the handler cannot accept this event")
        await client.rpush(f"probe:{TOPIC}:handled", envelope.event_id)

    async for event in stream.events():
        await processor.process(event, handle)


if __name__ == "__main__":
    app.main()
