"""``histfill backfill ...``: start, watch, inspect and cancel backfills through the HTTP API.

The CLI is a client of the running producer (``histfill producer`` / ``python -m producer``), so
what it shows is what the API and ``/metrics`` show. ``start --wait`` draws a live progress bar
with rate and ETA and ends with the seed-style summary; its exit code is 0 only if the request
completed without errors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

FINAL = {"Completed", "CompletedWithErrors", "Partial", "Failed", "Cancelled"}
DEFAULT_URL = "http://127.0.0.1:5052"

app = typer.Typer(help="Backfill historian data through the producer's API.", no_args_is_help=True)
console = Console()

UrlOption = typer.Option(DEFAULT_URL, "--url", help="Base URL of the producer's HTTP API.")
TokenOption = typer.Option(None, "--token", envvar="API_TOKEN", help="Bearer token, if set.")


def run_service() -> None:
    """Run the backfill producer service (HTTP API on API_PORT) until SIGTERM/Ctrl-C."""
    from producer.main import main  # noqa: PLC0415  # the service's imports only when serving

    main()


def api_client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def call(client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    try:
        response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        console.print(f"[bold red]error:[/] cannot reach the producer at {client.base_url}: {exc}")
        raise typer.Exit(code=2) from exc
    try:
        payload = response.json() if response.content else {}
    except ValueError:  # not the API's envelope (a proxy's page, a crash): show what came
        payload = {"error": {"message": response.text[:500]}}
    if response.status_code >= 400 or not payload.get("success", False):
        error = payload.get("error") or {}
        field = f" ({escape(str(error['field']))})" if error.get("field") else ""
        message = escape(str(error.get("message") or response.reason_phrase))
        console.print(f"[bold red]error {response.status_code}{field}:[/] {message}")
        raise typer.Exit(code=2)
    return payload["data"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = int(seconds)
    return f"{whole // 3600}h {whole % 3600 // 60}m {whole % 60}s"


def summary(data: dict[str, Any]) -> str:
    """The seed's end-of-run block: progress, elapsed, rate, counts, skipped, errors."""
    bar = "=" * 60
    done = _done_chunks(data)
    lines = [
        bar,
        f"Request: {data['requestId']} ({data['status']})",
        f"Progress: {data['progress']:.1f}% ({done}/{data['totalChunks']} chunks)",
        f"Elapsed: {_duration(data.get('elapsedSeconds'))}",
        f"Rate: {data.get('valuesPerSecond', 0):,.0f} values/s",
        f"Data points: {data['pointsProcessed']:,}",
        f"Batches published: {data['batchesPublished']:,}",
        f"Skipped: {data['skippedChunks']} (already done)",
        f"Points completed: {data.get('pointsCompleted', 0)}/{data['pointCount']}",
        "Point-chunks: "
        f"{data.get('completedPointChunks', 0)} completed, "
        f"{data.get('skippedPointChunks', 0)} skipped, "
        f"{data.get('failedPointChunks', 0)} failed, "
        f"{data.get('partialPointChunks', 0)} partial",
        f"Errors: {data['errorCount']}",
    ]
    if data.get("message"):
        lines.append(f"Note: {data['message']}")
    lines.append(bar)
    failed_points = data.get("failedPoints") or {}
    if failed_points:
        lines.append(
            f"Failed points ({data.get('failedPointCount', len(failed_points))}; "
            f"retry them with: histfill backfill retry {data['requestId']}):"
        )
        lines += [f"  {point}: {error}" for point, error in list(failed_points.items())[:10]]
    errors = data.get("errors") or []
    if errors:
        shown = 10
        lines.append("Errors encountered:")
        lines += [f"  {e['startTime']} {e['point']}: {e['error']}" for e in errors[:shown]]
        if len(errors) > shown:
            lines.append(f"  ... and {len(errors) - shown} more (histfill backfill status ID)")
    return "\n".join(lines)


def _done_chunks(data: dict[str, Any]) -> int:
    return int(data["completedChunks"] + data["failedChunks"] + data.get("partialChunks", 0))


def _points(points: str | None, points_file: Path | None) -> list[str]:
    if (points is None) == (points_file is None):
        console.print("[bold red]error:[/] give exactly one of --points and --points-file")
        raise typer.Exit(code=2)
    if points is not None:
        return [p.strip() for p in points.split(",") if p.strip()]
    assert points_file is not None  # noqa: S101  # checked just above
    lines = points_file.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _percent(value: float | None) -> str:
    """``62.0%``, or ``?`` before the producer read the consumers' offsets."""
    return "?" if value is None else f"{value:.1f}%"


def watch(client: httpx.Client, request_id: str, interval: float) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn(
            "{task.fields[chunks]} chunks  {task.fields[rate]} values/s  ETA {task.fields[eta]}"
            "  in QuestDB {task.fields[ingested]}"
        ),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("backfill", total=100.0, chunks="0/?", rate="0", eta="?", ingested="?")
        while True:
            data: dict[str, Any] = call(client, "GET", f"/api/backfill/request/{request_id}")
            done = _done_chunks(data)
            bar.update(
                task,
                completed=data["progress"],
                description=data["status"],
                chunks=f"{done}/{data['totalChunks']}",
                rate=f"{data['valuesPerSecond']:,.0f}",
                eta=_duration(data["etaSeconds"]),
                ingested=_percent(data.get("inQuestDBPercent")),
            )
            if data["status"] in FINAL:
                return data
            time.sleep(interval)  # a CLI polling its server, not a test


