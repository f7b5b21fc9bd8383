"""Fixtures of the ``make chaos`` suite; its tests run only when ``-m`` selects ``slow``.

``pytest`` with no ``-m`` (as ``make test`` runs it) deselects this folder's slow tests rather
than running a long fault suite against the shared services; ``make chaos`` selects them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import kit
from tests.chaos.harness import Services

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return  # `-m slow` / `-m "not slow"`: pytest's own selection applies
    dropped = [i for i in items if HERE in i.path.parents and i.get_closest_marker("slow")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in dropped]


@pytest.fixture
def services(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> Iterator[Services]:
    """The broker and PostgreSQL under test, checked to be the ones ``services.sh`` controls;
    the test's topics are deleted afterwards."""
    kit.check_services_target(kafka_bootstrap, database_url)
    services = Services(kafka_bootstrap, database_url, tmp_path)
    try:
        yield services
    finally:
        services.close()


@pytest.fixture
def postgres(database_url: str) -> Iterator[kit.PostgresControl]:
    """Control of the PostgreSQL server; it is always running again after the test."""
    control = kit.PostgresControl(database_url)
    try:
        yield control
    finally:
        control.ensure_running()
