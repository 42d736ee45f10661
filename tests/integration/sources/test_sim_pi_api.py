"""The PI simulator as any PI Web API client sees it: real sockets, shapes from the reference.

The expected keys below are written from the PI Web API Reference (docs.aveva.com/bundle/
pi-web-api-reference): "Home Get", "DataServer List/GetByName/Get/GetPoints", "Point Get" and the
links a point object carries, "Point GetPointsBySearch", "Stream GetRecorded/GetInterpolated/
GetPlot/GetValue/GetEnd", "StreamSet ...AdHoc", "Time Strings" and "Error Handling"; not from
histfill's own client.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from simulators.pi import PISimulator, PISimulatorOptions
from simulators.server import serve_in_thread

NOW = datetime(2024, 3, 13, 15, 30, tzinfo=UTC)
LANDING_LINKS = {"Self", "AssetServers", "DataServers", "Search", "System", "Configuration"}
DATA_SERVER_KEYS = {"WebId", "Id", "Name", "Path", "IsConnected", "ServerVersion", "ServerTime"}
DATA_SERVER_LINKS = {"Self", "Points", "EnumerationSets"}
POINT_KEYS = {
    "WebId", "Id", "Name", "Path", "Descriptor", "PointClass", "PointType", "DigitalSetName",
    "EngineeringUnits", "Span", "Zero", "Step", "Future", "DisplayDigits", "Links",
}  # fmt: skip
POINT_LINKS = {
    "Self", "DataServer", "Attributes", "InterpolatedData", "RecordedData", "PlotData",
    "SummaryData", "Value", "EndValue",
}  # fmt: skip
VALUE_KEYS = {
    "Timestamp", "Value", "UnitsAbbreviation", "Good", "Questionable", "Substituted", "Annotated",
}  # fmt: skip


def web_id_of(path: str) -> str:
    """WebID 2.0 path-only, by the specification (header P1DP, base64url of the upper path)."""
    raw = path.removeprefix("\\\\").upper().encode()
    return "P1DP" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


SINUSOID = web_id_of("\\\\SIMPI\\SINUSOID")
SINUSOIDU = web_id_of("\\\\SIMPI\\SINUSOIDU")
CDT158 = web_id_of("\\\\SIMPI\\CDT158")
ACTIVE = web_id_of("\\\\SIMPI\\BA:ACTIVE.1")
LOWER_CASE = web_id_of("\\\\simpi\\sinusoid")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """A PI simulator whose clock says ``NOW``, and a plain HTTP client of it."""
    sim = PISimulator(PISimulatorOptions(generated_tags=3), now=lambda: NOW)
    with (
        serve_in_thread(sim.app) as running,
        httpx.Client(base_url=f"{running.url}/piwebapi", auth=("any", "one")) as http,
    ):
        yield http


def get(client: httpx.Client, url: str, status: int = 200, **params: object) -> dict[str, object]:
    answer = client.get(url, params=params)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert isinstance(body, dict)
    return body


def test_a_client_starts_at_the_landing_page_and_finds_the_data_server(
    client: httpx.Client,
) -> None:
    """``GET /piwebapi`` links to DataServers; following it lists one server; name= finds it."""
    landing = get(client, "")
    assert set(landing["Links"]) >= LANDING_LINKS
    servers = get(client, str(landing["Links"]["DataServers"]))
    assert set(servers) == {"Links", "Items"}
    (server,) = servers["Items"]
    assert set(server) >= DATA_SERVER_KEYS | {"Links"}
    assert set(server["Links"]) >= DATA_SERVER_LINKS
    assert server["Path"] == "\\\\SIMPI"
    assert get(client, "dataservers", name="simpi")["WebId"] == server["WebId"]
    assert get(client, f"dataservers/{server['WebId']}")["Name"] == "SIMPI"
    get(client, "dataservers", 404, name="OTHER")


def test_points_of_a_data_server_by_name_filter(client: httpx.Client) -> None:
    """``dataservers/{id}/points?nameFilter=SIN*`` lists matching points with their links."""
    server = get(client, "dataservers")["Items"][0]
    found = get(client, str(server["Links"]["Points"]), nameFilter="sin*")
    names = [p["Name"] for p in found["Items"]]
    assert names == ["SINUSOID", "SINUSOIDU"]
    for point in found["Items"]:
        assert set(point) == POINT_KEYS
        assert set(point["Links"]) == POINT_LINKS
    few = get(client, str(server["Links"]["Points"]), nameFilter="SIMTAG*", maxCount=2)
    assert [p["Name"] for p in few["Items"]] == ["SIMTAG00000", "SIMTAG00001"]


def test_points_search_by_query(client: httpx.Client) -> None:
    """``points/search?query=name:X`` finds the point; maxCount above 1000 is a JSON 400."""
    server = get(client, "dataservers")["Items"][0]
    found = get(client, "points/search", dataServerWebId=server["WebId"], query="name:CDT158")
    assert [p["Name"] for p in found["Items"]] == ["CDT158"]
    assert get(client, "points/search", query="tag:=SINU*")["Items"]
    assert "Errors" in get(client, "points/search", 400, query="name:*", maxCount=1001)
    assert "Errors" in get(client, "points/search", 400, query="pointsource:R")


def test_the_web_id_a_client_computes_is_the_one_the_server_hands_out(
    client: httpx.Client,
) -> None:
    """A WebID built from ``\\\\SIMPI\\SINUSOID`` by the specification reads that point."""
    by_path = get(client, "points", path="\\\\SIMPI\\SINUSOID")
    assert by_path["WebId"] == SINUSOID
    point = get(client, f"points/{LOWER_CASE}")
    assert point["Name"] == "SINUSOID"
    assert point["Path"] == "\\\\SIMPI\\SINUSOID"
    attributes = get(client, str(point["Links"]["Attributes"]))
    assert {a["Name"] for a in attributes["Items"]} >= {"tag", "descriptor", "engunits"}


def test_recorded_reads_pi_time_strings_and_defaults(client: httpx.Client) -> None:
    """``01-Jan-24 00:00:00``, ``t``/``y`` and the default window ``*-1d`` .. ``*`` all read."""
    links = get(client, f"points/{SINUSOID}")["Links"]
    recorded = str(links["RecordedData"])
    span = get(client, recorded, startTime="01-Jan-24 00:00:00", endTime="01-Jan-24 00:10:00")
    assert len(span["Items"]) == 11
    assert set(span["Items"][0]) == VALUE_KEYS
    assert span["Items"][0]["Timestamp"] == "2024-01-01T00:00:00Z"
    yesterday = get(client, recorded, startTime="y", endTime="t", maxCount=10000)
    assert len(yesterday["Items"]) == 24 * 60 + 1
    default = get(client, recorded, maxCount=10000)
    stamps = [v["Timestamp"] for v in default["Items"]]
    assert stamps[0] == "2024-03-12T15:30:00Z"
    assert stamps[-1] == "2024-03-13T15:30:00Z"


def test_end_before_start_answers_in_descending_order(client: httpx.Client) -> None:
    """endTime earlier than startTime: the same values, newest first (as PI answers)."""
    recorded = f"streams/{CDT158}/recorded"
    up = get(client, recorded, startTime="t-1h", endTime="t")["Items"]
    down = get(client, recorded, startTime="t", endTime="t-1h")["Items"]
    assert down == up[::-1]
    newest = get(client, recorded, startTime="t", endTime="t-1h", maxCount=2)["Items"]
    assert [v["Timestamp"] for v in newest] == ["2024-03-13T00:00:00Z", "2024-03-12T23:59:00Z"]


def test_interpolated_plot_value_and_end(client: httpx.Client) -> None:
    """Each stream method answers its documented shape, following the point's links."""
    links = get(client, f"points/{SINUSOIDU}")["Links"]
    inter = get(client, str(links["InterpolatedData"]), startTime="y", endTime="t", interval="1h")
    assert set(inter) == {"Links", "Items", "UnitsAbbreviation"}
    assert len(inter["Items"]) == 25
    assert set(inter["Items"][0]) == VALUE_KEYS
    plot = get(client, str(links["PlotData"]), startTime="y", endTime="t", intervals=10)
    assert 0 < len(plot["Items"]) <= 50
    value = get(client, str(links["Value"]))
    assert set(value) == VALUE_KEYS
    assert value["Timestamp"] == "2024-03-13T15:30:00Z"
    end = get(client, str(links["EndValue"]))
    assert set(end) == VALUE_KEYS
    at = get(client, str(links["Value"]), time="01-Jan-24 00:00:30")
    assert at["Timestamp"] == "2024-01-01T00:00:30Z"


