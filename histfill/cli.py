"""``histfill``: the operator's entry point.

Each subcommand is a thin shell around a module that does the work, so the same code serves the
CLI, the services and the tests. A command imports its heavy modules (the stack's redis and
psutil, Kafka's client, the producer's verify) inside its function: `histfill archive` runs in a
process whose peak RSS has a goal (<= 200 MB), and every command pays this module's imports.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from archive.cli import archive_command, query_command, verify_archive_command
from producer.api.cli import app as backfill_app
from producer.api.cli import run_service
from producer.upkeep.changes_cli import changes_command
from producer.upkeep.cli import gaps_command
from shared.errors import HistfillError
from shared.logging import configure_logging
from shared.settings import (
    ArchiveSettings,
    CommonSettings,
    ConsumerSettings,
    ProducerSettings,
    env_table,
    load_settings,
)

if TYPE_CHECKING:
    from histfill.lagview import LagProbe

app = typer.Typer(
    help="Move historian data (PI, ACE IoT) into QuestDB through Kafka.", no_args_is_help=True
)
stack_app = typer.Typer(
    help="The local Kafka + QuestDB + Redis stack, without Docker.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
simulate_app = typer.Typer(
    help="Historian simulators speaking the real HTTP shapes.", no_args_is_help=True
)
app.add_typer(simulate_app, name="simulate")
app.add_typer(backfill_app, name="backfill")
app.command("changes")(changes_command)
app.command("producer")(run_service)
app.command("archive")(archive_command)
app.command("query")(query_command)
app.command("gaps")(gaps_command)


@app.command(
    "verify",
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def verify(
    ctx: typer.Context,
    archive: bool = typer.Option(
        False, "--archive", help="Check the Parquet archive instead (histfill verify --archive)."
    ),
) -> None:
    """Compare QuestDB with the source (or, with --archive, the archive with QuestDB); exit 1
    on mismatch. `histfill verify --help` / `histfill verify --archive --help` for options."""
    if archive:
        inner = archive_verify_app
    else:
        from verify.verifier import verify_command  # noqa: PLC0415  # Kafka's client on demand

        inner = typer.Typer(add_completion=False)
        inner.command()(verify_command)
    inner(args=ctx.args, prog_name=f"histfill verify{' --archive' if archive else ''}")


archive_verify_app = typer.Typer(add_completion=False)
archive_verify_app.command()(verify_archive_command)

console = Console()


@app.callback()
def _main(log_level: str = typer.Option("INFO", envvar="LOG_LEVEL", help="Log level.")) -> None:
    configure_logging(log_level)


def _fail(exc: HistfillError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


@stack_app.command("up")
def stack_up(
    timeout: float = typer.Option(180, help="Seconds to wait for each service."),
    prometheus: bool = typer.Option(
        False,
        "--prometheus",
        envvar="HISTFILL_STACK_PROMETHEUS",
        help="Also Prometheus on 9090 (Debian's package), scraping the consumer and producer "
        "with ops/prometheus's rules.",
    ),
) -> None:
    """Fetch the pinned jars if needed and start Kafka (9092), QuestDB (9000/8812), Redis
    (6379) and S3Proxy (9100)."""
    from histfill import stack as stack_mod  # noqa: PLC0415

    try:
        outcome = stack_mod.up(timeout=timeout, prometheus=prometheus)
    except HistfillError as exc:
        raise _fail(exc) from exc
    for name, what in outcome.items():
        console.print(f"{name:8} {what}")


@stack_app.command("tools")
def stack_tools() -> None:
    """Install what `make test` checks with beyond Python: Debian's prometheus (promtool)."""
    from histfill.prometheus import ensure_prometheus  # noqa: PLC0415

    try:
        prometheus, promtool = ensure_prometheus()
    except HistfillError as exc:
        raise _fail(exc) from exc
    console.print(f"prometheus {prometheus}\npromtool   {promtool}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop every process `stack up` started."""
    from histfill import stack as stack_mod  # noqa: PLC0415

    for name, stopped in stack_mod.down().items():
        console.print(f"{name:8} {'stopped' if stopped else 'not running'}")


@stack_app.command("status")
def stack_status() -> None:
    """Show each service's pid and whether it answers; exit 1 if any is down."""
    from histfill import stack as stack_mod  # noqa: PLC0415

    table = Table("service", "port", "pid", "ready")
    all_ready = True
    for st in stack_mod.status():
        all_ready &= st.ready
        table.add_row(st.name, str(st.port), str(st.pid or "-"), "yes" if st.ready else "no")
    console.print(table)
    if not all_ready:
        raise typer.Exit(code=1)


@app.command("init")
def init() -> None:
    """Create the topics and the QuestDB table if missing (compose's one-shot init)."""
    from shared.bootstrap import ensure_infrastructure  # noqa: PLC0415

    try:
        settings = load_settings(CommonSettings)
        created, check = ensure_infrastructure(settings)
    except HistfillError as exc:
        raise _fail(exc) from exc
    console.print(f"topics created: {', '.join(created) or 'none (all existed)'}")
    console.print(
        f"table {settings.qdb_table}: WAL, PARTITION BY {check.partition_by}, "
        f"DEDUP UPSERT KEYS({', '.join(check.upsert_keys)})"
    )


@app.command("env")
def env() -> None:
    """Print the Markdown table of every environment variable the services read."""
    typer.echo(env_table(CommonSettings, ConsumerSettings, ProducerSettings, ArchiveSettings))


@app.command("run")
def run(
    start_services: bool = typer.Option(
        True, help="Start the PI simulator, consumer and producer here (off: they run elsewhere)."
    ),
    producer_url: str = typer.Option("http://127.0.0.1:5052", help="The producer's API."),
) -> None:
    """The main job: backfill the seed's points and 100 more from the PI simulator, verify."""
    from histfill import stack as stack_mod  # noqa: PLC0415
    from histfill.run import main_job  # noqa: PLC0415  # heavy imports only for this command
    from shared.bootstrap import ensure_infrastructure  # noqa: PLC0415

    try:
        settings = load_settings(ConsumerSettings)
        if start_services:
            stack_mod.up()
        ensure_infrastructure(settings)
        code = main_job(
            console, settings=settings, start_services=start_services, producer_url=producer_url
        )
    except HistfillError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code=code)


