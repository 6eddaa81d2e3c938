"""Run the ASGI app under uvicorn: in the foreground (`yiwang serve`), in several processes on one port
(`yiwang serve --workers N`) or in a thread (demo, tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


def serve_forever(app: FastAPI, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def serve_processes(factory: str, host: str, port: int, processes: int) -> None:
    """`processes` API processes accepting on one port, each building its own app with `factory` (uvicorn's
    import string, "module:function"). This process is uvicorn's supervisor: it binds the socket, spawns
    the others (multiprocessing spawn: nothing of this process is inherited but the socket), starts one
    again if it dies, and on SIGTERM or SIGINT sends each SIGTERM and waits for it: each then shuts down
    as a single `yiwang serve` does (in-flight requests finish, then its app's lifespan ends)."""
    uvicorn.run(factory, factory=True, workers=processes, host=host, port=port, log_level="info",
                access_log=False)


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve on `port` (0: an ephemeral one); yields the base URL; stops the server (and its lifespan) on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
