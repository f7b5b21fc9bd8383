"""Exceptions raised by provider-events.

The tree::

    ProviderEventsError
    ├── ConfigError            a setting is missing or malformed (names the setting)
    ├── InvalidEventError      an event or its input does not satisfy the schema
    │   └── PartitionKeyError  the event has no usable partition key
    ├── OutboxError            the local outbox cannot take or give events
    │   ├── OutboxFullError    the configured size bound is reached; the event was refused
    │   └── OutboxCorruptError the outbox file is unreadable; it is reported, never rewritten
    ├── DatabaseError          PostgreSQL refused or is unreachable (consumer, migrations, stats)
    └── UnsafePathError        an output or input path is not a regular file (device, FIFO, dir)

Transport problems (Kafka down, timeouts) are never raised by the publish calls: they come back
as a :class:`~provider_events.PublishResult` whose ``status`` says what happened.
Foreign exceptions (librdkafka, sqlite3, psycopg) are translated into this tree at the module
that talks to them, and every message is safe to print: no secret is ever part of one.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseError",
    "InvalidEventError",
    "OutboxCorruptError",
    "OutboxError",
    "OutboxFullError",
    "PartitionKeyError",
    "ProviderEventsError",
    "UnsafePathError",
]


class ProviderEventsError(Exception):
    """Base class of every error this package raises."""


class ConfigError(ProviderEventsError):
    """A setting is missing or malformed; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class InvalidEventError(ProviderEventsError, ValueError):
    """An event (or the input it is built from) does not satisfy its schema.

    ``reason`` is a stable code (``bad_utf8``, ``bad_json``, ``schema``, ``unknown_event_type``,
    ``too_large``, ``partition_key``) used for dead-letter headers and metrics labels.
    """

    def __init__(self, message: str, reason: str = "schema") -> None:
        super().__init__(message)
        self.reason = reason


class PartitionKeyError(InvalidEventError):
    """The event has no usable partition key, so it is refused rather than sent unkeyed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="partition_key")


class OutboxError(ProviderEventsError):
    """The local outbox cannot take or give events."""


class OutboxFullError(OutboxError):
    """The outbox reached its configured bound; the new event was refused (nothing dropped)."""


class OutboxCorruptError(OutboxError):
    """The outbox file is not a readable outbox; it is left untouched for inspection."""


class DatabaseError(ProviderEventsError):
    """PostgreSQL refused a statement or could not be reached."""


class UnsafePathError(ProviderEventsError, ValueError):
    """A path to write or read is a device, FIFO, directory or socket (or a link to one), or
    a file to read is larger than its bound: refused, nothing was touched."""