@app.command("start")
def start(
    connector: str = typer.Option(..., "--connector", help="PIWebApi, AceIot or Simulator."),
    points: str | None = typer.Option(None, "--points", help="Comma-separated point addresses."),
    points_file: Annotated[
        Path | None, typer.Option("--points-file", help="One point per line.")
    ] = None,
    start_time: str = typer.Option(..., "--start", help="ISO-8601 start (inclusive)."),
    end_time: str = typer.Option(..., "--end", help="ISO-8601 end (exclusive)."),
    chunk: str | None = typer.Option(None, "--chunk", help="30d, PT1H, 01:00:00 ..."),
    wait: bool = typer.Option(False, "--wait", help="Show progress until the request ends."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only estimate; queue nothing."),
    interval: float = typer.Option(0.5, "--interval", help="Seconds between progress polls."),
    url: str = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Queue a backfill (or, with --dry-run, estimate it)."""
    body = {
        "connectorType": connector,
        "pointAddresses": _points(points, points_file),
        "startTime": start_time,
        "endTime": end_time,
        "chunkSize": chunk,
    }
    with api_client(url, token) as client:
        if dry_run:
            data = call(client, "POST", "/api/backfill/estimate", body)
            for key, value in data.items():
                console.print(f"{key:>24}: {value}")
            return
        queued = call(client, "POST", "/api/backfill/start", body)
        console.print(f"{queued['message']} -> request {queued['requestId']}")
        if not wait:
            return
        final = watch(client, queued["requestId"], interval)
    console.print(summary(final))
    if final["status"] != "Completed":
        raise typer.Exit(code=1)


@app.command("status")
def status(
    request_id: str | None = typer.Argument(None, help="A request id; none: every request."),
    all_requests: bool = typer.Option(False, "--all", help="Include finished requests."),
    url: str = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Show one request's summary, or a table of requests with the service's totals."""
    with api_client(url, token) as client:
        if request_id is not None:
            console.print(summary(call(client, "GET", f"/api/backfill/request/{request_id}")))
            return
        data = call(client, "GET", f"/api/backfill/status?all={str(all_requests).lower()}")
    table = Table(
        "request",
        "connector",
        "points",
        "status",
        "progress",
        "in QuestDB",
        "chunks",
        "values",
        "ETA/ended",
    )
    listed = {r["requestId"] for r in data["activeRequests"]}
    recent = [r for r in data.get("recentRequests", []) if r["requestId"] not in listed]
    for r in [*data["activeRequests"], *recent]:
        table.add_row(
            r["requestId"],
            r["connectorType"],
            str(r["pointCount"]),
            r["status"],
            f"{r['progress']:.1f}%",
            _percent(r.get("inQuestDBPercent")),
            f"{r['completedChunks']}+{r['failedChunks']} failed/{r['totalChunks']}",
            f"{r['valuesProcessed']:,}",
            r["finishedAt"] if r["status"] in FINAL else _duration(r["etaSeconds"]),
        )
    console.print(table)
    if "fleet" in data:
        console.print(fleet_table(data["fleet"]))
    stats = data["stats"]
    console.print(
        f"queue depth {data['queueDepth']}; completed {stats['completedRequests']}, "
        f"failed {stats['failedRequests']}; {stats['totalPointsBackfilled']:,} values in "
        f"{stats['totalBatchesPublished']:,} batches; {stats['failedChunks']} failed chunks"
    )


def fleet_table(fleet: dict[str, Any]) -> Table:
    """Which member holds which task partitions, and how many tasks of each request it did."""
    table = Table("member", "worker", "task partitions", "tasks done (request: count)")
    for member, info in sorted(fleet.get("members", {}).items()):
        done = ", ".join(f"{rid[:8]}: {n}" for rid, n in sorted(info.get("tasksDone", {}).items()))
        workers = sorted(info.get("workers", {}).items()) or [("-", [])]
        for i, (wid, partitions) in enumerate(workers):
            held = ",".join(str(p) for p in partitions) or "-"
            table.add_row(member if i == 0 else "", wid, held, done if i == 0 else "")
    table.title = f"fleet (answered by {fleet.get('instance')})"
    return table


def _act(action: str, request_id: str, url: str, token: str | None) -> None:
    with api_client(url, token) as client:
        data = call(client, "POST", f"/api/backfill/request/{request_id}/{action}")
    console.print(f"{request_id}: {data['status']}")


@app.command("retry")
def retry(request_id: str, url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Queue a new request with only the failed points of a finished one, over its window."""
    with api_client(url, token) as client:
        data = call(client, "POST", f"/api/backfill/request/{request_id}/retry")
    console.print(f"{data['message']} -> request {data['requestId']} (retry of {request_id})")


@app.command("cancel")
def cancel(request_id: str, url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Cancel a request (committed chunks stay; a re-run skips them)."""
    _act("cancel", request_id, url, token)


@app.command("pause")
def pause(request_id: str, url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Pause a request: nothing new starts until `resume`."""
    _act("pause", request_id, url, token)


@app.command("resume")
def resume(request_id: str, url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Resume a paused request."""
    _act("resume", request_id, url, token)
