"""The guide's troubleshooting steps, performed: each check gives pass/fail, detail and a hint.

Nothing here prints a secret: passwords are reported only as "set", DSNs are redacted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from provider_events.errors import ConfigError
from provider_events.events._catalog import PROVIDER_SELECTED_V1
from provider_events.settings import (
    CONSUMER_SETTINGS,
    ENV_VARS,
    Secret,
    Settings,
    load_settings,
    redact_dsn,
)

__all__ = ["Check", "PartitionState", "replication_check", "run_checks"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition as the cluster metadata describes it (broker ids)."""

    partition: int
    leader: int  # -1: no leader (offline)
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def _ids(parts: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(p) for p in sorted(parts)[:limit])
    return f"[{shown}{', ...' if len(parts) > limit else ''}]"


def replication_check(topic: str, states: list[PartitionState], min_isr: int | None) -> Check:
    """Offline partitions, partitions whose ISR is below ``min.insync.replicas`` (a producer
    with ``acks=all`` is refused there) and under-replicated ones (ISR smaller than the replica
    set: a broker down or lagging). ``min_isr`` None: the topic's setting could not be read."""
    total = len(states)
    rf = max((len(s.replicas) for s in states), default=0)
    offline = [s.partition for s in states if s.leader < 0]
    under = [s.partition for s in states if len(s.isr) < len(s.replicas)]
    below = [] if min_isr is None else [s.partition for s in states if len(s.isr) < min_isr]
    min_text = (
        "min.insync.replicas unknown" if min_isr is None else f"min.insync.replicas {min_isr}"
    )
    problems = []
    if offline:
        problems.append(f"{len(offline)} of {total} partition(s) without a leader {_ids(offline)}")
    if below:
        smallest = min(len(s.isr) for s in states)
        problems.append(
            f"{len(below)} of {total} partition(s) with ISR below min.insync.replicas={min_isr} "
            f"(smallest ISR {smallest}) {_ids(below)}"
        )
    if under:
        problems.append(f"{len(under)} of {total} partition(s) under-replicated {_ids(under)}")
    if not problems:
        return Check(
            f"replication {topic}",
            True,
            f"replication factor {rf}, every ISR complete, {min_text}",
        )
    if offline or below:
        hint = (
            "brokers are down: publishes with acks=all are refused (NOT_ENOUGH_REPLICAS) and "
            "spool to the outbox, which the relay delivers once the brokers return; start them"
        )
    else:
        hint = (
            "a broker is down or lagging; publishes still succeed while ISR >= min.insync.replicas"
        )
    return Check(f"replication {topic}", False, "; ".join(problems) + f" ({min_text})", hint)


def _config_checks(settings: Settings) -> Iterator[Check]:
    src = settings.sources.get("kafka_bootstrap_servers", "default")
    yield Check(
        "bootstrap servers",
        True,
        f"{settings.kafka_bootstrap_servers} (from {src})",
        "" if src != "default" else "set KAFKA_BOOTSTRAP_SERVERS in the environment or .env",
    )
    security = settings.kafka_security_protocol
    if settings.kafka_sasl_mechanism:
        password = "set" if settings.kafka_sasl_password else "NOT set"
        security += f", {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username} (password {password})"
    yield Check("security", True, security)


#: How ``doctor`` labels the consumer's settings (shown in CONSUMER_SETTINGS' order).
_CONSUMER_LABELS = {
    "consumer_group": "group",
    "consumer_instance_id": "instance id",
    "consumer_batch_size": "batch size",
    "consumer_batch_timeout": "batch timeout",
    "dlq_topic": "dead-letter topic",
    "metrics_port": "metrics port",
    "metrics_addr": "metrics address",
}


def _shown(value: object) -> str:
    """A setting's value for display: secrets as set / not set, DSNs redacted."""
    if isinstance(value, Secret):
        return "set" if value else "not set"
    return redact_dsn(str(value))


def _consumer_checks(settings: Settings) -> Iterator[Check]:
    """What ``provider-events consume`` would use (its flags override these)."""
    topic = settings.topic or PROVIDER_SELECTED_V1.topic
    shown = {
        "consumer_instance_id": settings.consumer_instance_id or "none (dynamic membership)",
        "consumer_batch_timeout": f"{settings.consumer_batch_timeout:g} s",
        "dlq_topic": settings.dlq_topic or f"{topic}.dlq",
        "metrics_port": "off" if settings.metrics_port is None else settings.metrics_port,
    }
    parts = []
    for name in CONSUMER_SETTINGS:
        label = _CONSUMER_LABELS.get(name, name.replace("_", " "))
        value = _shown(shown.get(name, getattr(settings, name)))
        src = settings.sources.get(name, "default")
        origin = "" if src == "default" else f" (from {src})"
        parts.append(f"{label} {value}{origin}")
    bad = [str(settings.problems[n]) for n in CONSUMER_SETTINGS if n in settings.problems]
    yield Check(
        "consumer settings",
        not bad,
        "; ".join(bad) if bad else ", ".join(parts),
        "set " + ", ".join(ENV_VARS[n] for n in CONSUMER_SETTINGS) + " or pass consume's flags",
    )


