"""``provider-events demo``: a realistic synthetic week, then the answers and the HTML report.

With nothing running and nothing configured it uses the embedded default: the selections are
published on the local sink into a demo event store (its path is printed), then ``stats`` and
``recommend`` are printed and the report is written. With Kafka and PostgreSQL configured and
reachable (``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``), or with ``--via-kafka``, the same
week goes through Kafka (the Publisher, acknowledged) and the consumer into a demo schema of
PostgreSQL, a few events are read back from the topic, and the answers come from PostgreSQL.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Publish a synthetic week of provider selections (7 providers, 14 models, 4 tenants, a "
        "working-hours rhythm) and show stats, recommendations and the HTML report. Uses the "
        "embedded local store unless Kafka and PostgreSQL are configured (or --via-kafka)."
    )
    from provider_events.cli._common import INT64_MAX, float_arg, int_arg

    p.add_argument(
        "--events",
        type=int_arg(1, 10_000_000),
        default=25_000,
        metavar="N",
        help="about N (25000)",
    )
    p.add_argument(
        "--days",
        type=float_arg(0.0, 3660.0, exclude_minimum=True),
        default=7.0,
        help="length of the week (default 7)",
    )
    p.add_argument(
        "--seed", type=int_arg(-INT64_MAX, INT64_MAX), default=7, help="random seed (default 7)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--via-kafka",
        action="store_true",
        help="go through Kafka and the consumer into PostgreSQL (needs both)",
    )
    mode.add_argument(
        "--local", action="store_true", help="use the embedded store even if services are set"
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="demo store and report folder (default <PROVIDER_EVENTS_STATE_DIR>/demo)",
    )
    p.add_argument(
        "--report", type=Path, default=None, help="report file (default <dir>/report.html)"
    )
    p.add_argument(
        "--schema",
        default="provider_events_demo",
        help="PostgreSQL schema for the Kafka demo, recreated each run (default %(default)s)",
    )
    p.add_argument("--topic", default=None, help="Kafka topic (default a fresh demo topic)")
    p.add_argument("--keep-topic", action="store_true", help="keep the demo topic afterwards")


def run(args: argparse.Namespace) -> int:
    """The demo; a path it cannot use (a name too long, no permission) is one line, exit 1."""
    try:
        return _run(args)
    except OSError as exc:
        from provider_events.cli._common import fail

        return fail(f"{exc.filename or 'demo'}: {exc.strerror or exc}")


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from provider_events.analytics._demo import (
        DEMO_SCHEMA_PREFIX,
        kafka_reachable,
        postgres_reachable,
    )
    from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail, settings_or_exit

    if args.events < 1 or args.days <= 0:
        return fail("--events must be >= 1 and --days > 0", EXIT_BAD_INPUT)
    if not args.schema.startswith(DEMO_SCHEMA_PREFIX):
        return fail(f"--schema must start with {DEMO_SCHEMA_PREFIX}", EXIT_BAD_INPUT)
    console = Console()
    started = time.perf_counter()
    settings = settings_or_exit()
    demo_dir = (args.state_dir or settings.state_dir / "demo").expanduser().resolve()
    settings = settings.with_overrides(state_dir=demo_dir, relay_autostart=False)
    report = (args.report or demo_dir / "report.html").expanduser()
    from provider_events._files import check_output_path
    from provider_events.errors import UnsafePathError

    if demo_dir.exists() and not demo_dir.is_dir():
        return fail(f"--state-dir {demo_dir} is not a directory", EXIT_BAD_INPUT)
    try:
        check_output_path(report)
    except UnsafePathError as exc:
        return fail(f"--report {exc}", EXIT_BAD_INPUT)
    dsn = settings.database_url.reveal()
    kafka_set = settings.sources.get("kafka_bootstrap_servers", "default") != "default"
    via_kafka = args.via_kafka
    note = ""
    if not via_kafka and not args.local and dsn and kafka_set:
        problem = None
        if not kafka_reachable(settings.kafka_bootstrap_servers):
            problem = f"Kafka at {settings.kafka_bootstrap_servers} is not reachable"
        elif (reason := postgres_reachable(dsn)) is not None:
            problem = f"PostgreSQL is not reachable ({reason})"
        via_kafka = problem is None
        note = f"{problem}; using the embedded default instead" if problem else ""
    if via_kafka:
        if not dsn:
            return fail("--via-kafka needs DATABASE_URL (PostgreSQL)", EXIT_BAD_INPUT)
        if not kafka_reachable(settings.kafka_bootstrap_servers):
            return fail(
                f"Kafka at {settings.kafka_bootstrap_servers} is not reachable", EXIT_FAILED
            )
    console.rule("[bold]provider-events demo")
    if note:
        console.print(f"[yellow]{note}[/]")
    if via_kafka:
        console.print(
            f"Mode: [bold]Kafka[/] ({settings.kafka_bootstrap_servers}) → consumer → "
            f"[bold]PostgreSQL[/] (schema [cyan]{args.schema}[/], recreated and migrated)"
        )
    else:
        console.print(
            "Mode: [bold]embedded default[/] (no Kafka or PostgreSQL needed): the Publisher's "
            f"local sink writes to [cyan]{demo_dir / 'events.sqlite3'}[/]"
        )
    selections, window = _generate(console, args)
    if via_kafka:
        backend = _run_kafka(console, args, settings, dsn, selections)
    else:
        backend = _run_local(console, settings, selections)
    if isinstance(backend, int):
        return backend
    with backend:
        try:
            _answers(console, backend, window, report, args, demo_dir, via_kafka)
        except UnsafePathError as exc:  # --report names what became the demo's own folder
            return fail(f"--report {exc}", EXIT_BAD_INPUT)
        except OSError as exc:
            return fail(f"cannot write {report}: {exc.strerror or exc}", EXIT_FAILED)
    console.print(f"[dim]Done in {time.perf_counter() - started:.1f} s.[/]")
    return 0


def _generate(console: Any, args: argparse.Namespace) -> tuple[list[Any], Any]:
    """The synthetic selections, from ``--days`` before the end of this hour up to now."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from provider_events.analytics._model import Window, ceil_hour
    from provider_events.analytics._synth import MODELS, TENANTS, synthetic_selections

    providers = len({m.provider for m in MODELS})
    console.print(
        f"Generating a synthetic week: about [bold]{args.events:,}[/] selections over "
        f"{args.days:g} days, {providers} providers, {len(MODELS)} models, {len(TENANTS)} tenants "
        f"(seed {args.seed})"
    )
    now = datetime.now(UTC)
    until = ceil_hour(now)
    since = until - timedelta(days=args.days)
    span = (now - since) / timedelta(days=1)
    out = []
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("generating", total=args.events)
        for i, s in enumerate(
            synthetic_selections(args.events, end=now, days=span, seed=args.seed), 1
        ):
            out.append(s)
            if i % 500 == 0:
                progress.update(task, completed=min(i, args.events))
        progress.update(task, completed=len(out), total=len(out))
    return out, Window.of(since, until)


