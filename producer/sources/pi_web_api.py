"""The OSIsoft PI Web API source: WebIds by path, recorded values by stream set, paged to the end.

A read goes group by group (``points_per_request`` points, default 10):

1. resolve the group's paths to WebIds (``GET points?path=`` for one, ``GET points/multiple`` for
   several; cached for the client's life); an unknown path fails that point alone;
2. ask ``GET streamsets/recorded?webId=..`` (``GET streams/{webId}/recorded`` for a single point)
   with ``boundaryType=Inside``, ``selectedFields`` and a per-stream ``maxCount`` that keeps a
   whole answer under ``max_values_per_request`` values (memory per request is bounded, whatever
   the window);
3. a stream that came back with exactly ``maxCount`` values may have been cut: it continues from
   its last timestamp (:mod:`producer.sources.paging`). Streams that continue from the same
   instant are asked together again; the others one by one.

Bare tag names are read on ``default_server`` (``\\\\server\\tag`` paths are taken as given).
"""

from __future__ import annotations

import asyncio
import importlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from producer.sources import paging
from producer.sources.base import Columns, PointComplete, PointFailure, SourceItem, TimeWindow
from producer.sources.errors import (
    AuthError,
    BadRequest,
    PointNotFound,
    PointReadError,
    ProtocolError,
    ServerError,
    SourceRequestError,
)
from producer.sources.http import HttpSource, Params
from producer.sources.pi_parse import (
    MULTIPLE_POINT_FIELDS,
    POINT_FIELDS,
    STREAM_FIELDS,
    STREAMSET_FIELDS,
    parse_values,
    stream_error,
    web_exception,
)
from producer.sources.ratelimit import HostRateLimits
from producer.sources.retry import RetryPolicy, Sleep
from producer.sources.timestamps import format_time
from shared.errors import ConfigError

log = structlog.get_logger(__name__)


def is_point_path(address: str) -> bool:
    """Whether ``address`` names its PI Data Archive (``\\\\server\\tag``); a bare tag needs
    ``default_server``. The request validator asks the same question at submit."""
    return address.startswith("\\\\")


@dataclass(frozen=True, slots=True)
class PIWebApiConfig:
    """Connection and paging settings (``PI_*`` / ``POINTS_PER_REQUEST`` environment variables)."""

    base_url: str  # e.g. https://pi.example.com/piwebapi
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    kerberos: bool = False
    verify_tls: bool = True
    ca_bundle: str | None = None
    max_count: int = 150_000  # the server's MaxReturnedItemsPerCall; above it PI answers 400
    points_per_request: int = 10
    # values one answer may hold, all streams together: what a request costs in memory (about
    # 0.75 KB a value while parsed, ~40 MB at 50,000) whatever the window; larger pages were not
    # faster against the simulator
    max_values_per_request: int = 50_000
    max_requests_per_second: float | None = None
    timeout_s: float = 60.0
    default_server: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"PI_WEB_API_URL must be an http(s) URL, got {self.base_url!r}")
        if self.max_count < 1 or self.points_per_request < 1 or self.max_values_per_request < 1:
            raise ConfigError("PI_MAX_COUNT and POINTS_PER_REQUEST must be positive")
        if self.bearer_token is not None and self.username is not None:
            raise ConfigError("set PI_BEARER_TOKEN or PI_USERNAME/PI_PASSWORD, not both")


@dataclass(frozen=True, slots=True)
class PIPoint:
    """A resolved PI point."""

    web_id: str
    name: str
    path: str
    units: str = ""
    point_type: str = ""


def _auth(config: PIWebApiConfig) -> tuple[httpx.Auth | None, dict[str, str]]:
    if config.bearer_token is not None:
        return None, {"Authorization": f"Bearer {config.bearer_token.get_secret_value()}"}
    if config.username is not None:
        password = config.password.get_secret_value() if config.password else ""
        return httpx.BasicAuth(config.username, password), {}
    if config.kerberos:
        try:
            module: Any = importlib.import_module("httpx_gssapi")
        except ImportError as exc:
            raise ConfigError("Kerberos needs the httpx-gssapi package installed") from exc
        return module.HTTPSPNEGOAuth(), {}
    return None, {}


def _unique(points: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(points))


