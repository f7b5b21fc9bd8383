"""``provider-events consume``: Kafka -> PostgreSQL, offsets committed after each write.

In a terminal it shows one live progress line (rate, lag, totals); otherwise it writes one
JSON object per line on stdout (``{"ts": ..., "event": ..., ...}``), ending with ``stopped``
and the run's totals. SIGTERM or SIGINT finishes the batch in hand, commits and exits 0.

Exit codes: 0 stopped cleanly; 1 a batch could not be written before stopping (nothing was
committed for it; it is re-read on the next start), a database/Kafka error, or (with
``--until-idle N``) PostgreSQL unreachable for longer than max(N, 30) seconds; 2 bad
configuration (DATABASE_URL missing or malformed, the dead-letter topic equal to the topic,
bad flag, metrics port in use).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

from provider_events.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    configure_logging,
    fail,
    float_arg,
    int_arg,
    settings_or_exit,
)
from provider_events.cli._migrate import NO_DATABASE

#: flag destination -> the setting it overrides (parsed and checked like its variable).
_FLAG_SETTINGS = {
    "group_id": ("consumer_group", "--group-id"),
    "topic": ("topic", "--topic"),
    "dlq_topic": ("dlq_topic", "--dlq-topic"),
    "batch_size": ("consumer_batch_size", "--batch-size"),
    "batch_timeout": ("consumer_batch_timeout", "--batch-timeout"),
    "metrics_port": ("metrics_port", "--metrics-port"),
    "metrics_addr": ("metrics_addr", "--metrics-addr"),
    "instance_id": ("consumer_instance_id", "--instance-id"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Consume provider-selection events from Kafka into PostgreSQL (run `migrate` first). "
        "A new consumer group starts from the earliest offset. A flag that names an env "
        "variable overrides it (and .env); `provider-events doctor` shows the settings."
    )
    p.add_argument(
        "--group-id",
        help="consumer group (env PROVIDER_EVENTS_CONSUMER_GROUP, default provider-events-consumer)",
    )
    p.add_argument(
        "--topic", help="topic to consume (env PROVIDER_EVENTS_TOPIC, default the catalog's topic)"
    )
    p.add_argument(
        "--dlq-topic", help="dead-letter topic (env PROVIDER_EVENTS_DLQ_TOPIC, default <topic>.dlq)"
    )
    p.add_argument(
        "--batch-size",
        metavar="N",
        help="most messages per transaction (env PROVIDER_EVENTS_BATCH_SIZE, default 5000)",
    )
    p.add_argument(
        "--batch-timeout",
        metavar="SECONDS",
        help="longest wait to fill a batch (env PROVIDER_EVENTS_BATCH_TIMEOUT, default 1.0)",
    )
    p.add_argument(
        "--metrics-port",
        metavar="PORT",
        help="serve /metrics here; 0 picks a free port, 'off' disables "
        "(env PROVIDER_EVENTS_METRICS_PORT, default 9464)",
    )
    p.add_argument(
        "--metrics-addr",
        metavar="ADDR",
        help="address for /metrics (env PROVIDER_EVENTS_METRICS_ADDR, default 127.0.0.1)",
    )
    p.add_argument(
        "--instance-id",
        help="static group membership id: a restart with the same id takes its partitions "
        "back without a rebalance (env PROVIDER_EVENTS_CONSUMER_INSTANCE_ID)",
    )
    p.add_argument(
        "--max-messages", type=int_arg(1), default=None, metavar="N", help="exit after N messages"
    )
    p.add_argument(
        "--until-idle",
        type=float_arg(0.0, 1e6, exclude_minimum=True),
        default=None,
        metavar="SECONDS",
        help="exit after SECONDS without a new message",
    )
    p.add_argument("--json", action="store_true", help="JSON lines even in a terminal")
    p.add_argument("--verbose", "-v", action="store_true", help="every batch, and client logs")


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the given flags override, parsed like their variables (exit 2 if bad)."""
    from provider_events.errors import ConfigError
    from provider_events.settings import parse_setting

    overrides: dict[str, Any] = {}
    for dest, (setting, flag) in _FLAG_SETTINGS.items():
        raw = getattr(args, dest)
        if raw is not None:
            try:
                overrides[setting] = parse_setting(setting, raw, flag)
            except ConfigError as exc:
                raise SystemExit(fail(str(exc), EXIT_BAD_INPUT)) from None
    return overrides


