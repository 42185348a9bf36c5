"""A local `tensorboard` server on a free port, for tests and for scripts/screenshots.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The HTTP API of a running TensorBoard (the calls its web page makes)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def experiment(self) -> dict:
        """The HParams experiment: `hparamInfos` in the order the dashboard shows them, `metricInfos`."""
        return self.get("/data/plugin/hparams/experiment", {"experimentName": ""})


@contextmanager
def tensorboard(logdir: str | Path, runs: int, timeout: float = 90.0) -> Iterator[Server]:
    """`tensorboard --logdir LOGDIR` on a free local port until at least `runs` runs are loaded;
    stopped on exit."""
    port = free_port()
    log = tempfile.TemporaryFile()  # not a pipe: a full pipe would block the server
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                             "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
                            stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if len(server.get("/data/runs")) >= runs:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"tensorboard did not serve {logdir}: {log.read().decode()[-2000:]}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