def _bar(console: Any, description: str, total: int) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    progress.add_task(description, total=total)
    return progress


def _run_local(console: Any, settings: Any, selections: list[Any]) -> Any:
    from provider_events.analytics._answers import LocalBackend
    from provider_events.analytics._demo import load_local
    from provider_events.cli._common import EXIT_FAILED, fail
    from provider_events.store._local import LocalEventStore

    store = LocalEventStore.for_settings(settings).path
    for suffix in ("", "-wal", "-shm"):  # a fresh demo store every run
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    with _bar(console, "publishing (local sink)", len(selections)) as progress:
        task = progress.task_ids[0]
        loaded = load_local(settings, selections, lambda _, n: progress.advance(task, n))
    rate = loaded.stored / loaded.seconds if loaded.seconds else 0
    console.print(
        f"Stored [bold]{loaded.stored:,}[/] selections in {loaded.seconds:.1f} s ({rate:,.0f}/s)"
        + (f", [red]{loaded.failed} failed[/]" if loaded.failed else "")
    )
    if not loaded.stored:
        return fail("nothing was stored", EXIT_FAILED)
    return LocalBackend(store)


def _run_kafka(
    console: Any, args: argparse.Namespace, settings: Any, dsn: str, selections: list[Any]
) -> Any:
    from rich.table import Table
    from rich.text import Text

    from provider_events.analytics._answers import PostgresBackend
    from provider_events.analytics._demo import delete_topics, load_via_kafka, read_back
    from provider_events.cli._common import EXIT_FAILED, fail
    from provider_events.errors import ProviderEventsError

    with _bar(console, "publishing to Kafka", len(selections)) as progress:
        pub, con = (
            progress.task_ids[0],
            progress.add_task("consuming into PostgreSQL", total=len(selections)),
        )

        def step(stage: str, n: int) -> None:
            progress.advance(pub if stage == "publish" else con, n)

        try:
            loaded = load_via_kafka(
                settings, dsn, selections, schema=args.schema, topic=args.topic, progress=step
            )
        except (ProviderEventsError, ValueError) as exc:
            return fail(str(exc), EXIT_FAILED)
    console.print(
        f"Published [bold]{loaded.delivered:,}[/] of {loaded.published:,} to topic "
        f"[cyan]{loaded.topic}[/] (acknowledged, acks=all) in {loaded.publish_seconds:.1f} s; "
        f"consumed {loaded.consumed:,} → [bold]{loaded.rows:,}[/] rows in "
        f"{args.schema}.provider_selection_events in {loaded.consume_seconds:.1f} s"
    )
    if loaded.failed:
        console.print(f"[red]not delivered: {loaded.failed[0]}[/]")
    if loaded.rows != loaded.delivered:
        console.print(
            f"[red]PostgreSQL holds {loaded.rows:,} rows for {loaded.delivered:,} delivered events[/]"
        )
    table = Table(
        title="Read back from Kafka (first messages)", title_justify="left", title_style="bold"
    )
    table.add_column("partition", justify="right")
    table.add_column("offset", justify="right")
    table.add_column("key (correlation_id)", no_wrap=True)
    for col in ("tenant", "provider/model", "reason"):
        table.add_column(col, overflow="fold")
    for m in read_back(settings.with_overrides(topic=loaded.topic), loaded.topic):
        table.add_row(
            str(m.partition),
            str(m.offset),
            Text(m.key),
            Text(m.tenant_id),
            Text(f"{m.provider_name}/{m.model_name}"),
            Text(m.selection_reason),
        )
    console.print(table)
    if args.topic is None and not args.keep_topic:
        delete_topics(settings, [loaded.topic, f"{loaded.topic}.dlq"])
        console.print(f"[dim]Deleted the demo topic {loaded.topic} (--keep-topic keeps it).[/]")
    if loaded.rows == 0:
        return fail("no row reached PostgreSQL", EXIT_FAILED)
    return PostgresBackend(loaded.dsn)


