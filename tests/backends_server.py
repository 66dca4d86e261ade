"""Shared test helpers for backends: the tiny SmolLM2 GGUF and a real OpenAI-compatible server around it.

The server is llama-cpp-python's own (``python -m llama_cpp.server``), started as a subprocess whose output goes
to a log file: a server that fails to start then shows why in the test failure instead of hanging silently.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SERVER_START_SECONDS = 120.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """A running server: where to reach it, the model id it serves, its log file and its process."""

    base_url: str
    model: str
    log: Path
    process: subprocess.Popen | None = field(default=None, compare=False, repr=False)

    def kill(self) -> None:
        """Stop the server at once, as a crashed or preempted one would (SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextmanager
def llama_cpp_server(model_path: Path, log: Path, *, alias: str = "smollm2", n_ctx: int = 2048) -> Iterator[Server]:
    """Run llama-cpp-python's OpenAI-compatible server on a free port until the block ends (then kill it)."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", alias,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(base_url=f"http://127.0.0.1:{port}/v1", model=alias, log=log, process=process)
    try:
        _wait_until_serving(process, server)
        yield server
    finally:
        process.kill()
        process.wait(timeout=30)


def _wait_until_serving(process: subprocess.Popen, server: Server) -> None:
    """Poll ``/v1/models`` until it lists the model; fail with the log's tail if the server exits or is slow."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with {process.returncode}:\n{_tail(server.log)}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as response:
                if any(entry["id"] == server.model for entry in json.load(response)["data"]):
                    return
        except (OSError, ValueError):  # not listening yet, or answering before it is ready
            pass
        time.sleep(0.2)
    raise RuntimeError(f"llama.cpp server not serving after {SERVER_START_SECONDS:.0f}s:\n{_tail(server.log)}")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