@app.command("consumer")
def consumer() -> None:
    """Run the consumer service (same as `python -m consumer`)."""
    from consumer.main import main as consumer_main  # noqa: PLC0415  # load the service on demand

    raise typer.Exit(code=consumer_main())


@app.command("lag")
def lag(
    group: str = typer.Option(None, help="Consumer group (default: CONSUMER_GROUP_ID)."),
    all_topics: bool = typer.Option(False, "--all-topics", help="Every topic the group committed."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document, for scripts."),
    watch: bool = typer.Option(False, "--watch", help="Refresh in place like `top` (Ctrl-C)."),
    interval: float = typer.Option(2.0, help="Seconds between --watch refreshes."),
    rate_window: float = typer.Option(
        3.0, help="Without --watch: seconds between the two reads the ETA's rate needs (0: none)."
    ),
) -> None:
    """Lag per topic and partition in messages and in seconds, consumption rate and drain ETA.

    Messages: end - committed (a partition the group never committed: end - start). Seconds:
    how long the oldest unread message has waited (now - its CreateTime). ETA: lag / the rate
    the group's committed offsets advanced.
    """
    import json  # noqa: PLC0415

    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    from consumer.timelag import TimestampReader  # noqa: PLC0415
    from histfill.lagview import LagProbe, render  # noqa: PLC0415
    from shared.kafka import base_config  # noqa: PLC0415

    try:
        settings = load_settings(ConsumerSettings)
        group_id = group or settings.consumer_group_id
        topics = None if all_topics else [settings.topic_realtime, settings.topic_backfill]
        probe = LagProbe(
            AdminClient(base_config(settings)),
            TimestampReader(base_config(settings)),
            group_id,
            topics,
        )
    except HistfillError as exc:
        raise _fail(exc) from exc
    try:
        if watch:
            _watch(probe, interval)
            return
        snapshot = probe.read()
        if rate_window > 0:
            time.sleep(rate_window)
            snapshot = probe.read()
    except HistfillError as exc:
        raise _fail(exc) from exc
    finally:
        probe.close()
    if as_json:
        typer.echo(json.dumps(snapshot.to_json(), indent=2))
    else:
        console.print(render(snapshot))


def _watch(probe: LagProbe, interval: float) -> None:
    """Redraw the lag table every ``interval`` s until Ctrl-C; a failed read is shown, not
    fatal (Kafka restarting, a rebalance)."""
    from rich.live import Live  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    from histfill.lagview import render  # noqa: PLC0415

    with Live(Text("reading the group's offsets..."), console=console, screen=False) as live:
        try:
            while True:
                try:
                    live.update(render(probe.read()))
                except HistfillError as exc:
                    live.update(Text(f"cannot read lag now (retrying): {exc}", style="red"))
                time.sleep(interval)
        except KeyboardInterrupt:
            return


@simulate_app.command("pi")
def simulate_pi(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, help="Port; the API is under /piwebapi."),
    interval_s: float = typer.Option(60.0, help="Seconds between a tag's values."),
    generated_tags: int = typer.Option(0, help="Extra tags SIMTAG00000..."),
    max_count: int = typer.Option(150_000, help="The server's maxCount limit (400 above it)."),
    username: str = typer.Option(None, help="Require this Basic-auth user (default: any)."),
    password: str = typer.Option(None, help="... with this password."),
    max_requests_per_second: float = typer.Option(None, help="Answer 429 above this rate."),
) -> None:
    """Serve a PI Web API simulator (SINUSOID, SINUSOIDU, CDT158, digital and string tags)."""
    from simulators.pi import run_pi_simulator  # noqa: PLC0415  # server imports on demand

    run_pi_simulator(
        host,
        port,
        interval_s=interval_s,
        generated_tags=generated_tags,
        max_count=max_count,
        username=username,
        password=password,
        max_requests_per_second=max_requests_per_second,
    )


@simulate_app.command("ace")
def simulate_ace(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8766, help="Port; the API is under /api."),
    interval_s: float = typer.Option(60.0, help="Seconds between a point's samples."),
    generated_tags: int = typer.Option(0, help="Extra generated points."),
    api_key: str = typer.Option(None, help="Require this bearer key (default: any)."),
) -> None:
    """Serve an ACE IoT API simulator."""
    from simulators.ace import run_ace_simulator  # noqa: PLC0415

    run_ace_simulator(
        host, port, interval_s=interval_s, generated_tags=generated_tags, api_key=api_key
    )