def _kafka_checks(settings: Settings) -> Iterator[Check]:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._config import ConfigResource
    from confluent_kafka.admin._resource import ResourceType

    from provider_events.publish._producer import describe_kafka_error, kafka_config

    conf = kafka_config(settings, for_consumer=True)
    auth_errors: list[str] = []
    conf["error_cb"] = lambda err: (
        auth_errors.append(describe_kafka_error(err))
        if err.code() == KafkaError._AUTHENTICATION
        else None
    )
    admin = AdminClient(conf)
    started = time.perf_counter()
    deadline = time.monotonic() + settings.delivery_timeout
    while True:  # short slices: a refused login ends the wait at once
        try:
            meta = admin.list_topics(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            break
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb
            if auth_errors:
                yield Check(
                    "kafka metadata",
                    False,
                    f"authentication failed: {auth_errors[0]}",
                    "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM",
                )
                return
            if time.monotonic() < deadline:
                continue
            yield Check(
                "kafka metadata",
                False,
                describe_kafka_error(exc.args[0]) if exc.args else str(exc),
                f"is the broker running? try `kcat -L -b {settings.kafka_bootstrap_servers}` or `make services`",
            )
            return
    took = (time.perf_counter() - started) * 1000
    brokers = ", ".join(f"{b.host}:{b.port}" for b in meta.brokers.values())
    yield Check(
        "kafka metadata", True, f"{len(meta.brokers)} broker(s) [{brokers}] in {took:.0f} ms"
    )
    topic = settings.topic or PROVIDER_SELECTED_V1.topic
    for name, needed in ((topic, True), (settings.dlq_topic or f"{topic}.dlq", False)):
        info = meta.topics.get(name)
        if info is None or info.error is not None:
            yield Check(
                f"topic {name}",
                not needed,
                "missing",
                "created on first publish when the broker auto-creates topics; otherwise create it"
                if needed
                else "created by the consumer on its first dead letter",
            )
        else:
            yield Check(f"topic {name}", True, f"{len(info.partitions)} partition(s)")
            states = [
                PartitionState(p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
                for p in info.partitions.values()
            ]
            min_isr: int | None = None
            resource = ConfigResource(ResourceType.TOPIC, name)
            try:
                configs = admin.describe_configs(
                    [resource], request_timeout=max(1.0, settings.delivery_timeout)
                )[resource].result(timeout=max(1.0, settings.delivery_timeout) + 1)
                min_isr = int(configs["min.insync.replicas"].value)
            except Exception:  # no DescribeConfigs right, or the broker went away meanwhile
                min_isr = None
            yield replication_check(name, states, min_isr)


def _outbox_checks(settings: Settings) -> Iterator[Check]:
    from provider_events.errors import OutboxError
    from provider_events.publish._outbox import Outbox
    from provider_events.publish._relay import relay_running

    box = Outbox(
        settings.resolved_outbox_path, settings.outbox_max_events, settings.outbox_max_bytes
    )
    if not box.exists():
        yield Check("outbox", True, f"empty (no file yet at {box.path})")
        return
    try:
        st = box.status()
    except OutboxError as exc:
        yield Check(
            "outbox",
            False,
            str(exc),
            "move the file aside; a new outbox is created on the next publish",
        )
        return
    age = f", oldest {st.oldest_age_seconds:.0f}s" if st.oldest_age_seconds is not None else ""
    relay = "relay running" if relay_running(settings) else "relay idle"
    detail = f"{st.pending} pending{age}, {relay}, {st.size_bytes:,} bytes at {st.path}"
    if st.pending and st.last_error:
        detail += f"; last error: {st.last_error}"
    yield Check(
        "outbox",
        st.pending == 0,
        detail,
        "run `provider-events relay` once Kafka is reachable" if st.pending else "",
    )


def _database_checks(settings: Settings) -> Iterator[Check]:
    if not settings.database_url:
        yield Check("database", True, "DATABASE_URL not set (stats read the local store)")
        return
    dsn = settings.database_url.reveal()
    from provider_events.store._pg import check_database_url

    try:
        check_database_url(dsn)
    except ConfigError as exc:
        yield Check("DATABASE_URL", False, str(exc), "fix DATABASE_URL")
        return
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=max(1, int(settings.delivery_timeout))) as conn:
            version = _first(conn.execute("SHOW server_version").fetchone())
            table = _first(
                conn.execute("SELECT to_regclass('provider_selection_events')").fetchone()
            )
    except Exception as exc:
        text = redact_dsn(" ".join(str(exc).split())).replace(dsn, redact_dsn(dsn))
        yield Check(
            "database",
            False,
            f"{redact_dsn(dsn)}: {text[:300]}",
            "is PostgreSQL running? check DATABASE_URL",
        )
        return
    yield Check("database", True, f"PostgreSQL {version} at {redact_dsn(dsn)}")
    yield Check(
        "table provider_selection_events",
        table is not None,
        "present" if table else "missing",
        "" if table else "run `provider-events migrate`",
    )


def run_checks(on_check: Callable[[Check], None] | None = None) -> list[Check]:
    """Run every check in order; configuration errors stop the rest."""
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        if on_check:
            on_check(check)

    try:
        settings = load_settings()
    except ConfigError as exc:
        add(Check("configuration", False, str(exc), f"fix {exc.setting}"))
        return checks
    add(Check("configuration", True, "loaded"))
    groups = (_config_checks, _consumer_checks, _kafka_checks, _outbox_checks, _database_checks)
    for group in groups:
        for check in group(settings):
            add(check)
    return checks


def _first(row: tuple[Any, ...] | None) -> Any:
    """The first column of a one-row answer (``None`` when there was no row)."""
    return None if row is None else row[0]
