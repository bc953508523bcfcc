"""A loopback OpenAI-compatible ``/v1/chat/completions`` for tests: 127.0.0.1, a free port, nothing leaves the machine.

``LoopbackServer(respond)`` serves every POST with ``respond(body, headers)``, which returns
``(status code, payload)``: a dict is sent as JSON, bytes as they are. ``completion(model, text)``
is the body of a successful chat completion. Use it as a context manager, or call ``close()``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

__all__ = ["LoopbackServer", "completion"]

Respond = Callable[[dict, Mapping[str, str]], "tuple[int, dict | bytes]"]


def completion(model: str, text: str) -> dict:
    """An OpenAI chat completion whose one choice says ``text``."""
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 answering each POST with ``respond``; ``url`` ends in ``/v1``."""

    def __init__(self, respond: Respond) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code, payload = respond(body, self.headers)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *a: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "LoopbackServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
