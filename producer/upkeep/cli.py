"""``histfill gaps``: the holes QuestDB has over a recent window, per point, as the repair sees
them.

The table is the command's answer (on stdout, plain when piped); each hole is also a log line
at DEBUG only, so a piped run at INFO prints the table and one summary, not a line per hole.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import structlog
import typer
from rich.console import Console
from rich.table import Table

from shared.errors import ConfigError, HistfillError
from shared.settings import ProducerSettings, load_settings, parse_span

if TYPE_CHECKING:
    from producer.upkeep.gaps import Hole

log = structlog.get_logger(__name__)


def render(holes: list[Hole], cadences: dict[str, int], since_us: int, until_us: int) -> Table:
    """The holes as a table, titled with the window and the counts."""
    from producer.upkeep.gaps import iso_us  # noqa: PLC0415  # histfill's lazy imports

    table = Table(
        title=f"{len(holes)} holes in {len({h.point for h in holes})} of {len(cadences)} points, "
        f"{iso_us(since_us)} .. {iso_us(until_us)}"
    )
    for name in ("point", "from", "to", "cadence s", "expected", "present"):
        table.add_column(name, justify="right" if name[0] in "cep" and name != "point" else "left")
    for h in holes:
        row = h.to_json()
        table.add_row(
            h.point,
            row["from"],
            row["to"],
            f"{h.cadence_us / 1e6:g}",
            f"{h.expected:,}",
            f"{h.present:,}",
        )
    return table


def gaps_command(
    since: str = typer.Option("7d", help="Window: the last 90m, 6h, 7d, 2w ..."),
    points: str = typer.Option("", help="Comma-separated points (default: every point there)."),
    factor: float = typer.Option(
        0.0, help="A hole is a gap over this many cadences (default: REPAIR_HOLE_FACTOR)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document, for scripts."),
) -> None:
    """List the holes in QuestDB: gaps between a point's values longer than its cadence allows
    (its median interval in the window); from, to, expected vs present values."""
    from producer.upkeep.gaps import HoleFinder, iso_us  # noqa: PLC0415  # histfill's lazy imports
    from shared.qdb import QuestDBSQL  # noqa: PLC0415

    console = Console()
    try:
        settings = load_settings(ProducerSettings)
        try:
            span_s = parse_span(since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from exc
        until_us = int(time.time() * 1e6)
        since_us = until_us - int(span_s * 1e6)
        names = [p.strip() for p in points.split(",") if p.strip()] or None
        finder = HoleFinder(
            QuestDBSQL.from_settings(settings),
            settings.qdb_table,
            factor or settings.repair_hole_factor,
        )
        try:
            holes, cadences = finder.find(since_us, until_us, names)
        finally:
            finder.sql.close()
    except HistfillError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    for hole in holes:
        log.debug("hole_found", **hole.to_json())
    log.info("gaps_done", holes=len(holes), points=len(cadences), since=iso_us(since_us))
    if as_json:
        typer.echo(json.dumps({"holes": [h.to_json() for h in holes], "points": len(cadences)}))
    else:
        console.print(render(holes, cadences, since_us, until_us))
