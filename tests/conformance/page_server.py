"""The site the browser library runs in: a loopback HTTP server of its own (another origin than
the collector's, as on the web), serving the test page at any `.html` path and the files
published to it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["PageServer"]

PAGE = Path(__file__).with_name("page.html")


class PageServer:
    """`start()`, `publish(path, content_type, body)`, browse `origin + "/any.html"`, `stop()`."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[str, bytes]] = {}
        files = self._files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in files:
                    content_type, body = files[path]
                elif path.endswith(".html"):
                    content_type, body = "text/html; charset=utf-8", PAGE.read_bytes()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def publish(self, path: str, content_type: str, body: bytes) -> None:
        self._files[path] = (content_type, body)

    def start(self) -> PageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
