"""``provider-events consume``: Kafka -> PostgreSQL, offsets committed after each write.

In a terminal it shows one live progress line (rate, lag, totals); otherwise it writes one
JSON object per line on stdout (``{"ts": ..., "event": ..., ...}``), ending with ``stopped``
and the run's totals. SIGTERM or SIGINT finishes the batch in hand, commits and exits 0.

Exit codes: 0 stopped cleanly; 1 a batch could not be written before stopping (nothing was
committed for it; it is re-read on the next start) or a database/Kafka error; 2 bad
configuration (DATABASE_URL missing, bad flag, metrics port in use).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

from ._common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, configure_logging, fail, settings_or_exit
from ._migrate import NO_DATABASE

DEFAULT_METRICS_PORT = 9464


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Consume provider-selection events from Kafka into PostgreSQL (run `migrate` first). "
        "A new consumer group starts from the earliest offset."
    )
    p.add_argument(
        "--group-id",
        default=_env("PROVIDER_EVENTS_CONSUMER_GROUP", "provider-events-consumer"),
        help="consumer group (env PROVIDER_EVENTS_CONSUMER_GROUP, default %(default)s)",
    )
    p.add_argument(
        "--topic",
        default=None,
        help="topic to consume (env PROVIDER_EVENTS_TOPIC, default the catalog's topic)",
    )
    p.add_argument("--dlq-topic", default=None, help="dead-letter topic (default <topic>.dlq)")
    p.add_argument(
        "--batch-size",
        default=_env("PROVIDER_EVENTS_BATCH_SIZE", "5000"),
        help="most messages per transaction (env PROVIDER_EVENTS_BATCH_SIZE, default %(default)s)",
    )
    p.add_argument(
        "--batch-timeout",
        default=_env("PROVIDER_EVENTS_BATCH_TIMEOUT", "1.0"),
        metavar="SECONDS",
        help="longest wait to fill a batch "
        "(env PROVIDER_EVENTS_BATCH_TIMEOUT, default %(default)s)",
    )
    p.add_argument(
        "--metrics-port",
        default=_env("PROVIDER_EVENTS_METRICS_PORT", str(DEFAULT_METRICS_PORT)),
        metavar="PORT",
        help="serve /metrics here; 0 picks a free port, 'off' disables "
        "(env PROVIDER_EVENTS_METRICS_PORT, default %(default)s)",
    )
    p.add_argument(
        "--metrics-addr",
        default=_env("PROVIDER_EVENTS_METRICS_ADDR", "127.0.0.1"),
        help="address for /metrics (env PROVIDER_EVENTS_METRICS_ADDR, default %(default)s)",
    )
    p.add_argument(
        "--instance-id",
        default=_env("PROVIDER_EVENTS_CONSUMER_INSTANCE_ID"),
        help="static group membership id: a restart with the same id takes its partitions "
        "back without a rebalance (env PROVIDER_EVENTS_CONSUMER_INSTANCE_ID)",
    )
    p.add_argument(
        "--max-messages", type=int, default=None, metavar="N", help="exit after N messages"
    )
    p.add_argument(
        "--until-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after SECONDS without a new message",
    )
    p.add_argument("--json", action="store_true", help="JSON lines even in a terminal")
    p.add_argument("--verbose", "-v", action="store_true", help="every batch, and client logs")


def _number(flag: str, raw: str, kind: type, minimum: float) -> Any:
    try:
        value = kind(str(raw).replace("_", ""))
    except ValueError:
        raise SystemExit(fail(f"{flag}: expected a number, got {raw!r}", EXIT_BAD_INPUT)) from None
    if value < minimum:
        raise SystemExit(fail(f"{flag}: must be >= {minimum:g}, got {raw!r}", EXIT_BAD_INPUT))
    return value


def run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    settings = settings_or_exit()
    dsn = settings.database_url.reveal()
    if not dsn:
        return fail(NO_DATABASE, EXIT_BAD_INPUT)
    batch_size = _number("--batch-size", args.batch_size, int, 1)
    batch_timeout = _number("--batch-timeout", args.batch_timeout, float, 0.01)
    metrics_port = None
    if str(args.metrics_port).lower() not in ("off", "none", "-1", ""):
        metrics_port = _number("--metrics-port", args.metrics_port, int, 0)
    if args.max_messages is not None and args.max_messages < 1:
        return fail("--max-messages must be >= 1", EXIT_BAD_INPUT)
    if args.until_idle is not None and args.until_idle <= 0:
        return fail("--until-idle must be > 0", EXIT_BAD_INPUT)

    from provider_events._catalog import PROVIDER_SELECTED_V1
    from provider_events._consumer import ConsumerOptions, IngestConsumer
    from provider_events._errors import DatabaseError

    topic = args.topic or settings.topic or PROVIDER_SELECTED_V1.topic
    interactive = sys.stdout.isatty() and not args.json
    options = ConsumerOptions(
        topic=topic,
        dlq_topic=args.dlq_topic or f"{topic}.dlq",
        group_id=args.group_id,
        batch_size=batch_size,
        batch_timeout=batch_timeout,
        max_messages=args.max_messages,
        until_idle=args.until_idle,
        instance_id=args.instance_id,
        progress_interval=0.5 if interactive else 10.0,
    )
    bound = None
    if metrics_port is not None:
        from provider_events._metrics import start_metrics_server

        try:
            bound = start_metrics_server(metrics_port, args.metrics_addr)
        except OSError as exc:
            where = f"{args.metrics_addr}:{metrics_port}"
            return fail(
                f"cannot serve metrics on {where}: {exc.strerror or exc}; "
                "pass --metrics-port N (0 = any free port, off = disabled)",
                EXIT_BAD_INPUT,
            )
    reporter: _Reporter = _LiveReporter() if interactive else _JsonReporter(args.verbose)
    if bound is not None:
        reporter("metrics", {"url": f"http://{args.metrics_addr}:{bound}/metrics", "port": bound})
    consumer = IngestConsumer(settings, options, dsn, on_event=reporter)
    previous = {
        sig: signal.signal(sig, lambda *_: consumer.request_stop())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        totals = consumer.run()
    except DatabaseError as exc:
        reporter.close()
        return fail(str(exc), EXIT_FAILED)
    except Exception as exc:  # KafkaException and friends: one line, no traceback
        reporter.close()
        return fail(f"{type(exc).__name__}: {exc}", EXIT_FAILED)
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
            if kind in ("db_unavailable", "dlq_unavailable", "gave_up", "kafka_error")
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
