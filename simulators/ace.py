"""An ACE IoT (FlightDeck) API look-alike over HTTP, serving :mod:`simulators.data`'s history.

Endpoints (under ``/api``), as ACE's Swagger document defines them and its public clients use
them (references and the shapes: :mod:`simulators.ace_api`):

* ``GET sites?page&per_page`` and ``GET sites/{site}``: the sites.
* ``GET points/{name}``: one point; 404 for an unknown one. Point names are
  ``client/site/TAG``; any prefix is accepted, the last segment names the simulated tag.
* ``POST points/get_timeseries?start_time&end_time&raw_data`` with exactly the schema's body
  ``{"points": [{"name": ..}]}`` (at most 100 points; bare strings or more points: 400):
  ``{"point_samples": [{"name","value","time"}], "next_cursor", "has_more"}``.
  Unknown points are left out, as ACE does.
* ``GET sites/{site}/timeseries/paginated?start_time&end_time&page_size&cursor&raw_data``: every
  tag of the site, cursor-paginated (``page_size`` one of ACE's enum values, else 400).
* ``GET sites/{site}/timeseries`` and ``GET points/{name}/timeseries``: the same samples, one
  answer (``{"point_samples": [...]}``).
* ``GET sites/{site}/points?page&per_page``: the site's points.

``raw_data`` defaults to false, as in ACE: without ``raw_data=true`` every timeseries endpoint
answers 5-minute aggregates (the bucket's start and mean), not the samples. A client that forgets
it reads one value in five of a one-minute point, so histfill's client always sends it.

Windows are half-open ``[start_time, end_time)``. Sample values are strings, as ACE sends them:
numbers printed exactly, digital states by name, string tags as their text. Pages hold at most
``page_size`` samples; a point may continue on the next page (the cursor remembers the timestamp
and how many samples at it were already sent).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulators import ace_api
from simulators.common import (
    Credentials,
    FaultPlan,
    Guard,
    ServerRateLimit,
    admin_routes,
    dumps,
    json_response,
    parse_time,
)
from simulators.data import Clock, TagCatalog, TagKind, TagSpec, events
from simulators.fixedjson import timestamp_strings
from simulators.server import serve_forever

log = structlog.get_logger(__name__)
MAX_POINTS_PER_CALL = 100
UNPAGED_LIMIT = 500_000  # samples the endpoints without a cursor answer at most


@dataclass(frozen=True)
class AceSimulatorOptions:
    """How ``histfill simulate ace`` behaves."""

    interval_s: float = 60.0
    generated_tags: int = 0
    client: str = "sim"
    sites: tuple[str, ...] = ("sim_site",)
    page_size: int = 50_000
    api_key: str | None = None  # None: any bearer token is accepted
    max_requests_per_second: float | None = None
    retry_after_s: int = 1
    faults: FaultPlan = field(default_factory=FaultPlan)
    clock: Clock | None = None  # the simulator's "now": no value after it is served (UTC)


def _encode_cursor(point: int, start_us: int, skip: int) -> str:
    return base64.urlsafe_b64encode(dumps([point, start_us, skip])).decode()


def _decode_cursor(cursor: str) -> tuple[int, int, int] | None:
    try:
        point, start_us, skip = json.loads(base64.urlsafe_b64decode(cursor))
        return int(point), int(start_us), int(skip)
    except (ValueError, TypeError):
        return None


def _sample_values(spec: TagSpec, ints_e4: list[int], texts: list[str] | None) -> list[str]:
    if spec.kind in (TagKind.DIGITAL, TagKind.STRING):
        return texts or []
    return [repr(i / 1e4) for i in ints_e4]


class AceSimulator:
    """The simulator's state and its Starlette app."""

    def __init__(self, options: AceSimulatorOptions | None = None) -> None:
        self.options = options or AceSimulatorOptions()
        self.catalog = TagCatalog(
            self.options.interval_s, self.options.generated_tags, self.options.clock
        )
        self.faults = self.options.faults
        self.guard = Guard(
            Credentials(bearer_token=self.options.api_key, username=None),
            ServerRateLimit(self.options.max_requests_per_second),
            self.faults,
            self.options.retry_after_s,
            realm="ACE IoT",
        )
        g = self.guard.wrap
        self.app = Starlette(
            routes=[
                *admin_routes(self.catalog, self.guard),
                Route("/api/points/get_timeseries", g(self._get_timeseries), methods=["POST"]),
                Route("/api/points/{name:path}/timeseries", g(self._point_timeseries)),
                Route("/api/points/{name:path}", g(self._point)),
                Route("/api/sites", g(self._sites)),
                Route("/api/sites/", g(self._sites)),
                Route("/api/sites/{site}", g(self._site)),
                Route("/api/sites/{site}/points", g(self._site_points)),
                Route("/api/sites/{site}/timeseries", g(self._site_timeseries_unpaged)),
                Route("/api/sites/{site}/timeseries/paginated", g(self._site_timeseries)),
            ]
        )

    @property
    def stats(self) -> dict[str, int]:
        """Requests seen and statuses answered."""
        return dict(self.guard.stats)

    def point_name(self, tag: str, site: str | None = None) -> str:
        """The ACE name of a simulated tag at a site."""
        return f"{self.options.client}/{site or self.options.sites[0]}/{tag}"

    def _spec(self, name: str) -> TagSpec | None:
        return self.catalog.get(name.rsplit("/", 1)[-1])

    async def _point(self, request: Request) -> Response:
        name = request.path_params["name"]
        spec = self._spec(name)
        if spec is None:
            return json_response({"message": f"Point {name} not found"}, 404)
        site = name.split("/")[1] if name.count("/") >= 2 else self.options.sites[0]
        return json_response(self._point_object(spec, name, site))

    def _point_object(self, spec: TagSpec, name: str, site: str) -> dict[str, object]:
        sites = self.options.sites
        site_id = sites.index(site) + 1 if site in sites else 1
        interval_s = max(1, self.catalog.interval_us // 1_000_000)
        return ace_api.point_object(spec, name, site, site_id, self.options.client, interval_s)

    async def _site_points(self, request: Request) -> Response:
        site = request.path_params["site"]
        if site not in self.options.sites:
            return json_response({"message": f"Site {site} not found"}, 404)
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, per_page = paging
        names = [self.point_name(tag, site) for tag in self.catalog.names()]
        chunk = names[(page - 1) * per_page : page * per_page]
        specs = [(self._spec(n), n) for n in chunk]
        items = [self._point_object(spec, n, site) for spec, n in specs if spec is not None]
        return json_response(ace_api.listing(items, page, per_page, len(names)))

    def _paging(self, request: Request) -> tuple[int, int] | Response:
        q = request.query_params
        per_page = ace_api.choice("per_page", q.get("per_page"), ace_api.PER_PAGE, 10)
        if isinstance(per_page, Response):
            return per_page
        try:
            page = int(q.get("page") or "1")
        except ValueError:
            page = 0
        if page < 1:
            return ace_api.invalid("page", "page must be a positive integer")
        return page, per_page

    async def _sites(self, request: Request) -> Response:
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, per_page = paging
        client = self.options.client
        sites = [ace_api.site_object(i, s, client) for i, s in enumerate(self.options.sites)]
        chunk = sites[(page - 1) * per_page : page * per_page]
        return json_response(ace_api.listing(chunk, page, per_page, len(sites)))

    async def _site(self, request: Request) -> Response:
        site = request.path_params["site"]
        if site not in self.options.sites:
            return json_response({"message": f"Site {site} not found"}, 404)
        index = self.options.sites.index(site)
        return json_response(ace_api.site_object(index, site, self.options.client))

    def _page(self, request: Request, names: list[str], *, paginated: bool = True) -> Response:
        q = request.query_params
        start, end = parse_time(q.get("start_time")), parse_time(q.get("end_time"))
        if start is None or end is None or end < start:
            return json_response({"message": "start_time and end_time: ISO-8601 with zone"}, 400)
        end = self.catalog.until(end)  # nothing after now, as in the real service
        raw = ace_api.raw_flag(q.get("raw_data"))
        page_size = (
            ace_api.choice(
                "page_size", q.get("page_size"), ace_api.PAGE_SIZES, self.options.page_size
            )
            if paginated
            else UNPAGED_LIMIT
        )
        if isinstance(raw, Response):
            return raw
        if isinstance(page_size, Response):
            return page_size
        position = _decode_cursor(q["cursor"]) if q.get("cursor") else (0, start, 0)
        if position is None:
            return json_response({"message": "invalid cursor"}, 400)
        if not raw:  # ACE's default: 5-minute aggregates
            self.guard.stats["timeseries_aggregated"] += 1
            buckets, after = ace_api.aggregated_samples(
                self._spec, names, start, end, page_size, position
            )
            cursor = None if after is None else _encode_cursor(*after)
            return self._samples(buckets, cursor, paginated)
        self.guard.stats["timeseries_raw"] += 1
        index, at_us, skip = position
        samples: list[dict[str, str]] = []
        next_cursor: str | None = None
        while index < len(names):
            spec = self._spec(names[index])
            room = page_size - len(samples)
            if spec is None or room <= 0:
                if room <= 0:
                    next_cursor = _encode_cursor(index, at_us, skip)
                    break
                index, at_us, skip = index + 1, start, 0
                continue
            page = events(spec, at_us, end, room + skip)
            n = len(page)
            times = timestamp_strings(page.timestamps_us[skip:])
            values = _sample_values(
                spec,
                page.ints_e4[skip:].tolist(),
                None if page.texts is None else page.texts[skip:],
            )
            name = names[index]
            samples.extend(
                {"name": name, "value": v, "time": t} for v, t in zip(values, times, strict=True)
            )
            if n == room + skip:  # page full: continue this point after its last sample
                last = int(page.timestamps_us[-1])
                # all samples at ``last`` in this page were sent (a run at the page's start
                # includes the ``skip`` sent before): the next page skips that many at ``last``
                seen = int((page.timestamps_us == last).sum())
                next_cursor = _encode_cursor(index, last, seen)
                break
            index, at_us, skip = index + 1, start, 0
        return self._samples(samples, next_cursor, paginated)

    @staticmethod
    def _samples(
        samples: list[dict[str, str]], next_cursor: str | None, paginated: bool
    ) -> Response:
        if not paginated:
            if next_cursor is not None:
                message = f"more than {UNPAGED_LIMIT} samples: ask the /paginated endpoint"
                return json_response({"message": message}, 400)
            return json_response({"point_samples": samples})
        body: dict[str, object] = {"point_samples": samples, "has_more": next_cursor is not None}
        if next_cursor is not None:
            body["next_cursor"] = next_cursor
        return json_response(body)

    async def _get_timeseries(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return ace_api.invalid("points", "the body is not JSON")
        names = ace_api.point_names(body)
        if isinstance(names, Response):
            return names
        if len(names) > MAX_POINTS_PER_CALL:
            return json_response(
                {"message": f"at most {MAX_POINTS_PER_CALL} points per call, got {len(names)}"},
                400,
            )
        return self._page(request, names)

    async def _site_timeseries(self, request: Request) -> Response:
        site = request.path_params["site"]
        if site not in self.options.sites:
            return json_response({"message": f"Site {site} not found"}, 404)
        return self._page(request, [self.point_name(tag, site) for tag in self.catalog.names()])

    async def _site_timeseries_unpaged(self, request: Request) -> Response:
        site = request.path_params["site"]
        if site not in self.options.sites:
            return json_response({"message": f"Site {site} not found"}, 404)
        names = [self.point_name(tag, site) for tag in self.catalog.names()]
        return self._page(request, names, paginated=False)

    async def _point_timeseries(self, request: Request) -> Response:
        name = request.path_params["name"]
        if self._spec(name) is None:
            return json_response({"message": f"Point {name} not found"}, 404)
        return self._page(request, [name], paginated=False)


def run_ace_simulator(
    host: str = "127.0.0.1",
    port: int = 8766,
    options: AceSimulatorOptions | None = None,
    *,
    log_level: str = "info",
    **overrides: Any,
) -> None:
    """Serve the ACE IoT API simulator until interrupted (``histfill simulate ace``); keyword
    ``overrides`` replace fields of ``options``."""
    chosen = replace(options or AceSimulatorOptions(), **overrides)
    log.info(
        "ace_simulator_starting",
        url=f"http://{host}:{port}/api",
        sites=list(chosen.sites),
        tags=len(TagCatalog(chosen.interval_s, chosen.generated_tags).names()),
        interval_s=chosen.interval_s,
        api_key_required=chosen.api_key is not None,
    )
    serve_forever(AceSimulator(chosen).app, host, port, log_level)
