"""What a PI Web API client browses before it reads data: the landing page, data servers, points.

Shapes follow the PI Web API Reference (docs.aveva.com/bundle/pi-web-api-reference): "Home Get"
(``GET /piwebapi``: ``Links`` to ``AssetServers``, ``DataServers``, ``Search``, ``System``...),
"DataServer List / GetByName / GetByPath / Get" (``WebId``, ``Id``, ``Name``, ``Path``,
``IsConnected``, ``ServerVersion``, ``ServerTime``, ``Links``), "DataServer GetPoints"
(``nameFilter`` with ``*`` and ``?``, ``startIndex``, ``maxCount`` default 1000), "Point
GetPointsBySearch" (``GET points/search?dataServerWebId&query``, ``maxCount`` at most 1000; the
query is PI's point query syntax, ``name:SINUSOID``, ``tag:=SINU*``) and "Point Get" (a point
object with the ``Links`` of a PI point: ``Self``, ``DataServer``, ``Attributes``,
``InterpolatedData``, ``RecordedData``, ``PlotData``, ``SummaryData``, ``Value``, ``EndValue``).
List answers are ``{"Links": {...}, "Items": [...]}``; errors ``{"Errors": [...]}``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from simulators import webid
from simulators.common import json_response
from simulators.data import TagCatalog, TagKind, TagSpec

MAX_SEARCH_COUNT = 1000
SERVER_VERSION = "3.4.440.477"
_QUERY_TERM = re.compile(r"""(\w+)\s*:\s*=?\s*("[^"]*"|'[^']*'|\S+)""")


class QueryError(ValueError):
    """A ``nameFilter`` or point ``query`` the simulator cannot read (a 400 naming it)."""


