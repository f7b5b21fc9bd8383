"""The ``make chaos`` suite's tests run only when ``-m`` selects ``slow``.

``pytest`` with no ``-m`` (as ``make test`` runs it) deselects this folder's slow tests rather
than running a long fault suite against the shared services; ``make chaos`` selects them.
The ``services``, ``broker`` and ``postgres`` fixtures are the root conftest's: the short form
(``tests/integration/test_faults_short.py``) uses them too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return  # `-m slow` / `-m "not slow"`: pytest's own selection applies
    dropped = [i for i in items if HERE in i.path.parents and i.get_closest_marker("slow")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in dropped]
