"""ACE IoT API shapes the simulator answers with: sites, points, 5-minute aggregates, validation.

References: ACE's Swagger document (``/api/swagger.json`` of the FlightDeck API, OpenAPI 2.0 from
Flask-RESTX), as the public clients built on it read it: ACE-IoT-Solutions' ``aceiot-models`` /
``aceiot-models-cli`` (PyPI) and the typed ``@sixb/connector-ace-iot`` connector ("wire-shape types
taken from ACE's own schema"), whose documentation gives:

* ``POST points/get_timeseries?start_time&end_time`` takes ``{"points": [{"name": ...}]}``: a
  list of point *objects*. (aceiot-models' newer ``get_points_timeseries`` sends bare strings;
  the schema's model is the object, so the simulator refuses strings with Flask-RESTX's 400.)
* timeseries endpoints take ``raw_data`` (boolean, default false): without it ACE answers
  5-minute buckets, not the samples; ``raw_data=true`` returns the samples as collected.
* ``page_size`` of ``sites/{site}/timeseries/paginated`` is an enum: 3, 10, 50, 100, 500, 1000,
  5000, 10000, 50000, 100000, 300000, 500000; ``per_page`` of list endpoints another: 2, 10,
  20, 30, 40, 50, 100, 500, 1000, 5000, 10000, 100000. Anything else is a 400.
* list answers are ``{"page", "pages", "per_page", "total", "items"}``; a point has ``id``,
  ``name``, ``client``, ``site``, ``client_id``, ``site_id``, ``point_type``, ``collect_enabled``,
  ``collect_interval``, ``marker_tags``, ``kv_tags``, ``bacnet_data``, ``collect_config``,
  ``created``, ``updated``; a site ``id``, ``name``, ``client``, ``nice_name``, ``address``,
  ``geo_location``, ``latitude``, ``longitude``, ``mqtt_prefix``, ``archived``...
* Flask-RESTX's validation error body: ``{"errors": {"<field>": "<why>"}, "message": "Input
  payload validation failed"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from starlette.responses import Response

from simulators.common import json_response
from simulators.data import Int64Array, TagKind, TagSpec, events
from simulators.fixedjson import timestamp_strings

BUCKET_US = 300_000_000  # ACE's aggregates: 5-minute buckets
PAGE_SIZES = (3, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000, 300000, 500000)
PER_PAGE = (2, 10, 20, 30, 40, 50, 100, 500, 1000, 5000, 10000, 100000)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_OBJECT_TYPES = {
    TagKind.FLOAT: "analogInput",
    TagKind.MULTI: "analogValue",
    TagKind.DIGITAL: "multiStateValue",
    TagKind.STRING: "characterstringValue",
}
_CREATED = "2024-01-01T00:00:00"


def invalid(field: str, why: str) -> Response:
    """Flask-RESTX's 400 for a parameter or body field that fails validation."""
    return json_response(
        {"errors": {field: why}, "message": "Input payload validation failed"}, 400
    )


def raw_flag(value: str | None) -> bool | Response:
    """``raw_data``: absent means false (ACE's default: 5-minute aggregates)."""
    if value is None or value == "":
        return False
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return invalid("raw_data", f"Invalid literal for boolean(): {value}")


def choice(field: str, value: str | None, allowed: tuple[int, ...], default: int) -> int | Response:
    """An enum-valued integer parameter (``page_size``, ``per_page``)."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number not in allowed:
        listed = ", ".join(str(a) for a in allowed)
        return invalid(field, f"The value '{value}' is not a valid choice for '{field}'. "
                       f"Valid choices: {listed}")  # fmt: skip
    return number


def point_names(body: Any) -> list[str] | Response:
    """The names of a ``get_timeseries`` body as the schema defines it, or Flask-RESTX's 400."""
    if not isinstance(body, dict) or not isinstance(body.get("points"), list):
        return invalid("points", "'points' is a required property")
    names: list[str] = []
    for i, item in enumerate(body["points"]):
        if not isinstance(item, dict):
            return invalid(f"points.{i}", f"{item!r} is not of type 'object'")
        if not isinstance(item.get("name"), str):
            return invalid(f"points.{i}.name", "'name' is a required property")
        names.append(item["name"])
    return names


