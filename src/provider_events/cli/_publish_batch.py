"""``publish --batch FILE``: many selections from JSON lines, validated first, sent together.

Every line is validated before anything is sent; a bad line is reported with its number and
nothing is published (exit 2). Exit 0 when every event was delivered (or queued with
``--background``), 1 otherwise (undelivered ones are safe in the outbox).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, fail

_FIELDS = {
    "provider": "provider_name",
    "model": "model_name",
    "reason": "selection_reason",
    "criteria": "selection_criteria",
    "correlation_id": "correlation_id",
    "causation_id": "causation_id",
    "tenant_id": "tenant_id",
}


#: The largest --batch input read (a larger one is refused: split it).
MAX_BATCH_BYTES = 256 * 1024 * 1024


def _read(path: str) -> list[bytes]:
    if path == "-":
        data = sys.stdin.buffer.read(MAX_BATCH_BYTES + 1)
        return _lines(path, data)
    import stat

    try:
        named_fifo = stat.S_ISFIFO(os.stat(path).st_mode) and not path.startswith(
            ("/dev/fd/", "/proc/")
        )
        if named_fifo:  # opening one waits, forever, for a writer
            raise SystemExit(fail(f"--batch {path}: a named FIFO; pipe it into --batch -", 2))
        with open(path, "rb") as handle:
            kind = os.fstat(handle.fileno()).st_mode
            if not (stat.S_ISREG(kind) or stat.S_ISFIFO(kind)):  # a pipe: like stdin
                raise SystemExit(
                    fail(f"--batch {path}: not a regular file or a pipe", EXIT_BAD_INPUT)
                )
            data = handle.read(MAX_BATCH_BYTES + 1)
    except OSError as exc:
        raise SystemExit(fail(f"--batch {path}: {exc.strerror}", EXIT_BAD_INPUT)) from None
    return _lines(path, data)


def _lines(path: str, data: bytes) -> list[bytes]:
    if len(data) > MAX_BATCH_BYTES:
        raise SystemExit(
            fail(f"--batch {path}: larger than {MAX_BATCH_BYTES:,} bytes; split it", EXIT_BAD_INPUT)
        )
    return data.splitlines()


def _fields(number: int, line: bytes) -> dict[str, Any]:
    import msgspec

    try:
        doc = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string
        raise SystemExit(
            fail(f"--batch line {number}: not valid JSON: {exc}", EXIT_BAD_INPUT)
        ) from None
    except RecursionError:
        raise SystemExit(fail(f"--batch line {number}: nests too deeply", EXIT_BAD_INPUT)) from None
    if not isinstance(doc, dict):
        raise SystemExit(fail(f"--batch line {number}: must be a JSON object", EXIT_BAD_INPUT))
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise SystemExit(
            fail(f"--batch line {number}: unknown field(s) {', '.join(unknown)}", EXIT_BAD_INPUT)
        )
    return {_FIELDS[k]: v for k, v in doc.items()}


def run_batch(args: argparse.Namespace, settings: Any) -> int:
    from provider_events.errors import InvalidEventError
    from provider_events.publish._publisher import Publisher

    publisher = Publisher(settings)
    events = []
    for number, line in enumerate(_read(args.batch), start=1):
        if not line.strip():
            continue
        fields = _fields(number, line)
        fields.setdefault("selection_reason", "")
        try:
            events.append(publisher.build(**fields))
        except (InvalidEventError, TypeError) as exc:
            return fail(f"--batch line {number}: invalid event: {exc}", EXIT_BAD_INPUT)
    results = publisher.send_many_sync(events, "background" if args.background else "sync")
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
    ok_states = {"delivered", "queued"} if args.background else {"delivered"}
    ok = all(r.status.value in ok_states for r in results)
    summary = (
        ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "nothing to publish"
    )
    if args.json:
        import msgspec

        print(
            msgspec.json.encode(
                {"counts": counts, "event_ids": [r.event_id for r in results]}
            ).decode()
        )
    elif ok and not args.quiet:
        print(summary)
    if ok:
        return EXIT_OK
    return fail(
        f"not all delivered: {summary}; undelivered events are safe in the outbox", EXIT_FAILED
    )
