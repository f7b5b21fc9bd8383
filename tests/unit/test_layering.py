"""Dependencies point downward: each package imports only the packages below it.

The layers (docs/architecture.md draws them)::

    cli
    analytics   integrations
    ingest      observability
    publish
    store       events
    _retry      settings      errors

Imports are read from the source with ``ast`` (function-level imports included), so a lazy
import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import provider_events

SRC = Path(provider_events.__file__).parent
BASE = {"errors", "settings", "_retry", "_redact", "_files"}

#: What each package (or top-level module) may import besides itself.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    # redaction of secrets in any text; safe output paths and bounded reads
    "_redact": set(),
    "_files": {"errors"},
    "settings": {"errors", "_redact"},
    "_retry": set(),
    "events": {"errors", "settings", "_files"},
    "store": BASE | {"events"},
    "publish": BASE | {"events", "store"},
    # the spend-over-budget gauges read today's spend and the budgets from usage/
    "observability": BASE | {"events", "store", "publish", "usage"},
    "ingest": BASE | {"events", "store", "publish", "observability"},
    # measured usage: transcripts, prices, budgets; published like any event
    "usage": BASE | {"events", "store", "publish"},
    # the hook publishes a turn's outcomes through usage/ (and chooses its sink from store/)
    "integrations": BASE | {"events", "publish", "store", "usage"},
    # stats/recommend/report show measured usage beside the declared figures
    "analytics": BASE | {"events", "store", "publish", "ingest", "usage"},
    "cli": BASE
    | {"events", "store", "publish", "observability", "ingest", "integrations", "analytics"}
    | {"usage", "__init__"},
    # The package's lazy public namespace re-exports from below, never from cli.
    "__init__": BASE | {"events", "publish", "observability"},
}

#: Known upward imports still to remove, each with why it is there. The test fails when one
#: disappears, so the list only shrinks.
KNOWN: set[tuple[str, str]] = {
    # The embedded store maintains the analytics rollups with analytics' bins and SQL
    # (analytics/_model.bin_of/derive, analytics/_sql.SQLITE_*): those belong in store/.
    ("store/_local.py", "analytics"),
    # The batch writer's one-pass rollup fold uses the same bins (analytics/_model.bin_of).
    ("store/_rollups.py", "analytics"),
}


def _imports() -> list[tuple[str, str, str]]:
    """(file, its package, imported package) for every import of provider_events.*."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        package = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module == "provider_events":  # a submodule, or the package's namespace
                    names = [
                        f"provider_events.{a.name}"
                        if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").exists()
                        else "provider_events.__init__"
                        for a in node.names
                    ]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "provider_events" and len(parts) > 1 and parts[1] != package:
                    found.append((str(rel), package, parts[1]))
    return found


def test_every_package_has_a_rule() -> None:
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in SRC.glob("*.py")}
    assert packages | modules == set(ALLOWED)


def test_dependencies_point_downward() -> None:
    """No package imports one above it (or beside it, unless the table allows it)."""
    upward = {
        (where, target)
        for where, package, target in _imports()
        if target not in ALLOWED[package] and (where, target) not in KNOWN
    }
    assert upward == set()


def test_known_exceptions_still_exist() -> None:
    """A fixed exception must leave KNOWN, so the list cannot grow stale."""
    actual = {(where, target) for where, _, target in _imports()}
    assert actual >= KNOWN


def test_nothing_imports_the_cli() -> None:
    assert [w for w, package, target in _imports() if target == "cli" and package != "cli"] == []


def test_events_never_import_publish_and_store_never_imports_ingest() -> None:
    pairs = {(package, target) for _, package, target in _imports()}
    assert ("events", "publish") not in pairs
    assert ("store", "ingest") not in pairs and ("store", "publish") not in pairs
