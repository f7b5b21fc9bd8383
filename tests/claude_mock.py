"""A local mock of the Anthropic Messages API, enough for the real Claude Code CLI to run offline.

``POST /v1/messages`` answers like the real API: with ``"stream": true`` a server-sent event
stream (``message_start``, ``content_block_start`` / ``content_block_delta`` /
``content_block_stop`` per block, ``message_delta`` carrying ``stop_reason`` and the output
usage, ``message_stop``), otherwise one JSON message; every answer has a ``request-id`` header.
``POST /v1/messages/count_tokens`` answers a token count; anything else is a JSON 404.

What it answers is scripted by markers in the conversation's first user text:

* ``MOCK_TOOL``: a call of the ``Bash`` tool (``echo mock-tool-ran``);
* ``MOCK_AGENT``: a call of the sub-agent tool (``Task``, or ``Agent`` in versions that renamed
  it) with a prompt holding ``MOCK_SUBAGENT``; the sub-agent's own request gets a text answer;
* each marker is one tool call, in the order they appear (the next once the previous tool's
  result is back); then, or without any marker, a text answer ends the turn.

Every request is recorded (:class:`Recorded`: the model asked for, whether it was a main
conversation request, i.e. one that offered tools); the test compares the models recorded
with the events the hook published. Run it alone with ``python -m tests.claude_mock PORT``.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MockAnthropic", "Recorded", "mock_anthropic"]

TOOL_MARK = "MOCK_TOOL"
AGENT_MARK = "MOCK_AGENT"
SUBAGENT_MARK = "MOCK_SUBAGENT"
AGENT_TOOLS = ("Task", "Agent")


@dataclass(frozen=True, slots=True)
class Recorded:
    """One ``/v1/messages`` request."""

    model: str
    request_id: str
    message_id: str
    #: The request offered tools: a turn of the conversation (main or sub-agent), not a side
    #: request (a title, a quota probe ...).
    conversation: bool
    #: The first user text held :data:`SUBAGENT_MARK`: the sub-agent's own conversation.
    subagent: bool
    stream: bool
    first_text: str
    answer: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client hanging up mid-stream is not the test's concern


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                out.append(str(block.get("text", "")))
    return out


def _has_tool_result(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


class MockAnthropic:
    """The server and what it saw; use :func:`mock_anthropic` to run one on a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, echo: bool = False) -> None:
        self.requests: list[Recorded] = []
        self.echo = echo
        self._lock = threading.Lock()
        self._count = 0
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    self._json(400, {"type": "error", "error": {"type": "invalid_request_error"}})
                    return
                if path == "/v1/messages/count_tokens":
                    self._json(200, {"input_tokens": 12})
                elif path == "/v1/messages":
                    mock._messages(self, body)
                else:
                    self._json(404, {"type": "error", "error": {"type": "not_found_error"}})

            def do_GET(self) -> None:
                self._json(404, {"type": "error", "error": {"type": "not_found_error"}})

            do_HEAD = do_GET

            def _json(self, status: int, doc: Any, request_id: str | None = None) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", request_id or f"req_mock_{uuid.uuid4().hex[:16]}")
                self.end_headers()
                self.wfile.write(data)

        self.server = _Server((host, port), Handler)
        self.port = self.server.server_address[1]
        self.base_url = f"http://{host}:{self.port}"

    # -- answering ------------------------------------------------------------------------------
    def _plan(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
        """The content blocks to answer with, the stop reason, and the first user text."""
        raw = body.get("messages")
        messages: list[Any] = raw if isinstance(raw, list) else []
        first = ""
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "user":
                texts = [t for t in _texts(m.get("content")) if not t.startswith("<system")]
                if texts:
                    first = texts[-1]
                    break
        offered = body.get("tools")
        tools: list[Any] = offered if isinstance(offered, list) else []
        names = {t.get("name") for t in tools if isinstance(t, dict)}
        # Each marker is one tool call, in the order they appear; then a text answer.
        steps = sorted(
            (first.index(mark), mark) for mark in (TOOL_MARK, AGENT_MARK) if mark in first
        )
        done = sum(1 for m in messages if _has_tool_result(m))
        if SUBAGENT_MARK not in first and done < len(steps):
            mark = steps[done][1]
            agent = next((n for n in AGENT_TOOLS if n in names), None)
            if mark == TOOL_MARK and "Bash" in names:
                block = {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:20]}",
                    "name": "Bash",
                    "input": {"command": "echo mock-tool-ran", "description": "Print a word"},
                }
                return [block], "tool_use", first
            if mark == AGENT_MARK and agent is not None:
                block = {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:20]}",
                    "name": agent,
                    "input": {
                        "description": "Say hello",
                        "prompt": f"{SUBAGENT_MARK}: reply with the word hello.",
                        "subagent_type": "general-purpose",
                    },
                }
                return [block], "tool_use", first
        text = "hello" if SUBAGENT_MARK in first else "Done."
        return [{"type": "text", "text": text}], "end_turn", first

    def _messages(self, handler: Any, body: dict[str, Any]) -> None:
        with self._lock:
            self._count += 1
            n = self._count
        model = str(body.get("model", ""))
        request_id = f"req_mock_{n:04d}_{uuid.uuid4().hex[:8]}"
        message_id = f"msg_mock_{n:04d}_{uuid.uuid4().hex[:8]}"
        blocks, stop, first = self._plan(body)
        stream = bool(body.get("stream"))
        with self._lock:
            self.requests.append(
                Recorded(
                    model=model,
                    request_id=request_id,
                    message_id=message_id,
                    conversation=bool(body.get("tools")),
                    subagent=SUBAGENT_MARK in first,
                    stream=stream,
                    first_text=first[:200],
                    answer=stop,
                )
            )
            if self.echo:
                print(json.dumps(self.requests[-1].__repr__()), flush=True)
        usage = {
            "input_tokens": 100 + n,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        }
        if not stream:
            doc = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": 7},
            }
            handler._json(200, doc, request_id)
            return
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("request-id", request_id)
        handler.send_header("connection", "close")
        handler.end_headers()
        handler.close_connection = True

        def event(name: str, data: dict[str, Any]) -> None:
            handler.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        start: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        event("message_start", {"type": "message_start", "message": start})
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                opening = {**block, "input": {}}
                event(
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": opening},
                )
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            event(
                "content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}
            )
            event("content_block_stop", {"type": "content_block_stop", "index": i})
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 7},
            },
        )
        event("message_stop", {"type": "message_stop"})
        handler.wfile.flush()

    # -- running --------------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def conversation_models(self) -> list[str]:
        with self._lock:
            return [r.model for r in self.requests if r.conversation]


@contextmanager
def mock_anthropic(port: int = 0) -> Iterator[MockAnthropic]:
    """A running :class:`MockAnthropic` on 127.0.0.1 (``port`` 0: a free one)."""
    mock = MockAnthropic(port=port)
    mock.start()
    try:
        yield mock
    finally:
        mock.close()


if __name__ == "__main__":  # pragma: no cover - a manual tool
    server = MockAnthropic(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0, echo=True)
    print(server.base_url, flush=True)
    with suppress(KeyboardInterrupt):
        server.server.serve_forever()
