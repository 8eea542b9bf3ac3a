"""A real local HTTP server that receives an EHR's notifications (rest-hook POSTs)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Received = tuple[dict[str, str], bytes]  # lower-cased headers, body


@dataclass
class Receiver:
    """Records POSTs; answers ``fail_next`` requests with 503 first; hands each recorded
    one to ``on_post`` (if set) before answering 200, as a webhook does."""

    url: str
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0
    on_post: Callable[[dict[str, str], bytes], None] | None = None
    event: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[Received]:
        with self.event:
            assert self.event.wait_for(lambda: predicate(self.received), timeout), self.received
            return list(self.received)

    def of_type(self, kind: str) -> list[Received]:
        return [(h, b) for h, b in self.received if h.get("x-notification-type") == kind]


@contextmanager
def receiving(on_post: Callable[[dict[str, str], bytes], None] | None = None) -> Iterator[Receiver]:
    """A :class:`Receiver` listening on a free local port (its ``url`` ends in ``/hook``)."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = box[0]
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with rec.event:
                failing = rec.fail_next > 0
                if failing:
                    rec.fail_next -= 1
                else:
                    rec.received.append((headers, body))
                    rec.event.notify_all()
            if not failing and rec.on_post is not None:
                rec.on_post(headers, body)
            self.send_response(503 if failing else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook", on_post=on_post))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