def test_streamsets_of_every_method(client: httpx.Client) -> None:
    """``streamsets/<method>?webId=..`` has one item per stream: Items, or Value for value/end."""
    ids = [SINUSOID, ACTIVE]
    for method in ("recorded", "interpolated", "plot"):
        body = get(client, f"streamsets/{method}", webId=ids, startTime="y", endTime="t")
        assert [s["WebId"] for s in body["Items"]] == ids
        for stream in body["Items"]:
            assert {"WebId", "Name", "Path", "Items"} <= set(stream)
    for method in ("value", "end"):
        body = get(client, f"streamsets/{method}", webId=ids)
        for stream in body["Items"]:
            assert {"WebId", "Name", "Path", "Links", "Value"} <= set(stream)
            assert set(stream["Value"]) == VALUE_KEYS
    digital = get(client, "streamsets/value", webId=ids)["Items"][1]["Value"]["Value"]
    assert set(digital) == {"Name", "Value", "IsSystem"}


def test_every_error_is_json_with_errors(client: httpx.Client) -> None:
    """Unknown routes, unknown WebIDs, bad time strings and bad methods: ``{"Errors": [...]}``."""
    assert get(client, "no/such/route", 404)["Errors"]
    assert get(client, "streams/P1DPnope/recorded", 404)["Errors"]
    bad_time = get(client, f"streams/{SINUSOID}/recorded", 400,
                   startTime="not a time")  # fmt: skip
    assert "not a time" in bad_time["Errors"][0]
    posted = client.post("dataservers")
    assert posted.status_code == 405
    assert posted.json()["Errors"]


def test_summary_follows_the_point_link(client: httpx.Client) -> None:
    """``SummaryData`` answers ``{"Items": [{"Type", "Value": <timed value>}]}`` per type."""
    links = get(client, f"points/{CDT158}")["Links"]
    body = get(
        client,
        str(links["SummaryData"]),
        startTime="y",
        endTime="t",
        summaryType=["Average", "Minimum", "Maximum", "Count"],
    )
    by_type = {item["Type"]: item["Value"] for item in body["Items"]}
    assert set(by_type) == {"Average", "Minimum", "Maximum", "Count"}
    assert all(set(value) == VALUE_KEYS for value in by_type.values())
    assert by_type["Count"]["Value"] == 24 * 60 + 1
    assert by_type["Minimum"]["Value"] <= by_type["Average"]["Value"] <= by_type["Maximum"]["Value"]
    assert get(client, str(links["SummaryData"]))["Items"][0]["Type"] == "Total"
    assert get(client, str(links["SummaryData"]), 400, summaryType="Median")["Errors"]
