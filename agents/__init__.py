"""The integration guide's import paths (``agents.lib.*``), kept as thin re-exports.

When the package is not installed, ``src/`` next to this folder is put on ``sys.path`` so the
guide's snippets run from a plain checkout.
"""

import sys
from importlib.util import find_spec
from pathlib import Path

if find_spec("provider_events") is None:  # pragma: no cover - depends on how it was installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
