"""Every exception provider-events lets a caller see, and the CLI's exit codes.

The tree::

    ProviderEventsError
    ├── ConfigError               a setting is missing or malformed (names the setting)
    ├── InvalidEventError         an event or its input does not satisfy the schema (ValueError)
    │   └── PartitionKeyError     the event has no usable partition key
    ├── HookInputError            stdin did not hold a Claude Code hook JSON object (ValueError)
    ├── OutboxError               the local outbox (or embedded SQLite store) cannot take or give events
    │   ├── OutboxFullError       the configured size bound is reached; the event was refused
    │   └── OutboxCorruptError    the outbox file is unreadable; it is reported, never rewritten
    ├── DatabaseError             PostgreSQL refused or is unreachable (consumer, migrations, stats)
    │   ├── DatabaseUnavailableError  down, restarting, unreachable: retrying later may succeed
    │   ├── DatabaseLoginError        login or database refused: DATABASE_URL must change
    │   └── MigrationError            migrations on disk and in the database disagree, or one failed
    ├── KafkaClientError          Kafka reported a fatal error (consumer loop); ``retriable`` says
    │                             whether a restart may help
    ├── SwitchError               a provider switch or settings.json edit was refused (nothing written)
    │   ├── SettingsFileError     settings.json is unreadable or malformed; left untouched
    │   └── SettingsWriteError    settings.json could not be written (or kept changing)
    ├── TranscriptImportError     measured outcomes could not be published, or the import's
    │                             state (what was read) could not be kept
    └── UnsafePathError           an output or input path is not a regular file (device, FIFO,
                                  directory, socket), or a file to read is over its bound

Transport problems (Kafka down, timeouts) are never raised by the publish calls: they come back
as a :class:`~provider_events.PublishResult` whose ``status`` says what happened and whose
``reason`` (:class:`~provider_events.FailureReason`) says why.

Foreign exceptions are translated into this tree at one boundary each:

* PostgreSQL (``psycopg.Error``): :func:`provider_events.store._pg.translate_error`;
* SQLite (``sqlite3.Error``): the outbox (:mod:`provider_events.publish._outbox`) and the
  embedded store (:mod:`provider_events.store._local`), each around its own connection, as
  :class:`OutboxError`;
* Kafka (``confluent_kafka.KafkaException``): :meth:`IngestConsumer.run` raises
  :class:`KafkaClientError`; the producer turns its errors into :class:`PublishResult` values.

Every message is safe to print: no secret is ever part of one.

:class:`ExitCode` is the one definition of the CLI's exit codes (``0`` ok, ``1`` an
operational failure, ``2`` bad input).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ConfigError",
    "DatabaseError",
    "DatabaseLoginError",
    "DatabaseUnavailableError",
    "ExitCode",
    "HookInputError",
    "InvalidEventError",
    "KafkaClientError",
    "MigrationError",
    "OutboxCorruptError",
    "OutboxError",
    "OutboxFullError",
    "PartitionKeyError",
    "ProviderEventsError",
    "SettingsFileError",
    "SettingsWriteError",
    "SwitchError",
    "TranscriptImportError",
    "UnsafePathError",
]


class ExitCode(IntEnum):
    """The CLI's exit codes, defined once."""

    OK = 0  #: done
    FAILED = 1  #: an operational failure (a service down, a file not writable, ...)
    BAD_INPUT = 2  #: bad input or configuration: the command line, a setting, a file's content


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


class HookInputError(ProviderEventsError, ValueError):
    """stdin did not hold a Claude Code hook JSON object."""


class OutboxError(ProviderEventsError):
    """The local outbox cannot take or give events."""


class OutboxFullError(OutboxError):
    """The outbox reached its configured bound; the new event was refused (nothing dropped)."""


class OutboxCorruptError(OutboxError):
    """The outbox file is not a readable outbox; it is left untouched for inspection."""


class DatabaseError(ProviderEventsError):
    """PostgreSQL refused a statement or could not be reached."""


class DatabaseUnavailableError(DatabaseError):
    """PostgreSQL cannot be reached or is shutting down; retrying later may succeed."""

    retriable = True


class DatabaseLoginError(DatabaseError):
    """PostgreSQL refused the login or the database: retrying cannot fix it, DATABASE_URL must.

    ``sqlstate`` is the server's code: 28P01 (invalid_password), 28000
    (invalid_authorization_specification: unknown role, no ``pg_hba.conf`` entry, ...), 3D000
    (invalid_catalog_name: no such database), 42501 (no CONNECT privilege); ``None`` when libpq
    itself gave up (no password to send).
    """

    retriable = False

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class MigrationError(DatabaseError):
    """The migrations on disk and in the database disagree, or a migration failed."""


class KafkaClientError(ProviderEventsError):
    """Kafka reported a fatal error; nothing of the batch in hand was committed.

    ``code`` is librdkafka's error name (e.g. ``TOPIC_AUTHORIZATION_FAILED``) when known;
    ``retriable`` whether librdkafka says a retry (or a restart) may succeed.
    """

    def __init__(self, message: str, code: str | None = None, retriable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable


class SwitchError(ProviderEventsError):
    """A switch (or a settings edit) was refused; nothing was written. Safe to print."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class SettingsFileError(SwitchError):
    """settings.json is unreadable or malformed; it is left untouched."""


class SettingsWriteError(SwitchError):
    """settings.json could not be written, or kept changing under us; it was not changed."""

    exit_code = ExitCode.FAILED


class TranscriptImportError(ProviderEventsError):
    """Outcomes could not be published or the import state could not be kept."""


class UnsafePathError(ProviderEventsError, ValueError):
    """A path to write or read is a device, FIFO, directory or socket (or a link to one), or
    a file to read is larger than its bound: refused, nothing was touched."""
