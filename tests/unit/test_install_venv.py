"""``dev/install-venv.sh`` (what ``make`` runs first): one clear line when no usable Python or
no venv module is there, and nothing at all when the venv is up to date.

The cases that install (a fresh clone's ``make demo`` with PATH=/usr/bin:/bin) need the network
and minutes; they are checked by hand and by CI running ``make test`` from a fresh clone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "dev" / "install-venv.sh"
#: What the script needs besides a Python: the test's PATH holds only these.
TOOLS = ("dirname", "cat", "sha256sum", "cut", "rm", "mkdir", "date", "tail", "sed", "env")


def _run(tmp_path: Path, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    child = {
        "PATH": path,
        "HOME": str(tmp_path),
        "LOG_DIR": str(tmp_path / "logs"),
        **env,
    }
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _bin_without_python(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    return folder


def test_no_python_on_path_is_one_line_naming_what_to_install(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = _run(tmp_path, str(_bin_without_python(tmp_path)), VENV=str(venv))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no Python >= 3.11 on PATH" in lines[0] and "python3-venv" in lines[0]
    assert done.stdout == "" and not venv.exists()


def test_a_python_without_venv_is_one_line_and_no_half_made_venv(tmp_path: Path) -> None:
    """Debian without python3-venv: ``-m venv`` fails (ensurepip is not available)."""
    folder = _bin_without_python(tmp_path)
    fake = folder / "python3"
    fake.write_text(
        "#!/bin/bash\n"
        'if [ "$1" = -m ] && [ "$2" = venv ]; then\n'
        '  mkdir -p "$3/bin"\n'
        '  echo "The virtual environment was not created successfully because ensurepip is not'
        ' available." >&2\n'
        "  exit 1\n"
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    done = _run(tmp_path, str(folder), VENV=str(venv))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("[install] creating") and len(lines) == 2, done.stderr
    assert "python3-venv" in lines[1] and "ensurepip" in lines[1]
    assert not venv.exists()
    assert "ensurepip is not available" in (tmp_path / "logs" / "install.log").read_text()


def test_a_python_that_is_too_old_is_refused(tmp_path: Path) -> None:
    done = _run(tmp_path, "/usr/bin:/bin", VENV=str(tmp_path / "venv"), PYTHON="/bin/false")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "[install] error: PYTHON=/bin/false is not a Python >= 3.11"
    ]


def test_an_up_to_date_venv_is_left_alone_silently(tmp_path: Path) -> None:
    """Same pyproject.toml hash in the stamp and a working interpreter: nothing runs."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + b"extras=dev installer=uv\n"
    ).hexdigest()
    stamp = venv / ".provider-events-installed"
    stamp.write_text(digest + "\n")
    env = {"VENV": str(venv), "INSTALLER": "uv", "EXTRAS": "dev"}
    done = _run(tmp_path, os.environ.get("PATH", "/usr/bin:/bin"), **env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert sorted(p.name for p in venv.iterdir()) == [".provider-events-installed", "bin"]
    assert not (tmp_path / "logs").exists()
