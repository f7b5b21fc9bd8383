"""``publish --batch FILE``: many selections from JSON lines, streamed in bounded memory.

The input is read one line at a time, each line at most ``KAFKA_MESSAGE_MAX_BYTES`` long (a
longer one is rejected with its number as soon as that many bytes were read, so ``/dev/zero``
is refused at once), and sent in chunks of :data:`CHUNK` events (at most :data:`CHUNK_BYTES` of input).

All or nothing on bad input: a regular file is validated whole before anything is sent, so a
bad line (reported with its number, exit 2) publishes nothing. A pipe or device cannot be read
twice: each chunk is validated whole before it is sent, and reading stops at the first bad
line; the lines already published before it are named in the error (and in ``--json``).

Every line's outcome is reported: ``delivered``, ``spooled`` (committed to the outbox, the relay
delivers it), ``queued`` (``--background``), or ``failed`` (NOT stored: the outbox was full or
unwritable — resend those lines). Exit 0 when every event was delivered (or queued with
``--background``), 1 otherwise, 2 on a bad line. "Safe in the outbox" is said only of events the
outbox committed.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO, Any, Literal

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
#: Events sent (and, from a pipe, validated) together.
CHUNK = 1000
#: ... or fewer, once their input lines add up to this: a chunk of large events is held as its
#: lines, its envelopes and librdkafka's copies until acknowledged, so memory stays bounded
#: by bytes, not only by count.
CHUNK_BYTES = 8 << 20


class _BadLine(Exception):
    def __init__(self, number: int, message: str) -> None:
        super().__init__(f"--batch line {number}: {message}")
        self.number = number


def _open(path: str) -> tuple[IO[bytes], bool]:
    """The input and whether it is a regular file (readable twice)."""
    if path == "-":
        return sys.stdin.buffer, False
    try:
        named_fifo = stat.S_ISFIFO(os.stat(path).st_mode) and not path.startswith(
            ("/dev/fd/", "/proc/")
        )
    except OSError:
        named_fifo = False  # open() below says what is wrong
    if named_fifo:  # opening one waits, forever, for a writer
        raise SystemExit(
            fail(f"--batch {path}: a named FIFO; pipe it into --batch -", EXIT_BAD_INPUT)
        )
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise SystemExit(fail(f"--batch {path}: {exc.strerror}", EXIT_BAD_INPUT)) from None
    try:
        regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
    except OSError:
        regular = False
    return handle, regular


def _lines(handle: IO[bytes], limit: int) -> Iterator[tuple[int, bytes]]:
    """(number, line) of each non-blank line, never holding more than ``limit + 1`` bytes."""
    number = 0
    while True:
        try:
            line = handle.readline(limit + 1)
        except OSError as exc:
            raise _BadLine(number + 1, f"cannot read: {exc.strerror or exc}") from None
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            raise _BadLine(number, f"longer than {limit} bytes (KAFKA_MESSAGE_MAX_BYTES)")
        if line.strip():
            yield number, line


def _fields(number: int, line: bytes) -> dict[str, Any]:
    import msgspec

    try:
        doc = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string
        raise _BadLine(number, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise _BadLine(number, "nests too deeply") from None
    if not isinstance(doc, dict):
        raise _BadLine(number, "must be a JSON object")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise _BadLine(number, f"unknown field(s) {', '.join(unknown)}")
    fields = {_FIELDS[k]: v for k, v in doc.items()}
    fields.setdefault("selection_reason", "")
    return fields


def _build(publisher: Any, number: int, line: bytes) -> Any:
    from provider_events.errors import InvalidEventError

    try:
        return publisher.build(**_fields(number, line))
    except (InvalidEventError, TypeError) as exc:
        raise _BadLine(number, f"invalid event: {exc}") from None


class _Outcomes:
    """Line numbers per outcome, as ranges (bounded by the number of changes, not lines)."""

    def __init__(self) -> None:
        self.ranges: dict[str, list[list[int]]] = {}
        self.counts: dict[str, int] = {}

    def add(self, state: str, number: int) -> None:
        self.counts[state] = self.counts.get(state, 0) + 1
        spans = self.ranges.setdefault(state, [])
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])

    def lines(self, state: str) -> str:
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ranges.get(state, []))


def run_batch(args: argparse.Namespace, settings: Any) -> int:
    from provider_events.publish._publisher import Publisher

    publisher = Publisher(settings)
    limit = settings.kafka_message_max_bytes
    handle, regular = _open(args.batch)
    out = sys.stdout
    outcomes = _Outcomes()
    delivery: Literal["sync", "background"] = "background" if args.background else "sync"
    first_id = True
    try:
        if regular:  # validate the whole file first: a bad line publishes nothing
            try:
                for number, line in _lines(handle, limit):
                    _build(publisher, number, line)
            except _BadLine as exc:
                return fail(str(exc), EXIT_BAD_INPUT)
            handle.seek(0)
        if args.json:
            out.write('{"event_ids":[')
        stream = _lines(handle, limit)
        bad: _BadLine | None = None
        while bad is None:
            numbers: list[int] = []
            events: list[Any] = []
            size = 0
            try:
                for number, line in stream:
                    events.append(_build(publisher, number, line))
                    numbers.append(number)
                    size += len(line)
                    if len(events) >= CHUNK or size >= CHUNK_BYTES:
                        break
            except _BadLine as exc:
                bad = exc
                break  # this chunk is not sent: stop at the first bad line
            if not events:
                break
            results = publisher.send_many_sync(events, delivery)
            for number, result in zip(numbers, results, strict=True):
                outcomes.add(result.status.value, number)
                if args.json:
                    out.write(("" if first_id else ",") + f'"{result.event_id}"')
                    first_id = False
            del events, results
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    counts = outcomes.counts
    if args.json:
        import json

        lines = {state: outcomes.ranges[state] for state in sorted(outcomes.ranges)}
        tail: dict[str, object] = {"counts": counts, "lines": lines}
        if bad is not None:
            tail["rejected_line"] = bad.number
        out.write("]," + json.dumps(tail)[1:] + "\n")
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    if bad is not None:
        done = f"; lines published before it: {summary}" if counts else "; nothing published"
        return fail(f"{bad}{done}", EXIT_BAD_INPUT)
    ok_states = {"delivered", "queued"} if args.background else {"delivered"}
    ok = all(state in ok_states for state in counts)
    if ok:
        if not args.json and not args.quiet:
            print(summary or "nothing to publish")
        return EXIT_OK
    parts = []
    for state in sorted(counts):
        if state in ("spooled", "queued"):
            parts.append(
                f"{counts[state]} {state} (lines {outcomes.lines(state)}: safe in the outbox "
                f"{settings.resolved_outbox_path}, the relay delivers them)"
            )
        elif state == "delivered":
            parts.append(f"{counts[state]} delivered")
        else:
            parts.append(
                f"{counts[state]} {state} and NOT stored (lines {outcomes.lines(state)}: resend them)"
            )
    return fail("not all delivered: " + "; ".join(parts), EXIT_FAILED)
