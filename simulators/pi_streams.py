"""PI Web API stream reads beyond ``recorded``: ``interpolated``, ``plot``, ``value``, ``end``
and ``summary`` for one stream (``streams/{webId}/...``), the first four for several
(``streamsets/...?webId=..``).

Shapes as the PI Web API Reference documents them (docs.aveva.com/bundle/pi-web-api-reference,
"Stream GetInterpolated / GetPlot / GetValue / GetEnd / GetSummary" and "StreamSet
GetInterpolatedAdHoc / GetPlotAdHoc / GetValuesAdHoc / GetEndAdHoc"):

* a stream's values: ``{"Links": {}, "Items": [...], "UnitsAbbreviation": ..}``;
* a single value: a timed value (``Timestamp``, ``Value``, ``UnitsAbbreviation``, ``Good``,
  ``Questionable``, ``Substituted``, ``Annotated``);
* a stream set: ``{"Links": {}, "Items": [{"WebId", "Name", "Path", "Links", "Items" | "Value"}]}``;
* a summary: ``{"Links": {}, "Items": [{"Type": .., "Value": <timed value>}]}``.

Times are PI time strings (:mod:`simulators.pi_time`) with the documented defaults
(``startTime`` ``*-1d``, ``endTime`` ``*``, ``interval`` ``1h``, ``intervals`` 24, ``summaryType``
``Total``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from simulators import pi_values as pv
from simulators import webid
from simulators.common import Handler, dumps, json_response
from simulators.data import Events, TagCatalog, TagSpec
from simulators.pi_time import PITimeError, parse_pi_time, to_micros

Render = Callable[[TagSpec, Events, tuple[str, ...]], bytes]
Fields = Callable[[Request], tuple[str, ...]]
SERVER_FALLBACK = "SIMPI"


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat().replace("+00:00", "Z")


def errors(status: int, *messages: str) -> Response:
    """PI's error body: ``{"Errors": [...]}``."""
    return json_response({"Errors": list(messages)}, status)


def window(
    request: Request, now: datetime, start_default: str = "*-1d", end_default: str = "*"
) -> tuple[int, int] | Response:
    """``(start_us, end_us)`` from ``startTime``/``endTime`` (PI time strings), or the 400."""
    q = request.query_params
    try:
        start = parse_pi_time(q.get("startTime") or start_default, now)
        end = parse_pi_time(q.get("endTime") or end_default, now)
    except PITimeError as exc:
        return errors(400, str(exc))
    return to_micros(start), to_micros(end)


