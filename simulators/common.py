"""What both HTTP simulators share: credentials, request-rate limit, fault injection, admin routes.

Faults are a mutable :class:`FaultPlan` so a test (same process) or an operator (``POST
/_sim/faults``) can change them while the server runs. Admin routes under ``/_sim`` need no
credentials and never count as API requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulators.data import TagCatalog, count_events

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class FaultPlan:
    """Faults to inject into the next API requests; counters count down as they fire."""

    latency_s: float = 0.0
    fail_next: int = 0  # answer 500
    throttle_next: int = 0  # answer 429 with Retry-After
    web_exception_next: int = 0  # answer 200 whose body carries a WebException (PI)
    error_tags: set[str] = field(default_factory=set)  # tags whose reads report errors in a 200

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update (unknown keys raise ``KeyError``)."""
        known = {f.name for f in fields(self)}
        for key, value in changes.items():
            if key not in known:
                raise KeyError(key)
            setattr(self, key, {str(v).upper() for v in value} if key == "error_tags" else value)

    def reset(self) -> None:
        """Back to no faults."""
        self.update(asdict(FaultPlan()))

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        out = asdict(self)
        out["error_tags"] = sorted(self.error_tags)
        return out


class ServerRateLimit:
    """At most ``rate`` requests a second (burst ``rate``); beyond, the seconds to wait."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 0.0 if not rate else 1.0 / rate
        self._tolerance = self._interval * (max(1.0, rate or 1.0) - 1)
        self._tat = 0.0
        self._clock = clock
        self._lock = threading.Lock()

    def check(self) -> float:
        """0 if this request may pass (and count it), else the seconds until one may."""
        if not self._interval:
            return 0.0
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            wait = tat - self._tolerance - now
            if wait > 0:
                return wait
            self._tat = tat + self._interval
            return 0.0


@dataclass
class Credentials:
    """Accept any credentials unless specific ones are set; refuse requests without any."""

    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None

    def allows(self, authorization: str | None) -> bool:
        """Whether this ``Authorization`` header value gets in."""
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return bool(value) and (self.bearer_token is None or value == self.bearer_token)
        if scheme == "basic":
            if self.username is None:
                return self.bearer_token is None
            try:
                user, _, pwd = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and pwd == (self.password or "")
        return scheme == "negotiate" and self.username is None and self.bearer_token is None


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response from an object or from bytes already encoded."""
    content = body if isinstance(body, bytes) else dumps(body)
    return Response(content, status, headers, media_type="application/json; charset=utf-8")


def parse_time(text: str | None) -> int | None:
    """ISO-8601 (``Z`` or offset; naive means UTC) -> epoch microseconds, ``None`` if invalid."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return math.floor(moment.timestamp()) * 1_000_000 + moment.microsecond


@dataclass
class Guard:
    """Runs an API request through credentials, rate limit and faults, and counts it."""

    credentials: Credentials
    rate_limit: ServerRateLimit
    faults: FaultPlan
    retry_after_s: int = 1
    realm: str = "Simulator"
    stats: Counter[str] = field(default_factory=Counter)
    web_exception_body: bytes = b""

    def wrap(self, handler: Handler) -> Handler:
        """The handler behind the guard."""

        async def guarded(request: Request) -> Response:
            self.stats["requests"] += 1
            response = await self._gate(request)
            if response is None:
                response = await handler(request)
            self.stats[f"status_{response.status_code}"] += 1
            return response

        return guarded

    async def _gate(self, request: Request) -> Response | None:
        if not self.credentials.allows(request.headers.get("authorization")):
            return json_response(
                {"Errors": ["Authorization has been denied for this request."]},
                401,
                {"WWW-Authenticate": f'Basic realm="{self.realm}", Bearer'},
            )
        wait = self.rate_limit.check()
        if wait > 0:
            return self._throttled(max(1, math.ceil(wait)))
        if self.faults.throttle_next > 0:
            self.faults.throttle_next -= 1
            return self._throttled(self.retry_after_s)
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)
        if self.faults.fail_next > 0:
            self.faults.fail_next -= 1
            return json_response({"Errors": ["Simulated internal server error."]}, 500)
        if self.faults.web_exception_next > 0 and self.web_exception_body:
            self.faults.web_exception_next -= 1
            return json_response(self.web_exception_body, 200)
        return None

    def _throttled(self, retry_after: int) -> Response:
        return json_response(
            {"Errors": ["Too many requests."]}, 429, {"Retry-After": str(retry_after)}
        )


def admin_routes(catalog: TagCatalog, guard: Guard) -> list[Route]:
    """``/_sim/health``, ``/_sim/tags``, ``/_sim/count``, ``/_sim/faults`` and ``/_sim/stats``."""

    async def health(_: Request) -> Response:
        return json_response({"status": "ok"})

    async def tags(_: Request) -> Response:
        return json_response({"tags": catalog.names()})

    async def count(request: Request) -> Response:
        tag = request.query_params.get("tag", "").rsplit("\\", 1)[-1].rsplit("/", 1)[-1]
        start = parse_time(request.query_params.get("start"))
        end = parse_time(request.query_params.get("end"))
        spec = catalog.get(tag)
        if spec is None or start is None or end is None:
            return json_response({"error": "need a known tag and ISO start/end"}, 400)
        return json_response(
            {"tag": spec.name, "count": count_events(spec, start, catalog.until(end))}
        )

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                guard.faults.update(json.loads(await request.body()))
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                return json_response({"error": f"bad fault plan: {exc!r}"}, 400)
        return json_response(guard.faults.as_json())

    async def stats(_: Request) -> Response:
        return json_response(dict(guard.stats))

    return [
        Route("/_sim/health", health),
        Route("/_sim/tags", tags),
        Route("/_sim/count", count),
        Route("/_sim/faults", faults, methods=["GET", "POST"]),
        Route("/_sim/stats", stats),
    ]
