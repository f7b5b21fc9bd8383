"""Safe file output and bounded file input, shared by every command that writes or reads one.

:func:`write_atomic` writes a report, export or schema to a regular file or a new path, through
a temporary file in the same directory and :func:`os.replace`, so a reader never sees half a
file. :func:`check_output_path` refuses any other kind of target (a device such as
``/dev/full``, a FIFO, a directory, a socket, or a symbolic link to one): ``os.replace`` would
otherwise swap the device node for a regular file. :func:`read_bounded` reads a regular file of
at most a given size and never opens a FIFO or device (``/dev/zero`` would never end).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from provider_events.errors import UnsafePathError

__all__ = ["check_output_path", "read_bounded", "write_atomic"]


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_output_path(path: Path | str) -> Path:
    """The absolute path to write, if it is a regular file or does not exist yet.

    Raises :class:`UnsafePathError` for a directory, FIFO, device or socket (followed through
    symbolic links), or a parent that is not a directory.
    """
    raw = str(path)
    if not raw.strip() or "\x00" in raw:
        raise UnsafePathError(f"{raw!r} is not a file name")
    target = Path(raw).expanduser()
    try:
        target = target.resolve()
        st = target.stat()
    except FileNotFoundError:
        st = None
    except (OSError, RuntimeError) as exc:  # a link loop, a component that is a file
        raise UnsafePathError(f"{raw}: {getattr(exc, 'strerror', None) or exc}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{raw} is {_kind(st.st_mode)}; give a regular file or a new path")
    parent = target.parent
    try:
        pst = parent.stat()
    except FileNotFoundError:
        return target  # created by write_atomic
    except OSError as exc:
        raise UnsafePathError(f"{raw}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(pst.st_mode):
        raise UnsafePathError(f"{raw}: {parent} is {_kind(pst.st_mode)}, not a directory")
    return target


def write_atomic(path: Path | str, data: str | bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically (parents created); returns the absolute path.

    Raises :class:`UnsafePathError` for a target that is not a regular file or a new path, and
    :class:`OSError` when the directory cannot be written (nothing is left behind).
    """
    target = check_output_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UnsafePathError(f"{path}: a parent is not a directory") from None
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:40]}-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        check_output_path(target)  # still a regular file or absent (no swap for a FIFO since)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_bounded(path: Path | str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    Raises :class:`UnsafePathError` for a FIFO, device, directory or socket (never opened, so
    ``/dev/zero`` or a FIFO cannot hang the caller) or a larger file; :class:`OSError` when the
    file cannot be read (``FileNotFoundError`` when it does not exist).
    """
    target = Path(path).expanduser()
    st = target.stat()
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path} is {_kind(st.st_mode)}, not a regular file")
    fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the check
            raise UnsafePathError(f"{path} is not a regular file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafePathError(f"{path} is larger than {max_bytes:,} bytes")
    return data