def run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    overrides = _flag_overrides(args)
    settings = settings_or_exit()
    if overrides:  # a flag wins over the environment and .env (and may turn /metrics off)
        sources = {**settings.sources, **dict.fromkeys(overrides, "argument")}
        settings = settings.with_overrides(**overrides, sources=sources)
    from provider_events.errors import ConfigError
    from provider_events.settings import CONSUMER_SETTINGS

    try:
        settings.require(*CONSUMER_SETTINGS)  # a malformed variable no flag replaced
    except ConfigError as exc:
        return fail(f"configuration: {exc}", EXIT_BAD_INPUT)
    dsn = settings.database_url.reveal()
    if not dsn:
        return fail(NO_DATABASE, EXIT_BAD_INPUT)
    if args.max_messages is not None and args.max_messages < 1:
        return fail("--max-messages must be >= 1", EXIT_BAD_INPUT)
    if args.until_idle is not None and not 0 < args.until_idle < 1e9:
        return fail("--until-idle must be > 0 (seconds)", EXIT_BAD_INPUT)

    from provider_events.errors import ProviderEventsError
    from provider_events.ingest._consumer import ConsumerOptions, IngestConsumer
    from provider_events.store._pg import check_database_url

    interactive = sys.stdout.isatty() and not args.json
    try:
        check_database_url(dsn)
        options = ConsumerOptions.from_settings(
            settings,
            max_messages=args.max_messages,
            until_idle=args.until_idle,
            progress_interval=0.5 if interactive else 10.0,
        )
    except ConfigError as exc:
        if exc.setting == "PROVIDER_EVENTS_DLQ_TOPIC" and args.dlq_topic is not None:
            exc = ConfigError("--dlq-topic", exc.problem)
        return fail(f"configuration: {exc}", EXIT_BAD_INPUT)
    bound = None
    metrics_port, metrics_addr = settings.metrics_port, settings.metrics_addr
    if metrics_port is not None:
        from provider_events.observability._metrics import start_metrics_server

        try:
            bound = start_metrics_server(metrics_port, metrics_addr)
        except (OSError, ValueError) as exc:  # ValueError: an address no codec encodes
            where = f"{metrics_addr}:{metrics_port}"
            return fail(
                f"cannot serve metrics on {where}: {getattr(exc, 'strerror', None) or exc}; "
                "pass --metrics-port N (0 = any free port, off = disabled)",
                EXIT_BAD_INPUT,
            )
    if bound is not None:
        from provider_events.observability._spend import register_spend_collector

        register_spend_collector(dsn)  # budget and today's spend gauges, read at scrape time
    reporter: _Reporter = _LiveReporter() if interactive else _JsonReporter(args.verbose)
    if bound is not None:
        reporter("metrics", {"url": f"http://{metrics_addr}:{bound}/metrics", "port": bound})
    consumer = IngestConsumer(settings, options, dsn, on_event=reporter)
    previous = {
        sig: signal.signal(sig, lambda *_: consumer.request_stop())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        totals = consumer.run()
    except ConfigError as exc:
        reporter.close()
        return fail(f"configuration: {exc}", EXIT_BAD_INPUT)
    except ProviderEventsError as exc:  # DatabaseError, KafkaClientError: one line, no traceback
        reporter.close()
        return fail(str(exc), EXIT_FAILED)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    reporter.close()
    if consumer.fatal_error:
        return fail(f"fatal Kafka error: {consumer.fatal_error}", EXIT_FAILED)
    if totals.uncommitted:
        return fail(
            f"stopped with {totals.uncommitted} message(s) not written (PostgreSQL unavailable); "
            "nothing was committed for them, the next start re-reads them",
            EXIT_FAILED,
        )
    return EXIT_OK


class _Reporter:
    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _JsonReporter(_Reporter):
    """One JSON object per line on stdout: structured logs for services and tests."""

    QUIET = frozenset({"assigned", "revoked", "batch"})

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        if kind in self.QUIET and not self.verbose:
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = json.dumps({"ts": now, "event": kind, **fields}, default=str)
        with contextlib.suppress(BrokenPipeError):
            print(line, flush=True)


class _LiveReporter(_Reporter):
    """A live progress line (rich) with lifecycle events printed above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self._text = Text
        self.console = Console()
        self.live = Live(
            Text("starting…"), console=self.console, refresh_per_second=4, transient=False
        )
        self.live.start()
        self.started = time.monotonic()

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == "batch":
            return
        if kind in ("progress", "stopped"):
            self.live.update(self._line(fields))
            if kind == "stopped":
                self.console.log("stopped", _kv(fields))
            return
        style = (
            "red"
            if kind
            in ("db_unavailable", "dlq_unavailable", "gave_up", "kafka_error", "rollups_pending")
            else "cyan"
        )
        self.console.log(f"[{style}]{kind}[/]", _kv(fields))

    def _line(self, f: dict[str, Any]) -> Any:
        lag = "-" if f.get("lag") is None else f"{f['lag']:,}"
        rate = f.get("rate")
        return self._text.from_markup(
            f"[bold]{f['messages']:,}[/] messages"
            + (f"  [green]{rate:,.0f}/s[/]" if rate is not None else "")
            + f"  lag [yellow]{lag}[/]"
            + f"  inserted {f['inserted']:,}  duplicates {f['duplicates']:,}"
            + f"  dlq {f['dead_lettered']:,}  batches {f['batches']:,}"
            + (f"  db retries {f['db_retries']}" if f.get("db_retries") else "")
        )

    def close(self) -> None:
        self.live.stop()


def _kv(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())
