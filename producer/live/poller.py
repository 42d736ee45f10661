"""Live mode: poll a source's current values at an interval and publish them to the real-time topic.

A source that offers ``current(points)`` (the latest value per point: PI Web API
``GET streamsets/value``, ACE's latest samples) is asked for that. Any other source (the
simulator) is read over the window since the previous poll, which gives every value recorded in
between, not only the last one, so nothing between two polls is lost. Live data goes through its
own plain producer and topic: the backfill's throttle and transactions never slow it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from producer.sources.base import TimeWindow
from producer.sources.connectors import Connectors
from producer.worker.publisher import PlainPublisher
from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.errors import HistfillError
from shared.settings import ProducerSettings

log = structlog.get_logger(__name__)
Sleep = Callable[[float], Awaitable[None]]


class LivePoller:
    """Publishes ``LIVE_POINTS`` of ``LIVE_CONNECTOR`` every ``LIVE_POLL_INTERVAL_SECONDS``."""

    def __init__(
        self,
        settings: ProducerSettings,
        connectors: Connectors,
        codec: BatchCodec,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if settings.live_connector is None:
            raise ValueError("live mode needs LIVE_CONNECTOR")
        self.settings = settings
        self.connector = settings.live_connector
        self.points = tuple(p.strip() for p in settings.live_points.split(",") if p.strip())
        self.interval_s = settings.live_poll_interval_seconds
        self._connectors = connectors
        self._codec = codec
        self._clock = clock
        self._sleep = sleep
        self._publisher: PlainPublisher | None = None
        self._last_us: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.values_published = 0
        self.polls = 0

    async def poll_once(self) -> int:
        """One poll: read what is new, publish it, wait for Kafka's acks; the values sent."""
        if self._publisher is None:
            self._publisher = PlainPublisher(self.settings, self._codec)
        now_us = int(self._clock() * 1_000_000)
        start_us = (
            self._last_us
            if self._last_us is not None
            else now_us - int(self.interval_s * 1_000_000)
        )
        if now_us <= start_us:
            return 0
        source: Any = self._connectors.get(self.connector)
        batches: list[PointBatch] = []
        if hasattr(source, "current"):
            batches = list(await source.current(self.points))
        else:
            async for item in source.read(self.points, TimeWindow.from_micros(start_us, now_us)):
                if isinstance(item, PointBatch) and len(item):
                    batches.append(item)
                elif not isinstance(item, PointBatch) and hasattr(item, "error"):
                    log.warning(
                        "live_point_failed", point=item.source_address, error=str(item.error)
                    )
        publisher = self._publisher
        topic = self.settings.topic_realtime

        def send() -> int:
            for batch in batches:
                publisher.publish(topic, batch)
            publisher.flush()
            return sum(len(b) for b in batches)

        sent = await asyncio.to_thread(send)
        self._last_us = now_us
        self.values_published += sent
        self.polls += 1
        return sent

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged and the next one covers its window."""
        log.info("live_mode_started", connector=self.connector, points=len(self.points))
        while True:
            try:
                sent = await self.poll_once()
                log.debug("live_poll", values=sent)
            except HistfillError as exc:
                log.warning("live_poll_failed", error=str(exc))
            await self._sleep(self.interval_s)

    def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.create_task(self.run(), name="live-poller")

    async def stop(self) -> None:
        """Stop polling and flush."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.close)