def wildcard(pattern: str) -> re.Pattern[str]:
    """PI's name filter: ``*`` any run, ``?`` one character, case-insensitive, whole name."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def query_patterns(query: str) -> list[re.Pattern[str]]:
    """The name patterns of a PI point query (all must match); only ``name``/``tag`` are known."""
    terms = _QUERY_TERM.findall(query)
    leftover = _QUERY_TERM.sub("", query).replace("AND", "").replace("and", "").strip()
    if not terms or leftover:
        raise QueryError(f"'{query}' is not a point query of the form name:PATTERN")
    patterns: list[re.Pattern[str]] = []
    for attribute, value in terms:
        if attribute.lower() not in ("name", "tag"):
            raise QueryError(f"The simulator searches point names only, not '{attribute}'.")
        patterns.append(wildcard(value.strip("'\"")))
    return patterns


def matching(catalog: TagCatalog, patterns: list[re.Pattern[str]]) -> Iterator[str]:
    """Tag names matching every pattern, in catalog order."""
    for name in catalog.names():
        if all(p.fullmatch(name) for p in patterns):
            yield name


class Directory:
    """Builds the browse answers of one simulated PI Data Archive (``server``)."""

    def __init__(self, catalog: TagCatalog, server: str, now: Callable[[], datetime]) -> None:
        self.catalog = catalog
        self.server = server
        self.now = now
        self.server_web_id = webid.data_server_web_id(server)

    def landing(self, base: str) -> dict[str, object]:
        """``GET /piwebapi``."""
        return {
            "Links": {
                "Self": f"{base}/",
                "AssetServers": f"{base}/assetservers",
                "DataServers": f"{base}/dataservers",
                "Search": f"{base}/search",
                "System": f"{base}/system",
                "Configuration": f"{base}/system/configuration",
            }
        }

    def data_server(self, base: str) -> dict[str, object]:
        """The one data server object."""
        ws = self.server_web_id
        return {
            "WebId": ws,
            "Id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"pi-simulator:{self.server.upper()}")),
            "Name": self.server,
            "Path": f"\\\\{self.server}",
            "IsConnected": True,
            "ServerVersion": SERVER_VERSION,
            "ServerTime": self.now().isoformat().replace("+00:00", "Z"),
            "Links": {
                "Self": f"{base}/dataservers/{ws}",
                "Points": f"{base}/dataservers/{ws}/points",
                "EnumerationSets": f"{base}/dataservers/{ws}/enumerationsets",
            },
        }

    def knows_server(self, name: str) -> bool:
        """Whether ``name`` is this simulator's data server (case-insensitive, as PI)."""
        return name.strip().upper() == self.server.upper()

    def point(self, spec: TagSpec, server: str, base: str) -> dict[str, object]:
        """A point object with the links a PI point has."""
        web_id = webid.point_web_id(server, spec.name)
        here = f"{base}/streams/{web_id}"
        return {
            "WebId": web_id,
            "Id": spec.point_id,
            "Name": spec.name,
            "Path": f"\\\\{server}\\{spec.name}",
            "Descriptor": spec.descriptor,
            "PointClass": "classic",
            "PointType": spec.kind.value,
            "DigitalSetName": "BatchAct" if spec.kind is TagKind.DIGITAL else "",
            "EngineeringUnits": spec.units,
            "Span": 100.0,
            "Zero": 0.0,
            "Step": spec.kind in (TagKind.DIGITAL, TagKind.STRING),
            "Future": False,
            "DisplayDigits": -5,
            "Links": {
                "Self": f"{base}/points/{web_id}",
                "DataServer": f"{base}/dataservers/{webid.data_server_web_id(server)}",
                "Attributes": f"{base}/points/{web_id}/attributes",
                "InterpolatedData": f"{here}/interpolated",
                "RecordedData": f"{here}/recorded",
                "PlotData": f"{here}/plot",
                "SummaryData": f"{here}/summary",
                "Value": f"{here}/value",
                "EndValue": f"{here}/end",
            },
        }

    def attributes(self, spec: TagSpec) -> list[dict[str, object]]:
        """The point attributes a client most often reads (``GET points/{webId}/attributes``)."""
        values: dict[str, object] = {
            "tag": spec.name,
            "descriptor": spec.descriptor,
            "engunits": spec.units,
            "pointtype": spec.kind.value,
            "pointid": spec.point_id,
            "pointsource": "R",
            "step": int(spec.kind in (TagKind.DIGITAL, TagKind.STRING)),
            "zero": 0.0,
            "span": 100.0,
        }
        return [{"Name": name, "Value": value, "Links": {}} for name, value in values.items()]

    def page(
        self, names: Iterator[str], start_index: int, max_count: int, base: str
    ) -> list[dict[str, object]]:
        """Point objects ``start_index`` .. ``start_index + max_count`` of ``names``."""
        out: list[dict[str, object]] = []
        for i, name in enumerate(names):
            if i < start_index:
                continue
            if len(out) >= max_count:
                break
            spec = self.catalog.get(name)
            if spec is not None:
                out.append(self.point(spec, self.server, base))
        return out


def base_url(request: Request) -> str:
    """``http://host:port/piwebapi``: the root the links of an answer start with."""
    return str(request.base_url).rstrip("/") + "/piwebapi"


def _errors(status: int, *messages: str) -> Response:
    return json_response({"Errors": list(messages)}, status)


def _paging(request: Request, limit: int | None) -> tuple[int, int] | Response:
    q = request.query_params
    try:
        start_index = int(q.get("startIndex") or "0")
        max_count = int(q.get("maxCount") or "1000")
    except ValueError:
        return _errors(400, "startIndex and maxCount must be integers.")
    if start_index < 0 or max_count < 1:
        return _errors(400, "startIndex must be >= 0 and maxCount >= 1.")
    if limit is not None and max_count > limit:
        return _errors(400, f"maxCount cannot be greater than {limit}.")
    return start_index, max_count