def _answers(
    console: Any,
    backend: Any,
    window: Any,
    report: Path,
    args: argparse.Namespace,
    demo_dir: Path,
    via_kafka: bool,
) -> None:
    from provider_events.analytics._answers import collect_stats
    from provider_events.analytics._recommend import RecommendOptions, recommend
    from provider_events.analytics._render import render_recommendations, render_stats
    from provider_events.analytics.report import write_report

    source = "PostgreSQL" if via_kafka else "the local event store"
    console.rule(f"[bold]provider-events stats[/] (from {source})")
    render_stats(console, collect_stats(backend, window, "provider", None, 8))
    console.rule(f"[bold]provider-events recommend[/] (from {source})")
    opts = RecommendOptions()
    recs = recommend(backend, window, opts)
    render_recommendations(console, recs, window, f"{backend.name} ({backend.location})", opts)
    path = write_report(report, backend, window, opts)
    console.rule("[bold]report")
    console.print(
        f"HTML report: [bold cyan]{path}[/]\n  open [link=file://{path}]file://{path}[/link]"
    )
    since, until = f"{window.since:%Y-%m-%dT%H:%MZ}", f"{window.until:%Y-%m-%dT%H:%MZ}"
    if via_kafka:
        env = f"PGOPTIONS='-c search_path={args.schema}'"
    else:
        env = f"PROVIDER_EVENTS_STATE_DIR={demo_dir}"
    console.print(
        "Explore the same data:\n"
        f"  {env} provider-events stats --since {since} --until {until} --group-by model\n"
        f"  {env} provider-events recommend --since {since} --until {until} --json\n"
        f"  {env} provider-events report --since {since} --until {until} --html week.html",
        highlight=False,
        soft_wrap=True,
    )
