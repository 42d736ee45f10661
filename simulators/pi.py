"""A PI Web API look-alike over HTTP, serving :mod:`simulators.data`'s deterministic history.

Any PI Web API client can start here: the guide is the public PI Web API Reference
(docs.aveva.com/bundle/pi-web-api-reference). Endpoints (under ``/piwebapi``), shaped as it
documents them:

* ``GET /piwebapi`` (``Links``), ``dataservers`` (``?name=``, ``?path=``, ``/{webId}``,
  ``/{webId}/points?nameFilter=``), ``points/search?query=name:X``, ``points/{webId}`` and its
  ``attributes``, ``system``, ``assetservers``, ``search``: :mod:`simulators.pi_catalog`;
* ``streams/{webId}/interpolated|plot|value|end|summary`` and ``streamsets/...`` of the same:
  :mod:`simulators.pi_streams`; times everywhere are PI time strings (``*-1d``, ``t``, ``y``,
  ``01-Jan-24 00:00:00``...; :mod:`simulators.pi_time`), with the documented defaults;
* WebIDs are WebID 2.0 path-only (:mod:`simulators.webid`): ``point_web_id("SIMPI", "SINUSOID")``
  is the WebID the server hands out for ``\\\\SIMPI\\SINUSOID``;
* every error, unknown routes included, is ``{"Errors": [...]}`` JSON.
* ``GET points?path=\\\\server\\tag`` and ``GET points/multiple?path=..&path=..`` (200/207, per-item
  ``Exception``): any server name is accepted; tags are case-insensitive.
* ``POST streams/{webId}/recorded`` and ``POST streams/{webId}/value`` (``updateOption``, default
  ``Replace``): change the past, add late values, remove events, as a PI server allows
  (:mod:`simulators.pi_writes`); ``GET`` reads serve them like recorded events.
* ``GET streams/{webId}/recorded`` and ``GET streamsets/recorded?webId=..``: ``boundaryType=Inside``
  (start and end inclusive; ``endTime`` before ``startTime``: time-descending, as PI answers),
  ``maxCount`` per stream (default 1000; above ``max_count`` a 400),
  ``selectedFields`` honoured for the value fields. A full page is cut at ``maxCount`` silently, as
  PI does, even in the middle of several events sharing one timestamp.

Faults (:class:`simulators.common.FaultPlan`): latency, 500s, 429 with ``Retry-After``, a
``WebException`` inside a 200, and per-tag ``Errors`` inside a 200.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulators import fixedjson as fj
from simulators import pi_streams, pi_values, pi_writes
from simulators.common import (
    Credentials,
    FaultPlan,
    Guard,
    ServerRateLimit,
    admin_routes,
    dumps,
    json_response,
)
from simulators.data import (
    BAD,
    Clock,
    Events,
    TagCatalog,
    TagKind,
    TagSpec,
    events,
    utc_now,
)
from simulators.pi_catalog import Browse, Directory, base_url
from simulators.pi_time import to_micros
from simulators.server import serve_forever

log = structlog.get_logger(__name__)
VALUE_FIELDS = (
    "Timestamp",
    "Value",
    "UnitsAbbreviation",
    "Good",
    "Questionable",
    "Substituted",
    "Annotated",
)
_FLAGS = {"Questionable": 2, "Substituted": 4, "Annotated": 8}
_WEB_EXCEPTION = dumps(
    {
        "Items": [],
        "WebException": {
            "StatusCode": 500,
            "Errors": ["Error occurred during writing of the output stream."],
        },
    }
)


@dataclass(frozen=True)
class PISimulatorOptions:
    """How ``histfill simulate pi`` behaves; the defaults match a stock PI Web API."""

    interval_s: float = 60.0
    generated_tags: int = 0
    max_count: int = 150_000  # the server's MaxReturnedItemsPerCall
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    max_requests_per_second: float | None = None
    retry_after_s: int = 1
    faults: FaultPlan = field(default_factory=FaultPlan)
    clock: Clock | None = None  # the simulator's "now": no value after it is served (UTC)
    server_name: str = "SIMPI"  # the PI Data Archive ``dataservers`` lists


def _errors(status: int, *messages: str) -> Response:
    return json_response({"Errors": list(messages)}, status)


def _selected_value_fields(request: Request) -> tuple[str, ...]:
    selected = request.query_params.get("selectedFields")
    if not selected:
        return VALUE_FIELDS
    leaves = {part.strip().rsplit(".", 1)[-1] for part in selected.split(";")}
    return tuple(name for name in VALUE_FIELDS if name in leaves)


def _tag_of_path(path: str) -> str | None:
    """``\\\\server\\tag`` -> ``tag``; ``None`` if it is not a PI point path."""
    if not path.startswith("\\\\"):
        return None
    server, sep, tag = path[2:].partition("\\")
    return tag if server and sep and tag and "\\" not in tag else None


class PISimulator:
    """The simulator's state (catalog, faults, counters) and its Starlette app."""

    def __init__(
        self,
        options: PISimulatorOptions | None = None,
        *,
        now: Clock | None = None,
    ) -> None:
        self.options = options or PISimulatorOptions()
        # one clock: the "now" of PI time strings (``*``, ``t``, defaults) is the moment
        # after which no value exists
        self.now: Clock = now or self.options.clock or utc_now
        self.catalog = TagCatalog(self.options.interval_s, self.options.generated_tags, self.now)
        self.faults = self.options.faults
        self.guard = Guard(
            Credentials(self.options.username, self.options.password, self.options.bearer_token),
            ServerRateLimit(self.options.max_requests_per_second),
            self.faults,
            self.options.retry_after_s,
            realm="PI Web API",
            web_exception_body=_WEB_EXCEPTION,
        )
        g = self.guard.wrap
        self.writes = pi_writes.WriteOverlay()
        self.directory = Directory(self.catalog, self.options.server_name, self.now)
        browse = Browse(self.directory)
        self.streams = pi_streams.StreamReads(
            self.catalog, self.options.max_count, self.now, _value_rows, _selected_value_fields
        )
        reads = [
            Route(f"/piwebapi/streams/{{web_id}}/{kind}", g(self.streams.stream(kind)))
            for kind in ("interpolated", "plot", "value", "end")
        ] + [
            Route(f"/piwebapi/streamsets/{kind}", g(self.streams.streamset(kind)))
            for kind in ("interpolated", "plot", "value", "end")
        ]
        self.app = Starlette(
            routes=[
                *admin_routes(self.catalog, self.guard),
                Route("/piwebapi", g(browse.landing)),
                Route("/piwebapi/", g(browse.landing)),
                Route("/piwebapi/system", g(browse.system)),
                Route("/piwebapi/assetservers", g(browse.asset_servers)),
                Route("/piwebapi/search", g(browse.search)),
                Route("/piwebapi/dataservers", g(browse.data_servers)),
                Route("/piwebapi/dataservers/{web_id}", g(browse.data_server)),
                Route("/piwebapi/dataservers/{web_id}/points", g(browse.data_server_points)),
                Route("/piwebapi/points", g(self._point_by_path)),
                Route("/piwebapi/points/multiple", g(self._points_multiple)),
                Route("/piwebapi/points/search", g(browse.point_search)),
                Route("/piwebapi/points/{web_id}", g(self._point_by_web_id)),
                Route("/piwebapi/points/{web_id}/attributes", g(browse.attributes)),
                Route(
                    "/piwebapi/streams/{web_id}/recorded",
                    g(self._stream_recorded),
                    methods=["GET", "POST"],
                ),
                Route("/piwebapi/streams/{web_id}/value", g(self._update_value), methods=["POST"]),
                Route("/piwebapi/streamsets/recorded", g(self._streamset_recorded)),
                Route("/piwebapi/streams/{web_id}/summary", g(self.streams.summary())),
                *reads,
            ],
            exception_handlers={404: browse.not_found, 405: browse.not_found},
        )

    @property
    def stats(self) -> dict[str, int]:
        """Requests seen and statuses answered."""
        return dict(self.guard.stats)

    def _point(self, spec: TagSpec, server: str, request: Request) -> dict[str, object]:
        return self.directory.point(spec, server, base_url(request))

    def _lookup_path(self, path: str) -> tuple[TagSpec | None, str]:
        tag = _tag_of_path(path)
        if tag is None:
            return None, f"'{path}' is not a PI point path (expected \\\\server\\tag)."
        spec = self.catalog.get(tag)
        if spec is None:
            return None, f"PI Point not found '{path}'."
        return spec, ""

    async def _point_by_path(self, request: Request) -> Response:
        path = request.query_params.get("path", "")
        spec, error = self._lookup_path(path)
        if spec is None:
            return _errors(404 if _tag_of_path(path) else 400, error)
        return json_response(self._point(spec, path[2:].partition("\\")[0], request))

    async def _point_by_web_id(self, request: Request) -> Response:
        found = self.streams.resolve(request.path_params["web_id"])
        if found is None:
            return _errors(404, "Unknown or invalid WebID.")
        return json_response(self._point(*found, request))

    async def _points_multiple(self, request: Request) -> Response:
        items: list[dict[str, object]] = []
        for path in request.query_params.getlist("path"):
            spec, error = self._lookup_path(path)
            item: dict[str, object] = {"Identifier": path, "IdentifierType": "Path"}
            if spec is None:
                item |= {"Object": None, "Exception": {"Errors": [error]}}
            else:
                server = path[2:].partition("\\")[0]
                item |= {"Object": self._point(spec, server, request), "Exception": None}
            items.append(item)
        failed = any(item["Exception"] for item in items)
        return json_response({"Links": {}, "Items": items}, 207 if failed else 200)

    def _window(self, request: Request) -> tuple[int, int, int] | Response:
        """``(start_us, end_us_inclusive, max_count)`` or the 400 explaining what is wrong."""
        q = request.query_params
        span = pi_streams.window(request, self.now())
        if isinstance(span, Response):
            return span
        start, end = span
        if q.get("boundaryType", "Inside").lower() != "inside":
            return _errors(400, "The simulator supports boundaryType=Inside only.")
        try:
            max_count = int(q.get("maxCount", "1000"))
        except ValueError:
            return _errors(400, "maxCount must be an integer.")
        if max_count > self.options.max_count or max_count < 1:
            return _errors(
                400,
                f"The maximum number of items to return per call is {self.options.max_count}; "
                f"maxCount={max_count} was requested.",
            )
        return start, end, max_count

    def _stream_items(
        self, spec: TagSpec, start: int, end: int, max_count: int, wanted: tuple[str, ...]
    ) -> bytes:
        """The ``Items`` array text of one stream (inclusive end: PI's Inside boundary)."""
        cap = self.catalog.until(max(start, end) + 1) - 1  # latest instant that has values
        if min(start, end) > cap:  # the whole range is after now
            page = events(spec, start, start)
        else:
            lo, hi = min(start, cap), min(end, cap)
            extra = self.writes.removed_between(spec.name, min(lo, hi), max(lo, hi))
            page = pi_values.recorded(spec, lo, hi, max_count + extra)
            page = self.writes.merge(
                spec.name, page, min(lo, hi), max(lo, hi), max_count, descending=hi < lo
            )
        body = b"[" + _value_rows(spec, page, wanted) + b"]"
        if spec.name in self.faults.error_tags:
            error = {
                "Timestamp": "1970-01-01T00:00:00Z",
                "Value": None,
                "Good": False,
                "Errors": [
                    {"FieldName": "Value", "Message": [f"Archive read failed for {spec.name}."]}
                ],
            }
            body = body[:-1] + (b"," if len(page) else b"") + dumps(error) + b"]"
        return body

    async def _write(self, request: Request, *, many: bool) -> Response:
        """``POST streams/{webId}/recorded`` (an array) or ``.../value`` (one): 204 when done."""
        found = self.streams.resolve(request.path_params["web_id"])
        if found is None:
            return _errors(404, "Unknown or invalid WebID.")
        now = self.now()
        option = request.query_params.get("updateOption", "Replace")
        try:
            values = pi_writes.parse_body(await request.body(), many=many, now=now)
            self.writes.apply(found[0], values, option, to_micros(now))
        except pi_writes.WriteRefused as refused:
            return _errors(refused.status, str(refused))
        log.debug("pi_simulator_write", tag=found[0].name, values=len(values), option=option)
        return Response(status_code=204)

    async def _update_value(self, request: Request) -> Response:
        return await self._write(request, many=False)

    async def _stream_recorded(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._write(request, many=True)
        found = self.streams.resolve(request.path_params["web_id"])
        if found is None:
            return _errors(404, "Unknown or invalid WebID.")
        spec = found[0]
        window = self._window(request)
        if isinstance(window, Response):
            return window
        items = self._stream_items(spec, *window, _selected_value_fields(request))
        units = dumps(spec.units)
        return json_response(
            b'{"Links":{},"Items":' + items + b',"UnitsAbbreviation":' + units + b"}"
        )

    async def _streamset_recorded(self, request: Request) -> Response:
        web_ids = request.query_params.getlist("webId")
        if not web_ids:
            return _errors(400, "At least one webId is required.")
        window = self._window(request)
        if isinstance(window, Response):
            return window
        wanted = _selected_value_fields(request)
        streams: list[bytes] = []
        failed = False
        for web_id in web_ids:
            found = self.streams.resolve(web_id)
            if found is None:
                failed = True
                head = {"WebId": web_id, "Items": [], "Exception": {"Errors": ["Unknown WebID."]}}
                streams.append(dumps(head))
                continue
            spec, server = found
            head_text = dumps(
                {"WebId": web_id, "Name": spec.name, "Path": f"\\\\{server}\\{spec.name}"}
            )
            items = self._stream_items(spec, *window, wanted)
            units = dumps(spec.units)
            streams.append(
                head_text[:-1] + b',"Items":' + items + b',"UnitsAbbreviation":' + units + b"}"
            )
        body = b'{"Links":{},"Items":[' + b",".join(streams) + b"]}"
        return json_response(body, 207 if failed else 200)


def _value_rows(spec: TagSpec, page: Events, wanted: tuple[str, ...]) -> bytes:
    """Recorded values as PI prints them, limited to the ``wanted`` fields."""
    n = len(page)
    if n == 0 or not wanted:
        return b",".join([b"{}"] * n)
    parts: list[fj.Block] = []
    for i, name in enumerate(wanted):
        parts.append(fj.literal(("{" if i == 0 else ",") + f'"{name}":', n))
        if name == "Timestamp":
            parts.append(fj.timestamp_block(page.timestamps_us))
        elif name == "Value":
            parts.extend(_value_block(spec, page))
        elif name == "UnitsAbbreviation":
            parts.append(fj.literal(dumps(spec.units).decode(), n))
        elif name == "Good":
            parts.append(fj.bool_block((page.quality & BAD) == 0))
        else:
            parts.append(fj.bool_block((page.quality & _FLAGS[name]) != 0))
    parts.append(fj.literal("}", n))
    return fj.rows(parts)


def _value_block(spec: TagSpec, page: Events) -> list[fj.Block]:
    n = len(page)
    if spec.kind is TagKind.STRING:
        return [fj.string_block(page.texts or [])]
    if spec.kind is TagKind.DIGITAL:
        system = page.is_system if page.is_system is not None else np.zeros(n, dtype=bool)
        return [
            fj.literal('{"Name":', n),
            fj.string_block(page.texts or []),
            fj.literal(',"Value":', n),
            fj.number_block(page.ints_e4 // 10_000, 0),
            fj.literal(',"IsSystem":', n),
            fj.bool_block(system),
            fj.literal("}", n),
        ]
    return [fj.number_block(page.ints_e4, 4)]


def run_pi_simulator(
    host: str = "127.0.0.1",
    port: int = 8765,
    options: PISimulatorOptions | None = None,
    *,
    log_level: str = "info",
    **overrides: Any,
) -> None:
    """Serve the PI Web API simulator until interrupted (``histfill simulate pi``); keyword
    ``overrides`` replace fields of ``options`` (e.g. ``generated_tags=100``)."""
    chosen = replace(options or PISimulatorOptions(), **overrides)
    log.info(
        "pi_simulator_starting",
        url=f"http://{host}:{port}/piwebapi",
        tags=len(TagCatalog(chosen.interval_s, chosen.generated_tags).names()),
        interval_s=chosen.interval_s,
        max_count=chosen.max_count,
        credentials_required=bool(chosen.username or chosen.bearer_token),
    )
    serve_forever(PISimulator(chosen).app, host, port, log_level)