class Browse:
    """The HTTP handlers of :class:`Directory`'s answers."""

    def __init__(self, directory: Directory) -> None:
        self.d = directory

    async def landing(self, request: Request) -> Response:
        """``GET /piwebapi``."""
        return json_response(self.d.landing(base_url(request)))

    async def system(self, request: Request) -> Response:
        """``GET /piwebapi/system``."""
        base = base_url(request)
        return json_response(
            {
                "Links": {"Self": f"{base}/system", "Versions": f"{base}/system/versions"},
                "ProductTitle": "PI Web API (histfill simulator)",
                "ProductVersion": "1.19.0",
            }
        )

    async def asset_servers(self, _: Request) -> Response:
        """``GET /piwebapi/assetservers``: the simulator has PI points only, no AF."""
        return json_response({"Links": {}, "Items": []})

    async def search(self, request: Request) -> Response:
        """``GET /piwebapi/search``: where the point search lives."""
        base = base_url(request)
        return json_response(
            {"Links": {"Self": f"{base}/search", "PointSearch": f"{base}/points/search"}}
        )

    async def data_servers(self, request: Request) -> Response:
        """``GET dataservers`` (list), ``?name=`` (by name) or ``?path=`` (by path)."""
        q = request.query_params
        base = base_url(request)
        name = q.get("name")
        path = q.get("path")
        if name is None and path is None:
            return json_response({"Links": {}, "Items": [self.d.data_server(base)]})
        wanted = name if name is not None else (path or "").removeprefix("\\\\")
        if not self.d.knows_server(wanted):
            return _errors(404, f"PI Data Archive '{wanted}' not found.")
        return json_response(self.d.data_server(base))

    async def data_server(self, request: Request) -> Response:
        """``GET dataservers/{webId}``."""
        server = webid.decode_data_server(request.path_params["web_id"])
        if server is None or not self.d.knows_server(server):
            return _errors(404, "Unknown or invalid WebID.")
        return json_response(self.d.data_server(base_url(request)))

    async def data_server_points(self, request: Request) -> Response:
        """``GET dataservers/{webId}/points?nameFilter=&startIndex=&maxCount=``."""
        server = webid.decode_data_server(request.path_params["web_id"])
        if server is None or not self.d.knows_server(server):
            return _errors(404, "Unknown or invalid WebID.")
        paging = _paging(request, None)
        if isinstance(paging, Response):
            return paging
        pattern = wildcard(request.query_params.get("nameFilter") or "*")
        names = matching(self.d.catalog, [pattern])
        items = self.d.page(names, *paging, base_url(request))
        return json_response({"Links": {}, "Items": items})

    async def point_search(self, request: Request) -> Response:
        """``GET points/search?dataServerWebId=&query=name:X`` (at most 1000 a page)."""
        q = request.query_params
        server_id = q.get("dataServerWebId")
        if server_id:
            server = webid.decode_data_server(server_id)
            if server is None or not self.d.knows_server(server):
                return _errors(404, "Unknown or invalid dataServerWebId.")
        paging = _paging(request, MAX_SEARCH_COUNT)
        if isinstance(paging, Response):
            return paging
        try:
            patterns = query_patterns(q.get("query") or "name:*")
        except QueryError as exc:
            return _errors(400, str(exc))
        items = self.d.page(matching(self.d.catalog, patterns), *paging, base_url(request))
        return json_response({"Links": {}, "Items": items})

    async def attributes(self, request: Request) -> Response:
        """``GET points/{webId}/attributes``."""
        decoded = webid.decode_point(request.path_params["web_id"])
        spec = self.d.catalog.get(decoded[1]) if decoded else None
        if spec is None:
            return _errors(404, "Unknown or invalid WebID.")
        return json_response({"Links": {}, "Items": self.d.attributes(spec)})

    async def not_found(self, request: Request, exc: Exception) -> Response:
        """Unknown routes and methods answer in PI's JSON error shape, never plain text."""
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return _errors(405, f"The requested resource does not support {request.method}.")
        return _errors(404, f"No resource at '{request.url.path}'.")
