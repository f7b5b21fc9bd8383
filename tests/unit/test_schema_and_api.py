"""Schema files match the models; the public namespace matches __all__."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import provider_events
from provider_events.events._schema import schema_files

ROOT = Path(__file__).resolve().parents[2]


def test_schema_files_match_models() -> None:
    """schemas/ is exactly what the models generate (run `make schemas` after a change)."""
    expected = schema_files()
    present = {p.name: p.read_text() for p in (ROOT / "schemas").glob("*.json")}
    assert present == expected, "schemas/ drifted from the models: run `make schemas`"


def test_schema_command_prints_the_registry_schema() -> None:
    """`provider-events schema registry://...` prints the envelope schema."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provider_events.cli",
            "schema",
            "registry://omninode/agent/provider_selected/v1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"$id": "registry://omninode/agent/provider_selected/v1"' in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "schema", "registry://nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_public_namespace_is_all() -> None:
    """Every name in __all__ resolves, is sorted, and nothing public is outside it."""
    assert provider_events.__all__ == sorted(provider_events.__all__, key=str)
    for name in provider_events.__all__:
        assert getattr(provider_events, name) is not None
    assert dir(provider_events) == sorted(provider_events.__all__)


def test_private_modules_are_private() -> None:
    """Implementation modules start with an underscore; the public ones declare ``__all__``."""
    package = Path(provider_events.__file__).parent
    public = sorted(p.name for p in package.glob("*.py") if not p.name.startswith("_"))
    assert public == ["errors.py", "settings.py"], public
    for module in (importlib.import_module(f"provider_events.{p[:-3]}") for p in public):
        assert module.__all__ == sorted(module.__all__, key=str)
        for name in module.__all__:
            assert getattr(module, name) is not None
