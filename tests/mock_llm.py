"""A local mock of OpenAI- and Anthropic-compatible LLM APIs for tests (127.0.0.1 only).

``/v1/chat/completions`` answers like OpenAI (streaming with ``stream: true``, usage in the last
chunk), ``/v1/messages`` like Anthropic's Messages API (a ``request-id`` header; streaming SSE
``message_start`` ... ``message_stop`` with usage in ``message_delta``). Any path under
``/fail`` answers 500. Every request body is kept in ``server.requests``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: usage every mock answer reports, so tests can check tokens exactly
OPENAI_USAGE = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
ANTHROPIC_USAGE = {
    "input_tokens": 20,
    "output_tokens": 3,
    "cache_read_input_tokens": 5,
    "cache_creation_input_tokens": 7,
}


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, dict[str, Any]]]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MockServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chunks: list[bytes], headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append((self.path, request))
        if self.path.startswith("/fail"):
            self._reply(500, {"error": {"message": "mock failure", "type": "server_error"}})
        elif self.path.endswith("/chat/completions"):
            self._openai(request)
        elif self.path.endswith("/messages"):
            self._anthropic(request)
        else:
            self._reply(404, {"error": {"message": f"no route {self.path}"}})

    def _openai(self, request: dict[str, Any]) -> None:
        model = str(request.get("model", "unknown"))
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not request.get("stream"):
            self._reply(
                200,
                {
                    "id": cid, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "Hello"}}],
                    "usage": OPENAI_USAGE,
                },
            )  # fmt: skip
            return

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}], **extra}  # fmt: skip
            return f"data: {json.dumps(body)}\n\n".encode()

        self._stream(
            [
                chunk({"role": "assistant", "content": "Hel"}, None),
                chunk({"content": "lo"}, None),
                chunk({}, "stop", usage=OPENAI_USAGE),
                b"data: [DONE]\n\n",
            ]
        )

    def _anthropic(self, request: dict[str, Any]) -> None:
        model = str(request.get("model", "unknown"))
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if not request.get("stream"):
            self._reply(
                200,
                {
                    "id": mid, "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
                    "stop_sequence": None, "usage": ANTHROPIC_USAGE,
                },
                headers,
            )  # fmt: skip
            return

        def sse(event: str, data: dict[str, Any]) -> bytes:
            return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

        start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
        self._stream(
            [
                sse("message_start", {"type": "message_start", "message": {
                    "id": mid, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": start_usage}}),
                sse("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}}),
                sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": "Hello"}}),
                sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                sse("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}}),
                sse("message_stop", {"type": "message_stop"}),
            ],
            headers,
        )  # fmt: skip


@contextmanager
def mock_llm_server() -> Iterator[MockServer]:
    """A running mock on a free 127.0.0.1 port, shut down afterwards."""
    server = MockServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, name="mock-llm", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def main() -> None:
    """``python -m tests.mock_llm``: serve on a free port (printed) until killed."""
    with mock_llm_server() as server:
        print(server.base_url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
