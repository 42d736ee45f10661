"""``histfill changes``: the changes report from the producer's API, as plain text.

Plain aligned lines, no colours or boxes: the same on a terminal, in a pipe and in a file
(``histfill changes --since 1d | grep SINUSOID``); ``--json`` prints the API's data as it is.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import typer

from producer.api.cli import DEFAULT_URL, api_client, call


def render(data: dict[str, Any]) -> str:
    """The report as plain aligned text: the same on a terminal and in a pipe or a file."""
    lines = [
        f"changes seen from {data['since']} to {data['until']}"
        + (f" for {data['point']}" if data.get("point") else "")
        + f": {data['totals']['added']:,} values added, {data['totals']['changed']:,} changed, "
        f"{data['points']} points, {data['runs']} runs"
    ]
    rows = data["rows"]
    if not rows:
        return lines[0]
    width = max(len("point"), *(len(r["point"]) for r in rows))
    lines.append(f"{'point':<{width}}  {'hour (UTC)':<20}  {'added':>9}  {'changed':>9}  by")
    for r in rows:
        by = ",".join(sorted(r.get("by", {})))
        lines.append(
            f"{r['point']:<{width}}  {r['hour']:<20}  {r['added']:>9,}  {r['changed']:>9,}  {by}"
        )
    return "\n".join(lines)


def changes_command(
    since: str = typer.Option(
        "1d", "--since", help="From when: a duration back from now (1d, 12h, 30m) or a UTC time."
    ),
    until: str | None = typer.Option(None, "--until", help="Up to when (default: now)."),
    point: str | None = typer.Option(None, "--point", help="Only this point."),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON data."),
    url: str = typer.Option(DEFAULT_URL, "--url", help="Base URL of the producer's HTTP API."),
    token: str | None = typer.Option(None, "--token", envvar="API_TOKEN", help="Bearer token."),
) -> None:
    """What the re-pull (and hole repairs) added and changed, per point and hour."""
    params = (
        {"since": since} | ({"until": until} if until else {}) | ({"point": point} if point else {})
    )
    with api_client(url, token) as client:
        query = urlencode(params)
        data: dict[str, Any] = call(client, "GET", f"/api/backfill/changes?{query}")
    typer.echo(json.dumps(data, indent=2) if as_json else render(data))
