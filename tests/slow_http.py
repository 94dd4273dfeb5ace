"""A real HTTP server on 127.0.0.1 that answers one header line every 0.5 s, for ever.

httpx's per-read timeout never fires against it (each read gets a line in time): only a total
deadline ends a request to it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class SlowServer:
    url: str
    connections: list[float] = field(default_factory=list)  # monotonic time of each request
    closed: list[float] = field(default_factory=list)  # when the client gave up on a request

    def wait_for_request(self, timeout_s: float = 60.0) -> None:
        end = time.monotonic() + timeout_s
        while not self.connections:
            if time.monotonic() > end:
                raise AssertionError("the slow server got no request")
            time.sleep(0.05)


@contextmanager
def slow_http_server(interval_s: float = 0.5) -> Iterator[SlowServer]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    server = SlowServer(f"http://127.0.0.1:{listener.getsockname()[1]}/hook")

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            server.connections.append(time.monotonic())
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                n = 0
                while not stop.wait(interval_s):
                    n += 1
                    conn.sendall(f"X-Still-Thinking-{n}: yes\r\n".encode())
            except OSError:  # the client closed the connection: it gave up
                server.closed.append(time.monotonic())

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        acceptor.join(2)
        listener.close()
