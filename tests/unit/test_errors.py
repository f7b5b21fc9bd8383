"""One exception tree: every public error is a ProviderEventsError defined in errors.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import provider_events
from provider_events import errors

SRC = Path(provider_events.__file__).parent


def _exception_classes() -> list[tuple[str, str]]:
    """(module path, class name) of every class in src/ that derives from an exception."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if any(re.search(r"(Error|Exception)$", b) for b in bases):
                    found.append((str(path.relative_to(SRC)), node.name))
    return found


def test_public_exceptions_live_in_errors_py() -> None:
    """A public exception class defined anywhere but errors.py would escape the tree."""
    outside = [
        (where, name)
        for where, name in _exception_classes()
        if where != "errors.py" and not name.startswith("_")
    ]
    assert outside == []


def test_every_error_is_a_provider_events_error() -> None:
    """Every class errors.py exports (but the exit codes) subclasses ProviderEventsError."""
    for name in errors.__all__:
        if name == "ExitCode":
            continue
        assert issubclass(getattr(errors, name), errors.ProviderEventsError), name
        assert getattr(provider_events, name) is getattr(errors, name)


def test_old_import_paths_still_work() -> None:
    """The modules that used to define the errors re-export the same classes."""
    from provider_events.integrations import _hook, _switch
    from provider_events.store import (
        DatabaseLoginError,
        DatabaseUnavailableError,
        MigrationError,
        _migrate,
        _pg,
    )

    assert _pg.DatabaseLoginError is DatabaseLoginError is errors.DatabaseLoginError
    assert _pg.DatabaseUnavailableError is DatabaseUnavailableError
    assert _migrate.MigrationError is MigrationError is errors.MigrationError
    assert _switch.SwitchError is errors.SwitchError
    assert _switch.SettingsFileError is errors.SettingsFileError
    assert _switch._WriteError is errors.SettingsWriteError
    assert _hook.HookInputError is errors.HookInputError
    assert issubclass(errors.HookInputError, ValueError)


def test_exit_codes_are_defined_once() -> None:
    """No module but errors.py assigns an integer literal to an exit-code name."""
    pattern = re.compile(r"^\s*(EXIT_\w+|exit_code)\s*(:[^=]*)?=\s*\d", re.M)
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "errors.py" and pattern.search(p.read_text())
    ]
    assert offenders == []
    assert (errors.ExitCode.OK, errors.ExitCode.FAILED, errors.ExitCode.BAD_INPUT) == (0, 1, 2)
    assert errors.SwitchError.exit_code == 2 and errors.SettingsWriteError.exit_code == 1


def test_metrics_labels_are_the_failure_reasons() -> None:
    """The failures metric's label values are exactly the FailureReason enum's."""
    from provider_events.observability._publisher_metrics import FAILURE_REASONS

    assert tuple(r.value for r in provider_events.FailureReason) == FAILURE_REASONS


def test_consumer_run_translates_kafka_exceptions() -> None:
    """IngestConsumer.run is the one place KafkaException becomes KafkaClientError."""
    from confluent_kafka import KafkaError, KafkaException

    from provider_events.ingest._consumer import IngestConsumer

    consumer = IngestConsumer.__new__(IngestConsumer)

    def fatal() -> None:
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    consumer._run = fatal  # type: ignore[method-assign]  # the loop itself needs a broker
    with pytest.raises(errors.KafkaClientError) as info:
        consumer.run()
    assert info.value.code == "TOPIC_AUTHORIZATION_FAILED"
    assert "TOPIC_AUTHORIZATION_FAILED" in str(info.value)