class PIWebApiSource(HttpSource):
    """Reads recorded values from a PI Web API (a :class:`~producer.sources.base.Source`)."""

    connector = "PIWebApi"

    def __init__(
        self,
        config: PIWebApiConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        rate_limits: HostRateLimits | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        auth, headers = _auth(config) if http_client is None else (None, {})
        super().__init__(
            config,
            auth=auth,
            headers=headers,
            transport=transport,
            http_client=http_client,
            rate_limits=rate_limits,
            sleep=sleep,
            rng=rng,
        )
        self.config = config
        if not config.verify_tls:
            log.warning("pi_tls_verification_disabled", base_url=config.base_url)
        self._points: dict[str, PIPoint] = {}

    def path_of(self, address: str) -> str:
        """The ``\\\\server\\tag`` path of a point address."""
        if is_point_path(address):
            return address
        if self.config.default_server is None:
            raise BadRequest(
                f"{address!r} is not a \\\\server\\tag path and no default PI server is set",
                points=[address],
            )
        return f"\\\\{self.config.default_server}\\{address}"

    async def resolve(
        self, addresses: Sequence[str], window: TimeWindow | None = None
    ) -> dict[str, PIPoint | SourceRequestError]:
        """Each address's point, or why it could not be resolved (``AuthError`` is raised)."""
        out: dict[str, PIPoint | SourceRequestError] = {}
        todo: dict[str, str] = {}  # path -> address
        for address in addresses:
            try:
                path = self.path_of(address)
            except BadRequest as error:
                out[address] = error.for_points([address], window)
                continue
            cached = self._points.get(path.upper())
            if cached is not None:
                out[address] = cached
            else:
                todo.setdefault(path, address)
        found: dict[str, PIPoint | SourceRequestError] = {}
        if len(todo) == 1:
            found = await self._resolve_one(next(iter(todo)), window)
        elif todo:
            found = await self._resolve_many(list(todo), window)
        for path, result in found.items():
            if isinstance(result, PIPoint):
                self._points[path.upper()] = result
        for address in addresses:
            if address not in out:
                result = found[self.path_of(address)]
                out[address] = (
                    result.for_points([address], window)
                    if isinstance(result, SourceRequestError)
                    else result
                )
        return out

    async def _resolve_one(
        self, path: str, window: TimeWindow | None
    ) -> dict[str, PIPoint | SourceRequestError]:
        params = [("path", path), ("selectedFields", POINT_FIELDS)]
        try:
            _, body = await self.http.json("GET", "points", params=params, window=window)
        except AuthError:
            raise
        except SourceRequestError as error:
            return {path: error}
        return {path: self._point_of(body, path)}

    async def _resolve_many(
        self, paths: list[str], window: TimeWindow | None
    ) -> dict[str, PIPoint | SourceRequestError]:
        params: list[tuple[str, str | int]] = [("path", p) for p in paths]
        params.append(("selectedFields", MULTIPLE_POINT_FIELDS))
        try:
            _, body = await self.http.json("GET", "points/multiple", params=params, window=window)
        except AuthError:
            raise
        except SourceRequestError as error:
            return dict.fromkeys(paths, error)
        items = body.get("Items") if isinstance(body, dict) else None
        if not isinstance(items, list) or len(items) != len(paths):
            return dict.fromkeys(paths, ProtocolError("points/multiple answered a different list"))
        out: dict[str, PIPoint | SourceRequestError] = {}
        for path, item in zip(paths, items, strict=True):
            problem = stream_error(item)
            if problem is not None or not isinstance(item.get("Object"), dict):
                out[path] = PointNotFound(f"PI could not resolve {path}: {problem or 'no object'}")
            else:
                out[path] = self._point_of(item["Object"], path)
        return out

    @staticmethod
    def _point_of(body: Any, path: str) -> PIPoint | SourceRequestError:
        if not isinstance(body, dict) or not isinstance(body.get("WebId"), str):
            return ProtocolError(f"point {path} has no WebId")
        return PIPoint(
            body["WebId"],
            str(body.get("Name", "")),
            str(body.get("Path", path)),
            str(body.get("EngineeringUnits") or ""),
            str(body.get("PointType") or ""),
        )

    async def read(self, points: Sequence[str], window: TimeWindow) -> AsyncIterator[SourceItem]:
        """Stream recorded values of ``points`` in ``window`` (see the module docstring)."""
        unique = _unique(points)
        size = self.config.points_per_request
        for first in range(0, len(unique), size):
            group = unique[first : first + size]
            resolved: dict[str, PIPoint] = {}
            for address, result in (await self.resolve(group, window)).items():
                if isinstance(result, PIPoint):
                    resolved[address] = result
                else:
                    log.warning("pi_point_unresolved", point=address, error=str(result))
                    yield PointFailure(address, window, result)
            if resolved:
                async for item in self._read_group(resolved, window):
                    yield item

    async def _read_group(
        self, points: dict[str, PIPoint], window: TimeWindow
    ) -> AsyncIterator[SourceItem]:
        cursors = {address: paging.PageCursor(window.start_us) for address in points}
        counts = dict.fromkeys(points, 0)
        while cursors:
            by_start: dict[int, list[str]] = {}
            for address, cursor in cursors.items():
                by_start.setdefault(cursor.start_us, []).append(address)
            for start_us, addresses in by_start.items():
                per_stream = max(
                    1,
                    min(
                        self.config.max_count, self.config.max_values_per_request // len(addresses)
                    ),
                )
                pages = await self._fetch(addresses, points, start_us, window, per_stream)
                for address in addresses:
                    page = pages[address]
                    try:
                        if isinstance(page, SourceRequestError):
                            raise page
                        step = paging.step(
                            cursors[address], page.timestamps_us, per_stream, window.end_us
                        )
                    except SourceRequestError as error:
                        del cursors[address]
                        failure = error.for_points([address], window)
                        log.warning("pi_point_failed", point=address, error=str(failure))
                        yield PointFailure(address, window, failure)
                        continue
                    if step.kept:
                        counts[address] += step.kept
                        kept = page.slice(step.keep_from, step.keep_to)
                        yield kept.to_batch(address, self.connector, points[address].units)
                    if step.next is None:
                        del cursors[address]
                        yield PointComplete(address, window, counts[address])
                    else:
                        cursors[address] = step.next

    async def _fetch(
        self,
        addresses: list[str],
        points: dict[str, PIPoint],
        start_us: int,
        window: TimeWindow,
        per_stream: int,
    ) -> dict[str, Columns | SourceRequestError]:
        """One request for ``addresses`` from ``start_us``: each one's page, or its error."""
        web_ids = _unique([points[a].web_id for a in addresses])
        params: list[tuple[str, str | int]] = [
            ("startTime", format_time(start_us)),
            ("endTime", format_time(window.end_us)),
            ("boundaryType", "Inside"),
            ("maxCount", per_stream),
        ]
        single = len(web_ids) == 1
        if single:
            url = f"streams/{web_ids[0]}/recorded"
            params.append(("selectedFields", STREAM_FIELDS))
        else:
            url = "streamsets/recorded"
            params = [("webId", w) for w in web_ids] + params
            params.append(("selectedFields", STREAMSET_FIELDS))
        try:
            body = await self._get_checked(url, params, addresses, window)
        except AuthError:
            raise
        except SourceRequestError as error:
            return dict.fromkeys(addresses, error)
        log.debug(
            "pi_recorded_page", points=len(addresses), start_us=start_us, max_count=per_stream
        )
        streams: dict[str, Any] = (
            {web_ids[0]: body} if single else _streams_by_web_id(body.get("Items"))
        )
        del body
        by_web_id: dict[str, Columns | SourceRequestError] = {}
        for web_id in web_ids:
            stream = streams.get(web_id)
            if stream is None:
                by_web_id[web_id] = ProtocolError(f"no stream {web_id} in the answer")
                continue
            problem = stream_error(stream)
            try:
                if problem is not None:
                    raise PointReadError(f"PI reported a stream error: {problem}")
                by_web_id[web_id] = parse_values(stream.get("Items"))
            except SourceRequestError as failure:
                by_web_id[web_id] = failure
        return {address: by_web_id[points[address].web_id] for address in addresses}

    async def _get_checked(
        self, url: str, params: Params, addresses: list[str], window: TimeWindow
    ) -> Any:
        """GET with a ``WebException`` inside a 200 treated (and retried) as the 5xx it is."""

        async def attempt() -> Any:
            _, body = await self.http.json(
                "GET", url, params=params, points=addresses, window=window, retries=False
            )
            broken = web_exception(body)
            if broken is not None:
                status, message = broken
                raise ServerError(
                    f"PI WebException in a 200: {message}",
                    points=addresses,
                    window=window,
                    status=status,
                )
            if not isinstance(body, dict):
                raise ProtocolError("answer is not a JSON object", points=addresses, window=window)
            return body

        return await self.http.retrying(attempt, what=url)


def _streams_by_web_id(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {item["WebId"]: item for item in items if isinstance(item, dict) and "WebId" in item}
