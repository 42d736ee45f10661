"""The ACE IoT (FlightDeck) API source: timeseries of named points, or of a whole site.

* :meth:`AceIotSource.read` asks ``POST points/get_timeseries?start_time&end_time&raw_data=true``
  with ``{"points": [{"name": ..}]}`` (the body ACE's Swagger schema defines: point objects, not
  bare names) for at most 100 points a call. ACE leaves unknown points out of
  the answer without a word, so each name is first checked once with ``GET points/{name}`` (an
  unknown one fails alone; switch off with ``verify_points``).
* :meth:`AceIotSource.read_site` walks ``GET sites/{site}/timeseries/paginated``.

Every timeseries call says ``raw_data=true``: ACE's default is 5-minute aggregates, which would
silently keep one value in five of a one-minute point. Both follow ``next_cursor`` while
``has_more`` says so, and turn each page into one batch per
point. Sample values arrive as strings: what parses as a number becomes the value; any other text
(``"active"``, ``"Manual"``) is kept as text with a NaN value. ACE has no quality: values are
good, a ``null`` is bad.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import structlog
from pydantic import SecretStr

from producer.sources.base import Columns, PointComplete, PointFailure, SourceItem, TimeWindow
from producer.sources.errors import (
    AuthError,
    ProtocolError,
    SourceRequestError,
)
from producer.sources.http import HttpSource, Params
from producer.sources.ratelimit import HostRateLimits
from producer.sources.retry import RetryPolicy, Sleep
from producer.sources.timestamps import format_time, parse_times
from shared.batch import Quality
from shared.errors import ConfigError

log = structlog.get_logger(__name__)
MAX_POINTS_PER_CALL = 100
# the ``page_size`` values ACE's Swagger schema allows (an enum: anything else is a 400)
PAGE_SIZES = (3, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000, 300000, 500000)
_SAMPLE = itemgetter("name", "value", "time")


@dataclass(frozen=True, slots=True)
class AceIotConfig:
    """Connection settings (``ACE_API_URL``, ``ACE_API_KEY``)."""

    base_url: str  # e.g. https://flightdeck.aceiot.cloud/api
    api_key: SecretStr
    verify_tls: bool = True
    ca_bundle: str | None = None
    points_per_request: int = MAX_POINTS_PER_CALL
    page_size: int | None = None  # ask the server for pages of this many samples
    max_requests_per_second: float | None = None
    timeout_s: float = 60.0
    verify_points: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"ACE_API_URL must be an http(s) URL, got {self.base_url!r}")
        if not 1 <= self.points_per_request <= MAX_POINTS_PER_CALL:
            raise ConfigError(f"ACE reads 1..{MAX_POINTS_PER_CALL} points per request")
        if self.page_size is not None and self.page_size not in PAGE_SIZES:
            raise ConfigError(f"ACE's page_size is one of {PAGE_SIZES}, got {self.page_size}")


def _value(raw: Any) -> tuple[float, str, bool]:
    """``(value, text, bad)`` of one sample value."""
    if isinstance(raw, str):
        try:
            return float(raw), "", False
        except ValueError:
            return math.nan, raw, False
    if isinstance(raw, bool | int | float):
        return float(raw), "", False
    if raw is None:
        return math.nan, "", True
    return math.nan, str(raw), False


def parse_samples(samples: Any) -> dict[str, Columns]:
    """A page of ``point_samples`` -> columns per point name, each in time order."""
    if not isinstance(samples, list):
        raise ProtocolError("point_samples is not a list")
    if not samples:
        return {}
    try:
        names, raw_values, times = zip(*map(_SAMPLE, samples), strict=True)
        timestamps = parse_times(times)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"samples are not shaped as ACE documents: {exc}") from exc
    n = len(names)
    quality = np.zeros(n, dtype=np.uint8)
    texts: list[str] | None = None
    try:
        if not all(type(v) is str for v in raw_values):
            raise ValueError("not all strings")
        values = np.array(raw_values, dtype=np.float64)
    except ValueError:
        values = np.empty(n, dtype=np.float64)
        texts = [""] * n
        for i, raw in enumerate(raw_values):
            values[i], texts[i], bad = _value(raw)
            if bad:
                quality[i] = Quality.BAD
    ids: dict[str, int] = {}
    point_ids = np.fromiter((ids.setdefault(name, len(ids)) for name in names), np.int64, n)
    order = np.lexsort((timestamps, point_ids))  # by point, then time (stable)
    bounds = np.searchsorted(point_ids[order], np.arange(len(ids) + 1))
    out: dict[str, Columns] = {}
    for name, i in ids.items():
        rows = order[bounds[i] : bounds[i + 1]]
        out[name] = Columns(
            timestamps[rows],
            values[rows],
            quality[rows],
            None if texts is None else [texts[r] for r in rows.tolist()],
        )
    return out


class AceIotSource(HttpSource):
    """Reads ACE IoT timeseries (a :class:`~producer.sources.base.Source`)."""

    connector = "AceIot"

    def __init__(
        self,
        config: AceIotConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        rate_limits: HostRateLimits | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            config,
            headers={"Authorization": f"Bearer {config.api_key.get_secret_value()}"},
            transport=transport,
            http_client=http_client,
            rate_limits=rate_limits,
            sleep=sleep,
            rng=rng,
        )
        self.config = config
        self._known: set[str] = set()

    async def _check(self, name: str, window: TimeWindow) -> SourceRequestError | None:
        """``None`` if ACE knows the point, else why not (``AuthError`` is raised)."""
        if not self.config.verify_points or name in self._known:
            return None
        try:
            await self.http.json(
                "GET", f"points/{quote(name, safe='')}", points=[name], window=window
            )
        except AuthError:
            raise
        except SourceRequestError as error:
            return error
        self._known.add(name)
        return None

    def _window_params(self, window: TimeWindow) -> list[tuple[str, str | int]]:
        params: list[tuple[str, str | int]] = [
            ("start_time", format_time(window.start_us)),
            ("end_time", format_time(window.end_us)),
            ("raw_data", "true"),  # never ACE's default 5-minute aggregates
        ]
        if self.config.page_size:
            params.append(("page_size", self.config.page_size))
        return params

    async def read(self, points: Sequence[str], window: TimeWindow) -> AsyncIterator[SourceItem]:
        """Stream ``points`` over ``window``, 100 points a call, every page to the end."""
        unique = list(dict.fromkeys(points))  # in order, once each
        size = self.config.points_per_request
        for first in range(0, len(unique), size):
            group: list[str] = []
            for name in unique[first : first + size]:
                problem = await self._check(name, window)
                if problem is None:
                    group.append(name)
                else:
                    log.warning("ace_point_unknown", point=name, error=str(problem))
                    yield PointFailure(name, window, problem.for_points([name], window))
            if group:
                body = {"points": [{"name": name} for name in group]}
                pages = self._pages("POST", "points/get_timeseries", window, group, body)
                async for item in self._collect(pages, group, window):
                    yield item

    async def read_site(self, site: str, window: TimeWindow) -> AsyncIterator[SourceItem]:
        """Stream every point of ``site`` over ``window`` (raw samples, cursor-paginated)."""
        pages = self._pages(
            "GET",
            f"sites/{quote(site, safe='')}/timeseries/paginated",
            window,
            [],
            None,
        )
        async for item in self._collect(pages, [], window):
            yield item

    async def _pages(
        self,
        method: str,
        url: str,
        window: TimeWindow,
        points: list[str],
        body: Any,
        extra: Params = (),
    ) -> AsyncIterator[dict[str, Columns]]:
        """Each page's columns per point, following ``next_cursor`` while ``has_more``."""
        cursor: str | None = None
        while True:
            params = [*self._window_params(window), *extra]
            if cursor:
                params.append(("cursor", cursor))
            _, answer = await self.http.json(
                method, url, params=params, body=body, points=points, window=window
            )
            if not isinstance(answer, dict):
                raise ProtocolError("answer is not a JSON object", points=points, window=window)
            yield parse_samples(answer.get("point_samples", []))
            cursor = answer.get("next_cursor")
            if not answer.get("has_more") or not cursor:
                return

    async def _collect(
        self, pages: AsyncIterator[dict[str, Columns]], expected: list[str], window: TimeWindow
    ) -> AsyncIterator[SourceItem]:
        """Batches per point and page, then each point's completion (or all their failures)."""
        counts = dict.fromkeys(expected, 0)
        start_us, end_us = window.start_us, window.end_us
        try:
            async for page in pages:
                for name, columns in page.items():
                    ts = columns.timestamps_us
                    lo, hi = np.searchsorted(ts, [start_us, end_us], side="left").tolist()
                    counts[name] = counts.get(name, 0) + (hi - lo)
                    if hi > lo:
                        yield columns.slice(lo, hi).to_batch(name, self.connector)
        except AuthError:
            raise
        except SourceRequestError as error:
            for name in counts:
                log.warning("ace_point_failed", point=name, error=str(error))
                yield PointFailure(name, window, error.for_points([name], window))
            return
        for name, total in counts.items():
            yield PointComplete(name, window, total)