@dataclass
class StreamReads:
    """The handlers; ``render`` prints events as PI value objects (the recorded printer)."""

    catalog: TagCatalog
    max_count: int
    now: Callable[[], datetime]
    render: Render
    fields: Fields

    def resolve(self, web_id: str) -> tuple[TagSpec, str] | None:
        """``(spec, server)`` of a point WebID this simulator hands out."""
        decoded = webid.decode_point(web_id)
        if decoded is None:
            return None
        server, tag = decoded
        spec = self.catalog.get(tag)
        return None if spec is None else (spec, server or SERVER_FALLBACK)

    def _compute(self, kind: str, spec: TagSpec, request: Request) -> Events | Response:
        if kind in ("value", "end"):
            return self._single(kind, spec, request)
        span = window(request, self.now())
        if isinstance(span, Response):
            return span
        if kind == "interpolated":
            return self._interpolated(spec, request, *span)
        try:
            intervals = int(request.query_params.get("intervals") or "24")
        except ValueError:
            intervals = 0
        if intervals < 1 or intervals * 5 > self.max_count:
            return errors(400, f"intervals must be an integer from 1 to {self.max_count // 5}.")
        return pv.plot(spec, *span, intervals)

    def _single(self, kind: str, spec: TagSpec, request: Request) -> Events | Response:
        now = self.now()
        time = request.query_params.get("time")
        if kind == "end" or not time:
            return pv.at_or_before(spec, to_micros(now))
        try:
            at = to_micros(parse_pi_time(time, now))
        except PITimeError as exc:
            return errors(400, str(exc))
        return pv.interpolate(spec, np.array([at], dtype=np.int64))

    def _interpolated(
        self, spec: TagSpec, request: Request, start: int, end: int
    ) -> Events | Response:
        text = request.query_params.get("interval") or "1h"
        interval = pv.parse_interval(text)
        if interval is None:
            return errors(400, f"'{text}' is not a time interval such as 1h.")
        wanted = pv.interpolated_count(start, end, interval)
        if wanted > self.max_count:
            return errors(
                400,
                f"The maximum number of items to return per call is {self.max_count}; "
                f"this interpolation would return {wanted}.",
            )
        return pv.interpolated(spec, start, end, interval)

    def _items(self, spec: TagSpec, ev: Events, wanted: tuple[str, ...]) -> bytes:
        return b"[" + self.render(spec, ev, wanted) + b"]"

    def stream(self, kind: str) -> Handler:
        """The handler of ``streams/{webId}/<kind>``."""

        async def handler(request: Request) -> Response:
            found = self.resolve(request.path_params["web_id"])
            if found is None:
                return errors(404, "Unknown or invalid WebID.")
            spec, _ = found
            ev = self._compute(kind, spec, request)
            if isinstance(ev, Response):
                return ev
            wanted = self.fields(request)
            if kind in ("value", "end"):
                return json_response(self.render(spec, ev, wanted))
            return json_response(
                b'{"Links":{},"Items":'
                + self._items(spec, ev, wanted)
                + b',"UnitsAbbreviation":'
                + dumps(spec.units)
                + b"}"
            )

        return handler

    def summary(self) -> Handler:
        """The handler of ``streams/{webId}/summary?summaryType=..`` (default ``Total``)."""

        async def handler(request: Request) -> Response:
            found = self.resolve(request.path_params["web_id"])
            if found is None:
                return errors(404, "Unknown or invalid WebID.")
            spec, _ = found
            span = window(request, self.now())
            if isinstance(span, Response):
                return span
            types = request.query_params.getlist("summaryType") or ["Total"]
            if "All" in types:
                types = list(pv.SUMMARY_TYPES)
            unknown = [t for t in types if t not in pv.SUMMARY_TYPES]
            if unknown:
                return errors(400, f"Unknown or unsupported summaryType {unknown[0]!r}.")
            items = []
            for kind, stamp, value in pv.summary(spec, *span, types):
                items.append(
                    {
                        "Type": kind,
                        "Value": {
                            "Timestamp": _iso(stamp),
                            "Value": value,
                            "UnitsAbbreviation": spec.units,
                            "Good": value is not None,
                            "Questionable": False,
                            "Substituted": False,
                            "Annotated": False,
                        },
                    }
                )
            return json_response({"Links": {}, "Items": items})

        return handler

    def streamset(self, kind: str) -> Handler:
        """The handler of ``streamsets/<kind>?webId=..&webId=..``."""

        async def handler(request: Request) -> Response:
            web_ids = request.query_params.getlist("webId")
            if not web_ids:
                return errors(400, "At least one webId is required.")
            wanted = self.fields(request)
            streams: list[bytes] = []
            failed = False
            for web_id in web_ids:
                found = self.resolve(web_id)
                if found is None:
                    failed = True
                    streams.append(
                        dumps({"WebId": web_id, "Exception": {"Errors": ["Unknown WebID."]}})
                    )
                    continue
                spec, server = found
                ev = self._compute(kind, spec, request)
                if isinstance(ev, Response):
                    return ev  # a bad time or interval is the whole request's error
                head = dumps(
                    {
                        "WebId": web_id,
                        "Name": spec.name,
                        "Path": f"\\\\{server}\\{spec.name}",
                        "Links": {},
                    }
                )[:-1]
                if kind in ("value", "end"):
                    body = b',"Value":' + self.render(spec, ev, wanted)
                else:
                    units = b',"UnitsAbbreviation":' + dumps(spec.units)
                    body = b',"Items":' + self._items(spec, ev, wanted) + units
                streams.append(head + body + b"}")
            return json_response(
                b'{"Links":{},"Items":[' + b",".join(streams) + b"]}", 207 if failed else 200
            )

        return handler
