"""Rebuilds the prescribing read models (dispensed quantities, patients' medication lists)
by replaying rx.prescriptions.v1 and rx.dispenses.v1 from the beginning.

    python -m services.prescribing.replay

Safe while the worker runs: every projection is idempotent per event id, so an event
the worker applies during the replay is applied once."""
from __future__ import annotations

import asyncio
import time

import structlog

from services.common.events import EventDecodeError, decode
from services.common.logging import configure_logging, load_mask_key
from services.common.progress import Progress
from services.common.topic_reader import read_to_end, topic_size
from services.common.topics import DISPENSES, PRESCRIPTIONS
from services.prescribing.bootstrap import bootstrap
from services.prescribing.config import Settings
from services.prescribing.worker import projection

log = structlog.get_logger("prescribing.replay")


async def replay(settings: Settings) -> dict[str, int]:
    handlers, close = bootstrap(settings)
    kafka = settings.common.kafka_access("prescribing")   # reads the topics its read models come from
    project = projection(handlers)
    counts = {"cleared": 0, "applied": 0, "undecodable": 0, "failed": 0}
    try:
        counts["cleared"] = await handlers.deps.store.clear_read_models()
        # Prescriptions first: a dispense refreshes entries from the prescription's state.
        for topic in (PRESCRIPTIONS, DISPENSES):
            with Progress(f"replay {topic}", total=topic_size(kafka, topic)) as progress:
                for record in read_to_end(kafka, topic):
                    progress.advance()
                    try:
                        envelope = decode(record.value)
                    except EventDecodeError:
                        counts["undecodable"] += 1
                        continue
                    try:
                        await project(envelope)
                        counts["applied"] += 1
                    except ValueError as exc:
                        counts["failed"] += 1
                        log.warning("replay.event_failed", topic=topic, offset=record.offset, error=str(exc))
    finally:
        await close()
    return counts


def main() -> None:
    settings = Settings.from_env()
    configure_logging("prescribing-replay", fmt=settings.common.log_format, level=settings.common.log_level,
                      mask_key=load_mask_key(settings.common.run_dir, settings.common.log_mask_key))
    started = time.monotonic()
    counts = asyncio.run(replay(settings))
    log.info("replay.done", seconds=round(time.monotonic() - started, 2), **counts)
    print(f"replayed: {counts}")


if __name__ == "__main__":
    main()
