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
    p.add_argument(
        "--end",
        metavar="WHEN",
        default=None,
        help="end of the synthetic week: an ISO date/time (UTC unless it says otherwise), "
        "'now' or a duration before now (default now). The same --seed, --end, --events and "
        "--days give the same selections on every run",
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
    from provider_events.analytics._demo import (
        DEMO_SCHEMA_PREFIX,
        kafka_reachable,
        postgres_reachable,
    )
    from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail, settings_or_exit

    if args.events < 1 or not (0 < args.days <= MAX_DAYS):
        return fail(f"--events must be >= 1 and --days > 0 and <= {MAX_DAYS}", EXIT_BAD_INPUT)
    try:
        end = demo_end(args.end, args.days)
    except ValueError as exc:
        return fail(f"--end: {exc}", EXIT_BAD_INPUT)
    if not args.schema.startswith(DEMO_SCHEMA_PREFIX):
        return fail(f"--schema must start with {DEMO_SCHEMA_PREFIX}", EXIT_BAD_INPUT)
    from provider_events.analytics._render import make_console

    console = make_console()
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
    selections, window = _generate(console, args, end)
    if via_kafka:
        backend = _run_kafka(console, args, settings, dsn, selections)
    else:
        backend = _run_local(console, settings, selections)
    if isinstance(backend, int):
        return backend
    with backend:
        dsn_used = getattr(backend, "_dsn", None) if via_kafka else None
        hint = (
            f"PGOPTIONS='-c search_path={args.schema}'"
            if via_kafka
            else f"PROVIDER_EVENTS_STATE_DIR={demo_dir}"
        )
        # Imported first, so the report shows measured cost too; shown after the answers.
        show_measured = _measured(console, settings, selections, window, demo_dir, dsn_used, hint)
        try:
            _answers(console, backend, window, report, args, demo_dir, via_kafka)
        except UnsafePathError as exc:  # --report names what became the demo's own folder
            return fail(f"--report {exc}", EXIT_BAD_INPUT)
        except OSError as exc:
            return fail(f"cannot write {report}: {exc.strerror or exc}", EXIT_FAILED)
        show_measured()
    console.print(f"[dim]Done in {time.perf_counter() - started:.1f} s.[/]")
    return 0


def command_name() -> str:
    """How to run this installation's ``provider-events`` from a shell: the bare name when it
    is the one on PATH, else its path (``.venv/bin/provider-events`` from a clone whose venv
    is not activated), else this interpreter with ``-m``."""
    import os
    import shlex
    import shutil
    import sys

    script = os.path.join(sys.prefix, "bin", "provider-events")
    on_path = shutil.which("provider-events")
    if on_path and os.path.abspath(on_path) == os.path.abspath(script):
        return "provider-events"
    if os.access(script, os.X_OK):
        try:
            relative = os.path.relpath(script)
        except (OSError, ValueError):  # no current directory
            relative = script
        # .venv/bin/provider-events from the clone's root; elsewhere the absolute path.
        short = not relative.startswith("..") and relative.count(os.sep) <= 2
        return shlex.quote(relative if short else script)
    return shlex.join([sys.executable, "-m", "provider_events.cli"])


#: The longest synthetic history ``--days`` accepts (about ten years).
MAX_DAYS = 3660.0


def demo_end(text: str | None, days: float, now: datetime | None = None) -> datetime:
    """The end of the synthetic week for ``--end`` (``now`` when not given).

    Raises ``ValueError`` for text that is not a time, or a window outside the calendar.
    """
    from provider_events.analytics._model import ceil_hour, parse_when

    now = now or datetime.now(UTC)
    end = parse_when(text, now) if text else now.replace(microsecond=0)
    try:
        ceil_hour(end) - timedelta(days=days)
    except OverflowError:
        raise ValueError(f"{text!r} with --days {days:g} is outside the calendar") from None
    return end


def _generate(console: Any, args: argparse.Namespace, end: datetime) -> tuple[list[Any], Any]:
    """The synthetic selections, from ``--days`` before the end of the hour of ``end`` up to
    ``end``: a function of ``--events``, ``--days``, ``--seed`` and ``end`` only."""
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
        f"(seed {args.seed}, ending {end:%Y-%m-%dT%H:%M:%S}Z: the same --seed and --end "
        "give the same selections)"
    )
    until = ceil_hour(end)
    since = until - timedelta(days=args.days)
    span = (end - since) / timedelta(days=1)
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
            synthetic_selections(args.events, end=end, days=span, seed=args.seed), 1
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
    cli = command_name()
    console.print(
        "Explore the same data:\n"
        f"  {env} {cli} stats --since {since} --until {until} --group-by model\n"
        f"  {env} {cli} recommend --since {since} --until {until} --json\n"
        f"  {env} {cli} report --since {since} --until {until} --html week.html",
        highlight=False,
        soft_wrap=True,
    )


def _measured(
    console: Any,
    settings: Any,
    selections: list[Any],
    window: Any,
    demo_dir: Path,
    dsn: Any,
    hint: str,
) -> Any:
    """Measured usage: transcripts for some of the week's sessions, imported now; returns the
    function that shows the answer."""
    import shutil

    from provider_events.analytics._synth import synthetic_transcripts
    from provider_events.usage._answers import open_usage_store, usage_answer
    from provider_events.usage._transcripts import import_transcripts

    root = demo_dir / "claude"
    shutil.rmtree(root, ignore_errors=True)
    (demo_dir / "usage-import.sqlite3").unlink(missing_ok=True)
    providers = synthetic_transcripts(selections, root)
    sink = None
    store_settings = settings.with_overrides(sink="local")
    if dsn:  # the Kafka demo's schema: outcomes written by the consumer's outcome writer
        from provider_events.events._envelope import build_provider_completion
        from provider_events.events._validation import decode_envelope
        from provider_events.store._outcomes import OutcomeWriter, outcome_row

        writer = OutcomeWriter(dsn)

        def sink(payloads: Any) -> None:
            events = [build_provider_completion(p, settings=settings) for p in payloads]
            writer.write([outcome_row(decode_envelope(e.value)) for e in events])

        from provider_events.settings import Secret

        store_settings = settings.with_overrides(database_url=Secret(dsn))
    summary = import_transcripts(store_settings, [root], providers=providers, sink=sink)
    store = open_usage_store(store_settings, "postgresql" if dsn else "local")
    try:
        answer = usage_answer(store, window.since, window.until, "provider")
    finally:
        store.close()
    return lambda: _show_measured(console, summary, answer, window, hint)


def _show_measured(console: Any, summary: Any, answer: Any, window: Any, hint: str) -> None:
    from provider_events.cli._usage import _render

    console.rule("[bold]provider-events usage[/] (measured, from Claude Code transcripts)")
    console.print(
        f"Imported [bold]{summary.published:,}[/] responses from {summary.files} transcripts "
        f"({summary.duplicates:,} repeated content-block lines skipped), priced offline"
        + (
            f"; {summary.unpriced} unpriced (no price known: never shown as $0)"
            if summary.unpriced
            else ""
        )
    )
    _render(answer, "provider", console)
    since, until = f"{window.since:%Y-%m-%dT%H:%MZ}", f"{window.until:%Y-%m-%dT%H:%MZ}"
    console.print(
        f"  {hint} provider-events usage --since {since} --until {until} --by model",
        highlight=False,
        soft_wrap=True,
    )
