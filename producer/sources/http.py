"""One JSON request to a historian: rate budget, retries, and HTTP outcomes mapped to errors.

The mapping is the boundary where httpx's exceptions and status codes become
:mod:`producer.sources.errors`: 401/403 -> ``AuthError``, 404 -> ``PointNotFound``, 429 ->
``RateLimited`` (pausing the host's shared budget for ``Retry-After``), 5xx -> ``ServerError``,
other 4xx -> ``BadRequest``, no answer -> ``TransportFailure``. Request headers (credentials)
are never logged.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, Self, TypeVar

import httpx

from producer.sources.base import TimeWindow
from producer.sources.errors import (
    AuthError,
    BadRequest,
    PointNotFound,
    ProtocolError,
    RateLimited,
    ServerError,
    SourceRequestError,
    TransportFailure,
)
from producer.sources.ratelimit import SHARED_HOST_LIMITS, HostRateLimits, Limiter
from producer.sources.retry import RetryPolicy, Sleep, parse_retry_after, retrying

Params = Sequence[tuple[str, str | int]]
T = TypeVar("T")


def ssl_context(verify_tls: bool, ca_bundle: str | None) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` should get: a context trusting ``ca_bundle`` (or the system's),
    or ``False`` when verification is switched off."""
    if not verify_tls:
        return False
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True


def error_text(response: httpx.Response, limit: int = 300) -> str:
    """The server's own words: PI's ``{"Errors": [...]}``, ACE's ``{"message": ..}``, or text."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return response.text[:limit].strip() or response.reason_phrase
    if isinstance(body, dict):
        errors = body.get("Errors") or body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)[:limit]
        for key in ("message", "Message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:limit]
    return response.text[:limit]


class JsonHttp:
    """Sends requests for one source through its host's rate budget and its retry policy."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        limiter: Limiter,
        policy: RetryPolicy,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.policy = policy
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.requests = 0

    async def json(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        body: Any = None,
        points: Sequence[str] = (),
        window: TimeWindow | None = None,
        retries: bool = True,
    ) -> tuple[int, Any]:
        """``(status, decoded body)`` of a 2xx answer, retrying what can be retried (unless
        ``retries`` is off because the caller retries a larger step itself)."""

        async def once() -> tuple[int, Any]:
            return await self._once(method, url, params, body, points, window)

        return await self.retrying(once, what=url) if retries else await once()

    async def retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``call`` under this source's retry policy."""
        return await retrying(call, self.policy, sleep=self.sleep, rng=self.rng, what=what)

    async def _once(
        self,
        method: str,
        url: str,
        params: Params | None,
        body: Any,
        points: Sequence[str],
        window: TimeWindow | None,
    ) -> tuple[int, Any]:
        await self.limiter.acquire(self.sleep)
        self.requests += 1
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        request = self.client.build_request(
            method,
            url,
            params=None if params is None else tuple(params),
            content=content,
            headers=headers,
        )
        try:
            response = await self.client.send(request, stream=True)
            try:
                if response.status_code >= 300:
                    await response.aread()  # small error bodies, for the message
                    raise self._failure(response, method, url, points, window)
                # read into our own buffer: httpx's Response sits in a reference cycle, so a
                # body cached on it (``aread``) lives until the cyclic GC runs, and pages of
                # 20 MB pile up between collections
                buffer = bytearray()
                async for chunk in response.aiter_bytes():
                    buffer += chunk
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            reason = f"timed out: {method} {url}"
            raise TransportFailure(reason, points=points, window=window) from exc
        except httpx.TransportError as exc:
            reason = f"no answer: {method} {url}: {exc!r}"
            raise TransportFailure(reason, points=points, window=window) from exc
        try:
            return response.status_code, json.loads(buffer)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            reason = f"not JSON: {method} {url}"
            status = response.status_code
            raise ProtocolError(reason, points=points, window=window, status=status) from exc

    def _failure(
        self,
        response: httpx.Response,
        method: str,
        url: str,
        points: Sequence[str],
        window: TimeWindow | None,
    ) -> SourceRequestError:
        status = response.status_code
        reason = f"{method} {url}: {error_text(response)}"
        cls: type[SourceRequestError]
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                self.limiter.pause(retry_after)
            cls = RateLimited if status == 429 else ServerError
        elif status in (401, 403):
            cls, retry_after, reason = AuthError, None, f"credentials refused: {reason}"
        else:
            retry_after = None
            cls = PointNotFound if status == 404 else ServerError if status >= 500 else BadRequest
        return cls(reason, points=points, window=window, status=status, retry_after=retry_after)


class HttpSourceConfig(Protocol):
    """The connection settings every HTTP historian source has."""

    @property
    def base_url(self) -> str: ...
    @property
    def verify_tls(self) -> bool: ...
    @property
    def ca_bundle(self) -> str | None: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def max_requests_per_second(self) -> float | None: ...
    @property
    def retry(self) -> RetryPolicy: ...


class HttpSource:
    """What the HTTP sources share: a client (their own unless one is given), the host's shared
    request budget, :class:`JsonHttp` on top, and closing what they opened."""

    def __init__(
        self,
        config: HttpSourceConfig,
        *,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        rate_limits: HostRateLimits | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._owns_client = http_client is None
        if http_client is None:
            http_client = httpx.AsyncClient(
                base_url=config.base_url.rstrip("/") + "/",
                auth=auth,
                headers=headers,
                verify=ssl_context(config.verify_tls, config.ca_bundle),
                timeout=httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)),
                transport=transport,
            )
        host = httpx.URL(config.base_url).netloc.decode()
        limiter = (rate_limits or SHARED_HOST_LIMITS).for_host(host, config.max_requests_per_second)
        self.http = JsonHttp(http_client, limiter, config.retry, sleep=sleep, rng=rng)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._owns_client:
            await self.http.client.aclose()