def five_minute(spec: TagSpec, start_us: int, end_us: int) -> tuple[Int64Array, list[str]]:
    """ACE's aggregates of ``[start_us, end_us)``: per 5-minute bucket its start and the mean
    (numbers) or the last state (digital and string points), as strings."""
    ev = events(spec, start_us, end_us)
    if len(ev) == 0:
        return np.zeros(0, dtype=np.int64), []
    bucket = ev.timestamps_us // BUCKET_US * BUCKET_US
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    times = bucket[starts]
    if spec.kind in (TagKind.DIGITAL, TagKind.STRING):
        last = np.r_[starts[1:], len(ev)] - 1
        texts = ev.texts or []
        return times, [texts[i] for i in last.tolist()]
    counts = np.diff(np.r_[starts, len(ev)])
    means = np.add.reduceat(ev.ints_e4, starts) / counts / 1e4
    return times, [repr(round(float(m), 4)) for m in means]


def site_object(index: int, name: str, client: str) -> dict[str, object]:
    """A site as ``GET sites`` / ``GET sites/{site}`` answer it."""
    return {
        "id": index + 1,
        "name": name,
        "client": client,
        "nice_name": name.replace("_", " ").title(),
        "address": "1 Simulation Way",
        "geo_location": "",
        "latitude": 0.0,
        "longitude": 0.0,
        "mqtt_prefix": f"{client}/{name}",
        "vtron_ip": "127.0.0.1",
        "vtron_user": "volttron",
        "ansible_user": "deploy",
        "archived": False,
    }


def point_object(
    spec: TagSpec, name: str, site: str, site_id: int, client: str, interval_s: int
) -> dict[str, object]:
    """A point as ``GET points/{name}`` and ``GET sites/{site}/points`` answer it."""
    return {
        "id": spec.point_id,
        "name": name,
        "client": client,
        "site": site,
        "client_id": 1,
        "site_id": site_id,
        "point_type": "bacnet",
        "collect_enabled": True,
        "collect_interval": interval_s,
        "marker_tags": ["sim", "sensor", "point"],
        "kv_tags": {"descriptor": spec.descriptor, "units": spec.units},
        "bacnet_data": {
            "device_address": "10.0.0.1",
            "device_id": 1000,
            "device_name": "sim-device",
            "device_description": "histfill simulator",
            "object_type": _OBJECT_TYPES[spec.kind],
            "object_index": spec.point_id,
            "object_name": spec.name,
            "object_description": spec.descriptor,
            "object_units": spec.units,
            "scrape_interval": interval_s,
            "scrape_enabled": True,
            "present_value": "",
        },
        "collect_config": {},
        "created": _CREATED,
        "updated": _CREATED,
    }


def listing(
    page_items: list[dict[str, object]], page: int, per_page: int, total: int
) -> dict[str, object]:
    """ACE's page envelope around one page's items, of ``total`` items in all."""
    return {
        "page": page,
        "pages": max(1, -(-total // per_page)),
        "per_page": per_page,
        "total": total,
        "items": page_items,
    }


def aggregated_samples(
    spec_of: Callable[[str], TagSpec | None],
    names: list[str],
    start_us: int,
    end_us: int,
    page_size: int,
    position: tuple[int, int, int],
) -> tuple[list[dict[str, str]], tuple[int, int, int] | None]:
    """One page of 5-minute aggregates of ``names`` from ``position`` (point index, time) and
    where the next page starts (``None``: done). Each bucket is one sample, so a page never
    splits one; a page is cut between buckets."""
    index, at_us, _ = position
    samples: list[dict[str, str]] = []
    while index < len(names):
        room = page_size - len(samples)
        if room <= 0:
            return samples, (index, at_us, 0)
        spec = spec_of(names[index])
        if spec is None or at_us >= end_us:
            index, at_us = index + 1, start_us
            continue
        # at most room + 1 buckets: enough to fill the page and see whether more follow
        limit = min(end_us, (at_us // BUCKET_US + room + 1) * BUCKET_US)
        times, values = five_minute(spec, at_us, limit)
        if len(times) > room:
            times, values = times[:room], values[:room]
            next_at = int(times[-1]) + BUCKET_US
        else:
            next_at = limit
        name = names[index]
        samples.extend(
            {"name": name, "value": v, "time": t}
            for v, t in zip(values, timestamp_strings(times), strict=True)
        )
        at_us = next_at
    return samples, None
