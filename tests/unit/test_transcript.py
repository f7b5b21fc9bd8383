"""Reading Claude Code transcripts incrementally (``integrations._transcript``), on the real
transcripts Claude Code 2.1.197 wrote (``tests/fixtures/claude_code_2.1.197``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provider_events.integrations._transcript import read_assistant_records, transcript_size

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_code_2.1.197"


def test_the_real_transcripts_give_each_requests_model_id_and_request_id() -> None:
    """Every assistant line of the main and the sub-agent transcript, with its ids and usage."""
    main = read_assistant_records(FIXTURES / "transcript.jsonl")
    assert [r.model for r in main.records] == ["claude-opus-4-8"] * 3
    assert all(r.request_id and r.request_id.startswith("req_mock_") for r in main.records)
    assert all(r.message_id and r.usage and not r.sidechain for r in main.records)
    assert main.offset == transcript_size(FIXTURES / "transcript.jsonl")
    assert not main.truncated and main.bad_lines == 0 and main.first_timestamp
    sub = read_assistant_records(FIXTURES / "subagent_transcript.jsonl")
    [record] = sub.records
    assert record.sidechain and record.agent_id and record.model == "claude-opus-4-8"


def _line(model: str, n: int) -> bytes:
    doc = {"type": "assistant", "requestId": f"r{n}", "message": {"id": f"m{n}", "model": model}}
    return json.dumps(doc).encode() + b"\n"


def test_reads_only_new_whole_lines_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A half-written last line is left for the next read, which picks it up once complete."""
    path = tmp_path / "t.jsonl"
    half = _line("b", 2)
    path.write_bytes(_line("a", 1) + half[:10])
    first = read_assistant_records(path)
    assert [r.model for r in first.records] == ["a"] and first.offset == len(_line("a", 1))
    with path.open("ab") as fh:
        fh.write(half[10:] + b"not json\n" + b"[1]\n" + _line("<synthetic>", 3) + _line("c", 4))
    second = read_assistant_records(path, first.offset)
    assert [r.model for r in second.records] == ["b", "c"]
    assert second.bad_lines == 2 and second.offset == path.stat().st_size


def test_a_replaced_file_is_read_from_the_start(tmp_path: Path) -> None:
    """An offset beyond the end means the file was replaced: it is read again from 0."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(_line("new", 1))
    assert [r.model for r in read_assistant_records(path, 10_000).records] == ["new"]


def test_the_byte_bound_stops_the_read_and_says_so(tmp_path: Path) -> None:
    """At the byte bound the read stops on a whole line; the rest comes with the next read."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(_line("m", i) for i in range(100)))
    part = read_assistant_records(path, max_bytes=1000)
    assert part.truncated and 0 < len(part.records) < 100
    rest = read_assistant_records(path, part.offset)
    assert len(part.records) + len(rest.records) == 100 and not rest.truncated


def test_hostile_lines_are_skipped(tmp_path: Path) -> None:
    """Control characters, non-string or oversized models and non-object messages are skipped."""
    path = tmp_path / "t.jsonl"
    docs = [
        {"type": "assistant", "message": {"model": "bad\nmodel"}},
        {"type": "assistant", "message": {"model": 42}},
        {"type": "assistant", "message": {"model": "x" * 500}},
        {"type": "assistant", "message": "text"},
        {"type": "assistant", "message": {"model": "  ok  "}, "timestamp": 5},
    ]
    path.write_bytes(b"".join(json.dumps(d).encode() + b"\n" for d in docs) + b"\xff\xfe\n")
    read = read_assistant_records(path)
    assert [(r.model, r.timestamp) for r in read.records] == [("ok", None)]
    assert read.bad_lines == 1


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    """A FIFO (which would block), a directory or a device is an OSError, at once."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, Path("/dev/zero")):
        with pytest.raises(OSError):
            read_assistant_records(path)
